"""Every registered model honours the contract, for 1 and 3 bands, small and MNIST-size."""

import pytest
import torch

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.models import MODELS, ModelSpec, build_model, register_model

SIZES = [(8, 8), (28, 28), (32, 32)]


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size", SIZES)
def test_forward_shapes_and_contract(name, in_channels, size):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, in_channels, 7, size)).eval()
    x = torch.randn(2, in_channels, *size)
    features = model.forward_features(x)
    logits = model.forward_head(features)
    assert logits.shape == (2, 7)
    assert model.num_classes == 7
    assert torch.allclose(model(x), logits)
    modules = dict(model.named_modules())
    assert model.feature_layers, "feature_layers must name at least one stage"
    for layer in model.feature_layers:
        assert layer in modules, f"{layer} is not a module of {name}"
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", MODELS.names())
def test_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, 1, 10, (28, 28)))
    loss = model(torch.randn(4, 1, 28, 28)).logsumexp(1).sum()
    loss.backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS.names())
def test_spec_round_trip(name):
    spec = ModelSpec(name, 3, 10, (32, 32), {"dropout": 0.25})
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    import json

    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_lenet5_has_the_papers_parameter_count():
    # LeNet-5 on 28x28 padded like the paper's 32x32 input: 61,706 parameters.
    model = build_model(ModelSpec("lenet5", 1, 10, (28, 28)))
    assert sum(p.numel() for p in model.parameters()) == 61_706


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="lenet5"):
        MODELS.get("lenet")


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ConfigError, match="no option 'width'"):
        build_model(ModelSpec("small-cnn", 1, 10, (28, 28), {"width": 3}))


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5")(lambda **kwargs: None)


def test_small_cnn_options_change_the_network():
    model = build_model(ModelSpec("small-cnn", 1, 10, (28, 28), {"widths": [8, 16], "depth": 1}))
    assert model.head.fc.in_features == 16
    assert model.feature_layers == ("features.stage1", "features.stage2")
