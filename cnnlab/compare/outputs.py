"""The statistics and files of `cnnlab compare`: mean +- sd over folds per pipeline, a paired
t-test between the best two, learning curves; JSON, CSV and PNG from the saved results."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError
from cnnlab.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

FORMAT = 1
FULL = "100"  # the curve point with every training image: the table's results
COLUMNS = ("accuracy", "balanced_accuracy", "cohen_kappa", "macro_f1")


def read_results(out: Path, pipeline: str) -> list[dict]:
    folder = out / "results" / pipeline.replace(":", "-")
    rows = [json.loads(p.read_text()) for p in sorted(folder.glob("fold*-*.json"))]
    return sorted(rows, key=lambda r: (r["share"], r["fold"]))


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); sd is 0 for a single value."""
    array = np.asarray(values, dtype=np.float64)
    sd = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), sd


def pipeline_record(name: str, rows: list[dict]) -> dict:
    full = sorted((r for r in rows if r["share"] == FULL), key=lambda r: r["fold"])
    record: dict = {"pipeline": name, "folds": len(full)}
    for key in (*COLUMNS, "fit_seconds", "images_per_second"):
        record[key], record[f"{key}_sd"] = mean_sd([r[key] for r in full]) if full else (0, 0)
    record["per_fold_accuracy"] = [r["accuracy"] for r in full]
    return record


def paired_test(first: dict, second: dict) -> dict | None:
    """Paired t-test over folds on accuracy (scipy.stats.ttest_rel), two-sided.

    Chosen over Wilcoxon's signed-rank test because with 5 folds the smallest two-sided p-value
    Wilcoxon can reach is 0.0625, so it could never find a difference at 0.05; the t-test's
    assumption (normal fold differences) is the price. Folds share training images, so the
    p-value is optimistic (Nadeau & Bengio 2003); read it as a guide, with the sd beside it.
    """
    from scipy import stats

    a, b = first["per_fold_accuracy"], second["per_fold_accuracy"]
    if len(a) != len(b) or len(a) < 2:
        return None
    differences = np.asarray(a) - np.asarray(b)
    if np.allclose(differences, differences[0]):  # no spread: t is undefined
        p_value = 1.0 if differences[0] == 0 else 0.0
        statistic = math.nan
    else:
        result = stats.ttest_rel(a, b)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    return {
        "test": "paired t-test over folds (scipy.stats.ttest_rel, two-sided) on accuracy",
        "better": first["pipeline"],
        "worse": second["pipeline"],
        "mean_difference": float(differences.mean()),
        "sd_difference": float(differences.std(ddof=1)),
        "statistic": statistic,
        "p_value": p_value,
    }


def learning_curve(name: str, rows: list[dict]) -> list[dict]:
    points = []
    for share in sorted({r["share"] for r in rows}):
        chosen = [r for r in rows if r["share"] == share]
        accuracy, sd = mean_sd([r["accuracy"] for r in chosen])
        per_class = float(np.mean([r["train_images_per_class"] for r in chosen]))
        points.append(
            {
                "pipeline": name,
                "share": int(share) / 100,
                "train_images_per_class": per_class,
                "accuracy": accuracy,
                "accuracy_sd": sd,
                "folds": len(chosen),
            }
        )
    return points


