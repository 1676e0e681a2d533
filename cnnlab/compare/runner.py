"""`cnnlab compare`: every pipeline on exactly the same seeded stratified splits (K-fold or
repeated hold-out; with --group-by, whole groups per part: StratifiedGroupKFold), each
(pipeline, fold, curve point) saved atomically as it finishes, so an
interrupted comparison continues where it stopped. Statistics and plots: outputs.py."""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from cnnlab.compare.pipelines import (
    Part,
    PipelineOptions,
    build_pipeline,
    fit_and_score,
    parse_pipelines,
    settings_fingerprint,
    settings_used,
)
from cnnlab.errors import ConfigError
from cnnlab.fileio import atomic_write_json
from cnnlab.runtime.progress import format_duration
from cnnlab.transfer.random_bank import RandomBankSettings

FORMAT = 1
METRICS = ("accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1")


@dataclass(frozen=True)
class CompareSettings:
    """Everything that decides the splits and the results; `cnnlab compare`'s flags, 1:1."""

    data: str = "digits"
    pipelines: str = "raw-svm,random-bank-svm,handcrafted-svm"
    folds: int = 5  # stratified K-fold, unless repeats > 0
    repeats: int = 0  # repeated stratified hold-out of test_fraction
    test_fraction: float = 0.2
    val_fraction: float = 0.2  # of the images outside the test part, for choosing C
    curve: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # shares of the training images per class
    max_images: int | None = None  # a stratified seeded subset of the data set
    seed: int = 0
    classifier: str = "linear-svm"
    bank_kernels: int = 16
    bank_layers: int = 1
    scratch_epochs: int = 5
    batch_size: int = 32  # scratch: and finetune: (small data sets want more steps than 128)
    learning_rate: float | None = None
    weights: str | None = None  # pretrained-svm: and finetune: start from this weights file
    freeze_epochs: int = 1
    lr_decay_per_stage: float = 1.0
    freeze_bn: bool = False
    data_dir: str | None = None
    group_by: str | None = None  # folder: no group (patient, slide) in two parts of a fold

    def to_dict(self) -> dict:
        return {**asdict(self), "curve": list(self.curve)}

    def splits_fingerprint(self) -> str:
        keys = ("data", "folds", "repeats", "test_fraction", "val_fraction", "curve")
        chosen = {k: self.to_dict()[k] for k in (*keys, "max_images", "seed")}
        if self.group_by is not None:  # ungrouped comparisons keep their fingerprint
            chosen["group_by"] = self.group_by
        text = json.dumps(chosen)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def default_name(self) -> str:
        data = Path(self.data.removeprefix("folder:")).name or "folder"
        pipes = "+".join(p.replace(":", "-") for p in self.pipelines.split(","))
        return f"{data}-{pipes}"


@dataclass
class Fold:
    """One split: sorted int64 indices into the pooled images; curve[share] = (train, val)."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    curve: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def share_label(share: float) -> str:
    return f"{round(share * 100):03d}"  # 0.1 -> "010": sorts in order in a listing


def make_folds(
    labels: np.ndarray, settings: CompareSettings, groups: np.ndarray | None = None
) -> list[Fold]:
    """Stratified K-fold (settings.folds) or repeated hold-out (settings.repeats), seeded; val
    carved per class from the rest; each curve point a nested per-class subset of train and val.
    With groups (one name per image), every split keeps each group whole: StratifiedGroupKFold
    for the folds, cnnlab.data.splits.stratified_group_split for the hold-outs and val."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if settings.repeats > 0:
        tests = [
            _hold_out(labels, groups, np.arange(len(labels)), settings.test_fraction,
                      settings.seed + r, "test part (--test-fraction)")[1]
            for r in range(settings.repeats)
        ]  # fmt: skip
    else:
        _check_folds(labels, settings.folds, groups)
        if groups is None:
            kfold = StratifiedKFold(settings.folds, shuffle=True, random_state=settings.seed)
        else:
            kfold = StratifiedGroupKFold(settings.folds, shuffle=True, random_state=settings.seed)
        split = kfold.split(np.zeros(len(labels)), labels, groups)
        tests = [np.sort(test) for _, test in split]
    folds = []
    for index, test in enumerate(tests):
        rest = np.setdiff1d(np.arange(len(labels)), test)
        seed = settings.seed + 1000 + index
        what = "validation part (--val-fraction)"
        train, val = _hold_out(labels, groups, rest, settings.val_fraction, seed, what)
        fold = Fold(index, train, val, test)
        for share in settings.curve:
            seed = settings.seed + 2000 + index
            fold.curve[share_label(share)] = (
                per_class_subset(fold.train, labels, share, seed),
                per_class_subset(fold.val, labels, share, seed),
            )
        folds.append(fold)
    return folds


