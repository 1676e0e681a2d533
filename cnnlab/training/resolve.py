"""From settings named as flags to the TrainConfig that runs: the one resolution that the command
line (`cnnlab train`) and the Python API (`cnnlab.train`) share, so both train the same thing.

Precedence, lowest first: TrainConfig's defaults, the data set's recipe ("auto"), a TOML file,
the given settings. On resume: the run's stored settings, then the few a resume may change.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.training.config import TrainConfig, load_toml, parse_model_option

# The settings a resumed run may change; `epochs` extends a finished run (training/segments.py).
RESUMABLE = ("data_dir", "device", "threads", "epochs")


def resolve_config(
    settings: dict[str, Any], toml: str | os.PathLike | None = None, source: str = ""
) -> TrainConfig:
    """A TrainConfig from settings named as flags, over a TOML file, over the data set's recipe.

    `model_options` may be a dict or KEY=VALUE strings (as the flag gives them). A spec string in
    `model` becomes the "spec" family with the spec as its option, as model.json records it.
    """
    from cnnlab.models import resolve_model_argument  # imports torch: only when training

    options = settings.get("model_options")
    if isinstance(options, list | tuple):
        settings = {**settings, "model_options": dict(parse_model_option(t) for t in options)}
    values = {**(load_toml(toml) if toml else {}), **settings}
    config = TrainConfig.from_dict(values, source=source or str(toml or "arguments"))
    model, model_options = resolve_model_argument(config.model, config.model_options)
    return dataclasses.replace(config, model=model, model_options=model_options)


def resume_config(run_path: str | os.PathLike, settings: dict[str, Any]) -> TrainConfig:
    """The settings run `run_path` was started with, and the RESUMABLE ones given now."""
    from cnnlab.run.paths import RunDir

    not_allowed = sorted(set(settings) - set(RESUMABLE))
    if not_allowed:
        raise CnnlabError(
            "--resume continues a run with the settings it was started with; these flags "
            f"cannot change it: {', '.join('--' + n.replace('_', '-') for n in not_allowed)}."
        )
    stored = RunDir(run_path).config_record().train
    return TrainConfig.from_dict(
        {**stored, **settings}, source=f"{os.fspath(run_path)}/config.json"
    )


def default_out(config: TrainConfig) -> Path:
    """runs/DATA-MODEL, where a run goes without --out."""
    return Path(f"runs/{config.data}-{config.model}".replace(":", "-"))
