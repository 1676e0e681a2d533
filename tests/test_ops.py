"""cnnlab.ops against the seed slides' worked examples, torch.nn.functional and numpy loops."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.layers import BatchNormalization
from cnnlab.ops import (
    ACTIVATIONS,
    KERNELS,
    SLIDES_DIVISIVE_KERNEL_SIZE,
    activation,
    adjacency_conv2d,
    adjacency_from_offsets,
    band_reduction,
    batch_normalization,
    conv2d,
    conv_output_size,
    conv_parameter_count,
    divisive_normalization,
    flatten_features,
    global_feature_vector,
    global_pool2d,
    kernel_bank,
    linear_normalization,
    pool2d,
    random_kernel_bank,
    rectangular_adjacency,
    relu,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

f64 = torch.float64


def image(rows):
    return torch.tensor(rows, dtype=f64)[None, None]  # [1, 1, H, W]


# ------------------------------------------------------------ the slides' worked examples

SLIDE_000_I = [[3, 2, 2, 5], [2, 2, 5, 1], [2, 3, 5, 0], [0, 4, 4, 1]]
SLIDE_000_J = [[6, 1, 7, -9], [9, 8, -2, -17], [12, 13, -10, -19], [11, 11, -9, -13]]


def test_slide_000_sobel_convolution_with_zero_padding_and_relu():
    J = conv2d(image(SLIDE_000_I), kernel_bank(["sobel-x"], dtype=f64), padding="same")
    expected = torch.tensor(SLIDE_000_J, dtype=f64)
    # The slide prints 7 at row 0, column 2; its own formula gives 5 there:
    # -(2*I(0,1) + I(1,1)) + (2*I(0,3) + I(1,3)) = -(4 + 2) + (10 + 1) = 5. The other 15 values
    # (which also fix every pixel that J(0, 2) uses) match the slide exactly.
    expected[0, 2] = 5
    assert torch.equal(J[0, 0], expected)
    assert torch.equal(relu(J)[0, 0], expected.clamp_min(0))  # the slide's image function R
    # The same result from the slides' own formula over the adjacency A with w = h = 3.
    weights = kernel_bank(["sobel-x"], dtype=f64).reshape(1, 1, 9)
    by_adjacency = adjacency_conv2d(image(SLIDE_000_I), rectangular_adjacency(3, 3), weights)
    assert torch.equal(by_adjacency, J)


SLIDE_002_X = [
    [2, 9, 11, 22, 42],
    [12, 43, 2, 0, 65],
    [9, 87, 65, 2, 90],
    [21, 21, 44, 7, 2],
    [45, 2, 21, 2, 0],
]
SLIDE_002_KERNEL = [[0, 0, 1], [1, 0, 0], [0, 0, 1]]
# The padded panels of slide 002 draw the kernel's bottom-row 1 in the middle column instead.
SLIDE_002_PADDED_PANEL_KERNEL = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]


def test_slide_002_convolution_by_hand_without_padding():
    out = conv2d(image(SLIDE_002_X), image(SLIDE_002_KERNEL), padding="valid")
    assert out.shape == (1, 1, 3, 3)  # "loss of f_H - 1 rows and f_W - 1 columns"
    assert out[0, 0, 0, 0] == 88 and out[0, 0, 1, 0] == 55 and out[0, 0, 2, 0] == 107
    assert out[0, 0, 0, 1] == 67


def test_slide_002_convolution_with_padding_and_stride_2():
    same = conv2d(image(SLIDE_002_X), image(SLIDE_002_KERNEL), padding="same")
    assert same.shape == (1, 1, 5, 5) and same[0, 0, 1, 1] == 88  # the valid 88, now at (1, 1)
    # With the kernel as drawn on the padded panels, the slide's 12 (same) and 12, 64 (stride 2).
    drawn = image(SLIDE_002_PADDED_PANEL_KERNEL)
    assert conv2d(image(SLIDE_002_X), drawn, padding="same")[0, 0, 0, 0] == 12
    strided = conv2d(image(SLIDE_002_X), drawn, padding=1, stride=2)
    assert strided.shape == (1, 1, 3, 3)
    assert strided[0, 0, 0, 0] == 12 and strided[0, 0, 1, 0] == 64
    # "same" with a stride keeps every second p of the stride-1 result.
    assert torch.equal(conv2d(image(SLIDE_002_X), drawn, padding="same", stride=2), strided)


SLIDE_002_POOL_INPUT = [[8, 5, 2, 7], [1, 6, 0, 3], [2, 4, 7, 1], [5, 1, 8, 0]]


def test_slide_002_max_and_average_pooling():
    x = image(SLIDE_002_POOL_INPUT)
    window = rectangular_adjacency(2, 2)
    assert pool2d(x, window, "max", stride=2)[0, 0].tolist() == [[8, 7], [5, 8]]
    assert pool2d(x, window, "average", stride=2)[0, 0].tolist() == [[5, 3], [3, 4]]
    assert F.max_pool2d(x, 2)[0, 0].tolist() == [[8, 7], [5, 8]]  # torch agrees
    assert global_pool2d(x, "average").item() == pytest.approx(60 / 16)


def test_slide_003_output_size_and_parameter_count():
    # Q1: W = 28, F = 5, P = 1, S = 1 -> (28 - 5 + 2 * 1) / 1 + 1 = 26.
    assert conv_output_size(28, 5, padding=1, stride=1) == 26
    assert conv2d(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 5, 5), padding=1).shape[-1] == 26
    # Q2: C = 3 bands, N = 8 kernels of K = 5 -> 5^2 * 3 * 8 + 8 = 608.
    assert conv_parameter_count(3, 8, 5) == 608
    assert sum(p.numel() for p in nn.Conv2d(3, 8, 5).parameters()) == 608
    with pytest.raises(ConfigError, match="does not fit"):
        conv_output_size(3, 5)


# ------------------------------------------------------------ adjacency relations


def test_rectangular_adjacency_follows_the_slides():
    a = rectangular_adjacency(3, 3)
    assert len(a) == 9 and a.offsets[4] == (0, 0)  # q_5 = p
    wide = rectangular_adjacency(width=25, height=5)  # the slides' divisive normalisation C
    assert wide.extent == (2, 2, 12, 12) and len(wide) == 125
    assert rectangular_adjacency(2, 2).offsets == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert rectangular_adjacency(3, 1, dilation=2).offsets == ((0, -2), (0, 0), (0, 2))
    assert rectangular_adjacency(3, 1, dilation=2).rectangle() == (1, 3, 2)  # (h, w, dilation)
    cross = adjacency_from_offsets([(0, 1), (1, 0), (0, 0), (-1, 0), (0, -1)], dilation=2)
    assert cross.offsets == ((-2, 0), (0, -2), (0, 0), (0, 2), (2, 0)) and cross.rectangle() is None
    with pytest.raises(ConfigError, match="width must be a positive integer; got 0"):
        rectangular_adjacency(0, 3)
    with pytest.raises(ConfigError, match="distinct"):
        adjacency_from_offsets([(0, 0), (0, 0)])


def test_ops_reject_images_without_a_batch_dimension():
    with pytest.raises(ConfigError, match=r"\[B, C, H, W\]; got \(4, 4\).*unsqueeze"):
        pool2d(torch.zeros(4, 4), rectangular_adjacency(3, 3))


# ------------------------------------------------------------ convolution against torch


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "size, stride, padding, dilation",
    [(3, 1, 1, 1), ((3, 5), (2, 1), (0, 2), 1), (2, 1, "same", 1), (3, 2, "valid", 2)],
)
def test_conv2d_matches_torch_forward_and_gradient(size, stride, padding, dilation):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=f64, requires_grad=True)
    h, w = (size, size) if isinstance(size, int) else size
    kernels = torch.randn(4, 3, h, w, dtype=f64, requires_grad=True)
    bias = torch.randn(4, dtype=f64, requires_grad=True)
    ours = conv2d(x, kernels, bias, stride, padding, dilation)
    theirs = F.conv2d(x, kernels, bias, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(ours, theirs)
    small = x[:1, :, :5, :6].detach().requires_grad_()  # small: gradcheck is O(inputs^2)
    args = (small, kernels[:2].detach().requires_grad_(), bias[:2].detach().requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, k, b: conv2d(a, k, b, stride, padding, dilation), args
    )


def test_conv2d_same_with_stride_subsamples_torch_same():
    torch.manual_seed(1)
    x, kernels = torch.randn(1, 2, 9, 8, dtype=f64), torch.randn(3, 2, 4, 3, dtype=f64)
    full = F.conv2d(x, kernels, padding="same")
    torch.testing.assert_close(conv2d(x, kernels, stride=(2, 3)), full[..., ::2, ::3])
    with pytest.raises(ConfigError, match=r"\[b, 2, h, w\]; got \(3, 1, 3, 3\)"):
        conv2d(x, torch.zeros(3, 1, 3, 3))
    with pytest.raises(ConfigError, match="'full'"):
        conv2d(x, kernels, padding="full")


def test_adjacency_conv2d_matches_conv2d_on_rectangles_and_on_a_cross():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 6, 7, dtype=f64, requires_grad=True)
    kernels = torch.randn(4, 3, 3, 5, dtype=f64)
    rectangle = rectangular_adjacency(width=5, height=3, dilation=2)
    ours = adjacency_conv2d(x, rectangle, kernels.reshape(4, 3, 15), stride=2)
    torch.testing.assert_close(ours, conv2d(x, kernels, stride=2, dilation=2))
    # A cross is a 3 x 3 kernel that is zero at the corners.
    cross = adjacency_from_offsets([(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)])
    weights = torch.randn(4, 3, 5, dtype=f64, requires_grad=True)
    dense = torch.zeros(4, 3, 9, dtype=f64)
    dense[:, :, [1, 3, 4, 5, 7]] = weights.detach()
    torch.testing.assert_close(
        adjacency_conv2d(x, cross, weights), conv2d(x, dense.reshape(4, 3, 3, 3))
    )
    args = (x[:1, :, :4, :4].detach().requires_grad_(), weights[:2].detach().requires_grad_())
    assert torch.autograd.gradcheck(lambda a, w: adjacency_conv2d(a, cross, w), args)


def test_band_reduction_is_a_1x1_convolution():
    torch.manual_seed(3)
    x = torch.randn(2, 5, 4, 4, dtype=f64, requires_grad=True)
    weights, bias = torch.randn(2, 5, dtype=f64), torch.randn(2, dtype=f64)
    out = band_reduction(x, weights, bias)
    assert out.shape == (2, 2, 4, 4)
    torch.testing.assert_close(out, F.conv2d(x, weights[:, :, None, None], bias))
    small = x[:1, :, :3, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: band_reduction(a, weights), (small,))


# ------------------------------------------------------------ kernels and activations


def test_named_kernels_of_the_slides():
    for name in ("identity", "sobel-x", "sobel-y", "outline", "sharpen", "box-blur"):
        assert name in KERNELS
    for name in ("gaussian-blur", "lighten", "darken"):
        assert name in KERNELS
    assert KERNELS.get("sobel-x").rows == ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1))  # slide 000
    for name in KERNELS:  # blurs keep the mean brightness, edge detectors ignore it
        total = KERNELS.get(name).tensor(f64).sum().item()
        assert total == pytest.approx({"lighten": 2, "darken": 0.5}.get(name, total))
    assert KERNELS.get("box-blur").tensor().sum() == pytest.approx(1)
    assert KERNELS.get("gaussian-blur").tensor().sum() == pytest.approx(1)
    with pytest.raises(UnknownNameError, match="'sobel-x'"):
        kernel_bank(["sobel_x"])


def test_kernel_bank_treats_a_grey_image_and_its_rgb_copy_alike():
    torch.manual_seed(4)
    grey = torch.rand(1, 1, 6, 6)
    names = ["identity", "sobel-y", "sharpen"]
    bank_grey, bank_rgb = kernel_bank(names), kernel_bank(names, in_channels=3)
    assert bank_rgb.shape == (3, 3, 3, 3)
    torch.testing.assert_close(
        conv2d(grey, bank_grey), conv2d(grey.expand(-1, 3, -1, -1), bank_rgb)
    )
    torch.testing.assert_close(conv2d(grey, bank_grey)[:, 0], grey[:, 0])  # identity


def test_random_kernel_bank_is_seeded_zero_mean_and_unit_norm():
    bank = random_kernel_bank(6, 3, 5, seed=7)
    assert bank.shape == (6, 3, 5, 5)
    assert torch.equal(bank, random_kernel_bank(6, 3, 5, seed=7))
    assert not torch.equal(bank, random_kernel_bank(6, 3, 5, seed=8))
    torch.testing.assert_close(bank.mean(dim=(1, 2, 3)), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(bank.flatten(1).norm(dim=1), torch.ones(6))
    assert random_kernel_bank(2, 1, 1).abs().tolist() == [[[[1.0]]], [[[1.0]]]]


def test_activations_match_torch():
    x = torch.linspace(-3, 3, 13, dtype=f64).reshape(1, 1, 1, 13)
    assert torch.equal(relu(x), torch.maximum(x, torch.zeros_like(x)))  # R = max{0, J}
    expected = {"sigmoid": torch.sigmoid(x), "tanh": torch.tanh(x), "gelu": F.gelu(x)}
    for name, value in expected.items():
        torch.testing.assert_close(activation(x, name), value)
    for name in ACTIVATIONS:
        y = x.clone().requires_grad_()
        assert activation(y, name).shape == x.shape
    with pytest.raises(UnknownNameError, match="'relu'"):
        activation(x, "rellu")


# ------------------------------------------------------------ pooling


def numpy_pool(x, offsets, reduce, stride):
    """The slides' P_k(p) over q in B(p) inside D_I, for p on the stride grid, as loops."""
    batch, bands, rows, cols = x.shape
    out = np.empty((batch, bands, -(-rows // stride), -(-cols // stride)))
    for i, y in enumerate(range(0, rows, stride)):
        for j, x_ in enumerate(range(0, cols, stride)):
            inside = [
                (y + dy, x_ + dx)
                for dy, dx in offsets
                if 0 <= y + dy < rows and 0 <= x_ + dx < cols
            ]
            values = np.stack([x[:, :, a, b] for a, b in inside], axis=-1)
            out[:, :, i, j] = reduce(values, axis=-1)
    return out


@pytest.mark.parametrize("mode, reduce", [("max", np.max), ("min", np.min), ("average", np.mean)])
@pytest.mark.parametrize("stride", [1, 2])
def test_pooling_over_any_adjacency_matches_numpy(mode, reduce, stride):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 7, 6, dtype=f64)
    for adjacency in (  # rectangles take torch's kernels, other relations the general path
        rectangular_adjacency(3, 3),
        rectangular_adjacency(width=4, height=1),
        rectangular_adjacency(width=3, height=2, dilation=2),
        adjacency_from_offsets([(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)], dilation=2),
    ):
        expected = numpy_pool(x.numpy(), adjacency.offsets, reduce, stride)
        np.testing.assert_allclose(pool2d(x, adjacency, mode, stride).numpy(), expected)


def test_pooling_matches_torch_forward_and_gradient():
    torch.manual_seed(6)
    x = torch.randn(2, 3, 7, 6, dtype=f64, requires_grad=True)
    window = rectangular_adjacency(3, 3)
    torch.testing.assert_close(pool2d(x, window, "max", 2), F.max_pool2d(x, 3, 2, padding=1))
    torch.testing.assert_close(
        pool2d(x, window, "average", 2),
        F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False),
    )
    torch.testing.assert_close(pool2d(x, window, "min", 2), -F.max_pool2d(-x, 3, 2, padding=1))
    small = x[:1, :2].detach().requires_grad_()
    for mode in ("max", "min", "average"):
        assert torch.autograd.gradcheck(lambda a, m=mode: pool2d(a, window, m, 2), (small,))
    torch.testing.assert_close(global_pool2d(x, "max"), F.adaptive_max_pool2d(x, 1).flatten(1))
    with pytest.raises(ConfigError, match="'median'"):
        pool2d(x, window, "median")


# ------------------------------------------------------------ normalisation


def test_linear_normalization_both_ways_against_numpy():
    torch.manual_seed(7)
    x = torch.randn(4, 2, 5, 6, dtype=f64, requires_grad=True)
    a = x.detach().numpy()
    low, high = a.min(axis=(2, 3), keepdims=True), a.max(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(linear_normalization(x).detach(), (a - low) / (high - low))
    low, high = a.min(axis=0), a.max(axis=0)
    np.testing.assert_allclose(linear_normalization(x, "set").detach(), (a - low) / (high - low))
    small = x[:3, :1, :3, :4].detach().requires_grad_()
    assert torch.autograd.gradcheck(linear_normalization, (small,))
    assert torch.autograd.gradcheck(lambda t: linear_normalization(t, "set"), (small,))
    flat = torch.full((1, 1, 3, 3), 7.0)
    assert torch.equal(linear_normalization(flat), torch.zeros_like(flat))  # 0/0 -> 0
    with pytest.raises(ConfigError, match="'band'"):
        linear_normalization(x, "band")


def test_divisive_normalization_over_the_slides_rectangle_and_an_adjacency():
    torch.manual_seed(8)
    x = torch.randn(1, 2, 12, 40, dtype=f64, requires_grad=True)
    slides = divisive_normalization(x, SLIDES_DIVISIVE_KERNEL_SIZE)
    by_adjacency = divisive_normalization(x, rectangular_adjacency(width=25, height=5))
    torch.testing.assert_close(slides, by_adjacency)
    # Independent check of one pixel: the 25 x 5 window around (6, 20) lies inside the image.
    a = x.detach().numpy()
    window = a[0, 1, 4:9, 8:33]
    assert slides[0, 1, 6, 20].item() == pytest.approx(a[0, 1, 6, 20] / np.sqrt((window**2).sum()))
    small = x[:, :, :5, :6].detach().requires_grad_()
    cross = adjacency_from_offsets([(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)])
    assert torch.autograd.gradcheck(lambda t: divisive_normalization(t, cross), (small,))


def numpy_slides_batch_norm(a, gamma, beta):
    """mu_k(p) and sigma_k(p) per pixel and band over the n images, sigma with n - 1."""
    n = a.shape[0]
    mu = a.sum(axis=0) / n
    sigma = np.sqrt(((a - mu) ** 2).sum(axis=0) / (n - 1))
    return (a - mu) / sigma * gamma + beta


def test_batch_normalization_is_the_slides_formula():
    torch.manual_seed(9)
    x = torch.randn(5, 3, 4, 6, dtype=f64, requires_grad=True)
    ours = batch_normalization(x, gamma=2.0, beta=-0.5)
    np.testing.assert_allclose(ours.detach(), numpy_slides_batch_norm(x.detach().numpy(), 2, -0.5))
    small = x[:3, :2, :2, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(batch_normalization, (small,))
    assert torch.autograd.gradcheck(
        lambda t: batch_normalization(t, statistics="channel"), (small,)
    )
    twin = torch.ones(2, 1, 2, 2)
    assert torch.equal(batch_normalization(twin, beta=0.25), torch.full_like(twin, 0.25))
    with pytest.raises(ConfigError, match="at least 2 values.*statistics='channel'"):
        batch_normalization(torch.randn(1, 3, 4, 4))


def test_batch_normalization_per_channel_differs_from_torch_only_by_n_minus_1():
    torch.manual_seed(10)
    x = torch.randn(4, 3, 5, 5, dtype=f64)
    n = 4 * 5 * 5
    torch_train = F.batch_norm(x, None, None, training=True, eps=1e-12)  # biased variance
    ours = batch_normalization(x, statistics="channel")
    torch.testing.assert_close(ours, torch_train * np.sqrt((n - 1) / n))
    module = nn.BatchNorm2d(3, eps=1e-12, dtype=f64).train()
    torch.testing.assert_close(ours, module(x) * np.sqrt((n - 1) / n))


def test_batch_normalization_module_learns_gamma_and_beta():
    layer = BatchNormalization()
    assert layer.gamma.shape == () and layer.gamma.item() == 1 and layer.beta.item() == 0
    out = layer(torch.randn(3, 2, 4, 4))
    out.pow(2).mean().backward()
    assert layer.gamma.grad is not None and layer.beta.grad is not None
    per_band = BatchNormalization(num_channels=2, statistics="channel")
    assert per_band.gamma.shape == (2, 1, 1)
    with pytest.raises(ConfigError, match="'image'"):
        BatchNormalization(statistics="image")


# ------------------------------------------------------------ global feature vectors


def test_flattening_concatenates_the_band_vectors():
    x = torch.arange(2 * 3 * 2 * 2, dtype=f64).reshape(2, 3, 2, 2)
    a = x.numpy()
    expected = np.stack([np.concatenate([a[j, k].ravel() for k in range(3)]) for j in range(2)])
    np.testing.assert_array_equal(flatten_features(x).numpy(), expected)
    torch.testing.assert_close(global_feature_vector(x), F.adaptive_avg_pool2d(x, 1).flatten(1))
    assert global_feature_vector(x, "flatten").shape == (2, 12)
    with pytest.raises(ConfigError, match="'sum'"):
        global_feature_vector(x, "sum")


def test_pool2d_takes_a_window_size_as_torch_does():
    images = torch.randn(2, 3, 8, 6)
    torch.testing.assert_close(pool2d(images, 2), F.max_pool2d(images, 2))
    torch.testing.assert_close(pool2d(images, (2, 2), "average"), F.avg_pool2d(images, (2, 2)))
    torch.testing.assert_close(
        pool2d(images, (3, 1), stride=1), pool2d(images, rectangular_adjacency(1, 3))
    )
    with pytest.raises(ConfigError, match=r"pool2d's adjacency 'big' is neither an Adjacency"):
        pool2d(images, "big")
