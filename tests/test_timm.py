"""timm's networks as cnnlab models and backbones, offline: the contract on small images, the
preprocessing against timm's pretrained_cfg, --weights reproducing timm's logits, building never
downloading, and the offline error naming the file to get."""

import subprocess
import sys

import pytest
import torch

timm = pytest.importorskip("timm")

from cnnlab.errors import CnnlabError  # noqa: E402
from cnnlab.models import ModelSpec, build_model  # noqa: E402
from cnnlab.models.timm_models import TIMM_MODELS  # noqa: E402
from cnnlab.transfer.backbones import BACKBONES, load_pretrained, timm_weights_file  # noqa: E402


@pytest.fixture
def no_downloads(monkeypatch):
    """timm.create_model with pretrained=True fails as it does offline; the calls are recorded."""
    calls = []
    create = timm.create_model

    def offline(name, pretrained=False, **kwargs):
        calls.append(pretrained)
        if pretrained:
            raise ConnectionError("no network")
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    return calls


@pytest.mark.parametrize("name", TIMM_MODELS)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_timm_models_honour_the_contract_without_downloading(name, in_channels, no_downloads):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, in_channels, 5, (32, 32))).eval()
    x = torch.randn(2, in_channels, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)  # [B, C, h, w]
        assert features.ndim == 4 and model.forward_head(features).shape == (2, 5)
        torch.testing.assert_close(model(x), model.forward_head(features))
        modules = dict(model.named_modules())
        assert model.feature_layers and all(layer in modules for layer in model.feature_layers)
        assert model.num_classes == 5
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (2, 3) and model.num_classes == 3
    assert no_downloads == [False]


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_backbone_preprocessing_is_timms_pretrained_config(name):
    cfg = timm.models.get_pretrained_cfg(TIMM_MODELS[name].timm_name)
    preprocessing = BACKBONES.get(name).preprocessing
    assert (3, preprocessing.input_size, preprocessing.input_size) == tuple(cfg.input_size)
    assert preprocessing.mean == pytest.approx(cfg.mean)
    assert preprocessing.std == pytest.approx(cfg.std)
    assert preprocessing.interpolation == cfg.interpolation


@pytest.mark.parametrize("name", TIMM_MODELS)
def test_weights_file_of_timms_keys_reproduces_its_logits(name, tmp_path, no_downloads):
    torch.manual_seed(0)
    reference = timm.create_model(TIMM_MODELS[name].timm_name, pretrained=False).eval()
    path = tmp_path / "weights.pt"
    torch.save(reference.state_dict(), path)
    model = build_model(ModelSpec(name, 3, 1000, (32, 32)))
    loaded = load_pretrained(model, name, path, keep_classifier=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x))
    assert loaded["source"] == str(path.resolve())


def test_offline_timm_weights_say_which_file_to_get(monkeypatch, tmp_path, no_downloads):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = build_model(ModelSpec("timm-resnet18", 3, 10, (32, 32)))
    pattern = r"huggingface\.co/timm/resnet18\.a1_in1k/resolve/main/model\.safetensors.*--weights"
    with pytest.raises(CnnlabError, match=pattern) as error:
        load_pretrained(model, "timm-resnet18")
    assert str(timm_weights_file("resnet18")) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_weights_file_put_where_the_error_says_loads_offline(monkeypatch, tmp_path, no_downloads):
    from safetensors.torch import save_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    torch.manual_seed(1)
    reference = timm.create_model("resnet18", pretrained=False)
    timm_weights_file("resnet18").parent.mkdir(parents=True)
    save_file(reference.state_dict(), str(timm_weights_file("resnet18")))
    model = build_model(ModelSpec("timm-resnet18", 3, 10, (32, 32)))
    load_pretrained(model, "timm-resnet18")
    torch.testing.assert_close(model.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert True not in no_downloads


def test_listing_models_and_backbones_does_not_import_timm():
    code = "import sys, cnnlab.models, cnnlab.transfer.backbones; print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
