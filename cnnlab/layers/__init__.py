"""nn.Modules built on torch.nn and cnnlab.ops."""

from cnnlab.layers.dropout import Dropout, use_fast_dropout
from cnnlab.layers.normalization import (
    BatchNormalization,
    DivisiveNormalization,
    LinearNormalization,
)
from cnnlab.layers.pooling import MinPool2d

__all__ = [
    "BatchNormalization",
    "DivisiveNormalization",
    "Dropout",
    "LinearNormalization",
    "MinPool2d",
    "use_fast_dropout",
]
