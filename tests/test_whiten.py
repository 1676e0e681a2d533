"""--whiten-stem: the first convolution set to the patches' whitening transform, kept fixed."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.models import ModelSpec, build_model, resolve_model_argument
from cnnlab.run import checkpoints as ckpt
from cnnlab.training.run import train
from cnnlab.training.whiten import whiten_stem, whitening_filters, whitening_stem

STEM_NET = "conv8x2p0 -> bn -> relu -> conv16 -> bn -> relu -> gmp -> fc"


def spec_model(spec: str, channels: int = 1, classes: int = 10):
    name, options = resolve_model_argument(spec, {})
    return build_model(ModelSpec(name, channels, classes, (8, 8), options))


def correlated_images(count=300, channels=3, size=8, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, channels, size, size, generator=generator)
    x = x + 0.9 * x.roll(1, dims=3) + 0.5 * x.roll(1, dims=2)  # neighbours correlated
    return x + 0.3 * x[:, :1]  # bands correlated


def test_whitened_patches_have_identity_covariance():
    images = correlated_images()
    filters = whitening_filters(images, 2, epsilon=0.0)
    assert filters.shape == (24, 3, 2, 2)
    features = F.conv2d(images.double(), filters[:12].double())  # [N, 12, H-1, W-1]
    covariance = torch.cov(features.transpose(0, 1).reshape(12, -1))
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(filters[12:], -filters[:12])


def test_filters_are_numpy_eigenvectors_over_root_eigenvalues():
    images = correlated_images(channels=1, size=6)
    patches = np.lib.stride_tricks.sliding_window_view(
        images[:, 0].double().numpy(), (2, 2), axis=(1, 2)
    )
    patches = patches.reshape(-1, 4)
    values, vectors = np.linalg.eigh(np.cov(patches.T))
    expected = (vectors / np.sqrt(values + 5e-4)).T[::-1]  # largest eigenvalue first
    got = whitening_filters(images, 2).reshape(8, 4)[:4].double().numpy()
    signs = np.sign((got * expected).sum(1, keepdims=True))  # eigenvectors' signs are arbitrary
    np.testing.assert_allclose(got, expected * signs, rtol=1e-4, atol=1e-5)


def test_a_model_without_a_whitening_sized_stem_is_refused():
    model = spec_model("conv6x3 -> relu -> gmp -> fc")
    with pytest.raises(ConfigError, match="2 x bands x k x k"):
        whitening_stem(model)


def test_the_stem_is_whitened_and_stays_fixed_while_the_rest_trains(tmp_path, tiny_config):
    weights = {}
    for epochs in (1, 2):
        config = tiny_config(model=STEM_NET, model_options={}, whiten_stem=True, epochs=epochs)
        train(config, tmp_path / f"run{epochs}", show_progress=False)
        weights[epochs] = ckpt.latest_checkpoint(tmp_path / f"run{epochs}" / "checkpoints").weights
    assert '"whiten_stem": true' in (tmp_path / "run1" / "config.json").read_text()
    name, _ = whitening_stem(spec_model(STEM_NET))
    stem = f"{name}.weight"
    torch.manual_seed(0)
    assert not torch.allclose(weights[1][stem], spec_model(STEM_NET).state_dict()[stem])
    torch.testing.assert_close(weights[1][stem][4:], -weights[1][stem][:4])
    assert torch.equal(weights[1][stem], weights[2][stem])  # not trained
    trained = [k for k in weights[1] if k != stem and not torch.equal(weights[1][k], weights[2][k])]
    assert any(k.endswith("weight") for k in trained)


def test_whiten_stem_sets_bias_to_zero_and_weights_to_the_filters():
    model = spec_model("conv8x2p0 -> relu -> gmp -> fc")
    images = correlated_images(channels=1)
    name = whiten_stem(model, images)
    stem = dict(model.named_modules())[name]
    torch.testing.assert_close(stem.weight, whitening_filters(images, 2))
    if stem.bias is not None:
        assert not stem.bias.any()


def test_resume_with_a_whitened_stem_is_exact(tmp_path, tiny_config):
    from test_training import StopAfter, final_weights

    config = tiny_config(model=STEM_NET, model_options={}, whiten_stem=True, epochs=2)
    train(config, tmp_path / "straight", show_progress=False)
    stopped = train(config, tmp_path / "resumed", stop=StopAfter(7), show_progress=False)
    assert stopped.status == "interrupted"
    train(config, tmp_path / "resumed", resume=True, show_progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    for key in a:
        assert torch.equal(a[key], b[key]), key