def _hold_out(
    labels: np.ndarray,
    groups: np.ndarray | None,
    pool: np.ndarray,
    fraction: float,
    seed: int,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) of the indices `pool`, stratified and seeded; with groups, whole groups."""
    from cnnlab.data.splits import stratified_group_split, stratified_split

    pool_labels = torch.from_numpy(labels[pool])
    if groups is None:
        kept, held = stratified_split(pool_labels, fraction, seed)
    else:
        kept, held = stratified_group_split(pool_labels, list(groups[pool]), fraction, seed, what)
    return pool[kept.numpy()], pool[held.numpy()]


def per_class_subset(indices: np.ndarray, labels: np.ndarray, share: float, seed: int):
    """ceil(share * n_c) of each class's indices (at least 1), a seeded prefix: nested in share."""
    generator = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[indices]):
        members = indices[labels[indices] == label]
        order = generator.permutation(len(members))
        chosen.append(members[order[: max(1, math.ceil(share * len(members)))]])
    return np.sort(np.concatenate(chosen)) if chosen else indices[:0]


def _check_folds(labels: np.ndarray, folds: int, groups: np.ndarray | None = None) -> None:
    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    if groups is not None:
        count = len(np.unique(groups))
        if folds < 2 or count < folds:
            raise ConfigError(
                f"--folds {folds} with --group-by needs at least 2 folds and at least {folds} "
                f"groups; the images form {count}. Use fewer --folds, or --repeats R."
            )
        return
    if folds < 2 or smallest < folds:
        raise ConfigError(
            f"--folds {folds} needs at least 2 folds and at least {folds} images in every class; "
            f"the smallest class has {smallest}. Use fewer --folds or --repeats R instead."
        )


def index_digest(indices: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]


@dataclass
class Pool:
    """The pooled images the folds index: uint8 [N, C, H, W], labels [N], class names."""

    images: torch.Tensor
    labels: np.ndarray
    class_names: list[str]
    source: str
    groups: np.ndarray | None = None  # --group-by: each image's group name


def load_pool(settings: CompareSettings) -> Pool:
    """All images of the data set (train, val and test parts: the comparison makes its own
    splits), optionally a stratified seeded subset of max_images."""
    from cnnlab.data import load_dataset
    from cnnlab.data.groups import resolve_groups

    dataset = load_dataset(settings.data, settings.data_dir)
    parts = [(dataset.train_images, dataset.train_labels, "train")]
    if dataset.val_images is not None:
        parts.append((dataset.val_images, dataset.val_labels, "val"))
    parts.append((dataset.test_images, dataset.test_labels, "test"))
    images = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts]).numpy().astype(np.int64)
    groups = None
    if settings.group_by:
        named = resolve_groups(settings.group_by, dataset)
        groups = np.array([g for *_, part in parts for g in named.get(part, [])], dtype=object)
    if settings.max_images and settings.max_images < len(labels):
        share = settings.max_images / len(labels)
        keep = per_class_subset(np.arange(len(labels)), labels, share, settings.seed)
        keep = keep[: settings.max_images]
        images, labels = images[torch.from_numpy(keep)], labels[keep]
        groups = None if groups is None else groups[keep]
    return Pool(images, labels, list(dataset.class_names), dataset.location, groups)


