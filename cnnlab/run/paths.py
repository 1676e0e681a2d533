"""Paths and readers for the run directory, the contract between stages (DESIGN.md).

RUN/config.json  dataset.json  model.json  metrics.jsonl  checkpoints/  eval/<split>.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    dataset = property(lambda self: self.path / "dataset.json")
    model = property(lambda self: self.path / "model.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    eval = property(lambda self: self.path / "eval")

    def read(self, name: str) -> dict[str, Any]:
        """Read one of the run's JSON files, with an error that says what is wrong and why."""
        path = self.path / name
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

    def has_training_state(self) -> bool:
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("step-*.json"))
