"""RUN/calibration.json: what `cnnlab calibrate` fitted on the validation split (a temperature for
the logits; for two classes, the decision threshold on the positive class's probability), which
`cnnlab evaluate` and `cnnlab predict` then apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cnnlab.binary_metrics import parse_threshold_rule
from cnnlab.errors import CnnlabError
from cnnlab.fileio import atomic_write_json
from cnnlab.run.paths import RunDir
from cnnlab.run.records import FORMAT, RecordError, check_format


@dataclass(frozen=True)
class CalibrationRecord:
    """calibration.json. `temperature` None: not fitted (probabilities are the model's own);
    `threshold` None: argmax decides (always so for more than two classes)."""

    FILE: ClassVar[str] = "calibration.json"

    split: str
    checkpoint: str  # "best" or "last": the checkpoint whose logits were calibrated
    checkpoint_file: str
    class_names: tuple[str, ...]
    temperature: float | None = None
    positive_class: str | None = None
    threshold: float | None = None
    rule: str | None = None  # --threshold as given: "youden", "sensitivity:0.95", "0.3"
    validation: dict[str, Any] = field(default_factory=dict)  # the numbers behind the choice
    format: int = FORMAT

    @property
    def positive_index(self) -> int | None:
        if self.positive_class is None:
            return None
        return self.class_names.index(self.positive_class)

    def describe(self, path: str) -> str:
        """The one line evaluate and predict print: what they use and where it came from."""
        parts = []
        if self.threshold is not None:
            rule = parse_threshold_rule(self.rule or f"{self.threshold}")
            parts.append(
                f"threshold {self.threshold:.4g} on p({self.positive_class}) "
                f"({rule.describe()} on {self.split})"
            )
        if self.temperature is not None:
            parts.append(f"temperature {self.temperature:.4g}")
        return f"using {' and '.join(parts) or 'nothing'} from {path}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "split": self.split,
            "checkpoint": self.checkpoint,
            "checkpoint_file": self.checkpoint_file,
            "class_names": list(self.class_names),
            "temperature": self.temperature,
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "rule": self.rule,
            "validation": self.validation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> CalibrationRecord:
        check_format(data, where)
        try:
            record = cls(
                split=str(data["split"]),
                checkpoint=str(data["checkpoint"]),
                checkpoint_file=str(data.get("checkpoint_file", "")),
                class_names=tuple(str(name) for name in data["class_names"]),
                temperature=_number(data.get("temperature")),
                positive_class=data.get("positive_class"),
                threshold=_number(data.get("threshold")),
                rule=data.get("rule"),
                validation=dict(data.get("validation") or {}),
                format=data.get("format", FORMAT),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RecordError(_damaged(where, f"bad or missing key {error}")) from None
        _check(record, where)
        return record


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _damaged(where: str, what: str) -> str:
    return f"'{where}' is damaged ({what}). Write it again with `cnnlab calibrate RUN`."


def _check(record: CalibrationRecord, where: str) -> None:
    if record.temperature is not None and not (
        math.isfinite(record.temperature) and record.temperature > 0
    ):
        raise RecordError(_damaged(where, f"temperature {record.temperature} is not positive"))
    if record.threshold is None:
        return
    if not 0.0 <= record.threshold <= 1.0 or len(record.class_names) != 2:
        raise RecordError(_damaged(where, "a threshold needs two classes and a value in [0, 1]"))
    if record.positive_class not in record.class_names:
        raise RecordError(
            _damaged(where, f"positive_class {record.positive_class!r} is not a class")
        )
    try:
        parse_threshold_rule(record.rule or f"{record.threshold}")
    except CnnlabError as error:
        raise RecordError(_damaged(where, str(error))) from None


def calibration_path(run: RunDir):
    return run.path / CalibrationRecord.FILE


def read_calibration(run: RunDir, class_names: list[str] | None = None) -> CalibrationRecord | None:
    """RUN/calibration.json, or None when `cnnlab calibrate` has not been run; a file that does
    not fit the run's classes is an error naming it."""
    path = calibration_path(run)
    if not path.exists():
        return None
    record = CalibrationRecord.from_dict(run.read(CalibrationRecord.FILE), str(path))
    if class_names is not None and list(record.class_names) != list(class_names):
        raise RecordError(
            f"'{path}' was fitted for the classes {list(record.class_names)}, but the run has "
            f"{list(class_names)}. Run `cnnlab calibrate {run.path}` again."
        )
    return record


def write_calibration(run: RunDir, record: CalibrationRecord) -> None:
    atomic_write_json(calibration_path(run), record.to_dict())
