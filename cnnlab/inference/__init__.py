"""Using a trained run: rebuild its model from model.json, evaluate a split, predict image files.

Everything comes from the run directory (STYLE.md rule 11), so these work in a new process on
another day, preprocessing images exactly as in training (size, bands, normalisation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.images import load_image_file
from cnnlab.data.loader import Normalizer
from cnnlab.data.rundata import load_run_split
from cnnlab.errors import ConfigError
from cnnlab.evaluation import (
    classification_metrics,
    save_confusion_matrix_png,
    write_predictions_csv,
)
from cnnlab.fileio import atomic_write_json
from cnnlab.models import ModelSpec, build_model
from cnnlab.run import checkpoints as ckpt
from cnnlab.run.paths import RunDir
from cnnlab.runtime.device import resolve_device
from cnnlab.runtime.fastpath import choose_fast_path
from cnnlab.runtime.predict import StepSettings, predict_logits


@dataclass
class LoadedRun:
    run: RunDir
    model: nn.Module
    record: dict[str, Any]  # dataset.json
    settings: StepSettings
    checkpoint: ckpt.Checkpoint
    device: torch.device


def load_run(
    run_path: str | Path,
    which: str = "best",
    device: str = "auto",
    precision: str = "auto",
    channels_last: bool = True,
) -> LoadedRun:
    """Rebuild a run's model with its weights, on this machine's fast path (cnnlab.runtime.fastpath).

    The precision is this machine's choice, not the training run's: a network trained in bf16
    elsewhere is evaluated in fp32 on a CPU without native bf16, and the other way round.
    """
    run = RunDir(run_path)
    record = run.read("dataset.json")
    spec = ModelSpec.from_dict(run.read("model.json"))
    resolved = resolve_device(device)
    fast = choose_fast_path(resolved, precision, channels_last)
    model = build_model(spec)
    checkpoint = ckpt.load_model_weights(run.checkpoints, which)
    ckpt.apply_weights(model, checkpoint)
    model.to(resolved).eval()
    if fast.channels_last:
        model.to(memory_format=torch.channels_last)
    normalization = record["normalization"]
    settings = StepSettings(
        normalizer=Normalizer(tuple(normalization["mean"]), tuple(normalization["std"])),
        precision=fast.precision,
        channels_last=fast.channels_last,
    )
    return LoadedRun(run, model, record, settings, checkpoint, resolved)


RUNTIMES = ("torch", "onnx")


def load_run_for_runtime(
    run_path: str | Path,
    which: str,
    device: str,
    runtime: str = "torch",
    precision: str = "auto",
    channels_last: bool = True,
) -> tuple[LoadedRun, Callable[[torch.Tensor, int], torch.Tensor]]:
    """The run and a function (uint8 images, batch size) -> float32 logits [N, K] on the CPU.

    "torch" runs the model in PyTorch on `device`; "onnx" runs its ONNX export (made on first
    use, cnnlab.inference.onnx) with ONNX Runtime on the CPU, in float32.
    """
    if runtime == "torch":
        loaded = load_run(run_path, which, device, precision, channels_last)

        def logits(images: torch.Tensor, batch_size: int) -> torch.Tensor:
            return predict_logits(
                loaded.model, images.to(loaded.device), loaded.settings, batch_size
            )

        return loaded, logits
    if runtime == "onnx":
        from cnnlab.inference.onnx import load_onnx_run  # onnxruntime is optional

        loaded, classifier = load_onnx_run(run_path, which, device)
        return loaded, classifier.predict_logits
    raise ConfigError(f"Unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")


def evaluate_run(
    run_path: str | Path,
    split: str = "test",
    *,
    data: str | None = None,
    data_dir: str | None = None,
    which: str = "best",
    device: str = "auto",
    batch_size: int = 1024,
    top_k: int = 5,
    precision: str = "auto",
    channels_last: bool = True,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Score a split and write eval/<split>.json, -confusion.png and -predictions.csv.

    `runtime="onnx"` scores with ONNX Runtime instead of PyTorch (see load_run_for_runtime).
    """
    loaded, predict = load_run_for_runtime(
        run_path, which, device, runtime, precision, channels_last
    )
    split_data = load_run_split(loaded.record, split, data_dir=data_dir, data=data)
    logits = predict(split_data.images, batch_size)
    class_names = loaded.record["class_names"]
    metrics = classification_metrics(
        logits, split_data.labels, class_names, top_k=tuple(sorted({1, top_k}))
    )
    metrics = {
        "split": split,
        "runtime": runtime,
        "checkpoint": {
            "file": str(loaded.checkpoint.path.name),
            "epoch": loaded.checkpoint.meta.get("epoch"),
            "global_step": loaded.checkpoint.meta.get("global_step"),
        },
        **metrics,
    }
    out = loaded.run.eval
    atomic_write_json(out / f"{split}.json", metrics)
    save_confusion_matrix_png(
        torch.tensor(metrics["confusion_matrix"]),
        class_names,
        out / f"{split}-confusion.png",
        title=f"{loaded.run.path.name}: {split} ({metrics['accuracy']:.2%} accuracy)",
    )
    write_predictions_csv(
        out / f"{split}-predictions.csv",
        split_data.sample_ids,
        split_data.labels,
        torch.softmax(logits, dim=1),
        class_names,
        top_k=min(3, len(class_names)),
    )
    return metrics


def predict_files(
    run_path: str | Path,
    image_paths: list[str | Path],
    *,
    which: str = "best",
    device: str = "auto",
    top_k: int = 3,
    runtime: str = "torch",
) -> list[dict[str, Any]]:
    """Class probabilities for image files: [{file, predicted, confidence, top: [(name, p)]}]."""
    loaded, predict = load_run_for_runtime(run_path, which, device, runtime)
    record = loaded.record
    size = (record["image_size"][0], record["image_size"][1])
    aspect = record.get("preprocess", {}).get("aspect", "stretch")
    images = torch.stack(
        [load_image_file(p, record["channels"], size, aspect=aspect) for p in image_paths]
    )
    logits = predict(images, 1024)
    probabilities = torch.softmax(logits, dim=1)
    k = min(top_k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    names = record["class_names"]
    return [
        {
            "file": str(path),
            "predicted": names[int(idx[0])],
            "predicted_index": int(idx[0]),
            "confidence": float(val[0]),
            "top": [
                {"class": names[int(i)], "probability": float(v)}
                for v, i in zip(val, idx, strict=True)
            ],
            "runtime": runtime,
        }
        for path, val, idx in zip(image_paths, values, indices, strict=True)
    ]
