"""Network specs: parsing, canonical text, dict/JSON/TOML round trips, errors with a caret, and the
networks they build (shapes, parameter counts worked out by hand as in seed 003)."""

import json
import tomllib

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.models import ModelSpec, SpecDoesNotFit, build_model, resolve_model_argument
from cnnlab.specs.network import (
    Activation,
    Conv,
    Dense,
    Flatten,
    NetworkSpec,
    Norm,
    Pool,
    Repeat,
    looks_like_spec,
    parse_spec,
)

EXAMPLES = [
    "fc",
    "conv8x5 -> fc",
    "[[conv32x3 -> relu]*2 -> maxpool2]*3 -> fc",
    "[conv16x5 -> bn -> relu -> maxpool2]*2 -> flatten -> [fc128 -> relu]*2 -> dropout0.5 -> fc",
    "conv32x3s2p0 -> dn5x25 -> minpool3s2p1 -> avgpool2 -> se8 -> res64s2 -> sep32x5 -> gmp -> fc",
    "[conv8x3 -> lrelu -> elu -> gelu -> silu]*0 -> tanh -> sigmoid -> gap -> bn -> fc",
]


@pytest.mark.parametrize("text", EXAMPLES)
def test_canonical_text_dict_json_and_toml_round_trips(text):
    spec = parse_spec(text)
    assert spec.text() == text  # the examples are written canonically
    assert parse_spec(spec.text()) == spec
    assert NetworkSpec.from_dict(spec.to_dict()) == spec
    assert NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    toml = tomllib.loads(f"[train]\nmodel = {json.dumps(text)}\n")
    assert parse_spec(toml["train"]["model"]) == spec


def test_the_slides_notation_parses_to_the_same_network():
    slides = parse_spec("INPUT -> [[CONV32 -> RELU]*2 -> POOL]*3 -> FC")
    assert slides == parse_spec("[[conv32x3 -> relu]*2 -> maxpool2]*3 -> fc")
    assert slides.layers[0] == Repeat((Repeat((Conv(32), Activation("relu")), 2), Pool("max")), 3)
    assert len(slides.expand()) == 3 * (2 * 2 + 1) + 1


def test_the_slides_pattern_typed_literally_builds_the_documented_default_widths():
    text = "INPUT -> [[CONV -> RELU]*2 -> POOL]*2 -> [FC -> RELU]*1 -> FC"
    spec = parse_spec(text)
    assert spec.text() == (
        "conv32x3 -> relu -> conv32x3 -> relu -> maxpool2 -> conv64x3 -> relu -> conv64x3 -> "
        "relu -> maxpool2 -> fc128 -> relu -> fc"
    )
    assert parse_spec(spec.text()) == spec
    name, options = resolve_model_argument(text, {})
    model = build_model(ModelSpec(name, 1, 10, (16, 16), options))
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    dense = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert convs == [32, 32, 64, 64] and dense == [128, 10]
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    three_pools = parse_spec("conv -> pool -> conv -> pool -> pool -> conv -> fc")
    assert [n.out_channels for n in three_pools.expand() if isinstance(n, Conv)] == [32, 64, 256]


