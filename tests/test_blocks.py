"""The blocks of the classic networks: shapes, shortcuts, concatenation and parameter counts
worked out by hand."""

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import DivisiveNormalization
from cnnlab.layers.blocks import (
    BasicResidual,
    BottleneckResidual,
    ClassifierHead,
    ConvNormAct,
    DenseBlock,
    Inception,
    SeparableConv2d,
    SqueezeExcitation,
    Transition,
    WithSqueezeExcitation,
    ZeroPadShortcut,
    make_norm,
)


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_conv_norm_act_drops_the_bias_only_under_batch_norm():
    assert ConvNormAct(3, 8).conv.bias is None
    plain = ConvNormAct(3, 8, 5, norm="none", activation=None)
    assert _parameters(plain) == 5 * 5 * 3 * 8 + 8 and list(plain._modules) == ["conv"]
    divisive = ConvNormAct(3, 8, norm="divisive")
    assert isinstance(divisive.norm, DivisiveNormalization)
    assert divisive(torch.randn(2, 3, 9, 9)).shape == (2, 8, 9, 9)
    with pytest.raises(ConfigError, match="Unknown normalisation 'layer'"):
        make_norm("layer", 8)


def test_separable_conv_has_a_filter_per_band_then_a_1x1_mix():
    block = SeparableConv2d(16, 32, kernel_size=3, stride=2)
    assert _parameters(block) == 3 * 3 * 16 + 16 * 32  # versus 3*3*16*32 for a full conv
    assert block(torch.randn(2, 16, 9, 9)).shape == (2, 32, 5, 5)


def test_residual_blocks_project_only_when_the_shape_changes():
    same = BasicResidual(16, 16)
    assert same.shortcut is None
    x = torch.randn(2, 16, 8, 8)
    assert same(x).shape == x.shape
    down = BasicResidual(16, 32, stride=2)
    assert isinstance(down.shortcut[0], nn.Conv2d) and down.shortcut[0].stride == (2, 2)
    assert down(x).shape == (2, 32, 4, 4)
    padded = BasicResidual(16, 32, stride=2, shortcut="zero-pad")
    assert isinstance(padded.shortcut, ZeroPadShortcut)
    assert padded(x).shape == (2, 32, 4, 4)
    bottleneck = BottleneckResidual(64, 256, bottleneck_channels=64)
    assert bottleneck.conv2.conv.in_channels == 64 and bottleneck(
        torch.randn(1, 64, 4, 4)
    ).shape == (1, 256, 4, 4)


def test_zero_pad_shortcut_keeps_the_input_and_appends_zero_bands():
    x = torch.randn(1, 2, 4, 4)
    y = ZeroPadShortcut(2, 5, 2)(x)
    assert torch.equal(y[:, :2], x[:, :, ::2, ::2]) and torch.all(y[:, 2:] == 0)


def test_squeeze_excitation_reweights_channels_and_attaches_to_any_block():
    se = SqueezeExcitation(32, reduction=8)
    assert se.reduce.out_channels == 4
    x = torch.randn(2, 32, 5, 5)
    weights = se(x) / x
    # One weight in (0, 1) per image and band, the same at every pixel.
    assert torch.allclose(weights, weights[:, :, :1, :1].expand_as(weights), atol=1e-5)
    inception = Inception(8, 4, (4, 8), (2, 4), 4)
    attached = WithSqueezeExcitation(inception, inception.out_channels)
    assert attached(torch.randn(2, 8, 6, 6)).shape == (2, 20, 6, 6)


def test_dense_block_concatenates_and_transition_compresses():
    block = DenseBlock(24, num_layers=3, growth_rate=12)
    x = torch.randn(2, 24, 8, 8)
    y = block(x)
    assert block.out_channels == 60 and y.shape == (2, 60, 8, 8)
    assert torch.equal(y[:, :24], x)  # the input is passed on unchanged
    assert Transition(60, 30)(y).shape == (2, 30, 4, 4)
    assert Transition(60, 30, downsample=False)(y).shape == (2, 30, 8, 8)


def test_inception_concatenates_its_four_branches():
    module = Inception(192, 64, (96, 128), (16, 32), 32)  # GoogLeNet's 3a
    assert module.out_channels == 256
    assert module(torch.randn(1, 192, 7, 7)).shape == (1, 256, 7, 7)


def test_classifier_head_ends_in_fc_with_dropout_between_dense_layers():
    head = ClassifierHead(512 * 2 * 2, 10, pool_size=2, hidden_units=(64, 32), dropout=0.5)
    assert list(head._modules) == [
        "pool", "flatten", "fc1", "act1", "drop2", "fc2", "act2", "dropout", "fc",
    ]  # fmt: skip
    assert head(torch.randn(3, 512, 5, 5)).shape == (3, 10)
    assert list(ClassifierHead(8, 2, pool="flatten")._modules) == ["flatten", "fc"]
