"""The "spec" family: a network in the one-line grammar of `cnnlab.specs.network` (the slides'
INPUT -> [[CONV -> RELU]*N -> POOL?]*M -> [FC -> RELU]*K -> FC), built layer by layer with its
shapes checked against the input size. `--model` takes a registry name or such a spec."""

from __future__ import annotations

from typing import Any

from torch import nn

from cnnlab.errors import ConfigError, UnknownNameError
from cnnlab.layers import DivisiveNormalization, MinPool2d
from cnnlab.layers.blocks import BasicResidual, SeparableConv2d, SqueezeExcitation, make_activation
from cnnlab.models.base import ClassifierModel, init_he_fan_in, spatial_size_after
from cnnlab.models.registry import MODELS, register_model
from cnnlab.specs.network import (
    Activation,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalPool,
    Layer,
    NetworkSpec,
    Norm,
    Pool,
    Residual,
    SeparableConv,
    looks_like_spec,
    parse_spec,
)
from cnnlab.specs.network import SqueezeExcitation as SqueezeExcitationLayer

DEFAULT_SPEC = "[[conv32x3 -> bn -> relu]*2 -> maxpool2]*3 -> gap -> fc"
SPEC_FAMILY = "spec"


class SpecDoesNotFit(ConfigError):
    """The spec shrinks the maps below 1x1; `partial` holds the feature layers built before."""

    def __init__(self, message: str, partial: nn.Sequential) -> None:
        super().__init__(message)
        self.partial = partial


class SpecNetwork(ClassifierModel):
    """features: the layers up to gap/flatten/the first fc; head: the rest, ending in `fc`."""

    def __init__(
        self,
        network: NetworkSpec,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.spec_text = network.text()
        self.features = nn.Sequential()
        self.head = nn.Sequential()
        shape = [in_channels, *image_size]  # [C, H, W] of the maps, then [F] of the vector
        counts: dict[str, int] = {}
        stage_ends: list[str] = []
        for index, layer in enumerate(network.expand()):
            if len(shape) == 3 and isinstance(layer, (Dense, GlobalPool, Flatten)):
                self._to_vector(layer, shape)
            if isinstance(layer, (GlobalPool, Flatten)):
                continue
            if isinstance(layer, Dense) and layer.units is None:
                if dropout > 0:
                    self.head.add_module("dropout", nn.Dropout(dropout))
                self.head.add_module("fc", nn.Linear(shape[0], num_classes))
                continue
            module, label, shape = self._layer(layer, shape, index, image_size)
            counts[label] = counts.get(label, 0) + 1
            name = f"{label}{counts[label]}"
            (self.features if len(shape) == 3 else self.head).add_module(name, module)
            if len(shape) == 3 and _downsamples(layer):
                stage_ends.append(f"features.{name}")
        last = next(reversed(self.features._modules), None)
        if last is not None and f"features.{last}" not in stage_ends:
            stage_ends.append(f"features.{last}")
        self.feature_layers = tuple(stage_ends) or ("features",)
        # With torch's default initialisation the slides' [[CONV -> RELU]*2 -> POOL]*3 -> FC
        # stays at chance on digits: the signal shrinks through six plain conv-ReLU layers.
        init_he_fan_in(self)

    def _to_vector(self, layer: Layer, shape: list[int]) -> None:
        if isinstance(layer, GlobalPool):
            pool = nn.AdaptiveAvgPool2d(1) if layer.method == "avg" else nn.AdaptiveMaxPool2d(1)
            self.head.add_module("pool", pool)
            features = shape[0]
        else:
            features = shape[0] * shape[1] * shape[2]
        self.head.add_module("flatten", nn.Flatten())
        shape[:] = [features]

    def _layer(
        self,
        layer: Layer,
        shape: list[int],
        index: int,
        image_size: tuple[int, int],
    ) -> tuple[nn.Module, str, list[int]]:
        """The module for one layer, its name stem and the shape it outputs."""
        channels = shape[0]
        if isinstance(layer, Activation):
            return make_activation(layer.function), layer.function, shape
        if isinstance(layer, Dropout):
            return nn.Dropout(layer.probability), "drop", shape
        if isinstance(layer, Dense):
            return nn.Linear(channels, layer.units), "fc", [layer.units]
        if isinstance(layer, Norm) and layer.method == "batch":
            norm = nn.BatchNorm2d(channels) if len(shape) == 3 else nn.BatchNorm1d(channels)
            return norm, "bn", shape
        if isinstance(layer, Norm):
            return DivisiveNormalization(layer.kernel_size), "dn", shape
        if isinstance(layer, SqueezeExcitationLayer):
            return SqueezeExcitation(channels, layer.reduction), "se", shape
        kernel, stride, padding = _window(layer)
        height, width = (spatial_size_after(s, kernel, stride, padding) for s in shape[1:])
        if height < 1 or width < 1:
            raise SpecDoesNotFit(
                f"The spec does not fit {image_size[0]}x{image_size[1]} images: layer "
                f"{index + 1} ({layer.text()}) gets {shape[1]}x{shape[2]} maps and would make "
                f"them {max(height, 0)}x{max(width, 0)}. Remove a pooling or strided layer, pad "
                "it (e.g. maxpool2p1), or use larger images.",
                self.features,
            )
        if isinstance(layer, Conv):
            module = nn.Conv2d(channels, layer.out_channels, kernel, stride, padding)
            return module, "conv", [layer.out_channels, height, width]
        if isinstance(layer, SeparableConv):
            module = SeparableConv2d(channels, layer.out_channels, kernel, stride, bias=True)
            return module, "sep", [layer.out_channels, height, width]
        if isinstance(layer, Residual):
            module = BasicResidual(channels, layer.out_channels, stride)
            return module, "res", [layer.out_channels, height, width]
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "min": MinPool2d}
        module = pools[layer.method](kernel, stride, padding)
        return module, "pool", [channels, height, width]


