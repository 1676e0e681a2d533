"""Stateless image operations from the seed slides, on [B, C, H, W] tensors."""

from cnnlab.ops.activations import ACTIVATIONS, activation, relu
from cnnlab.ops.adjacency import (
    Adjacency,
    adjacency_from_offsets,
    neighbourhood_values,
    rectangular_adjacency,
)
from cnnlab.ops.conv import (
    adjacency_conv2d,
    band_reduction,
    conv2d,
    conv_output_size,
    conv_parameter_count,
)
from cnnlab.ops.features import flatten_features, global_feature_vector
from cnnlab.ops.kernels import KERNELS, NamedKernel, kernel_bank, random_kernel_bank
from cnnlab.ops.normalization import (
    SLIDES_DIVISIVE_KERNEL_SIZE,
    batch_normalization,
    divisive_normalization,
    linear_normalization,
)
from cnnlab.ops.pooling import global_pool2d, min_pool2d, pool2d

__all__ = [
    "ACTIVATIONS",
    "KERNELS",
    "SLIDES_DIVISIVE_KERNEL_SIZE",
    "Adjacency",
    "NamedKernel",
    "activation",
    "adjacency_conv2d",
    "adjacency_from_offsets",
    "band_reduction",
    "batch_normalization",
    "conv2d",
    "conv_output_size",
    "conv_parameter_count",
    "divisive_normalization",
    "flatten_features",
    "global_feature_vector",
    "global_pool2d",
    "kernel_bank",
    "linear_normalization",
    "min_pool2d",
    "neighbourhood_values",
    "pool2d",
    "random_kernel_bank",
    "rectangular_adjacency",
    "relu",
]