def test_defaults_and_spelled_out_fields():
    layers = parse_spec("conv16 -> dn -> pool -> flatten -> fc10 -> fc").layers
    assert layers == (
        Conv(16, 3, 1, None), Norm("divisive", (5, 5)), Pool("max", 2, None, 0), Flatten(),
        Dense(10), Dense(None),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("[[cnv32x3 -> relu]*2 -> pool]*3 -> fc", 3, "unknown layer 'cnv32x3'"),
        ("conv32 -> relu", 15, "ends with fc"),
        ("[conv32 -> relu*2 -> fc", 1, "never closed"),
        ("gap -> conv3 -> fc", 8, "already turned the maps into a vector"),
        ("conv32y -> fc", 1, "write conv<filters>"),
        ("conv32 -> dropout1.5 -> fc", 11, "in [0, 1)"),
        ("conv32 ->", 10, "expected a layer"),
        ("conv32 -> relu]*2 -> fc", 15, "unexpected ']'"),
        ("conv0 -> fc", 1, "at least 1"),
        ("[conv3]* -> fc", 10, "repetition count"),
        ("conv3 $ fc", 7, "unexpected character '$'"),
        ("maxpool2p2 -> fc", 1, "at most half"),
    ],
)
def test_malformed_specs_point_at_the_offending_position(text, position, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert f"position {position}:" in message and fragment in message
    spec_line, caret_line = message.splitlines()[-2:]
    assert spec_line == f"  {text}"
    assert caret_line.index("^") == 2 + position - 1


def test_model_argument_is_a_registry_name_or_a_spec():
    assert resolve_model_argument("resnet20", {}) == ("resnet20", {})
    name, options = resolve_model_argument("INPUT -> CONV8 -> RELU -> FC", {"dropout": 0.1})
    assert name == "spec" and options == {"dropout": 0.1, "spec": "conv8x3 -> relu -> fc"}
    assert looks_like_spec("fc") and not looks_like_spec("resnet2")
    with pytest.raises(UnknownNameError, match="resnet20.*spec"):
        resolve_model_argument("resnet2", {})
    with pytest.raises(ConfigError, match="position"):
        resolve_model_argument("conv8 -> relu", {})


def _spec_model(text, in_channels=3, size=(28, 28), num_classes=10, **options):
    return build_model(ModelSpec("spec", in_channels, num_classes, size, {"spec": text, **options}))


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_slides_hand_computed_parameter_counts():
    # Seed 003, Q2: 8 kernels of 5x5 over 3 bands, plus 8 biases: 5*5*3*8 + 8 = 608.
    model = _spec_model("conv8x5 -> fc")
    assert _parameters(model.features.conv1) == 608
    # Q1: W=28, F=5, P=1, S=1 gives (28 - 5 + 2) / 1 + 1 = 26.
    model = _spec_model("conv8x5p1 -> fc")
    assert model.forward_features(torch.zeros(1, 3, 28, 28)).shape == (1, 8, 26, 26)
    # INPUT -> FC, the linear classifier: 3*28*28*10 weights + 10 biases.
    assert _parameters(_spec_model("fc")) == 3 * 28 * 28 * 10 + 10


def test_spec_networks_follow_the_pattern_and_name_their_stages():
    model = _spec_model("[[conv16 -> relu]*2 -> maxpool2]*2 -> fc64 -> relu -> fc", size=(32, 32))
    assert model.feature_layers == ("features.pool1", "features.pool2")
    assert list(model.head._modules) == ["flatten", "fc1", "relu5", "fc"]
    assert model.head.fc1.in_features == 16 * 8 * 8
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_pooling_methods_normalisations_and_dropout_option():
    model = _spec_model(
        "conv4 -> dn3x5 -> minpool2 -> conv4 -> bn -> avgpool2 -> gap -> fc", dropout=0.3
    )
    kinds = [type(m).__name__ for m in model.features]
    assert kinds == ["Conv2d", "DivisiveNormalization", "MinPool2d", "Conv2d", "BatchNorm2d"] + [
        "AvgPool2d"
    ]
    assert isinstance(model.head.dropout, nn.Dropout) and model.head.dropout.p == 0.3
    assert model(torch.randn(2, 3, 28, 28)).shape == (2, 10)


def test_a_spec_that_pools_below_one_pixel_says_where():
    with pytest.raises(SpecDoesNotFit, match=r"layer 25 \(maxpool2x?2?\).*1x1 maps") as caught:
        _spec_model("[[conv8 -> relu]*2 -> pool]*5 -> fc", in_channels=1)
    assert list(caught.value.partial._modules)[-1] == "relu10"


def test_the_slides_example_trains_from_the_command_line_and_rebuilds_from_model_json(
    tmp_path, capsys
):
    from cnnlab.cli import main

    run = tmp_path / "slides"
    spec = "INPUT -> [[CONV32 -> RELU]*2 -> POOL]*3 -> FC"
    flags = ["--data", "digits", "--epochs", "1", "--quiet", "--no-download"]
    assert main(["train", *flags, "--model", spec, "--out", str(run)]) == 0
    stored = json.loads((run / "model.json").read_text())
    assert stored["name"] == "spec" and stored["in_channels"] == 1
    assert stored["options"] == {"spec": "[[conv32x3 -> relu]*2 -> maxpool2]*3 -> fc"}
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0  # rebuilt from model.json alone
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.3  # chance is 0.1
    # The same from a TOML recipe.
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('[train]\nmodel = "conv8 -> relu -> fc"\nepochs = 1\n')
    run = tmp_path / "toml"
    assert main(["train", "--config", str(recipe), "--quiet", "--out", str(run)]) == 0
    assert (
        json.loads((run / "model.json").read_text())["options"]["spec"] == "conv8x3 -> relu -> fc"
    )
