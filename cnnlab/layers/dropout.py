"""nn.Dropout with cnnlab.ops.dropout's cheaper CPU mask, and the swap that puts it in a model."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.ops.dropout import dropout


class Dropout(nn.Dropout):
    """torch.nn.Dropout (same arguments, no parameters or buffers, so the same state_dict) whose
    training-mode mask on a CPU comes from cnnlab.ops.dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:  # in-place dropout writes into its input: PyTorch's does that
            return super().forward(x)
        return dropout(x, self.p, self.training)


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every plain torch.nn.Dropout in `model` by `Dropout` (in place); returns how many.

    Only exact nn.Dropout instances are swapped (not subclasses, nor Dropout2d/AlphaDropout, whose
    masks differ); a model's weights, state_dict and evaluation outputs do not change."""
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = Dropout(child.p, child.inplace)
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped += 1
    return swapped
