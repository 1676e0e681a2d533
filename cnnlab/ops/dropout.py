"""Dropout with a cheaper random mask on the CPU.

The slides' dropout: in training, each element is kept with probability 1 - p and scaled by
1 / (1 - p), or set to 0; in evaluation it is the identity. PyTorch's CPU `dropout` draws the mask
with `bernoulli_`, one floating-point draw and comparison per element: on 2 Zen 5 cores it took
3.6-3.8 ms for the 590,000-element mask of the PyTorch MNIST example's first dropout, a fifth of
that network's whole training step (BENCHMARKS.md, "Issue 17's targets"). Here the mask comes from
the same generator's 64-bit random integers viewed as bytes: one draw gives 8 elements their
random byte (1 in 4 when p is not a multiple of 1/256: then two bytes per element), so the mask
costs 0.37 ms (0.55 ms with two bytes), and the whole dropout ~0.7 ms.

What differs from `torch.nn.functional.dropout`: the random stream (the same seeded generator,
drawn differently, so a run is reproducible and resumable, but not equal to one with PyTorch's
dropout), and p is rounded to the nearest multiple of 1/256 when that is exact (0.25, 0.5) or else
1/65,536; the kept elements are scaled by the inverse of the keep probability actually used, so the
expectation is exactly the input's. The mask is laid out like the input (NCHW or channels_last)
and kept as 0/1 in the input's dtype (a bfloat16 x bool product took 7x as long as a bfloat16 x
bfloat16 one; the example network's steps 1.05-1.09x, benchmarks/dropout_speed.py), and the
gradient comes back in the input's memory format (PyTorch's returns the gradient's, which costs
the max-pool before it two layout copies when the input is channels_last); a gradient arriving
in the other layout is copied into the input's first, since a product over mixed layouts is
slower than the copy. Other devices
use PyTorch's dropout: a GPU's is fused and cheap.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_BITS_FOR = {8: torch.uint8, 16: torch.int16}


def keep_threshold(p: float) -> tuple[int, int]:
    """(bits, threshold): an element is dropped when its random `bits`-bit integer, read as
    unsigned, is below `threshold`: p rounded to threshold / 2**bits (exact for multiples of
    1/256, else to the nearest 1/65,536, and at most 1 - 1/65,536)."""
    exact = p * 256 == round(p * 256)
    bits = 8 if exact else 16
    # p just under 1 may round to 2**bits (keep nothing): keep one value in 2**16 instead
    return bits, min(round(p * (1 << bits)), (1 << bits) - 1)


def random_integers(count: int, bits: int) -> torch.Tensor:
    """`count` uniform random integers of `bits` bits (8: uint8 over [0, 256); 16: int16 over
    [-2**15, 2**15)), cut from 64-bit draws of torch's default CPU generator."""
    per_draw = 64 // bits
    draws = torch.empty((count + per_draw - 1) // per_draw, dtype=torch.int64)
    draws.random_(-(2**63), 2**63 - 1)  # 64 random bits per draw
    return draws.view(_BITS_FOR[bits])[:count]


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """(mask, keep probability): a bool tensor shaped and laid out like `x` (which must be dense:
    contiguous in some memory format), True where an element is kept."""
    bits, threshold = keep_threshold(p)
    values = random_integers(x.numel(), bits).as_strided(x.size(), x.stride())
    offset = 0 if bits == 8 else 1 << 15  # int16 is uniform over [-2**15, 2**15)
    return values >= threshold - offset, 1.0 - threshold / (1 << bits)


class _MaskedDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep, probability = keep_mask(x, p)
        # 0/1 in x's dtype: a product of two tensors of one dtype and layout is vectorized, where
        # a bfloat16 x bool one was 7x slower; bool -> uint8 -> bfloat16 is 7x faster than
        # bool -> bfloat16 (BENCHMARKS.md, "Levers")
        mask = keep.view(torch.uint8).to(x.dtype)
        ctx.save_for_backward(mask)
        ctx.scale = 1.0 / probability
        return torch.mul(x, mask).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        if grad.stride() != mask.stride():  # the input's layout, not the gradient's: one copy
            grad = grad.contiguous(memory_format=_memory_format(mask))  # is cheaper than a
        return torch.mul(grad, mask).mul_(ctx.scale), None  # product over mixed layouts


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.is_contiguous() or x.dim() != 4:
        return torch.contiguous_format
    return torch.channels_last  # dense (`_dense`) and not contiguous


def _dense(x: torch.Tensor) -> bool:
    return x.is_contiguous() or (
        x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    )


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True) -> torch.Tensor:
    """Dropout: in training zero each element with probability p (rounded as the module docstring
    says) and scale the rest by the inverse of the keep probability; else return x."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0 or x.device.type != "cpu" or x.numel() == 0:
        return F.dropout(x, p, True)
    if not _dense(x):
        x = x.contiguous()
    return _MaskedDropout.apply(x, p)
