"""Backbones: the registry, EfficientNet-Lite0's ImageNet weights (golden logits, a cat and a cup
from scikit-image's sample photos), key mapping, band adaptation, offline errors, feature cache.

Three 224-pixel forwards of EfficientNet-Lite0 in all (one module-scoped model).
"""

import urllib.error

import pytest
import torch

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.models import MODELS, ModelSpec, build_model
from cnnlab.transfer.backbones import BACKBONES, load_pretrained
from cnnlab.transfer.weights import adapt_stem, lite_key


@pytest.fixture(scope="module")
def lite0(one_torch_thread):
    model = build_model(ModelSpec("efficientnet-lite0", 3, 1000, (224, 224)))
    load_pretrained(model, "efficientnet-lite0", keep_classifier=True)
    return model.eval()


def _photo_top5(model, photo) -> list[str]:
    import torchvision

    from cnnlab.transfer.features import prepare

    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    images = torch.from_numpy(photo).permute(2, 0, 1)[None]  # [1, 3, H, W] uint8
    with torch.no_grad():
        logits = model(prepare(images, BACKBONES.get("efficientnet-lite0").preprocessing))
    return [categories[i] for i in logits[0].topk(5).indices]


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_is_a_registered_model(name):
    assert BACKBONES.get(name).model in MODELS


def test_lite0_has_the_published_parameter_count(lite0):
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008  # 4.65 M (1000 classes)


def test_lite0_reproduces_golden_logits(lite0):
    ys = torch.linspace(-1, 1, 224)  # a smooth, RNG-free input [1, 3, 224, 224]
    x = torch.stack([ys[:, None] * ys[None, :], ys[:, None].expand(224, 224),
                     torch.cos(3 * ys)[None, :].expand(224, 224)])[None]  # fmt: skip
    with torch.no_grad():
        logits = lite0(x)[0]
    assert logits.argmax().item() == 818
    expected = torch.tensor([-0.3758, 0.5636, 0.6204, -0.6310, 0.6185])
    torch.testing.assert_close(logits[:5], expected, atol=2e-3, rtol=0)


def test_lite0_recognises_a_cat_and_a_cup(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    cat = _photo_top5(lite0, skimage_data.chelsea())
    assert {"Egyptian cat", "tabby", "tiger cat"} & set(cat), cat
    cup = _photo_top5(lite0, skimage_data.coffee())
    assert {"cup", "coffee mug", "espresso"} & set(cup), cup


def test_the_key_mapping_covers_every_key_once():
    state = BACKBONES.get("efficientnet-lite0").fetch()
    mapped = {lite_key(k, (1, 2, 2, 3, 3, 4, 1)) for k in state}
    own = build_model(ModelSpec("efficientnet-lite0", 3, 1000, (224, 224))).state_dict()
    assert len(mapped) == len(state) and mapped == set(own)
    assert lite_key("_blocks.7._depthwise_conv.weight", (1, 2, 2, 3, 3, 4, 1)) == (
        "features.stages.3.2.depthwise.0.weight"
    )


def test_grey_stem_equals_grey_replicated_to_rgb():
    torch.manual_seed(0)
    rgb = torch.randn(4, 3, 3, 3)
    grey = torch.rand(1, 1, 6, 6)
    conv = torch.nn.functional.conv2d
    torch.testing.assert_close(conv(grey, adapt_stem(rgb, 1)), conv(grey.repeat(1, 3, 1, 1), rgb))
    assert adapt_stem(rgb, 5).shape == (4, 5, 3, 3)


def test_a_file_that_does_not_fit_is_refused_with_its_keys(tmp_path):
    model = build_model(ModelSpec("efficientnet-lite-tiny", 3, 10, (8, 8)))
    state = dict(model.state_dict())
    state.pop("features.stem.1.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match=r"w\.pt.*missing: features\.stem\.1\.weight.*extra"):
        load_pretrained(model, "efficientnet-lite-tiny", tmp_path / "w.pt")


def test_offline_torchvision_weights_say_which_file_to_get(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model(ModelSpec("tv-resnet18", 3, 10, (32, 32)))
    with pytest.raises(CnnlabError, match=r"download\.pytorch\.org.*resnet18-.*\.pth.*checkpoints"):
        load_pretrained(model, "tv-resnet18")


def test_features_are_cached_and_a_hit_runs_no_network(monkeypatch, tmp_path, one_torch_thread):
    from cnnlab.models.efficientnet_lite import EfficientNetLite
    from cnnlab.transfer.features import backbone_features

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.int64).reshape(2, 3, 16, 16) % 251
    images = images.to(torch.uint8)
    first = backbone_features("efficientnet-lite0", images, layer="features.stages.1",
                              batch_size=1, progress=False)  # fmt: skip
    assert first.shape == (2, 24) and first.dtype == torch.float32

    def refuse(self, x):
        raise AssertionError("the network ran on a cache hit")

    monkeypatch.setattr(EfficientNetLite, "forward_features", refuse)
    again = backbone_features("efficientnet-lite0", images, layer="features.stages.1",
                              progress=False)  # fmt: skip
    assert torch.equal(first, again)
    with pytest.raises(AssertionError, match="cache hit"):  # other images: a miss
        backbone_features("efficientnet-lite0", images.flip(0), layer="features.stages.1",
                          progress=False)  # fmt: skip
