"""`cnnlab explain RUN`: everything under RUN/explain/<split>/ from one call, `explain_run`.

Feature spaces per layer (projections, separability against depth), neuron maps, one image's
feature maps, the first kernel bank and where the network looks; before and after training.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.features import (
    LayerFeatures,
    collect_features,
    default_layers,
    sample_indices,
)
from cnnlab.explain.projection import project_layers
from cnnlab.fileio import atomic_write_json
from cnnlab.run.load import LoadedRun, load_run, model_spec
from cnnlab.runtime.predict import StepSettings
from cnnlab.runtime.progress import Progress, format_duration
from cnnlab.specs.explain import ExplainConfig


@dataclass
class ModelState:
    """One model state to explain: the trained weights or the untrained initialisation."""

    name: str  # "trained" or "untrained"
    model: nn.Module
    layers: list[LayerFeatures] = dataclasses.field(default_factory=list)
    logits: torch.Tensor | None = None
    embeddings: list[torch.Tensor] = dataclasses.field(default_factory=list)
    separability: list[dict[str, float]] = dataclasses.field(default_factory=list)


class Reporter:
    """Progress lines with the time since the start, and the list of files written."""

    def __init__(self, stream: TextIO | None, enabled: bool) -> None:
        self.progress = Progress(0, stream=stream, enabled=enabled)
        self.start = time.perf_counter()
        self.files: list[str] = []
        self.timings: dict[str, float] = {}

    def say(self, text: str) -> None:
        elapsed = format_duration(time.perf_counter() - self.start)
        self.progress.message(f"[{elapsed}] {text}")

    def wrote(self, path: Path, root: Path) -> Path:
        self.files.append(str(path.relative_to(root)))
        return path


@dataclass
class Job:
    """One `cnnlab explain` call: the loaded run, the chosen images and the model states."""

    config: ExplainConfig
    report: Reporter
    loaded: LoadedRun
    settings: StepSettings
    split: Any  # cnnlab.run.splits.SplitData, the whole split
    images: torch.Tensor  # uint8 [N, C, H, W]: the sampled points
    labels: torch.Tensor  # [N]
    sample_ids: list[str]
    layers: list[str]
    states: list[ModelState]

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def out(self) -> Path:
        return self.loaded.run.explain(self.config.split)


def explain_run(
    run_path: str | Path,
    config: ExplainConfig,
    stream: TextIO | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Explain a trained run; writes PNG + JSON under RUN/explain/ and returns the summary."""
    from cnnlab.explain import cam_reports, image_reports

    config.check()
    job = _start(run_path, config, Reporter(stream, show_progress))
    summary: dict[str, Any] = {
        "run": str(job.loaded.run.path),
        "split": config.split,
        "checkpoint": job.loaded.checkpoint.path.name,
        "points": len(job.labels),
        "split_size": len(job.split.labels),
        "config": {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
        },
        "layers": job.layers,
    }
    wanted, report = set(config.what), job.report
    if wanted & {"features", "separability", "neurons"}:
        summary.update(_feature_spaces(job, wanted))
    if "activations" in wanted:
        summary["activations"] = timed(
            report,
            "activations",
            lambda: image_reports.write_activations(
                job.loaded.model,
                job.split,
                job.layers,
                job.settings,
                config.image_index,
                job.out,
                report,
            ),
        )
    if "filters" in wanted:
        summary["filters"] = timed(
            report,
            "filters",
            lambda: image_reports.write_filters(
                job.states, job.images[:1], job.settings, job.out.parent, report
            ),
        )
    if "cam" in wanted:
        summary["cam"] = timed(
            report,
            "where the network looks",
            lambda: cam_reports.write_cam(
                job.loaded.model,
                job.images,
                job.labels,
                job.sample_ids,
                job.states[0].logits,
                job.loaded.record,
                job.settings,
                config,
                job.out,
                report,
            ),
        )
    summary["timings_seconds"] = report.timings
    summary["total_seconds"] = round(time.perf_counter() - report.start, 2)
    summary["files"] = sorted(set(report.files))
    atomic_write_json(job.out / "summary.json", summary)
    report.say(f"done: {len(summary['files'])} files under {job.out}")
    return summary


