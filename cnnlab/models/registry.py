"""The model registry and `ModelSpec`, the plain-data description stored in `model.json`.

Adding a family is one file: a builder function decorated with `@register_model(...)` that takes
keyword-only `in_channels`, `num_classes`, `image_size` and its own options.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.specs.typecheck import describe, fits, resolve

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

_DESCRIPTIONS: dict[str, str] = {}
_MIN_IMAGE_SIZES: dict[str, int] = {}


def register_model(name: str, description: str = "", *, min_image_size: int = 1) -> Callable:
    """Register a builder; `min_image_size` is the smallest image side it accepts (build_model
    refuses smaller images with a clear message instead of a shape error deep inside torch)."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.add(name, builder)
        _DESCRIPTIONS[name] = description or (builder.__doc__ or "").strip().splitlines()[0]
        _MIN_IMAGE_SIZES[name] = min_image_size
        return builder

    return decorator


ENTRY_POINT_GROUP = "cnnlab.models"  # packages that register model families declare this group


def defining_module(name: str) -> str | None:
    """The module that registered family `name`, when it lies outside cnnlab (recorded in
    model.json so a later process can import it again)."""
    module = getattr(MODELS.get(name), "__module__", None) or ""
    return None if module.split(".")[0] == "cnnlab" else module


def ensure_registered(name: str, module: str | None = None) -> None:
    """Make family `name` available: registered already, by an installed package's entry point
    (group "cnnlab.models"), or by importing `module`, the one recorded when the run was trained.

    Only importable modules are imported (installed, or on PYTHONPATH): the same trust as
    `python -m`. A module name that is not a plain dotted name is refused.
    """
    if name in MODELS:
        return
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()
        if name in MODELS:
            return
    if module is None:
        MODELS.get(name)  # raises, with close names
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", module):
        raise ConfigError(f"model.json names {module!r} as the module of {name!r}; not a module.")
    try:
        importlib.import_module(module)
    except Exception as error:  # the user's module may fail in any way while importing
        raise ConfigError(
            f"Model {name!r} was registered by module {module!r} when the run was trained, and "
            f"importing it failed ({type(error).__name__}: {error}). Install that module or add "
            "its folder to PYTHONPATH, then run the command again."
        ) from None
    if name not in MODELS:
        raise ConfigError(
            f"Module {module!r} was imported but registers no model named {name!r}; was the "
            "family renamed? Register it under that name again."
        )


def register_variants(
    table: dict[str, Any], model_class: Callable[..., nn.Module], dropout: float | None
) -> None:
    """Register one builder per row of a variant table (timm-style: variants are rows, not code).

    Each builder takes the data-given arguments and `dropout` (default `dropout`, or the row's own
    `dropout` field when None) and calls `model_class(variant, in_channels, num_classes,
    image_size, dropout)`.
    """
    for name, variant in table.items():
        default = variant.dropout if dropout is None else dropout
        register_model(name, variant.description)(
            _variant_builder(name, variant, model_class, default)
        )


def _variant_builder(
    name: str, variant: Any, model_class: Callable[..., nn.Module], default_dropout: float
) -> Callable[..., nn.Module]:
    def build(
        *,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        dropout: float = default_dropout,
    ) -> nn.Module:
        return model_class(variant, in_channels, num_classes, image_size, dropout)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = variant.description
    return build


def model_description(name: str) -> str:
    return _DESCRIPTIONS.get(name, "")


def model_min_image_size(name: str) -> int:
    MODELS.get(name)
    return _MIN_IMAGE_SIZES.get(name, 1)


def model_options(name: str) -> dict[str, Any]:
    """The builder's own keyword options and their defaults (beyond the data-given ones)."""
    signature = inspect.signature(MODELS.get(name))
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("in_channels", "num_classes", "image_size")
    }


@dataclass(frozen=True)
class ModelSpec:
    """Enough to rebuild a network without the command line."""

    name: str
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            return cls(
                name=str(data["name"]),
                in_channels=int(data["in_channels"]),
                num_classes=int(data["num_classes"]),
                image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
                options=dict(data.get("options", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ConfigError(
                f"model.json is not a valid model spec ({error!r}); expected keys name, "
                "in_channels, num_classes, image_size and options."
            ) from None


def build_model(spec: ModelSpec) -> nn.Module:
    builder = MODELS.get(spec.name)
    known = model_options(spec.name)
    unknown = sorted(set(spec.options) - set(known))
    if unknown and spec.name == "spec":  # the family of a one-line network (models/specnet.py)
        raise ConfigError(
            f"A network spec ({spec.options.get('spec', '')!r}) has no option "
            f"{', '.join(map(repr, unknown))}: write widths and layers in the spec itself (e.g. "
            "conv32x3); its only --model-options is dropout."
        )
    if unknown:
        raise ConfigError(
            f"Model {spec.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(known) or 'none'}."
        )
    check_options(spec.name, spec.options)
    smallest = model_min_image_size(spec.name)
    if min(spec.image_size) < smallest:
        height, width = spec.image_size
        raise ConfigError(
            f"Model {spec.name!r} needs images of at least {smallest}x{smallest} pixels; these are "
            f"{height}x{width}. Resize the images or choose a model for small inputs "
            "(`cnnlab models`)."
        )
    return builder(
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        image_size=spec.image_size,
        **spec.options,
    )


# Ranges of the builders' options, by name: every family that has one means the same by it.
_OPTION_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "dropout": (lambda value: 0.0 <= value < 1.0, "in [0, 1)"),
    "depth": (lambda value: value >= 1, "at least 1"),
    "widths": (lambda value: value >= 1, "at least 1 each"),
    "input_size": (lambda value: value >= 1, "at least 1"),
}


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse an option whose value does not fit the builder's annotation (or, where that cannot
    be read, its default's type) or the option's range, before anything is built."""
    builder = MODELS.get(name)
    parameters = inspect.signature(builder).parameters
    for key, value in options.items():
        if key not in parameters:
            continue  # build_model names unknown options
        parameter = parameters[key]
        expected = _annotation(builder, parameter)
        if expected is not None and not fits(value, expected):
            raise ConfigError(
                f"Model {name!r}: option {key}={value!r} is invalid: expected "
                f"{describe(expected)}, e.g. {key}={_example(parameter.default)} "
                f"(--model-options {key}=VALUE, VALUE in JSON)."
            )
        in_range, wording = _OPTION_RANGES.get(key, (None, ""))
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if in_range and any(isinstance(n, (int, float)) and not in_range(n) for n in numbers):
            raise ConfigError(
                f"Model {name!r}: option {key}={value!r} is out of range: it must be {wording}."
            )


def _annotation(builder: Callable, parameter: inspect.Parameter) -> Any:
    annotation = resolve(parameter.annotation, builder.__globals__)
    if annotation is None or annotation is parameter.empty:
        default = parameter.default
        return None if default is parameter.empty or default is None else type(default)
    return annotation


def _example(default: Any) -> str:
    if default is inspect.Parameter.empty:
        return "VALUE"
    return json.dumps(list(default) if isinstance(default, tuple) else default).replace(" ", "")