def _window(layer: Layer) -> tuple[int, int, int]:
    """Kernel, stride and padding of a layer that slides a window over the maps."""
    if isinstance(layer, Conv):
        padding = layer.kernel_size // 2 if layer.padding is None else layer.padding
        return layer.kernel_size, layer.stride, padding
    if isinstance(layer, SeparableConv):
        return layer.kernel_size, layer.stride, layer.kernel_size // 2
    if isinstance(layer, Residual):
        return 3, layer.stride, 1
    assert isinstance(layer, Pool)
    stride = layer.kernel_size if layer.stride is None else layer.stride
    return layer.kernel_size, stride, layer.padding


def _downsamples(layer: Layer) -> bool:
    return isinstance(layer, Pool) or getattr(layer, "stride", 1) > 1


@register_model(
    SPEC_FAMILY, 'a network written as a spec, e.g. "[[conv32 -> relu]*2 -> pool]*3 -> fc"'
)
def spec_network(
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
    spec: str = DEFAULT_SPEC,
    dropout: float = 0.0,
) -> SpecNetwork:
    """The network a spec describes (grammar: `cnnlab train --help`); dropout goes before fc."""
    return SpecNetwork(parse_spec(spec), in_channels, num_classes, image_size, dropout)


def resolve_model_argument(model: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """`--model` as given -> (registry name, options): a spec becomes the "spec" family with the
    spec's canonical text as its `spec` option, so model.json can rebuild it."""
    if model in MODELS:
        return model, dict(options)
    if looks_like_spec(model):
        return SPEC_FAMILY, {**options, "spec": parse_spec(model).text()}
    try:
        MODELS.get(model)
    except UnknownNameError as error:
        raise UnknownNameError(
            f'{error} Or write a network as a spec, e.g. --model "{DEFAULT_SPEC}" '
            "(grammar: `cnnlab train --help`)."
        ) from None
    return model, dict(options)
