"""The feature-space parts of `cnnlab explain`: projections of every layer (one PNG + JSON each and
small multiples), separability against depth with a plain statement on the seeds' claim that it
grows with depth, and neuron maps with each class's best detector and its top images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnlab.errors import CnnlabError
from cnnlab.explain import neurons as neuron_maps
from cnnlab.explain.contracts import Options, Report, State
from cnnlab.explain.image_reports import write_top_images
from cnnlab.explain.plots import (
    plot_neuron_maps,
    plot_projection,
    plot_projection_grid,
    plot_separability,
)
from cnnlab.explain.separability import chance_levels, depth_trend, separability
from cnnlab.fileio import atomic_write_json

FEATURE_METRICS = {
    "feature_silhouette": "silhouette",
    "feature_knn_accuracy": "k-NN accuracy",
    "feature_neighbourhood_hit": "neighbourhood hit",
}


def _file_stem(index: int, layer: str) -> str:
    return f"{index:02d}-{layer}"


def write_projections(
    states: list[State],
    layers: list[str],
    labels: torch.Tensor,
    sample_ids: list[str],
    class_names: list[str],
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """One PNG + JSON per layer and state, then all of them as small multiples in one PNG."""
    folder = out / "projections" / config.method
    predictions = states[0].logits.argmax(1)  # the trained network's errors, in every state
    written = []
    for state in states:
        for index, (layer, points) in enumerate(zip(layers, state.embeddings, strict=True)):
            stem = f"{_file_stem(index, layer)}-{state.name}"
            metrics = state.separability[index] if state.separability else None
            title = (
                f"{layer} ({state.name}), {config.method}, {len(points):,} {config.split} images"
            )
            if metrics:
                title += f"\nk-NN accuracy {metrics['feature_knn_accuracy']:.3f} in feature space"
            path = report.wrote(folder / f"{stem}.png", out.parent)
            plot_projection(points, labels, predictions, class_names, title, path)
            coordinates = {"layer": layer, "state": state.name} | _projection_record(
                points, labels, predictions, sample_ids, class_names, config
            )
            atomic_write_json(report.wrote(folder / f"{stem}.json", out.parent), coordinates)
            written.append(str(folder / f"{stem}.png"))
    grid = report.wrote(out / f"projections-{config.method}.png", out.parent)
    plot_projection_grid(
        [(state.name, _grid_panels(state, layers)) for state in states],
        labels,
        [predictions] * len(states),
        class_names,
        f"{config.method} of each layer's global features, {config.split} split "
        "(colour: true class; x: misclassified by the trained network; panel titles: k-NN "
        "accuracy in the feature space | in 2-D)",
        grid,
    )
    return {"method": config.method, "small_multiples": str(grid), "per_layer": written}


def _projection_record(
    points: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    sample_ids: list[str],
    class_names: list[str],
    config: Options,
) -> dict[str, Any]:
    """A projection's points [N, 2] with what each point is, as its JSON file holds them."""
    return {
        "method": config.method,
        "split": config.split,
        "class_names": class_names,
        "sample_ids": sample_ids,
        "labels": labels.tolist(),
        "predictions": predictions.tolist(),
        "x": [round(v, 4) for v in points[:, 0].tolist()],
        "y": [round(v, 4) for v in points[:, 1].tolist()],
    }


def _grid_panels(state: State, layers: list[str]) -> list[tuple[str, torch.Tensor]]:
    """One state's row of the small multiples: (caption, points [N, 2]) per layer."""
    panels = []
    for index, (layer, points) in enumerate(zip(layers, state.embeddings, strict=True)):
        caption = layer
        if state.separability:
            row = state.separability[index]
            caption += (
                f"\nk-NN {row['feature_knn_accuracy']:.2f} | "
                f"2-D {row['projection_knn_accuracy']:.2f}"
            )
        panels.append((caption, points))
    return panels


