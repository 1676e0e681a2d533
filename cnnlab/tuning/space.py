"""The search space of `cnnlab tune`: a TOML file whose `[space]` table maps `cnnlab train`
settings (TrainConfig fields) to a range `{low, high, log, step}` (a float or an int by the
setting's type) or a list of choices, checked against the settings before any trial runs.

    [space]
    learning_rate = {low = 0.001, high = 0.3, log = true}
    batch_size = [64, 128, 256]
    epochs = {low = 2, high = 6, step = 2}
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.specs.typecheck import describe, fits, resolve
from cnnlab.training.config import TrainConfig

RANGE_KEYS = {"low", "high", "log", "step"}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a range of `kind` "float" or "int", or a list of choices."""

    name: str
    kind: str  # "float", "int" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this setting."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid(self) -> list:
        """Every value of the dimension, for the grid sampler."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(
                f"--sampler grid needs a list or a step for {self.name} (a float range): write "
                f"{self.name} = {{low = {self.low}, high = {self.high}, step = ...}} or a list."
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]


def load_space(path: str | Path, fixed: dict[str, Any] | None = None) -> dict[str, Dimension]:
    """The `[space]` table of `path`, each key checked against TrainConfig; `fixed` are the
    settings given to `tune` itself, which may not also be searched."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--space '{path}' does not exist.") from None
    except OSError as error:  # a folder, no permission
        raise ConfigError(f"--space '{path}' cannot be read ({error.strerror}).") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--space '{path}' is not valid TOML: {error}.") from None
    table = data.get("space")
    if not isinstance(table, dict) or not table:
        raise ConfigError(
            f"--space '{path}' has no [space] table of settings to search; write e.g. "
            "[space] then learning_rate = {low = 0.001, high = 0.3, log = true}."
        )
    types = {f.name: resolve(f.type) for f in fields(TrainConfig)}
    space = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        where = f"--space '{path}': {key}"
        if name not in types:
            close = difflib.get_close_matches(name, types, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{where} is not a `cnnlab train` setting{hint}.")
        if fixed and name in fixed:
            raise ConfigError(f"{where} is searched and also given as --{key.replace('_', '-')}.")
        space[name] = _dimension(name, value, types[name], where)
        _check_values(space[name], fixed or {}, where)
    return space


def _dimension(name: str, value: Any, expected: Any, where: str) -> Dimension:
    if isinstance(value, list):
        if not value or not all(fits(v, expected) for v in value):
            raise ConfigError(
                f"{where} = {value!r} is invalid: expected a non-empty list of "
                f"{describe(expected, none='')} values."
            )
        if any(isinstance(v, list | dict) for v in value):
            raise ConfigError(f"{where}: a choice must be a number, a string or a boolean.")
        return Dimension(name, "choice", choices=tuple(value))
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} = {value!r} is invalid: expected a range {{low = ..., high = ...}} or a "
            "list of choices (a fixed value goes on the command line)."
        )
    unknown = sorted(set(value) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(value):
        raise ConfigError(
            f"{where}: a range takes low and high, and optionally log and step"
            + (f"; not {', '.join(unknown)}" if unknown else "")
            + "."
        )
    kind = "int" if fits(1, expected) and not fits(0.5, expected) else "float"
    if not fits(0.5, expected) and kind != "int":
        raise ConfigError(f"{where}: {name} is not a number setting; give a list of choices.")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    numbers = [low, high] + ([step] if step is not None else [])
    if not all(fits(v, int if kind == "int" else float) for v in numbers):
        raise ConfigError(f"{where}: low, high and step must be {describe(expected, none='')}.")
    if not isinstance(log, bool) or not low < high or (log and low <= 0):
        raise ConfigError(f"{where}: need low < high (and low > 0 with log = true).")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{where}: step must be positive and cannot go with log = true.")
    return Dimension(name, kind, float(low), float(high), log, step)


def _check_values(dimension: Dimension, fixed: dict[str, Any], where: str) -> None:
    """Each end of a range and each choice must make a valid TrainConfig on its own."""
    if dimension.kind == "choice":
        values = dimension.choices
    else:
        cast = int if dimension.kind == "int" else float
        values = (cast(dimension.low), cast(dimension.high))
    for value in values:
        try:
            TrainConfig.from_dict({**fixed, dimension.name: value}, source=where)
        except ConfigError as error:
            raise ConfigError(f"{where}: {value!r} is not a valid value ({error})") from None


def toml_text(settings: dict[str, Any], comment: str) -> str:
    """A `[train]` table that `cnnlab train --config` reads back to the same settings."""
    lines = [f"# {comment}", "[train]"]
    for key, value in settings.items():
        if value is not None:  # TOML has no null: an unset setting keeps its default
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for anything JSON escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")
