"""`cnnlab tune`: hyper-parameter search on Optuna (Akiba et al. 2019). Each trial is an ordinary
`cnnlab train` run in DIR/trials/NNNN, scored on its validation split only (the test split is
never read); random, grid and TPE samplers (seed 003: random search beats grid search); median or
successive-halving pruning on the per-epoch validation metric.

The study lives in an Optuna RDB storage: a SQLite file DIR/study.db by default, so a search that
was stopped continues where it stopped, or PostgreSQL for workers on many machines. Heartbeats
mark a trial whose worker died as failed, and it is run again
(RetryHeartbeatStaleTrialCallback).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError, ConfigError, TrainingAborted
from cnnlab.fileio import atomic_write_text, make_folder
from cnnlab.run.paths import RunDir
from cnnlab.training.config import TrainConfig
from cnnlab.training.interrupt import StopFlag
from cnnlab.tuning.space import Dimension, toml_text

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "halving", "none")
COUNTED = ("COMPLETE", "PRUNED")  # the states that count towards --trials


class SearchInterrupted(CnnlabError):
    """Ctrl-C or SIGTERM stopped a trial; the search continues when run again."""


@dataclass(frozen=True)
class Search:
    """What a `cnnlab tune` invocation searches, and how."""

    fixed: dict[str, Any]  # settings every trial shares (flags and --config of tune)
    space: dict[str, Dimension]
    out: Path
    trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None  # None: sqlite:///OUT/study.db
    study_name: str = "cnnlab"
    seed: int = 0
    heartbeat: int = 30  # seconds; a trial silent for 2x this is failed and retried


class PruneFlag(StopFlag):
    """Stops a trial's training when Optuna's pruner says so: after each epoch the run logs its
    row to metrics.jsonl, this reports the monitored metric to the trial, and, if the trial
    should be pruned, the training loop's next check of its stop flag ends the run."""

    def __init__(self, trial: Any, run: Path, monitor: str) -> None:
        super().__init__()
        self.trial, self.run, self.monitor = trial, RunDir(run), monitor
        self.pruned_at: int | None = None
        self._size, self._epochs = 0, 0

    def __call__(self) -> bool:
        if super().__call__() or self.pruned_at is not None:
            return True
        size = self.run.metrics.stat().st_size if self.run.metrics.exists() else 0
        if size == self._size:  # cheap: checked after every step
            return False
        self._size = size
        rows = [r for r in self.run.logged_rows() if r.get("kind") == "epoch"]
        for row in rows[self._epochs :]:
            if self.monitor in row:
                self.trial.report(row[self.monitor], step=row["epoch"])
                if self.trial.should_prune():
                    self.pruned_at = row["epoch"]
        self._epochs = len(rows)
        return self.pruned_at is not None


def make_sampler(search: Search, offset: int) -> Any:
    """`offset` (the trials already in the study) moves the seed on, so a resumed search does
    not draw its first trials' values again."""
    import optuna

    seed = search.seed * 1_000_003 + offset
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        grid = {name: dimension.grid() for name, dimension in search.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, warmup_epochs: int = 0) -> Any:
    """Optuna's pruner of that name. The median pruner judges no trial before `warmup_epochs`:
    a warm-up schedule makes early epochs say little (measured on Fashion-MNIST: pruning from
    epoch 1 stopped 14 of 16 trials, and the search ended below the recipe)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def open_study(search: Search, direction: str, warmup_epochs: int = 0) -> Any:
    """Create the study, or load it to continue; refuse one started with another space."""
    import optuna

    url = search.storage or f"sqlite:///{(search.out / 'study.db').resolve()}"
    storage = _connect(url, search.heartbeat)
    study = optuna.create_study(
        storage=storage,
        study_name=search.study_name,
        direction=direction,
        pruner=make_pruner(search.pruner, warmup_epochs),
        load_if_exists=True,
    )
    space = {name: dimension.to_dict() for name, dimension in search.space.items()}
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space)
        study.set_user_attr("fixed", search.fixed)
    elif recorded != json.loads(json.dumps(space)):
        raise ConfigError(
            f"the study {search.study_name!r} in {shown_url(url)} was started with another "
            "search space; "
            "continue it with the same --space, or choose another --out / --study-name."
        )
    study.sampler = make_sampler(search, len(study.trials))
    return study


def shown_url(url: str) -> str:
    """The storage URL with its password hidden, for messages."""
    import sqlalchemy.engine

    return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)


def _connect(url: str, heartbeat: int) -> Any:
    """Optuna's RDB storage at `url`. Workers that start together on a new database race to
    create its tables; the loser sees them half made and tries again."""
    import gc
    import time

    import optuna
    import sqlalchemy.exc
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", ResourceWarning)  # a failed connection's
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            reason = str(error).strip().splitlines()[0]
            break
    with warnings.catch_warnings():  # the failed connection, collected now and quietly
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    raise ConfigError(
        f"--storage {shown_url(url)!r} cannot be opened: {reason}. Check the URL, that the "
        "server is running, and for PostgreSQL `pip install cnnlab[postgres]`."
    )


def counted(study: Any) -> int:
    return sum(t.state.name in COUNTED for t in study.get_trials(deepcopy=False))


def run_search(search: Search, report: Callable[[str], None] = print) -> dict[str, Path]:
    """Run trials until the study holds `search.trials` complete or pruned ones; write the
    results. Returns the paths written."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial is reported here
    make_folder(search.out)  # an OutputError naming --out when it cannot be made
    probe = TrainConfig.from_dict(search.fixed, source="tune flags")
    if probe.val_fraction == 0:
        raise ConfigError("cnnlab tune scores trials on validation: set --val-fraction above 0.")
    direction = "minimize" if probe.monitor == "val_loss" else "maximize"
    # the first third of a trial's epochs is never pruned (unless epochs are searched)
    warmup = 0 if "epochs" in search.space else probe.epochs // 3
    study = open_study(search, direction, warmup)
    done = counted(study)
    if done < search.trials:
        report(f"study {search.study_name!r}: {done} trial(s) done, running to {search.trials}")
        stop_at = optuna.study.MaxTrialsCallback(
            search.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        )
        study.optimize(objective(search, probe.monitor, report), callbacks=[stop_at])
    return write_results(study, search, probe.monitor)


