"""nn.Modules built on torch.nn and cnnlab.ops."""

from cnnlab.layers.normalization import DivisiveNormalization, LinearNormalization
from cnnlab.layers.pooling import MinPool2d

__all__ = ["DivisiveNormalization", "LinearNormalization", "MinPool2d"]
