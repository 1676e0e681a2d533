"""What the report shows, gathered from a run directory through cnnlab.run only: each part is
either there or None with the sentence and command that would make it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.run import ConfigRecord, DatasetRecord, RunDir
from cnnlab.run.artifacts import (
    Prediction,
    Projection,
    read_explain_summary,
    read_predictions,
    read_projections,
)
from cnnlab.run.evaluation import read_evaluation


@dataclass
class ReportInputs:
    run: RunDir
    split: str
    dataset: DatasetRecord
    config: ConfigRecord | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    predictions: list[Prediction] | None = None
    explain: dict[str, Any] | None = None
    projections: list[Projection] = field(default_factory=list)
    images: Any = None  # SplitData of `split`, when the data set can be loaded here
    train_images: Any = None  # SplitData of train, for the sample images per class
    data_note: str | None = None  # why the images are not shown
    model_summary: Any = None  # cnnlab.models.summary.ModelSummary
    model_note: str | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)


def _load_images(inputs: ReportInputs, data_dir: str | None) -> None:
    from cnnlab.data.sources import load_dataset
    from cnnlab.run.splits import load_options, select_split

    record = inputs.dataset
    try:
        dataset = load_dataset(record.source, data_dir=data_dir, options=load_options(record))
        inputs.images = select_split(dataset, record, inputs.split)
        inputs.train_images = select_split(dataset, record, "train")
    except CnnlabError as error:
        inputs.data_note = (
            f"The images of {record.source!r} could not be loaded here, so no images are shown "
            f"({error}). Run `cnnlab report` where the data is, or give --data-dir."
        )


def _summarize_model(inputs: ReportInputs) -> None:
    import torch

    from cnnlab.models import build_model
    from cnnlab.models.summary import summarize
    from cnnlab.run.load import model_spec

    try:
        record = inputs.run.model_record()
        with torch.device("meta"):
            model = build_model(model_spec(record))
        shape = (record.in_channels, *record.image_size)
        inputs.model_summary = summarize(model, shape, record.name)
    except (CnnlabError, RuntimeError, ValueError) as error:
        inputs.model_note = f"The model could not be rebuilt to summarise it ({error})."


def collect(path: str | Path, split: str = "test", data_dir: str | None = None) -> ReportInputs:
    """Read everything the report shows; only config.json ... dataset.json are required."""
    run = RunDir(path)
    inputs = ReportInputs(run=run, split=split, dataset=run.dataset_record())
    inputs.config = run.config_record() if run.config.exists() else None
    inputs.rows = run.logged_rows()
    inputs.evaluation = read_evaluation(run, split)
    inputs.predictions = read_predictions(run, split)
    inputs.explain = read_explain_summary(run, split)
    if inputs.explain is not None:
        method = inputs.explain.get("config", {}).get("method", "pca")
        inputs.projections = read_projections(run, split, method)
    _load_images(inputs, data_dir)
    _summarize_model(inputs)
    return inputs


def missing(what: str, command: str) -> str:
    """The sentence a section shows in place of what is not in the run yet."""
    return f"Not in this run yet: {what}. Make it with `{command}`, then run `cnnlab report` again."