def write_separability(
    states: list[State],
    layers: list[str],
    labels: torch.Tensor,
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """Separability of every layer and state, its trend with depth and the plain statement."""
    start = time.perf_counter()
    for state in states:
        state.separability = _layer_separability(state, layers, labels, config.neighbours)
        report.say(f"{state.name} separability of {len(state.separability)} layers")
    report.timings["separability"] = round(time.perf_counter() - start, 2)
    trends = {
        state.name: {
            key: depth_trend([row[key] for row in state.separability], layers)
            for key in (*FEATURE_METRICS, "projection_knn_accuracy")
        }
        for state in states
    }
    statement = separation_statement(trends["trained"])
    if "untrained" in trends:
        before = trends["untrained"]["feature_knn_accuracy"]["verdict"]
        statement += f" Before training, k-NN accuracy in the feature space {before}."
    report.say(statement)
    result = {
        "k": config.neighbours,
        "chance": chance_levels(labels, config.neighbours),
        "layers": layers,
        "metrics": {
            s.name: [{"layer": n} | row for n, row in zip(layers, s.separability, strict=True)]
            for s in states
        },
        "trends": trends,
        "statement": statement,
    }
    atomic_write_json(report.wrote(out / "separability.json", out.parent), result)
    plot_separability(
        layers,
        {s.name: s.separability for s in states},
        labels,
        config.neighbours,
        f"Class separation per layer, {config.split} split ({len(labels):,} images, "
        f"k = {config.neighbours}, 2-D: {config.method})",
        statement,
        report.wrote(out / "separability.png", out.parent),
    )
    return result


def _layer_separability(
    state: State, layers: list[str], labels: torch.Tensor, neighbours: int
) -> list[dict[str, float]]:
    """Per chosen layer: separability in its feature space and in its 2-D projection."""
    chosen = [f for f in state.layers if f.name in layers]
    rows = []
    for layer, points in zip(chosen, state.embeddings, strict=True):
        feature = separability(layer.features, labels, neighbours)
        projected = separability(points, labels, neighbours)
        rows.append(
            {f"feature_{k}": round(v, 4) for k, v in feature.items()}
            | {f"projection_{k}": round(v, 4) for k, v in projected.items()}
        )
    return rows


def separation_statement(trends: dict[str, dict]) -> str:
    """The lecture slides' claim that classes separate better in deeper layers, checked on the
    trained network's feature spaces, one clause per metric, said plainly whichever way it comes
    out."""
    chosen = [trends[key] for key in FEATURE_METRICS]
    claim = "The lecture slides' claim that classes separate better in deeper layers"
    if all(t["grows_at_every_step"] for t in chosen):
        head = f"{claim} holds on this run: every measure of separation grows at every layer"
    elif all(t["grows_overall"] for t in chosen):
        head = f"{claim} holds only overall on this run: separation is higher at the last layer"
        head += " than at the input, but it falls at some layer"
    elif any(t["grows_overall"] for t in chosen):
        head = f"{claim} holds only in part on this run: the measures disagree"
    else:
        head = f"{claim} does not hold on this run: separation does not grow with depth"
    clauses = [f"{name} {trends[key]['verdict']}" for key, name in FEATURE_METRICS.items()]
    return f"{head}. In the feature space, " + "; ".join(clauses) + "."


MAX_NEURON_PANELS = 20


def panel_classes(chosen: tuple[str, ...], class_names: list[str]) -> list[int]:
    """Class indices for the neuron-map panels: the chosen names (or indices), else the first 20."""
    if not chosen:
        return list(range(min(len(class_names), MAX_NEURON_PANELS)))
    indices = []
    for name in chosen:
        if name in class_names:
            indices.append(class_names.index(name))
        elif name.isdigit() and int(name) < len(class_names):
            indices.append(int(name))
        else:
            raise CnnlabError(
                f"--neuron-classes names {name!r}, which is not a class of this run; its classes "
                f"are {', '.join(class_names)} (names or indices 0 to {len(class_names) - 1})."
            )
    return indices


def write_neurons(
    states: list[State],
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """Neuron maps of each chosen layer and state, and whether training specialised them."""

    def save(name: str) -> Path:
        return report.wrote(out / "neurons" / name, out.parent)

    result: dict[str, Any] = {}
    for layer in config.neuron_layers:
        entry: dict[str, Any] = {}
        for state in states:
            start = time.perf_counter()
            panels = panel_classes(config.neuron_classes, class_names)
            summary = _write_neuron_map(state, layer, images, labels, class_names, panels, save)
            entry[state.name] = {
                k: v for k, v in summary.items() if k not in ("best_class", "best_auc")
            }
            report.say(
                f"neurons of {layer} ({state.name}): mean best AUC "
                f"{summary['mean_best_auc']:.3f}, {summary['specialised_neurons']} of "
                f"{summary['neurons']} reach {neuron_maps.SPECIALISED_AUC} "
                f"({time.perf_counter() - start:.1f} s)"
            )
        if "untrained" in entry:
            before, after = entry["untrained"]["mean_best_auc"], entry["trained"]["mean_best_auc"]
            verb = "specialised" if after > before + 0.01 else "did not specialise"
            entry["statement"] = (
                f"Training {verb} the neurons of {layer}: mean best AUC "
                f"{before:.3f} before, {after:.3f} after."
            )
        result[layer] = entry
    return result


def _write_neuron_map(
    state: State,
    layer: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    panels: list[int],
    save: Callable[[str], Path],
) -> dict[str, Any]:
    """One layer's neuron map (PNG + JSON) and its top images; returns its specialisation.
    `panels`: the classes that get a panel; `save(file name)`: the path to write that file to."""
    activations = next(f for f in state.layers if f.name == layer).channel_means  # [N, U]
    if activations.shape[1] < 2:
        raise CnnlabError(
            f"Layer {layer!r} has {activations.shape[1]} neuron(s); a neuron map needs at least 2."
        )
    mapped = neuron_maps.neuron_map(layer, activations, labels, len(class_names))
    summary = neuron_maps.specialisation(mapped, class_names)
    stem = f"{layer}-{state.name}"
    plot_neuron_maps(
        mapped.positions,
        mapped.auc,
        mapped.dead,
        class_names,
        panels,
        f"Neurons of {layer} ({state.name}, {activations.shape[1]} units): metric MDS "
        f"of correlation distances (stress {mapped.stress:.2f}); circled: the best "
        f"detector of each class. Mean best AUC {summary['mean_best_auc']:.3f}",
        save(f"{stem}.png"),
    )
    tops = write_top_images(
        images,
        labels,
        activations,
        mapped.auc,
        neuron_maps.selected_neurons(mapped.auc),
        class_names,
        f"{layer} ({state.name})",
        save(f"{stem}-top-images.png"),
    )
    record = {
        "layer": layer,
        "state": state.name,
        "class_names": class_names,
        "x": [round(v, 4) for v in mapped.positions[:, 0].tolist()],
        "y": [round(v, 4) for v in mapped.positions[:, 1].tolist()],
        "auc": [[round(v, 4) for v in row] for row in mapped.auc.tolist()],
        "dead": mapped.dead.tolist(),
        "stress": mapped.stress,
        "selected_neurons": tops,
        "specialisation": summary,
    }
    atomic_write_json(save(f"{stem}.json"), record)
    return summary
