"""Activation functions: the slides' ReLU, R_k(p) = max{0, J_k(p)}, and the usual others.

Follows seed slide 000 ("Activation") and slide 003 ("Activations"). One registry names them all
for ops, layers and the spec grammar: each entry holds the function and its module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.registry import Registry
from cnnlab.specs.activations import ACTIVATION_NAMES, OLD_SPELLINGS, current_spelling

LEAKY_SLOPE = 0.01  # lrelu's slope for negative inputs (torch's default)


@dataclass(frozen=True)
class ActivationKind:
    """One activation as a stateless function (any shape -> same shape) and as a module."""

    function: Callable[[torch.Tensor], torch.Tensor]
    module: Callable[[], nn.Module]  # a fresh module; never in-place, so hooks see its input

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.function(images)


ACTIVATIONS: Registry[ActivationKind] = Registry("activation")


def relu(images: torch.Tensor) -> torch.Tensor:
    """R_k(p) = max{0, J_k(p)} for every pixel and band; any shape -> same shape."""
    return F.relu(images)


for _name, _kind in {
    "relu": ActivationKind(relu, nn.ReLU),
    "lrelu": ActivationKind(
        partial(F.leaky_relu, negative_slope=LEAKY_SLOPE), partial(nn.LeakyReLU, LEAKY_SLOPE)
    ),
    "elu": ActivationKind(F.elu, nn.ELU),
    "gelu": ActivationKind(F.gelu, nn.GELU),
    "silu": ActivationKind(F.silu, nn.SiLU),
    "tanh": ActivationKind(torch.tanh, nn.Tanh),
    "sigmoid": ActivationKind(torch.sigmoid, nn.Sigmoid),
    "softplus": ActivationKind(F.softplus, nn.Softplus),
}.items():
    ACTIVATIONS.add(_name, _kind)
del _name, _kind
if ACTIVATIONS.names() != sorted(ACTIVATION_NAMES):  # the grammar knows only ACTIVATION_NAMES
    raise ImportError(
        f"cnnlab.ops.activations registers {ACTIVATIONS.names()}, but "
        f"cnnlab.specs.activations.ACTIVATION_NAMES lists {sorted(ACTIVATION_NAMES)}; add or "
        "remove the name there too."
    )


def accepted_names() -> tuple[str, ...]:
    """Every name get_activation() takes: the registered ones, then the old spellings (which
    warn), for command-line choices."""
    return (*ACTIVATIONS.names(), *OLD_SPELLINGS)


def get_activation(name: str, stacklevel: int = 1) -> ActivationKind:
    """The registered activation `name`; an old spelling works too, with a DeprecationWarning
    (stacklevel as if the caller called warnings.warn: 2 points at the caller's caller)."""
    return ACTIVATIONS.get(current_spelling(name, stacklevel + 1))


def activation(images: torch.Tensor, name: str = "relu") -> torch.Tensor:
    """Apply the activation registered under name (see ACTIVATIONS.names()); same shape out."""
    return get_activation(name, stacklevel=2).function(images)
