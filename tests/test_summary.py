"""`cnnlab summary`: totals against torchvision's models and published tables, the papers'
counts, the slides' hand-computed values, receptive fields, and the table up to a failing layer."""

import json

import pytest
import torch
import torchvision

from cnnlab.cli import main
from cnnlab.models import ModelSpec, build_model
from cnnlab.models.summary import summarize


def _summary(name, shape, num_classes, **options):
    with torch.device("meta"):
        model = build_model(ModelSpec(name, shape[0], num_classes, shape[1:], options))
    return summarize(model, shape, name)


def _torchvision_parameters(builder: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in getattr(torchvision.models, builder)().parameters())


@pytest.mark.parametrize(
    ("name", "torchvision_builder", "published"),
    [
        ("tv-resnet18", "resnet18", 11_689_512),
        ("tv-vgg16", "vgg16", 138_357_544),
        # cnnlab's own families at ImageNet size match torchvision's count exactly.
        ("resnet18", "resnet18", 11_689_512),
        ("resnet50", "resnet50", 25_557_032),
        ("vgg16-bn", "vgg16_bn", 138_365_992),
        ("vgg11-bn", "vgg11_bn", 132_868_840),
        ("alexnet", "alexnet", 61_100_840),
        ("densenet121", "densenet121", 7_978_856),
    ],
)
def test_imagenet_parameter_counts_match_torchvision(name, torchvision_builder, published):
    summary = _summary(name, (3, 224, 224), 1000)
    assert summary.error is None
    assert summary.total_parameters == _torchvision_parameters(torchvision_builder) == published
    assert sum(row.parameters for row in summary.rows) == summary.total_parameters


@pytest.mark.parametrize("name", ["googlenet", "se-resnet18", "tv-efficientnet-b0"])
def test_other_imagenet_networks_run_at_224_px(name):
    summary = _summary(name, (3, 224, 224), 1000)
    assert summary.error is None and summary.rows[-1].output_shape == (1000,)


def test_multiply_accumulates_match_torchvisions_published_gflops():
    # torchvision's model tables list 1.81 (ResNet-18) and 15.47 (VGG-16) "GFLOPS": MACs per image.
    assert round(_summary("tv-resnet18", (3, 224, 224), 1000).total_macs / 1e9, 2) == 1.81
    assert round(_summary("tv-vgg16", (3, 224, 224), 1000).total_macs / 1e9, 2) == 15.47


def test_cifar_resnets_match_the_paper():
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters (option A shortcuts).
    for name, millions in (("resnet20", 0.27), ("resnet56", 0.85)):
        paper = _summary(name, (3, 32, 32), 10, shortcut="zero-pad").total_parameters
        assert round(paper / 1e6, 2) == millions
        projection = _summary(name, (3, 32, 32), 10).total_parameters
        assert projection == pytest.approx(millions * 1e6, rel=0.01)


def test_xception_matches_the_paper():
    # Chollet (2017), Table 3: 22,855,952 parameters (1000 classes).
    assert _summary("xception", (3, 299, 299), 1000).total_parameters == 22_855_952


def test_lenet5_and_the_slides_hand_computed_counts():
    summary = _summary("lenet5", (1, 28, 28), 10)
    assert summary.total_parameters == 61_706
    by_name = {row.name: row for row in summary.rows}
    assert by_name["features.c1.0"].output_shape == (6, 28, 28)
    assert by_name["features.c1.0"].parameters == 5 * 5 * 1 * 6 + 6
    # Seed 003: 8 kernels of 5x5x3 + 8 biases = 608 parameters; with P=1 a 28 px input gives 26.
    spec = _summary("spec", (3, 28, 28), 2, spec="conv8x5p1 -> fc")
    conv = next(row for row in spec.rows if row.layer == "Conv2d")
    assert (conv.parameters, conv.output_shape) == (608, (8, 26, 26))
    assert conv.macs == 26 * 26 * 8 * (5 * 5 * 3)


def test_receptive_fields_grow_as_published_for_vgg16():
    rows = {row.name: row for row in _summary("tv-vgg16", (3, 224, 224), 1000).rows}
    assert rows["net.features.0"].receptive_field == (3, 3)
    assert rows["net.features.28"].receptive_field == (196, 196)  # conv5_3
    assert rows["net.features.30"].receptive_field == (212, 212)  # pool5
    assert rows["net.classifier.6"].receptive_field is None  # a dense layer sees the whole image


def test_branches_take_the_widest_receptive_field():
    rows = {row.name: row for row in _summary("resnet20", (3, 32, 32), 10).rows}
    # stem 3, then two 3x3 convs: 7; the identity shortcut (3) is narrower than the branch.
    assert rows["add"].receptive_field == (7, 7)


def test_a_network_that_does_not_fit_shows_the_table_up_to_the_failing_layer(capsys):
    code = main(["summary", "[[conv32 -> relu]*2 -> pool]*5 -> fc", "--input", "1,28,28"])
    out = capsys.readouterr().out
    assert code == 2
    assert "features.relu10" in out and "32x1x1" in out
    assert "layer 25 (maxpool2) gets 1x1 maps and would make them 0x0" in out
    # A registered network, traced on an input too small for it: torch's complaint, explained.
    with torch.device("meta"):
        model = build_model(ModelSpec("tv-vgg16", 3, 10, (32, 32)))
    summary = summarize(model, (3, 16, 16), "tv-vgg16")
    assert summary.rows[-1].name == "net.features.29"
    assert "net.features.30 (MaxPool2d)" in summary.error and "512x1x1" in summary.error


def test_summary_command_json_and_errors(capsys):
    assert main(["summary", "resnet20", "--input", "3,32,32", "--classes", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_parameters"] == 272_474 and data["error"] is None
    assert data["rows"][0] == {
        "name": "input", "layer": "", "output_shape": [3, 32, 32], "parameters": 0, "macs": 0,
        "receptive_field": [1, 1],
    }  # fmt: skip
    assert data["model_spec"]["name"] == "resnet20"
    assert main(["summary", "conv8 -> rleu -> fc", "--input", "1,8,8"]) == 2
    err = capsys.readouterr().err
    assert "unknown layer 'rleu'" in err and "^^^^" in err
    assert main(["summary", "resnet20", "--input", "3,32"]) == 2
    assert "expected three positive integers" in capsys.readouterr().err


class _DataDependent(torch.nn.Module):
    """torch.fx cannot trace `if x.sum() > 0`; the summary falls back to forward hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x))
        if x.sum() > 0:
            x = -x
        return self.fc(x.mean((2, 3)))


def test_untraceable_models_are_summarised_from_forward_hooks():
    summary = summarize(_DataDependent(), (1, 6, 6), "branchy")
    assert summary.note and "could not be traced" in summary.note
    assert [row.name for row in summary.rows] == ["input", "conv", "pool", "fc"]
    assert [row.receptive_field for row in summary.rows[1:3]] == [(3, 3), (4, 4)]
    assert summary.total_parameters == 4 * 9 + 4 + 4 * 2 + 2 and summary.error is None
    failed = summarize(_DataDependent(), (1, 3, 3), "branchy")
    assert "pool" in failed.error and [row.name for row in failed.rows] == ["input", "conv"]


def test_receptive_fields_of_the_slides_layers():
    # conv 3x3: 3; divisive normalisation over 3 high x 5 wide: 5x7; min pooling 2x2: 6x8.
    rows = _summary("spec", (1, 8, 8), 10, spec="conv8 -> dn3x5 -> minpool2 -> fc").rows
    assert [row.receptive_field for row in rows[1:4]] == [(3, 3), (5, 7), (6, 8)]