def _start(run_path: str | Path, config: ExplainConfig, report: Reporter) -> Job:
    """Load the run and its split, draw the points, build the model states."""
    from cnnlab.run.splits import load_run_split

    loaded = load_run(run_path, config.checkpoint, config.device)
    # float32 throughout: explanations must not depend on the precision the run was trained in
    # (and bf16 autocast inference of small-cnn ran ~10x slower than float32 on these machines).
    settings = dataclasses.replace(loaded.settings, precision="fp32")
    report.say(f"loading the {config.split} split of {loaded.record.source}")
    split = load_run_split(loaded.record, config.split, data_dir=config.data_dir, data=config.data)
    if not len(split.labels):
        raise CnnlabError(f"The run's {config.split} split is empty; choose another --split.")
    indices = sample_indices(len(split.labels), config.max_points, config.seed)
    report.say(f"{len(indices):,} of {len(split.labels):,} images (seed {config.seed})")
    states = [ModelState("trained", loaded.model)]
    if config.untrained:
        states.append(ModelState("untrained", untrained_model(loaded)))
    return Job(
        config,
        report,
        loaded,
        settings,
        split,
        images=split.images.index_select(0, indices),
        labels=split.labels.index_select(0, indices),
        sample_ids=[split.sample_ids[i] for i in indices.tolist()],
        layers=list(config.layers) or default_layers(loaded.model),
        states=states,
    )


def _feature_spaces(job: Job, wanted: set[str]) -> dict[str, Any]:
    """Global features of every layer and state; projections, separability and neuron maps."""
    from cnnlab.explain import space_reports

    config, report, result = job.config, job.report, {}
    feature_layers = list(dict.fromkeys(job.layers + list(config.neuron_layers)))
    for state in job.states:
        timed(
            report,
            f"{state.name} features",
            lambda s=state: _collect(s, job.images, feature_layers, job.settings, config, report),
        )
    result["features"] = [
        {
            "layer": f.name,
            "output_shape": list(f.output_shape),
            "dimensions": int(f.features.shape[1]),
            "reduction": f.reduction,
        }
        for f in job.states[0].layers
        if f.name in job.layers
    ]
    if wanted & {"features", "separability"}:
        for state in job.states:
            _project(state, job.layers, config, report)
        result["separability"] = space_reports.write_separability(
            job.states, job.layers, job.labels, config, job.out, report
        )
        if "features" in wanted:  # after separability, so the panels can show its numbers
            result["projections"] = timed(
                report,
                "projection figures",
                lambda: space_reports.write_projections(
                    job.states,
                    job.layers,
                    job.labels,
                    job.sample_ids,
                    job.class_names,
                    config,
                    job.out,
                    report,
                ),
            )
    if "neurons" in wanted:
        result["neurons"] = timed(
            report,
            "neurons",
            lambda: space_reports.write_neurons(
                job.states, job.images, job.labels, job.class_names, config, job.out, report
            ),
        )
    return result


def timed(report: Reporter, name: str, work: Any) -> Any:
    start = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - start
    report.timings[name] = round(report.timings.get(name, 0.0) + seconds, 2)
    report.say(f"{name}: {seconds:.1f} s")
    return result


def untrained_model(loaded: LoadedRun) -> nn.Module:
    """The same spec initialised as training started it: seeded with the run's seed (the exact
    draw matches when building the model was the first use of the random generator)."""
    from cnnlab.models import build_model

    seed = loaded.config_record().seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_spec(loaded.model_record))
    return model.to(loaded.device).eval()


def _collect(
    state: ModelState,
    images: torch.Tensor,
    layers: list[str],
    settings: StepSettings,
    config: ExplainConfig,
    report: Reporter,
) -> None:
    def on_batch(done: int, total: int) -> None:
        if done == total or done % (config.batch_size * 10) == 0:
            report.say(f"{state.name} features: {done:,}/{total:,} images")

    state.layers, state.logits = collect_features(
        state.model,
        images,
        layers,
        settings,
        pooling=config.pooling,
        max_features=config.max_features,
        batch_size=config.batch_size,
        on_batch=on_batch,
    )


def _project(state: ModelState, layers: list[str], config: ExplainConfig, report: Reporter) -> None:
    chosen = [f for f in state.layers if f.name in layers]

    def on_layer(index: int, seconds: float) -> None:
        report.say(
            f"{state.name} {config.method} {index + 1}/{len(chosen)} "
            f"({chosen[index].name}, {chosen[index].features.shape[1]}-D): {seconds:.1f} s"
        )

    start = time.perf_counter()
    state.embeddings = project_layers(
        [f.features for f in chosen], config.method, config.seed, on_layer
    )
    key = f"{state.name} {config.method} projections"
    report.timings[key] = round(time.perf_counter() - start, 2)
