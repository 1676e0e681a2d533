"""nn.Modules built on torch.nn and cnnlab.ops."""

from cnnlab.layers.normalization import (
    BatchNormalization,
    DivisiveNormalization,
    LinearNormalization,
)
from cnnlab.layers.pooling import MinPool2d

__all__ = ["BatchNormalization", "DivisiveNormalization", "LinearNormalization", "MinPool2d"]