def write_splits(out: Path, settings: CompareSettings, pool: Pool, folds: list[Fold]) -> None:
    """out/splits.json: every fold's indices; refuses a folder holding other splits."""
    path = out / "splits.json"
    record = {
        "format": FORMAT,
        "fingerprint": settings.splits_fingerprint(),
        "data": settings.data,
        "num_images": len(pool.labels),
        "group_by": settings.group_by,
        "class_names": pool.class_names,
        "folds": [_fold_record(f) for f in folds],
    }
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != record["fingerprint"] or old["folds"] != record["folds"]:
            raise ConfigError(
                f"{out} holds a comparison with other splits (data, folds, repeats, fractions, "
                "--max-images or --seed differ). Give another --out, or delete that folder to "
                "start again."
            )
        return
    atomic_write_json(path, record)


def _fold_record(fold: Fold) -> dict:
    return {
        "fold": fold.index,
        "train": fold.train.tolist(),
        "val": fold.val.tolist(),
        "test": fold.test.tolist(),
        "curve": {k: {"train": t.tolist(), "val": v.tolist()} for k, (t, v) in fold.curve.items()},
    }


def result_path(out: Path, pipeline: str, fold: int, share: str) -> Path:
    return out / "results" / pipeline.replace(":", "-") / f"fold{fold}-{share}.json"


def pipeline_options(settings: CompareSettings, num_classes: int) -> PipelineOptions:
    bank = RandomBankSettings(
        num_kernels=settings.bank_kernels, layers=settings.bank_layers, seed=settings.seed
    )
    return PipelineOptions(
        num_classes=num_classes,
        classifier=settings.classifier,
        bank=bank,
        scratch_epochs=settings.scratch_epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        weights=settings.weights,
        freeze_epochs=settings.freeze_epochs,
        lr_decay_per_stage=settings.lr_decay_per_stage,
        freeze_bn=settings.freeze_bn,
        seed=settings.seed,
    )


def run_one(pool: Pool, fold: Fold, share: str, name: str, argument, options, table=None) -> dict:
    """Fit one pipeline on one fold's curve point; the record to save (cnnlab.metrics). `table`:
    the pipeline's FeatureTable of every pooled image, if it computes features per image."""
    from cnnlab.metrics import classification_metrics

    train_idx, val_idx = fold.curve[share]

    def take(idx: np.ndarray) -> Part:
        features = table.features[idx] if table is not None else None
        return Part(
            pool.images[torch.from_numpy(idx)], torch.from_numpy(pool.labels[idx]), features
        )

    pipeline = build_pipeline(name, argument, options)
    timed = fit_and_score(pipeline, take(train_idx), take(val_idx), take(fold.test))
    if table is not None:  # each image's share of the one extraction
        timed.fit_seconds += table.seconds_per_image * (len(train_idx) + len(val_idx))
        timed.predict_seconds += table.seconds_per_image * len(fold.test)
        timed.details["features"] = f"computed once for all {len(pool.labels)} images"
    targets = torch.from_numpy(pool.labels[fold.test])
    metrics = classification_metrics(torch.from_numpy(timed.scores), targets, pool.class_names)
    per_class = np.bincount(pool.labels[np.concatenate([train_idx, val_idx])])
    used = settings_used(name, options)
    return {
        "format": FORMAT,
        "pipeline": pipeline.name,
        "fold": fold.index,
        "share": share,
        "train_images_per_class": float(per_class.mean()),
        **{m: metrics[m] for m in METRICS},
        "fit_seconds": timed.fit_seconds,
        "predict_seconds": timed.predict_seconds,
        "images_per_second": len(fold.test) / max(timed.predict_seconds, 1e-9),
        "details": timed.details,
        "settings": used,
        "settings_fingerprint": settings_fingerprint(used),
        "seen": {k: index_digest(v) for k, v in (("train", train_idx), ("val", val_idx))}
        | {"test": index_digest(fold.test)},
    }


