"""Shared fixtures: tiny, fast training configurations on scikit-learn's bundled digits."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def tiny_config():
    """A TrainConfig factory for runs of a second or two on digits, on one thread (see
    one_torch_thread); train() applies it to torch, so the count is restored afterwards."""
    import torch

    from cnnlab.training.config import TrainConfig

    def make(**overrides):
        settings = dict(
            data="digits",
            model="small-cnn",
            model_options={"widths": [8, 16], "depth": 1},
            epochs=2,
            batch_size=64,
            val_fraction=0.2,
            download=False,
            threads=1,
        )
        settings.update(overrides)
        return TrainConfig(**settings)

    threads = torch.get_num_threads()
    yield make
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors run faster on one thread, and much faster when other processes load the CPU
    (spinning worker threads then wait for cores); the setting is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
