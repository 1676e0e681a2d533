"""The layers torch lacks, against independent numpy loops on random data, with gradients."""

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers import DivisiveNormalization, LinearNormalization, MinPool2d

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def numpy_min_pool(x, kernel, stride, padding):
    """Min over each window of the +inf-padded image, written as plain loops."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=np.inf)
    out_h = (padded.shape[2] - kh) // sh + 1
    out_w = (padded.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            window = padded[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = window.min(axis=(2, 3))
    return out


def numpy_divisive(x, height, width, epsilon):
    """N(p) = I(p) / sqrt(sum of I(q)^2 over the in-image q of the h x w window around p + eps)."""
    out = np.empty_like(x)
    rows, cols = x.shape[2:]
    for y in range(rows):
        for x_ in range(cols):
            y0, y1 = max(0, y - (height - 1) // 2), min(rows, y + height // 2 + 1)
            x0, x1 = max(0, x_ - (width - 1) // 2), min(cols, x_ + width // 2 + 1)
            energy = (x[:, :, y0:y1, x0:x1] ** 2).sum(axis=(2, 3))
            out[:, :, y, x_] = x[:, :, y, x_] / np.sqrt(energy + epsilon)
    return out


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [(2, None, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0)), (3, 2, 0)],
)
def test_min_pool_matches_numpy(kernel, stride, padding):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    layer = MinPool2d(kernel, stride, padding)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    expected = numpy_min_pool(
        x.numpy(), pair(kernel), pair(kernel if stride is None else stride), pair(padding)
    )
    np.testing.assert_allclose(layer(x).numpy(), expected)


def test_min_pool_gradient():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(MinPool2d(2, 1, 1), (x,))


@pytest.mark.parametrize("kernel_size", [5, (5, 25), (3, 4), (1, 1)])
def test_divisive_normalization_matches_numpy(kernel_size):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 30, dtype=torch.float64)
    height, width = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    out = DivisiveNormalization(kernel_size, epsilon=1e-6)(x)
    np.testing.assert_allclose(out.numpy(), numpy_divisive(x.numpy(), height, width, 1e-6))
    assert out.abs().max() < 1


def test_divisive_normalization_is_finite_on_zeros_and_has_gradients():
    zeros = torch.zeros(1, 1, 6, 6, requires_grad=True)
    out = DivisiveNormalization(3)(zeros)
    out.sum().backward()
    assert torch.all(out == 0) and torch.isfinite(zeros.grad).all()
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(DivisiveNormalization((3, 5)), (x,))


def test_linear_normalization_layer_modes():
    x = torch.randn(3, 2, 4, 5)
    per_image = LinearNormalization("image")(x)
    assert torch.allclose(per_image.amin(dim=(2, 3)), torch.zeros(3, 2))
    assert torch.allclose(per_image.amax(dim=(2, 3)), torch.ones(3, 2))
    per_set = LinearNormalization("set")(x)
    assert torch.allclose(per_set.amin(dim=0), torch.zeros(2, 4, 5))
    assert torch.allclose(per_set.amax(dim=0), torch.ones(2, 4, 5))
    with pytest.raises(ConfigError, match="'per-band'"):
        LinearNormalization("per-band")


def test_layers_work_in_a_model_for_any_channel_count_and_hold_no_parameters():
    for channels in (1, 3, 8):
        model = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            DivisiveNormalization(),
            MinPool2d(2),
            LinearNormalization(),
        )
        assert model(torch.randn(2, channels, 8, 8)).shape == (2, 4, 4, 4)
        assert len(model[1].state_dict()) == 0 and len(model[2].state_dict()) == 0
    assert "kernel_size=(5, 25)" in repr(DivisiveNormalization((5, 25)))
