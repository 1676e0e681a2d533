"""Typed records of the run directory's JSON files: config.json, dataset.json, model.json.

Each record is a dataclass with `from_dict`/`to_dict` and a `format` number. Files written before
format numbers existed (cnnlab 0.1.0) have the same layout as format 1 and read as it; a file from
a newer cnnlab, or a damaged one, gets an error that names the file and what to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cnnlab.errors import CnnlabError
from cnnlab.specs.augmentation import BEFORE_RECORDED

FORMAT = 1  # the layout this cnnlab reads and writes
SPLITS = ("train", "val", "test")  # the splits dataset.json records


class RecordError(CnnlabError):
    """A run-directory file is damaged, incomplete, or from a newer cnnlab."""


def check_format(data: dict[str, Any], where: str) -> int:
    version = data.get("format", FORMAT)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"'{where}' has an invalid format number {version!r}; it is damaged.")
    if version > FORMAT:
        raise RecordError(
            f"'{where}' was written by a newer cnnlab (format {version}; this cnnlab reads "
            f"format {FORMAT} and older). Upgrade cnnlab (`pip install -U cnnlab`) to read it."
        )
    return version


def _take(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise RecordError(
            f"'{where}' is damaged or incomplete: it has no {key!r}. Train the run again, or "
            "restore the file from a backup."
        )
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _tuple(kind):
        expected = " or ".join(k.__name__ for k in _tuple(kind))
        raise RecordError(
            f"'{where}' is damaged: {key!r} should be {expected}, not {type(value).__name__} "
            f"({value!r:.60})."
        )
    return value


def _optional_dict(data: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    """A key later format-1 writers add: absent (older files) reads as None."""
    return None if data.get(key) is None else dict(_take(data, key, dict, where))


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]
    applied_as: str = "(x / 255 - mean) / std"


@dataclass(frozen=True)
class DatasetRecord:
    """dataset.json: what the run was trained on, so later commands rebuild the exact splits."""

    FILE: ClassVar[str] = "dataset.json"

    source: str  # "digits", "mnist", ..., or "folder:/absolute/path"
    location: str
    class_names: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]  # (H, W)
    normalization: Normalization
    preprocess: dict[str, Any]
    splits: dict[str, dict[str, Any]]  # split -> {"from": part, "indices": [...], "files"?: [...]}
    class_counts: dict[str, list[int]]
    split_seed: int = 0
    val_fraction: float = 0.0
    test_split: dict[str, Any] = field(default_factory=lambda: {"carved_from_train": False})
    source_checksums: dict[str, str] = field(default_factory=dict)
    skipped: tuple[dict[str, Any], ...] | None = None  # folder: sources only
    # --group-by runs: {"group_by": setting, "counts": {split: groups}, "shared": {pair: groups}}
    groups: dict[str, Any] | None = None
    format: int = FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def aspect(self) -> str:
        return str(self.preprocess.get("aspect", "stretch"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> DatasetRecord:
        version = check_format(data, where)
        normalization = _take(data, "normalization", dict, where)
        size = _take(data, "image_size", list, where)
        skipped = data.get("skipped")
        try:
            return cls(
                source=_take(data, "source", str, where),
                location=str(data.get("location", "")),
                class_names=tuple(str(n) for n in _take(data, "class_names", list, where)),
                channels=_take(data, "channels", int, where),
                image_size=(int(size[0]), int(size[1])),
                normalization=Normalization(
                    mean=tuple(float(v) for v in _take(normalization, "mean", list, where)),
                    std=tuple(float(v) for v in _take(normalization, "std", list, where)),
                    applied_as=str(normalization.get("applied_as", Normalization.applied_as)),
                ),
                preprocess=dict(data.get("preprocess") or {}),
                splits=_take(data, "splits", dict, where),
                class_counts=_take(data, "class_counts", dict, where),
                split_seed=int(data.get("split_seed", 0)),
                val_fraction=float(data.get("val_fraction", 0.0)),
                test_split=dict(data.get("test_split") or {"carved_from_train": False}),
                source_checksums=dict(data.get("source_checksums") or {}),
                skipped=None if skipped is None else tuple(skipped),
                groups=_optional_dict(data, "groups", where),
                format=version,
            )
        except (TypeError, ValueError, IndexError) as error:
            raise RecordError(f"'{where}' is damaged ({error}).") from None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": self.format,
            "source": self.source,
            "location": self.location,
            "class_names": list(self.class_names),
            "num_classes": self.num_classes,
            "channels": self.channels,
            "image_size": list(self.image_size),
            "normalization": {
                "mean": list(self.normalization.mean),
                "std": list(self.normalization.std),
                "applied_as": self.normalization.applied_as,
            },
            "preprocess": dict(self.preprocess),
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            "test_split": dict(self.test_split),
            "source_checksums": dict(self.source_checksums),
            "splits": self.splits,
            "class_counts": self.class_counts,
        }
        if self.skipped is not None:
            data["skipped"] = list(self.skipped)
        if self.groups is not None:
            data["groups"] = dict(self.groups)
        return data


@dataclass(frozen=True)
class ModelRecord:
    """model.json: the model spec (registry name, data-given sizes, options) that rebuilds the
    network, and the module that registered a family defined outside cnnlab."""

    FILE: ClassVar[str] = "model.json"

    name: str
    in_channels: int
    num_classes: int
    image_size: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)
    module: str | None = None  # e.g. "mylab.nets" for a family registered there
    format: int = FORMAT

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> ModelRecord:
        version = check_format(data, where)
        size = _take(data, "image_size", list, where)
        module = data.get("module")
        try:
            return cls(
                name=_take(data, "name", str, where),
                in_channels=_take(data, "in_channels", int, where),
                num_classes=_take(data, "num_classes", int, where),
                image_size=(int(size[0]), int(size[1])),
                options=dict(data.get("options") or {}),
                module=None if module is None else str(module),
                format=version,
            )
        except (TypeError, ValueError, IndexError) as error:
            raise RecordError(f"'{where}' is damaged ({error}).") from None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "format": self.format,
            "name": self.name,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "options": dict(self.options),
        }
        if self.module:
            data["module"] = self.module
        return data

    def spec_dict(self) -> dict[str, Any]:
        """The keys of cnnlab.models.ModelSpec."""
        return {k: v for k, v in self.to_dict().items() if k not in ("format", "module")}


@dataclass(frozen=True)
class ConfigRecord:
    """config.json: the resolved training settings (TrainConfig fields by name), what the fast
    path and augmentation resolved to, versions, machine, command line."""

    FILE: ClassVar[str] = "config.json"

    train: dict[str, Any]
    resolved: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    machine: dict[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # keys of later format-1 writers
    # settings a file from before they existed lacks; read as BEFORE_RECORDED, never written back
    unrecorded: tuple[str, ...] = field(default=(), compare=False)
    format: int = FORMAT

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> ConfigRecord:
        version = check_format(data, where)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "unrecorded"}
        train = _take(data, "train", dict, where)
        unrecorded = tuple(key for key in BEFORE_RECORDED if key not in train)
        before = {key: BEFORE_RECORDED[key] for key in unrecorded}
        resolved = dict(data.get("resolved") or {})
        if before and isinstance(resolved.get("augmentation"), dict):
            resolved["augmentation"] = {**before, **resolved["augmentation"]}
        try:
            return cls(
                train={**train, **before},
                resolved=resolved,
                seed=int(data.get("seed", train.get("seed", 0))),
                machine=dict(data.get("machine") or {}),
                command=tuple(str(part) for part in data.get("command") or ()),
                created=str(data.get("created", "")),
                extra={k: v for k, v in data.items() if k not in known},
                unrecorded=unrecorded,
                format=version,
            )
        except (TypeError, ValueError) as error:
            raise RecordError(f"'{where}' is damaged ({error}).") from None

    def to_dict(self) -> dict[str, Any]:
        def recorded(settings: Any) -> Any:
            if not isinstance(settings, dict):
                return settings
            return {k: v for k, v in settings.items() if k not in self.unrecorded}

        resolved = dict(self.resolved)
        if "augmentation" in resolved:
            resolved["augmentation"] = recorded(resolved["augmentation"])
        return {
            "format": self.format,
            "train": recorded(self.train),
            "resolved": resolved,
            "seed": self.seed,
            "machine": self.machine,
            "command": list(self.command),
            "created": self.created,
            **self.extra,
        }
