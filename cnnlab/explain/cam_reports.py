"""Where the network looks, over a data set: importance galleries by confusion-matrix cell and for
the top losses, the methods side by side, and with object masks the share of importance inside
the object per class (the seeds' "decisions must rest on the object, not the background").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.cam import Explainer, build_explainer, object_share
from cnnlab.explain.contracts import Options, Report
from cnnlab.explain.galleries import overlay, plot_tile_rows, to_rgb
from cnnlab.explain.image_reports import layer_outputs
from cnnlab.explain.masks import object_masks, plot_mask_outlines
from cnnlab.explain.plots import new_figure, save_figure
from cnnlab.fileio import atomic_write_json
from cnnlab.metrics import confusion_matrix
from cnnlab.runtime.predict import StepSettings, predict_logits, prepare

if TYPE_CHECKING:
    from cnnlab.run.records import DatasetRecord

MAX_CONFUSION_CELLS = 10
TOP_LOSSES = 12


def deepest_spatial_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The deepest of the model's feature_layers whose output is a stack of maps [B, K, h, w]."""
    names = list(model.feature_layers)
    outputs = layer_outputs(model, x[:1], names)
    spatial = [n for n in names if outputs[n].dim() == 4]
    if not spatial:
        raise CnnlabError(
            "None of the model's feature_layers outputs spatial maps, so Grad-CAM "
            "has no layer; give one with --cam-layer."
        )
    return spatial[-1]


@dataclass(frozen=True)
class ScoredImages:
    """The images explained, with the trained network's verdict on each: what the galleries show."""

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # [N] int64
    sample_ids: list[str]
    class_names: list[str]
    predictions: torch.Tensor  # [N]
    probabilities: torch.Tensor  # [N, K]
    losses: torch.Tensor  # [N]: cross-entropy of each image

    @classmethod
    def from_logits(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        sample_ids: list[str],
        class_names: list[str],
        logits: torch.Tensor,
    ) -> ScoredImages:
        losses = F.cross_entropy(logits, labels, reduction="none")
        probabilities = torch.softmax(logits, dim=1)
        predictions = logits.argmax(1)
        return cls(images, labels, sample_ids, class_names, predictions, probabilities, losses)

    def entry(self, row: int) -> dict[str, Any]:
        """One image as galleries.json lists it."""
        predicted = int(self.predictions[row])
        return {
            "row": row,
            "sample_id": self.sample_ids[row],
            "true": self.class_names[int(self.labels[row])],
            "predicted": self.class_names[predicted],
            "confidence": round(float(self.probabilities[row, predicted]), 4),
            "loss": round(float(self.losses[row]), 4),
        }

    def short_id(self, row: int) -> str:
        """The file name of a path (galleries shorten it further to fit a tile; galleries.json
        keeps the whole sample id)."""
        sample_id = self.sample_ids[row]
        return Path(sample_id).name if "/" in sample_id else sample_id


@dataclass(frozen=True)
class GalleryRows:
    """Which images each gallery shows, as row indices into ScoredImages."""

    counts: torch.Tensor  # [K, K] confusion matrix of the explained images
    correct: dict[int, list[int]]  # class -> a seeded draw of its correctly classified images
    confused: dict[tuple[int, int], list[int]]  # (true, predicted) -> images; frequent cells first
    top_losses: list[int]
    first_correct: list[int]  # one correct image of each of the first 10 classes that have one

    @property
    def all_rows(self) -> list[int]:
        galleries = [*self.correct.values(), *self.confused.values(), self.top_losses]
        return sorted({row for rows in galleries for row in rows})  # first_correct: in correct


def _pick(rows: torch.Tensor, count: int, seed: int) -> list[int]:
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[order[:count]].sort().values.tolist()


def _cell_rows(scored: ScoredImages, true: int, predicted: int, count: int, seed: int) -> list[int]:
    """A seeded draw of `count` images of one confusion-matrix cell, in row order."""
    in_cell = (scored.labels == true) & (scored.predictions == predicted)
    return _pick(torch.nonzero(in_cell).flatten(), count, seed)


