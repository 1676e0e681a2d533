"""Activation functions: the slides' ReLU, R_k(p) = max{0, J_k(p)}, and the usual others.

Follows seed slide 000 ("Activation") and slide 003 ("Activations"); one registry names them all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.registry import Registry

ACTIVATIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("activation")


def relu(images: torch.Tensor) -> torch.Tensor:
    """R_k(p) = max{0, J_k(p)} for every pixel and band; any shape -> same shape."""
    return F.relu(images)


ACTIVATIONS.add("relu", relu)
ACTIVATIONS.add("leaky-relu", lambda x: F.leaky_relu(x, 0.01))
ACTIVATIONS.add("elu", F.elu)
ACTIVATIONS.add("gelu", F.gelu)
ACTIVATIONS.add("silu", F.silu)
ACTIVATIONS.add("sigmoid", torch.sigmoid)
ACTIVATIONS.add("tanh", torch.tanh)
ACTIVATIONS.add("softplus", F.softplus)


def activation(images: torch.Tensor, name: str = "relu") -> torch.Tensor:
    """Apply the activation registered under name (see ACTIVATIONS.names()); same shape out."""
    return ACTIVATIONS.get(name)(images)
