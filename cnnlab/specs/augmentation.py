"""The augmentation settings, each defined once with its type, valid range (or choices) and help:
`Augmentation`, which cnnlab/data/augment.py applies to batches and from which TrainConfig generates
`--hflip` and the others. Torch-free, so `cnnlab train --help` and the configuration do not import
torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from cnnlab.errors import ConfigError

ERASE_AREA = (0.02, 0.25)  # fraction of the image an erased rectangle covers
ERASE_ASPECT = (0.3, 3.3)  # its height / width
PAD_FILLS = ("zero", "mean", "edge")  # what a shift, rotation or zoom uncovers
# Settings added after runs were first recorded, with the value that reproduces what those runs
# did: a config.json without the key is read with it (cnnlab/run/records.py), so a resumed old run
# draws exactly the batches it drew before.
BEFORE_RECORDED = {"pad_fill": "mean"}


def _setting(default: float, low: float, high: float, help: str) -> Any:
    return field(default=default, metadata={"range": (low, high), "help": help})


def _choice(default: str, choices: tuple[str, ...], help: str) -> Any:
    return field(default=default, metadata={"choices": choices, "help": help})


@dataclass(frozen=True)
class Augmentation:
    """Strengths; 0 turns an operation off. Probabilities are per image. `pad_fill` says what
    the pixels a shift, rotation or zoom uncovers show; erased rectangles show the data set's mean
    colour (zero after normalisation, as torchvision's RandomErasing after Normalize)."""

    hflip: float = _setting(0.0, 0, 1, "probability of a left-right flip")
    vflip: float = _setting(0.0, 0, 1, "probability of an upside-down flip")
    crop_padding: int = _setting(
        0, 0, 1024, "shift by up to this many pixels (a random crop of the image padded by as many)"
    )
    rotate: float = _setting(0.0, 0, 180, "rotate by up to this many degrees either way")
    scale: float = _setting(0.0, 0, 0.9, "zoom by a factor in [1 - SCALE, 1 + SCALE]")
    pad_fill: str = _choice(
        "zero",
        PAD_FILLS,
        "what the pixels uncovered by a shift, rotation or zoom show: zero (black, the default, as "
        "torchvision's RandomCrop and RandomAffine fill=0), mean (the training images' mean "
        "colour; runs recorded without this setting used it) or edge (the nearest edge pixel "
        "repeated)",
    )
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
        return any(getattr(self, name) for name in STRENGTH_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AUGMENTATION_FIELDS = tuple(f.name for f in fields(Augmentation))
STRENGTH_FIELDS = tuple(f.name for f in fields(Augmentation) if "range" in f.metadata)
_RANGES = {f.name: f.metadata["range"] for f in fields(Augmentation) if "range" in f.metadata}
_CHOICES = {f.name: f.metadata["choices"] for f in fields(Augmentation) if "choices" in f.metadata}


def out_of_range(name: str, value: Any) -> str:
    """What the setting `name` must be if value is outside its range ("from 0 to 1") or not one
    of its choices ("one of zero, mean, edge"), else ""."""
    if name in _CHOICES:
        return "" if value in _CHOICES[name] else f"one of {', '.join(_CHOICES[name])}"
    low, high = _RANGES[name]
    return "" if low <= value <= high else f"from {low} to {high}"


def strengths(augmentation: Augmentation) -> str:
    """The operations turned on, with the pad fill where one of them uncovers pixels:
    "hflip=0.5, crop_padding=4, pad_fill=zero", or "none"."""
    shown = [f"{k}={getattr(augmentation, k)}" for k in STRENGTH_FIELDS if getattr(augmentation, k)]
    if augmentation.crop_padding or augmentation.rotate or augmentation.scale:
        shown.append(f"pad_fill={augmentation.pad_fill}")
    return ", ".join(shown) or "none"
