"""Every registered model honours the contract: shapes for 1 and 3 bands at 28 and 32 px, then
numbers, stage order and gradients at the digits' 8 px (or the model's smallest size). The
ImageNet-size (224 px) networks are checked in test_summary.py against torchvision's counts.

Networks of more than 10M parameters run the shape checks on torch's meta device (shapes without
memory or arithmetic), and above 30M parameters the gradient check too, which still proves that
every parameter is in the backward graph. Batches hold 2 images.
"""

import json
from functools import cache

import pytest
import torch

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.models import (
    MODELS,
    ModelSpec,
    build_model,
    model_min_image_size,
    model_options,
    register_model,
)

BANDS_AND_SIZES = [(1, 28), (3, 28), (1, 32), (3, 32)]
CPU_MAX_PARAMETERS = 10_000_000  # building VGG-16 on the CPU alone takes seconds
GRADIENT_CPU_MAX_PARAMETERS = 30_000_000


@cache
def _parameter_count(name: str) -> int:
    size = max(32, model_min_image_size(name))
    with torch.device("meta"):
        model = build_model(ModelSpec(name, 3, 10, (size, size)))
    return sum(p.numel() for p in model.parameters())


def _execution_order(model: torch.nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
        for name, module in model.named_modules()
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return order


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize(("in_channels", "size"), BANDS_AND_SIZES)
def test_forward_shapes_and_contract(name, in_channels, size):
    spec = ModelSpec(name, in_channels, 7, (size, size))
    if size < model_min_image_size(name):
        with pytest.raises(ConfigError, match="needs images of at least"):
            build_model(spec)
        return
    meta = _parameter_count(name) > CPU_MAX_PARAMETERS
    with torch.device("meta" if meta else "cpu"), torch.no_grad():
        model = build_model(spec).eval()
        features = model.forward_features(torch.zeros(2, in_channels, size, size))
        assert model.forward_head(features).shape == (2, 7)
        assert model.num_classes == 7
        modules = dict(model.named_modules())
        assert model.feature_layers, "feature_layers must name at least one stage"
        for layer in model.feature_layers:
            assert layer in modules, f"{layer} is not a module of {name}"
        model.reset_classifier(3)
        assert model.forward_head(features).shape == (2, 3) and model.num_classes == 3


@pytest.mark.parametrize("name", MODELS.names())
def test_numbers_stage_order_and_every_parameter_gets_a_gradient(name):
    size = max(8, model_min_image_size(name))
    device = "meta" if _parameter_count(name) > GRADIENT_CPU_MAX_PARAMETERS else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = build_model(ModelSpec(name, 1, 10, (size, size)))
        x = torch.randn(2, 1, size, size)
    model.eval()
    with torch.no_grad():
        order = _execution_order(model, x)
        first_call = [order.index(layer) for layer in model.feature_layers]
        assert first_call == sorted(first_call), "feature_layers must run shallow to deep"
        if device == "cpu":
            assert torch.allclose(model(x), model.forward_head(model.forward_features(x)))
            _undo_zero_init_of_residual_norms(model)
    model.train()
    model(x).logsumexp(1).sum().backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{pname} gets no gradient"
        # Weights only: a bias followed by batch normalisation (in training mode) has an exactly
        # zero gradient, since the normalisation subtracts any constant shift again.
        if device == "cpu" and parameter.dim() > 1:
            assert parameter.grad.abs().sum() > 0, f"{pname} gets a zero gradient"


@pytest.mark.parametrize("name", MODELS.names())
def _undo_zero_init_of_residual_norms(model: torch.nn.Module) -> None:
    """A norm layer initialised to all-zero scales (timm's zero_init_last, Goyal et al. 2017: each
    residual branch starts as the identity) zeroes every gradient inside its branch at init; set
    to one, every parameter must then get a gradient."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase) and module.weight is not None:
            if not module.weight.any():
                module.weight.fill_(1.0)


@pytest.mark.parametrize("name", MODELS.names())
def test_spec_round_trip(name):
    spec = ModelSpec(name, 3, 10, (32, 32), {"dropout": 0.25})
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_takes_a_dropout_option(name):
    # `cnnlab train --dropout` passes it to every builder.
    assert "dropout" in model_options(name)


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


def test_torchvision_models_adapt_bands_and_keep_torchvision_state_dict_keys():
    import torchvision

    with torch.device("meta"):
        model = build_model(ModelSpec("tv-resnet18", 5, 4, (64, 64)))
        reference = torchvision.models.resnet18(num_classes=4)
    assert model.net.conv1.in_channels == 5
    assert set(model.net.state_dict()) == set(reference.state_dict())


def test_small_inputs_use_small_stems_and_large_ones_the_imagenet_stems():
    with torch.device("meta"):
        small = build_model(ModelSpec("resnet18", 3, 10, (32, 32)))
        large = build_model(ModelSpec("resnet18", 3, 10, (224, 224)))
    assert small.features.stem.conv.kernel_size == (3, 3)
    assert large.features.stem[0].conv.kernel_size == (7, 7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"widths": "32,64"}, r"widths='32,64' is invalid: expected a list of whole numbers"),
        ({"depth": "two"}, r"depth='two' is invalid: expected a whole number, e.g. depth=2"),
        ({"dropout": 2}, r"dropout=2 is out of range: it must be in \[0, 1\)"),
        ({"widths": [0, 8]}, r"widths=\[0, 8\] is out of range: it must be at least 1"),
        ({"depth": True}, r"depth=True is invalid"),
    ],
)
def test_model_options_are_checked_against_the_builder_before_building(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(ModelSpec("small-cnn", 1, 10, (28, 28), options))


def test_model_options_accept_what_the_annotations_allow():
    model = build_model(ModelSpec("efficientnet-lite-tiny", 3, 4, (32, 32), {"input_size": None}))
    assert model.num_classes == 4
    build_model(ModelSpec("small-cnn", 1, 10, (28, 28), {"widths": [8], "dropout": 0}))
