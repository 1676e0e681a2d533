"""The run directory, the contract between stages (DESIGN.md): its paths, its typed records and
its append-only metrics log. Nothing outside cnnlab.run opens these files itself.

RUN/config.json  dataset.json  model.json  metrics.jsonl  checkpoints/  eval/  explain/  export/
    layer_stats.jsonl  layer_stats.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.fileio import append_jsonl, atomic_write_json, read_jsonl
from cnnlab.run.records import ConfigRecord, DatasetRecord, ModelRecord

CHECKPOINT_CHOICES = ("best", "last")  # --checkpoint: the best validation score, or the newest


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    dataset = property(lambda self: self.path / "dataset.json")
    model = property(lambda self: self.path / "model.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    layer_stats = property(lambda self: self.path / "layer_stats.jsonl")  # run/layer_stats.py
    layer_stats_png = property(lambda self: self.path / "layer_stats.png")
    checkpoints = property(lambda self: self.path / "checkpoints")
    eval = property(lambda self: self.path / "eval")
    export = property(lambda self: self.path / "export")
    report = property(lambda self: self.path / "report.html")

    def explain(self, split: str) -> Path:
        """RUN/explain/SPLIT/: what `cnnlab explain` wrote for one split."""
        return self.path / "explain" / split

    def read(self, name: str) -> dict[str, Any]:
        """Read one of the run's JSON files, with an error that says what is wrong and why."""
        path = self.path / name
        if self.path.exists() and not self.path.is_dir():
            raise CnnlabError(
                f"'{self.path}' is a file, not a run directory: give the folder `cnnlab train "
                "--out` wrote."
            )
        if not self.path.is_dir():
            raise CnnlabError(
                f"Run directory '{self.path}' does not exist. Train one with "
                f"`cnnlab train --out {self.path}`, or give the path of an existing run."
            )
        if not path.exists():
            raise CnnlabError(
                f"'{path}' is missing: '{self.path}' is not a complete cnnlab run directory "
                "(training may not have started in it)."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CnnlabError(f"'{path}' is not valid JSON ({error}).") from None
        if not isinstance(data, dict):
            raise CnnlabError(f"'{path}' should hold a JSON object.")
        return data

    def dataset_record(self) -> DatasetRecord:
        return DatasetRecord.from_dict(self.read(DatasetRecord.FILE), str(self.dataset))

    def model_record(self) -> ModelRecord:
        return ModelRecord.from_dict(self.read(ModelRecord.FILE), str(self.model))

    def config_record(self) -> ConfigRecord:
        return ConfigRecord.from_dict(self.read(ConfigRecord.FILE), str(self.config))

    def write_records(
        self, config: ConfigRecord, dataset: DatasetRecord, model: ModelRecord
    ) -> None:
        """The three contract files, written once when training starts."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config, config.to_dict())
        atomic_write_json(self.dataset, dataset.to_dict())
        atomic_write_json(self.model, model.to_dict())

    def update_config(self, **sections: dict[str, Any]) -> None:
        """Merge keys into config.json's sections (`train`, `resolved`), written atomically: how
        an extended run records its new total and segments."""
        record = self.config_record()
        for name, values in sections.items():
            getattr(record, name).update(values)
        atomic_write_json(self.config, record.to_dict())

    def has_training_state(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("step-*.json"))

    def log(self, row: dict[str, Any]) -> None:
        """Append one row (an epoch, an event, the end) to metrics.jsonl."""
        append_jsonl(self.metrics, row)

    def logged_rows(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics) if self.metrics.exists() else []