def write_summary(out: Path, settings, class_names: list[str], pipelines: list[str]) -> dict:
    """summary.json, summary.csv, learning_curve.csv and learning_curve.png under out."""
    rows = {name: read_results(out, name) for name in pipelines}
    records = [pipeline_record(name, rows[name]) for name in pipelines]
    ranked = sorted(records, key=lambda r: r["accuracy"], reverse=True)
    curves = [point for name in pipelines for point in learning_curve(name, rows[name])]
    summary = {
        "format": FORMAT,
        "settings": settings.to_dict(),
        "class_names": class_names,
        "sd": "sample standard deviation over folds (n - 1)",
        "pipelines": records,
        "paired_test": paired_test(ranked[0], ranked[1]) if len(ranked) > 1 else None,
        "learning_curve": curves,
    }
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(
        out / "summary.csv", _csv(records, [k for k in records[0] if k != "per_fold_accuracy"])
    )
    atomic_write_text(out / "learning_curve.csv", _csv(curves, list(curves[0]) if curves else []))
    if curves:
        atomic_write_bytes(out / "learning_curve.png", _curve_png(curves, settings.data))
    return summary


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _curve_png(points: list[dict], data: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in dict.fromkeys(p["pipeline"] for p in points):
        mine = [p for p in points if p["pipeline"] == name]
        x = [p["train_images_per_class"] for p in mine]
        y = np.array([p["accuracy"] for p in mine])
        sd = np.array([p["accuracy_sd"] for p in mine])
        axes.plot(x, y, marker="o", label=name)
        axes.fill_between(x, y - sd, y + sd, alpha=0.15)
    axes.set_xscale("log")
    axes.set_xlabel("training images per class (train + val)")
    axes.set_ylabel("test accuracy (mean +- sd over folds)")
    axes.set_title(f"Learning curves on {data}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def format_table(summary: dict) -> str:
    """The terminal table: one row per pipeline, mean +- sd over folds, and the paired test."""
    head = (
        f"{'pipeline':<28}" + "".join(f"{c:>20}" for c in COLUMNS) + f"{'fit s':>10}{'img/s':>10}"
    )
    lines = [head]
    for r in summary["pipelines"]:
        cells = "".join(f"{r[c]:>12.4f} +-{r[c + '_sd']:.4f}" for c in COLUMNS)
        lines.append(
            f"{r['pipeline']:<28}{cells}{r['fit_seconds']:>10.1f}{r['images_per_second']:>10.0f}"
        )
    test = summary["paired_test"]
    if test:
        lines.append(
            f"{test['better']} vs {test['worse']}: accuracy difference "
            f"{test['mean_difference']:+.4f} +- {test['sd_difference']:.4f} (sd over folds), "
            f"paired t-test p = {test['p_value']:.3g}"
        )
    return "\n".join(lines)


def read_comparison(folder: str | Path) -> dict:
    """A finished comparison's outputs, read back (for the HTML report; no torch):

    - "folder": the folder, resolved; "learning_curve_png": its PNG path (None if absent)
    - "summary": summary.json (settings, class_names, "pipelines": one table row each with
      mean and sd per metric and per_fold_accuracy, "paired_test" or None, "learning_curve")
    - "results": {pipeline: its per-(fold, curve point) records, sorted by share then fold}
    - "learning_curve": the summary's points (pipeline, share, train_images_per_class,
      accuracy, accuracy_sd, folds)
    - "splits": data, num_images, class_names, fingerprint and per fold the sizes of train,
      val and test and of each curve point's train and val (the indices stay in splits.json)
    """
    out = Path(folder).expanduser().resolve()
    summary = _read_record(out / "summary.json", "cnnlab compare ... --out FOLDER")
    splits = _read_record(out / "splits.json", "the same cnnlab compare command")
    names = [row["pipeline"] for row in summary["pipelines"]]
    png = out / "learning_curve.png"
    return {
        "folder": str(out),
        "summary": summary,
        "results": {name: read_results(out, name) for name in names},
        "learning_curve": summary["learning_curve"],
        "learning_curve_png": str(png) if png.is_file() else None,
        "splits": {
            **{k: splits[k] for k in ("data", "num_images", "class_names", "fingerprint")},
            "folds": [_fold_sizes(fold) for fold in splits["folds"]],
        },
    }


def _read_record(path: Path, rerun: str) -> dict:
    if not path.is_file():
        raise ConfigError(
            f"'{path}' is missing: {path.parent} is not a finished comparison. Run {rerun} "
            "to finish it (finished pipeline-folds are kept)."
        )
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"'{path}' is not readable JSON ({error}); rerun {rerun}.") from None
    if record.get("format", 1) > FORMAT:
        raise ConfigError(
            f"'{path}' has format {record['format']}, written by a newer cnnlab; upgrade cnnlab."
        )
    return record


def _fold_sizes(fold: dict) -> dict:
    return {
        "fold": fold["fold"],
        **{part: len(fold[part]) for part in ("train", "val", "test")},
        "curve": {
            share: {part: len(point[part]) for part in ("train", "val")}
            for share, point in fold["curve"].items()
        },
    }
