"""Where the network looks, over a data set: importance galleries by confusion-matrix cell and for
the top losses, the methods side by side, and with object masks the share of importance inside
the object per class (the seeds' "decisions must rest on the object, not the background").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.cam import build_explainer, object_share
from cnnlab.explain.galleries import overlay, plot_tile_rows, to_rgb
from cnnlab.explain.image_reports import layer_outputs
from cnnlab.explain.plots import new_figure, save_figure
from cnnlab.fileio import atomic_write_json
from cnnlab.runtime.predict import StepSettings, predict_logits, prepare

MAX_CONFUSION_CELLS = 10
TOP_LOSSES = 12
MAX_MASKED_IMAGES = 1000


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


def _pick(rows: torch.Tensor, count: int, seed: int) -> list[int]:
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return rows[order[:count]].sort().values.tolist()


def write_cam(
    model,
    images,
    labels,
    sample_ids,
    logits,
    record,
    settings: StepSettings,
    config,
    out: Path,
    report,
) -> dict:
    """Galleries of importance maps (for the predicted class) by confusion cell and top losses,
    a side-by-side of the methods, and with --masks the share of importance inside the object."""
    device = next(model.parameters()).device
    names = record["class_names"]
    k = len(names)
    if logits is None:
        logits = predict_logits(model, images.to(device), settings)
    predictions = logits.argmax(1)
    probabilities = torch.softmax(logits, dim=1)
    losses = F.cross_entropy(logits, labels, reduction="none")
    layer = config.cam_layer or deepest_spatial_layer(
        model, prepare(images[:1].to(device), settings)
    )
    explainers = {m: build_explainer(m, model, layer) for m in config.cam_methods}

    def entry(i: int) -> dict:
        return {
            "row": i,
            "sample_id": sample_ids[i],
            "true": names[int(labels[i])],
            "predicted": names[int(predictions[i])],
            "confidence": round(float(probabilities[i, predictions[i]]), 4),
            "loss": round(float(losses[i]), 4),
        }

    correct = {
        c: _pick(
            torch.nonzero((labels == c) & (predictions == c)).flatten(),
            config.per_cell,
            config.seed + c,
        )
        for c in range(k)
    }
    counts = torch.bincount(labels * k + predictions, minlength=k * k).view(k, k)
    off = counts.clone()
    off.fill_diagonal_(0)
    cells = [
        divmod(int(i), k)
        for i in off.flatten().argsort(descending=True, stable=True)
        if off.flatten()[i] > 0
    ][:MAX_CONFUSION_CELLS]
    confused = {
        (t, p): _pick(
            torch.nonzero((labels == t) & (predictions == p)).flatten(),
            config.per_cell,
            config.seed + t * k + p,
        )
        for t, p in cells
    }
    top_losses = losses.topk(min(TOP_LOSSES, len(losses))).indices.tolist()
    first_correct = [rows[0] for rows in correct.values() if rows][:10]
    selected = sorted(
        {
            i
            for rows in [*correct.values(), *confused.values(), top_losses, first_correct]
            for i in rows
        }
    )
    maps = {
        m: _maps(explainer, images, predictions, selected, settings, device)
        for m, explainer in explainers.items()
    }
    folder = out / "cam"

    def tile(method: str, i: int, caption: str) -> tuple[torch.Tensor, str]:
        return overlay(images[i], maps[method][i]), caption

    def short(i: int) -> str:
        return Path(sample_ids[i]).name if "/" in sample_ids[i] else sample_ids[i]

    for method in explainers:
        note = f"{method} for the predicted class" + (f" at {layer}" if "cam" in method else "")
        rows = [
            (
                f"{names[c]}\n(correct)",
                [
                    tile(method, i, f"{short(i)} p={float(probabilities[i, c]):.2f}")
                    for i in correct[c]
                ],
            )
            for c in range(k)
            if correct[c]
        ]
        plot_tile_rows(
            rows,
            f"Correctly classified, by class: {note}",
            report.wrote(folder / f"{method}-correct.png", out.parent),
        )
        if cells:
            rows = [
                (
                    f"true {names[t]}\n-> {names[p]}\n({int(counts[t, p])} images)",
                    [
                        tile(method, i, f"{short(i)} p={float(probabilities[i, p]):.2f}")
                        for i in confused[(t, p)]
                    ],
                )
                for t, p in cells
            ]
            plot_tile_rows(
                rows,
                f"The most frequent confusions (true -> predicted): {note}",
                report.wrote(folder / f"{method}-confusions.png", out.parent),
            )
        loss_tiles = [
            tile(
                method,
                i,
                f"{names[int(labels[i])][:10]}->{names[int(predictions[i])][:10]}"
                f" loss {float(losses[i]):.1f}",
            )
            for i in top_losses
        ]
        rows = [
            (f"top losses\n{r + 1}-{r + len(loss_tiles[r : r + 6])}", loss_tiles[r : r + 6])
            for r in range(0, len(loss_tiles), 6)
        ]
        plot_tile_rows(
            rows,
            f"The {len(top_losses)} highest losses (true->predicted): {note}",
            report.wrote(folder / f"{method}-top-losses.png", out.parent),
        )
    rows = [
        (
            f"{names[int(labels[i])]}\n{short(i)}",
            [(to_rgb(images[i]), "image")] + [tile(m, i, m) for m in explainers],
        )
        for i in first_correct
    ]
    plot_tile_rows(
        rows,
        f"The methods side by side (maps for the predicted class; CAMs at {layer})",
        report.wrote(folder / "methods.png", out.parent),
    )
    result = {
        "layer": layer,
        "target": "predicted class",
        "methods": list(explainers),
        "correct": {names[c]: [entry(i) for i in rows] for c, rows in correct.items()},
        "confusions": [
            {
                "true": names[t],
                "predicted": names[p],
                "count": int(counts[t, p]),
                "samples": [entry(i) for i in confused[(t, p)]],
            }
            for t, p in cells
        ],
        "top_losses": [entry(i) for i in top_losses],
    }
    atomic_write_json(report.wrote(folder / "galleries.json", out.parent), result)
    summary: dict[str, Any] = {"layer": layer, "methods": list(explainers)}
    if config.masks:
        summary["object_share"] = write_object_share(
            explainers,
            images,
            labels,
            predictions,
            sample_ids,
            record,
            settings,
            config,
            out,
            report,
        )
    return summary


def _maps(explainer, images, targets, rows: list[int], settings, device, batch: int = 64) -> dict:
    """Importance maps of the given rows, as {row: [H, W]} on the CPU."""
    result = {}
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        index = torch.tensor(part)
        x = prepare(images.index_select(0, index).to(device), settings).contiguous()
        maps = explainer(x, targets.index_select(0, index).to(device)).cpu()
        result.update(dict(zip(part, maps, strict=True)))
    return result


def mask_path(masks_dir: Path, sample_id: str) -> Path | None:
    """The mask of a sample: the same relative path under masks_dir (any image suffix, .png
    first) for folder: sources, masks_dir/<part>/<index>.png for ids like "test:17"."""
    if ":" in sample_id and "/" not in sample_id:
        part, _, index = sample_id.partition(":")
        candidate = masks_dir / part / f"{index}.png"
        return candidate if candidate.is_file() else None
    relative = Path(sample_id)
    for candidate in (masks_dir / relative, masks_dir / relative.with_suffix(".png")):
        if candidate.is_file():
            return candidate
    return None


def load_masks(
    masks_dir: str, sample_ids: list[str], record: dict
) -> tuple[list[int], torch.Tensor]:
    """(rows that have a mask, bool masks [M, H, W]) resized as the images were; object = bright."""
    from cnnlab.data.images import decode_image

    root = Path(masks_dir)
    if not root.is_dir():
        raise CnnlabError(f"--masks '{root}' is not a folder of mask images.")
    height, width = record["image_size"]
    aspect = record.get("preprocess", {}).get("aspect", "stretch")
    rows, masks = [], []
    for row, sample_id in enumerate(sample_ids):
        path = mask_path(root, sample_id)
        if path is None:
            continue
        pixels = decode_image(path, 1, (height, width), aspect=aspect)
        masks.append(torch.from_numpy(pixels)[0] > 127)
        rows.append(row)
        if len(rows) >= MAX_MASKED_IMAGES:
            break
    if not rows:
        example = mask_path.__doc__.split(":", 1)[1].strip()
        raise CnnlabError(
            f"No mask was found in '{root}' for the {len(sample_ids)} images explained (the first "
            f"is {sample_ids[0]!r}). Masks mirror the images: {example}"
        )
    return rows, torch.stack(masks)


def write_object_share(
    explainers, images, labels, predictions, sample_ids, record, settings, config, out, report
) -> dict:
    """Per class and method: the mean share of importance inside the object, beside the mean
    share of the image the object covers (what a map blind to the object would score)."""
    device = next(iter(explainers.values())).model.parameters().__next__().device
    rows, masks = load_masks(config.masks, sample_ids, record)
    names = record["class_names"]
    area = masks.float().flatten(1).mean(1)
    row_labels = labels[rows]
    result: dict[str, Any] = {
        "images_with_masks": len(rows),
        "target": "predicted class",
        "mean_object_area": round(float(area.mean()), 4),
        "methods": {},
    }
    for method, explainer in explainers.items():
        maps = _maps(explainer, images, predictions, rows, settings, device)
        share = object_share(torch.stack([maps[r] for r in rows]), masks)
        per_class = {}
        for c, name in enumerate(names):
            members = (row_labels == c) & ~share.isnan()
            if members.any():
                per_class[name] = {
                    "images": int(members.sum()),
                    "share_inside": round(float(share[members].mean()), 4),
                    "object_area": round(float(area[members].mean()), 4),
                }
        valid = ~share.isnan()
        inside = float(share[valid].mean()) if valid.any() else float("nan")
        mean_area = float(area[valid].mean()) if valid.any() else float("nan")
        focus = inside / mean_area if mean_area > 0 else float("nan")
        verdict = "concentrates on" if focus > 1.1 else "does not concentrate on"
        result["methods"][method] = {
            "share_inside": round(inside, 4) if valid.any() else None,
            "object_area": round(mean_area, 4) if valid.any() else None,
            "share_over_area": round(focus, 3) if valid.any() else None,
            "statement": f"{method} puts {inside:.2f} of its importance inside objects that cover "
            f"{mean_area:.2f} of the images ({focus:.2f}x what a map blind to the object would): "
            f"it {verdict} the object.",
            "per_class": per_class,
        }
    figure = new_figure(max(7.0, 0.7 * len(names) + 3), 4.6)
    axes = figure.add_subplot()
    width = 0.8 / (len(explainers) + 1)
    for m, method in enumerate([*explainers, "object area"]):
        values = [
            result["methods"][method]["per_class"].get(n, {}).get("share_inside", 0.0)
            if method in explainers
            else next(
                (
                    v["object_area"]
                    for v in (result["methods"][x]["per_class"].get(n) for x in explainers)
                    if v
                ),
                0.0,
            )
            for n in names
        ]
        axes.bar(
            [i + m * width for i in range(len(names))],
            values,
            width,
            label=method,
            color="lightgrey" if method == "object area" else None,
        )
    axes.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(names))],
        labels=names,
        rotation=30,
        ha="right",
        fontsize=8,
    )
    axes.set_ylim(0, 1)
    axes.set_ylabel("share of importance inside the object")
    axes.set_title(
        "Object, not background? Importance inside the mask vs the mask's area "
        f"({len(rows)} images)",
        fontsize=9,
    )
    axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, report.wrote(out / "cam" / "object-share.png", out.parent))
    atomic_write_json(report.wrote(out / "cam" / "object-share.json", out.parent), result)
    return result
