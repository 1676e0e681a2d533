"""The augmentation settings, each defined once with its type, valid range and help: `Augmentation`,
which cnnlab/data/augment.py applies to batches and from which TrainConfig generates `--hflip` and
the others. Torch-free, so `cnnlab train --help` and the configuration do not import torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cnnlab.errors import ConfigError

ERASE_AREA = (0.02, 0.25)  # fraction of the image an erased rectangle covers
ERASE_ASPECT = (0.3, 3.3)  # its height / width


def _setting(default: float, low: float, high: float, help: str) -> Any:
    return field(default=default, metadata={"range": (low, high), "help": help})


@dataclass(frozen=True)
class Augmentation:
    """Strengths; 0 turns an operation off. Probabilities are per image."""

    hflip: float = _setting(0.0, 0, 1, "probability of a left-right flip")
    vflip: float = _setting(0.0, 0, 1, "probability of an upside-down flip")
    crop_padding: int = _setting(
        0, 0, 1024, "shift by up to this many pixels (a random crop of the image padded by as many)"
    )
    rotate: float = _setting(0.0, 0, 180, "rotate by up to this many degrees either way")
    scale: float = _setting(0.0, 0, 0.9, "zoom by a factor in [1 - SCALE, 1 + SCALE]")
    brightness: float = _setting(0.0, 0, 1, "multiply by a brightness factor in [1 - B, 1 + B]")
    contrast: float = _setting(
        0.0, 0, 1, "scale deviations from the image mean by a contrast factor in [1 - C, 1 + C]"
    )
    noise: float = _setting(
        0.0, 0, 1, "add Gaussian noise of this standard deviation, as a fraction of 255"
    )
    erase: float = _setting(
        0.0,
        0,
        1,
        f"probability of erasing a random rectangle ({ERASE_AREA[0]:.0%}-{ERASE_AREA[1]:.0%} of "
        "the image)",
    )

    def __post_init__(self) -> None:
        for name in AUGMENTATION_FIELDS:
            expected = out_of_range(name, getattr(self, name))
            if expected:
                raise ConfigError(
                    f"Augmentation {name}={getattr(self, name)} is invalid: it must be {expected}."
                )

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) for name in AUGMENTATION_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AUGMENTATION_FIELDS = tuple(f.name for f in fields(Augmentation))
_RANGES = {f.name: f.metadata["range"] for f in fields(Augmentation)}


def out_of_range(name: str, value: float) -> str:
    """What the setting `name` must be if value is outside its range ("from 0 to 1"), else ""."""
    low, high = _RANGES[name]
    return "" if low <= value <= high else f"from {low} to {high}"