def objective(search: Search, monitor: str, report: Callable[[str], None]) -> Callable:
    """One trial: the sampled settings over the fixed ones, trained into DIR/trials/NNNN."""
    import optuna

    from cnnlab.training.resolve import resolve_config
    from cnnlab.training.run import train

    def run_trial(trial: optuna.Trial) -> float:
        values = {name: d.suggest(trial) for name, d in search.space.items()}
        run = search.out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("run", str(run))
        config = resolve_config({**search.fixed, **values}, source=f"trial {trial.number}")
        flag = PruneFlag(trial, run, monitor)
        shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        try:
            result = train(config, run, stop=flag, show_progress=False)
        except TrainingAborted as error:  # diverged: as bad as a trial gets, so pruned
            report(f"trial {trial.number}: {shown} -> diverged, pruned")
            raise optuna.TrialPruned(str(error)) from None
        if flag.pruned_at is not None:
            report(f"trial {trial.number}: {shown} -> pruned after epoch {flag.pruned_at}")
            raise optuna.TrialPruned(f"pruned after epoch {flag.pruned_at}")
        if result.status == "interrupted":
            trial.study.enqueue_trial(values, user_attrs={"retry_of": trial.number})
            raise SearchInterrupted(
                f"interrupted in trial {trial.number}; run the same `cnnlab tune` again to "
                "continue the study (the trial runs again)."
            )
        score = result.best["best_score"]
        report(f"trial {trial.number}: {shown} -> {monitor} {score:.4f}")
        return score

    return run_trial


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            **{f"params_{k}": v for k, v in t.params.items()},
            "epochs_reported": len(t.intermediate_values),
            "seconds": t.duration.total_seconds() if t.duration else None,
            "run": t.user_attrs.get("run"),
        })  # fmt: skip
    return rows


def write_results(study: Any, search: Search, monitor: str) -> dict[str, Path]:
    """trials.csv/.json, best.toml and the plots, in DIR."""
    import csv
    import io

    rows = trial_rows(study)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = {"csv": search.out / "trials.csv", "json": search.out / "trials.json"}
    atomic_write_text(paths["csv"], text.getvalue())
    summary = {"monitor": monitor, "direction": study.direction.name.lower(), "trials": rows}
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if finished:
        best = study.best_trial
        summary["best"] = {"number": best.number, "value": best.value, "params": best.params}
        paths["best"] = search.out / "best.toml"
        settings = {**search.fixed, **best.params}
        comment = f"cnnlab tune: trial {best.number}, {monitor} {best.value:.4f} on validation"
        atomic_write_text(paths["best"], toml_text(settings, comment))
    atomic_write_text(paths["json"], json.dumps(summary, indent=2) + "\n")
    paths.update(write_plots(study, search.out))
    return paths


def write_plots(study: Any, out: Path) -> dict[str, Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNG files; a
    plot Optuna cannot draw yet (too few finished trials) is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawers = {
        "history": plots.plot_optimization_history,
        "importance": plots.plot_param_importances,
        "parallel": plots.plot_parallel_coordinate,
    }
    written = {}
    for name, draw in drawers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's "experimental" notices
            try:
                axes = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        path = out / f"{name}.png"
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[name] = path
    return written


def trial_config(run: str | os.PathLike) -> dict[str, Any]:
    """The `train` settings a trial's run directory recorded."""
    return RunDir(run).config_record().train