def run_comparison(
    settings: CompareSettings,
    out: str | Path,
    stream: TextIO | None = None,
    after_result: Callable[[dict], None] = lambda record: None,
) -> dict:
    """Run every missing (pipeline, fold, curve point), then write the summary; returns it."""
    from cnnlab.compare.outputs import write_summary

    stream, out = stream or sys.stderr, Path(out)
    parsed = parse_pipelines(settings.pipelines)
    pool = load_pool(settings)
    folds = make_folds(pool.labels, settings, pool.groups)
    write_splits(out, settings, pool, folds)
    atomic_write_json(out / "settings.json", {"format": FORMAT, **settings.to_dict()})
    options = pipeline_options(settings, len(pool.class_names))
    jobs = [
        (fold, share_label(share), name, argument)
        for fold in folds
        for name, argument in parsed
        for share in settings.curve
    ]
    label = lambda n, a: f"{n}:{a}" if a else n  # noqa: E731
    todo = _plan(out, jobs, options, stream)
    print(
        f"compare: {len(pool.labels):,} images of {settings.data}, {len(folds)} folds, "
        f"{len(parsed)} pipelines, {len(settings.curve)} curve points: {len(jobs)} fits, "
        f"{len(jobs) - len(todo)} already done (in {out})",
        file=stream,
    )
    tables = feature_tables(todo, pool, options, stream)
    _run_jobs(todo, pool, options, out, stream, after_result, label, tables)
    return write_summary(out, settings, pool.class_names, [label(n, a) for n, a in parsed])


def _plan(out: Path, jobs: list[tuple], options: PipelineOptions, stream: TextIO) -> list:
    """The (fold, share, name, argument) jobs to compute: those with no stored result, or with one
    computed with other settings of its pipeline (said once per pipeline, with the changes)."""
    todo, changed = [], {}
    for job in jobs:
        fold, share, name, argument = job
        pipeline = f"{name}:{argument}" if argument else name
        path = result_path(out, pipeline, fold.index, share)
        if not path.exists():
            todo.append(job)
            continue
        stored, used = json.loads(path.read_text()), settings_used(name, options)
        if stored.get("settings_fingerprint") != settings_fingerprint(used):
            todo.append(job)
            reason = _changes(stored.get("settings"), used)
            changed.setdefault(pipeline, [reason, 0])[1] += 1
    for pipeline, (reason, count) in changed.items():
        print(
            f"pipeline {pipeline}: settings changed since the stored results ({reason}); "
            f"recomputing {count} results",
            file=stream,
        )
    return todo


def _changes(old: dict | None, new: dict) -> str:
    if old is None:
        return "the stored results record no settings: written by an earlier cnnlab"
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


@dataclass
class FeatureTable:
    """A per-image pipeline's features of every pooled image [N, D], and the seconds per image."""

    features: np.ndarray
    seconds_per_image: float


def feature_tables(todo: list, pool: Pool, options: PipelineOptions, stream: TextIO) -> dict:
    """{(name, argument): FeatureTable} for the pipelines to run whose features are per image
    (FeaturePipeline.per_image): computed once here, indexed per fold and curve point."""
    tables = {}
    for name, argument in dict.fromkeys((job[2], job[3]) for job in todo):
        pipeline = build_pipeline(name, argument, options)
        if not getattr(pipeline, "per_image", False):
            continue
        start = time.perf_counter()
        features = np.asarray(pipeline.features(pool.images))
        seconds = time.perf_counter() - start
        tables[(name, argument)] = FeatureTable(features, seconds / max(len(features), 1))
        print(
            f"pipeline {pipeline.name}: features of all {len(features):,} images, once "
            f"({features.shape[1]} per image, {format_duration(seconds)})",
            file=stream,
            flush=True,
        )
    return tables


def _run_jobs(todo, pool, options, out, stream, after_result, label, tables) -> None:
    start = time.perf_counter()
    for done, (fold, share, name, argument) in enumerate(todo, start=1):
        table = tables.get((name, argument))
        record = run_one(pool, fold, share, name, argument, options, table)
        atomic_write_json(result_path(out, record["pipeline"], fold.index, share), record)
        elapsed = time.perf_counter() - start
        left = elapsed / done * (len(todo) - done)
        print(
            f"  [{done}/{len(todo)}] {label(name, argument)} fold {fold.index} "
            f"{int(share)}%: accuracy {record['accuracy']:.4f} (fit {record['fit_seconds']:.1f} s)"
            f", about {format_duration(left)} left",
            file=stream,
            flush=True,
        )
        after_result(record)