def select_gallery_rows(scored: ScoredImages, per_cell: int, seed: int) -> GalleryRows:
    """Per class its correct images, the most frequent confusion cells, and the top losses."""
    k = len(scored.class_names)
    counts = confusion_matrix(scored.labels, scored.predictions, k)  # [K, K]
    correct = {c: _cell_rows(scored, c, c, per_cell, seed + c) for c in range(k)}
    off_diagonal = counts.clone().fill_diagonal_(0).flatten()
    frequent = off_diagonal.argsort(descending=True, stable=True)  # ties: lower index first
    shown = min(MAX_CONFUSION_CELLS, int((off_diagonal > 0).sum()))
    cells = [divmod(index, k) for index in frequent[:shown].tolist()]
    confused = {(t, p): _cell_rows(scored, t, p, per_cell, seed + t * k + p) for t, p in cells}
    top_losses = scored.losses.topk(min(TOP_LOSSES, len(scored.losses))).indices.tolist()
    first_correct = [rows[0] for rows in correct.values() if rows][:10]
    return GalleryRows(counts, correct, confused, top_losses, first_correct)


def write_cam(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    sample_ids: list[str],
    logits: torch.Tensor | None,
    record: DatasetRecord,
    settings: StepSettings,
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """`write_cam_reports` for images [N, C, H, W] uint8 and their labels [N]; `logits` [N, K]
    are computed when None. (The call shape explain_run uses.)"""
    if logits is None:
        logits = predict_logits(model, images.to(_device(model)), settings)
    scored = ScoredImages.from_logits(images, labels, sample_ids, list(record.class_names), logits)
    return write_cam_reports(model, scored, record, settings, config, out, report)


def write_cam_reports(
    model: nn.Module,
    scored: ScoredImages,
    record: DatasetRecord,
    settings: StepSettings,
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """Galleries of importance maps (for the predicted class) by confusion cell and top losses,
    a side-by-side of the methods, and with --masks the share of importance inside the object."""
    device = _device(model)
    layer = config.cam_layer or deepest_spatial_layer(
        model, prepare(scored.images[:1].to(device), settings)
    )
    explainers = {m: build_explainer(m, model, layer) for m in config.cam_methods}
    chosen = select_gallery_rows(scored, config.per_cell, config.seed)
    maps = {
        method: _maps(explainer, scored.images, scored.predictions, chosen.all_rows, settings)
        for method, explainer in explainers.items()
    }
    _plot_galleries(scored, chosen, maps, layer, report, out)
    gallery = {
        "layer": layer,
        "target": "predicted class",
        "methods": list(explainers),
        **_gallery_entries(scored, chosen),
    }
    atomic_write_json(report.wrote(out / "cam" / "galleries.json", out.parent), gallery)
    summary: dict[str, Any] = {"layer": layer, "methods": list(explainers)}
    if config.masks:
        summary["object_share"] = write_object_share(
            explainers, scored, record, settings, config, out, report
        )
    return summary


Row = tuple[str, list[tuple[torch.Tensor, str]]]  # a gallery row: its label, captioned tiles


def _plot_galleries(
    scored: ScoredImages,
    chosen: GalleryRows,
    maps: dict[str, dict[int, torch.Tensor]],
    layer: str,
    report: Report,
    out: Path,
) -> None:
    """Per method the correct, confusion and top-loss galleries; then the methods side by side."""
    folder = out / "cam"
    for method, method_maps in maps.items():
        note = f"{method} for the predicted class" + (f" at {layer}" if "cam" in method else "")
        scale = colour_scale(method)
        plot_tile_rows(
            _correct_rows(scored, chosen, method_maps),
            f"Correctly classified, by class: {note}",
            report.wrote(folder / f"{method}-correct.png", out.parent),
            colour_scale=scale,
        )
        if chosen.confused:
            plot_tile_rows(
                _confusion_rows(scored, chosen, method_maps),
                f"The most frequent confusions (true -> predicted): {note}",
                report.wrote(folder / f"{method}-confusions.png", out.parent),
                colour_scale=scale,
            )
        plot_tile_rows(
            _top_loss_rows(scored, chosen, method_maps),
            f"The {len(chosen.top_losses)} highest losses (true->predicted): {note}",
            report.wrote(folder / f"{method}-top-losses.png", out.parent),
            colour_scale=scale,
        )
    plot_tile_rows(
        _side_by_side_rows(scored, chosen, maps),
        f"The methods side by side (maps for the predicted class; CAMs at {layer})",
        report.wrote(folder / "methods.png", out.parent),
        colour_scale=colour_scale(""),
    )


def colour_scale(method: str) -> str:
    """The colour bar's label: what the overlay's colours measure. Every map is divided by its
    own maximum (cam.normalise_maps)."""
    what = "class activation" if "cam" in method else "importance"
    return f"{what}\n(normalised 0-1 per map)"


def _tile(
    scored: ScoredImages, maps: dict[int, torch.Tensor], row: int, caption: str
) -> tuple[torch.Tensor, str]:
    return overlay(scored.images[row], maps[row]), caption


def _correct_rows(
    scored: ScoredImages, chosen: GalleryRows, maps: dict[int, torch.Tensor]
) -> list[Row]:
    def caption(i: int, c: int) -> str:
        return f"{scored.short_id(i)}\np={float(scored.probabilities[i, c]):.2f}"

    return [
        (
            f"{scored.class_names[c]}\n(correct)",
            [_tile(scored, maps, i, caption(i, c)) for i in rows],
        )
        for c, rows in chosen.correct.items()
        if rows
    ]


def _confusion_rows(
    scored: ScoredImages, chosen: GalleryRows, maps: dict[int, torch.Tensor]
) -> list[Row]:
    names = scored.class_names

    def caption(i: int, p: int) -> str:
        return f"{scored.short_id(i)}\np={float(scored.probabilities[i, p]):.2f}"

    return [
        (
            f"true {names[t]}\n-> {names[p]}\n({int(chosen.counts[t, p])} images)",
            [_tile(scored, maps, i, caption(i, p)) for i in rows],
        )
        for (t, p), rows in chosen.confused.items()
    ]


def _top_loss_rows(
    scored: ScoredImages, chosen: GalleryRows, maps: dict[int, torch.Tensor], per_row: int = 6
) -> list[Row]:
    names = scored.class_names

    def caption(i: int) -> str:
        true, predicted = names[int(scored.labels[i])], names[int(scored.predictions[i])]
        return f"{true[:10]}->{predicted[:10]} loss {float(scored.losses[i]):.1f}"

    tiles = [_tile(scored, maps, i, caption(i)) for i in chosen.top_losses]
    return [
        (f"top losses\n{r + 1}-{r + len(tiles[r : r + per_row])}", tiles[r : r + per_row])
        for r in range(0, len(tiles), per_row)
    ]


def _side_by_side_rows(
    scored: ScoredImages, chosen: GalleryRows, maps: dict[str, dict[int, torch.Tensor]]
) -> list[Row]:
    return [
        (
            f"{scored.class_names[int(scored.labels[i])]}\n{scored.short_id(i)}",
            [(to_rgb(scored.images[i]), "image")]
            + [_tile(scored, method_maps, i, method) for method, method_maps in maps.items()],
        )
        for i in chosen.first_correct
    ]


def _gallery_entries(scored: ScoredImages, chosen: GalleryRows) -> dict[str, Any]:
    """The images of every gallery, as galleries.json lists them."""
    names = scored.class_names
    return {
        "correct": {
            names[c]: [scored.entry(i) for i in rows] for c, rows in chosen.correct.items()
        },
        "confusions": [
            {
                "true": names[t],
                "predicted": names[p],
                "count": int(chosen.counts[t, p]),
                "samples": [scored.entry(i) for i in rows],
            }
            for (t, p), rows in chosen.confused.items()
        ],
        "top_losses": [scored.entry(i) for i in chosen.top_losses],
    }


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _maps(
    explainer: Explainer,
    images: torch.Tensor,
    targets: torch.Tensor,
    rows: list[int],
    settings: StepSettings,
    batch: int = 64,
) -> dict[int, torch.Tensor]:
    """Importance maps of the given rows, as {row: [H, W]} on the CPU."""
    device = _device(explainer.model)
    result = {}
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        index = torch.tensor(part)
        x = prepare(images.index_select(0, index).to(device), settings).contiguous()
        maps = explainer(x, targets.index_select(0, index).to(device)).cpu()
        result.update(dict(zip(part, maps, strict=True)))
    return result


def write_object_share(
    explainers: dict[str, Explainer],
    scored: ScoredImages,
    record: DatasetRecord,
    settings: StepSettings,
    config: Options,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """Per class and method: the mean share of importance inside the object, beside the mean
    share of the image the object covers (what a map blind to the object would score)."""
    found = object_masks(config.masks, scored.images, scored.sample_ids, record)
    rows, masks = found.rows, found.masks
    result: dict[str, Any] = {**found.describe(), "target": "predicted class", "methods": {}}
    if found.derived:
        plot_mask_outlines(
            scored.images,
            scored.labels,
            scored.class_names,
            found,
            report.wrote(out / "cam" / "object-share-masks.png", out.parent),
        )
    if not rows:
        result["statement"] = (
            f"No object was found in any of the {len(scored.images)} images (each is constant, "
            "or its threshold leaves no object apart from the border), so there is no object "
            "share. Give masks with --masks DIR."
        )
        atomic_write_json(report.wrote(out / "cam" / "object-share.json", out.parent), result)
        return result
    area = masks.float().flatten(1).mean(1)  # [M]: the share of each image the object covers
    result["mean_object_area"] = round(float(area.mean()), 4)
    for method, explainer in explainers.items():
        maps = _maps(explainer, scored.images, scored.predictions, rows, settings)
        share = object_share(
            torch.stack([maps[r] for r in rows]), masks
        )  # [M]; NaN for an all-zero map
        result["methods"][method] = _method_object_share(
            method, share, area, scored.labels[rows], scored.class_names
        )
        if found.derived:
            result["methods"][method]["statement"] += " (Masks derived: an approximation.)"
    _plot_object_share(
        result,
        list(explainers),
        scored.class_names,
        report.wrote(out / "cam" / "object-share.png", out.parent),
    )
    atomic_write_json(report.wrote(out / "cam" / "object-share.json", out.parent), result)
    return result


def _method_object_share(
    method: str,
    share: torch.Tensor,
    area: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
) -> dict[str, Any]:
    """One method's share of importance inside the objects [M], overall and per class, with a
    plain statement of whether it concentrates on the object."""
    valid = ~share.isnan()
    per_class = {}
    for c, name in enumerate(class_names):
        members = (labels == c) & valid
        if members.any():
            per_class[name] = {
                "images": int(members.sum()),
                "share_inside": round(float(share[members].mean()), 4),
                "object_area": round(float(area[members].mean()), 4),
            }
    inside = float(share[valid].mean()) if valid.any() else float("nan")
    mean_area = float(area[valid].mean()) if valid.any() else float("nan")
    focus = inside / mean_area if mean_area > 0 else float("nan")
    verdict = "concentrates on" if focus > 1.1 else "does not concentrate on"
    return {
        "share_inside": round(inside, 4) if valid.any() else None,
        "object_area": round(mean_area, 4) if valid.any() else None,
        "share_over_area": round(focus, 3) if valid.any() else None,
        "statement": f"{method} puts {inside:.2f} of its importance inside objects that cover "
        f"{mean_area:.2f} of the images ({focus:.2f}x what a map blind to the object would): "
        f"it {verdict} the object.",
        "per_class": per_class,
    }


def _plot_object_share(
    result: dict[str, Any], methods: list[str], class_names: list[str], path: Path
) -> None:
    """Bars per class: each method's share inside the object, then the object's area."""
    per_class = {method: result["methods"][method]["per_class"] for method in methods}
    bars = {
        method: [per_class[method].get(n, {}).get("share_inside", 0.0) for n in class_names]
        for method in methods
    }
    # A class's object area is the same for every method unless a method had no map for some
    # of its images, so it is read from the first method that has the class.
    bars["object area"] = [
        next((v["object_area"] for v in (per_class[m].get(n) for m in methods) if v), 0.0)
        for n in class_names
    ]
    figure = new_figure(max(7.0, 0.7 * len(class_names) + 3), 4.6)
    axes = figure.add_subplot()
    width = 0.8 / (len(methods) + 1)
    positions = range(len(class_names))
    for m, (label, values) in enumerate(bars.items()):
        colour = "lightgrey" if label == "object area" else None
        axes.bar([i + m * width for i in positions], values, width, label=label, color=colour)
    ticks = [i + 0.4 - width / 2 for i in positions]
    axes.set_xticks(ticks, labels=class_names, rotation=30, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of importance inside the object")
    derived = "; masks derived from the images, an approximation" if result.get("note") else ""
    axes.set_title(
        "Object, not background? Importance inside the mask vs the mask's area "
        f"({result['images_with_masks']} images{derived})",
        fontsize=9,
    )
    axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)
