"""A 2x2 max-pool made of strided slices, against PyTorch's, on the recipe networks' shapes.

    .venv/bin/python benchmarks/slice_maxpool.py

The pool of a channels_last bf16 tensor as `torch.maximum` of its four strided 2x2 views, the
position of the first maximum kept as a byte (PyTorch's tie rule), the backward writing each
view's share with one `torch.where`: no index tensor and no zero fill. Checked equal to
F.max_pool2d (outputs and input gradients, ties included) before it is timed, then forward +
backward and forward alone, milliseconds per call, 2 threads. It was 3.5-5.5x slower than
PyTorch's: not used (BENCHMARKS.md, "Levers").
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

SHAPES = [
    (256, 16, 28, 28),
    (256, 32, 14, 14),
    (256, 64, 7, 7),
    (128, 32, 26, 26),
    (64, 64, 24, 24),
]
CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


class SlicePool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
        x00, x01, x10, x11 = (x[:, :, a:h:2, b:w:2] for a, b in CORNERS)
        top, bottom = torch.maximum(x00, x01), torch.maximum(x10, x11)
        down = torch.gt(bottom, top)  # ties keep the earlier row, then the earlier column
        index = torch.where(
            down, torch.gt(x11, x10).to(torch.uint8).add_(2), torch.gt(x01, x00).to(torch.uint8)
        )
        ctx.save_for_backward(index)
        ctx.shape = x.shape
        return torch.where(down, bottom, top)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        n, c, h, w = ctx.shape
        result = torch.empty((n, c, h, w), dtype=grad.dtype, memory_format=torch.channels_last)
        h2, w2 = h // 2 * 2, w // 2 * 2
        if (h2, w2) != (h, w):
            result.zero_()
        zero = torch.zeros((), dtype=grad.dtype)
        for k, (a, b) in enumerate(CORNERS):
            torch.where(index == k, grad, zero, out=result[:, :, a:h2:2, b:w2:2])
        return result


def sample(shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(*shape).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    x[:, :, :, :4] = 0  # ties, as a flat background gives them
    return x


def milliseconds(pool, shape: tuple[int, ...]) -> tuple[float, float]:
    x = sample(shape).requires_grad_()
    grad = torch.randn_like(pool(x))
    for _ in range(3):
        pool(x).backward(grad)
    start = time.perf_counter()
    for _ in range(40):
        pool(x).backward(grad)
    both = (time.perf_counter() - start) / 40
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(40):
            pool(x)
    return both * 1e3, (time.perf_counter() - start) / 40 * 1e3


def main() -> None:
    torch.set_num_threads(2)
    print(
        "| shape (bf16, channels_last) | PyTorch f+b / f (ms) | slices f+b / f (ms) | f+b ratio |"
    )
    print("|---|---|---|---|")
    for shape in SHAPES:
        a = sample(shape).requires_grad_()
        b = a.detach().clone().requires_grad_()
        ours, theirs = SlicePool.apply(b), F.max_pool2d(a, 2)
        grad = torch.randn_like(theirs)
        ours.backward(grad)
        theirs.backward(grad)
        assert torch.equal(ours, theirs) and torch.equal(a.grad, b.grad), shape
        torch_ms = milliseconds(lambda x: F.max_pool2d(x, 2), shape)
        slice_ms = milliseconds(SlicePool.apply, shape)
        ratio = slice_ms[0] / torch_ms[0]
        print(f"| {shape} | {torch_ms[0]:.2f} / {torch_ms[1]:.2f} | "
              f"{slice_ms[0]:.2f} / {slice_ms[1]:.2f} | {ratio:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
