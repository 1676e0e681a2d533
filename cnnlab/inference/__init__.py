"""Using a trained run: evaluate a split, predict image files, on PyTorch or ONNX Runtime.

The model, its preprocessing and class names come from the run directory (cnnlab.run.load), so
these work in a new process on another day, preprocessing images exactly as in training.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.images import load_image_file
from cnnlab.errors import ConfigError
from cnnlab.metrics import classification_metrics
from cnnlab.run.evaluation import write_evaluation
from cnnlab.run.load import LoadedRun, load_run
from cnnlab.run.splits import load_run_split
from cnnlab.runtime import RUNTIMES
from cnnlab.runtime.predict import predict_logits

Predictor = Callable[[torch.Tensor, int], torch.Tensor]  # (uint8 images, batch size) -> logits


def load_run_for_runtime(
    run_path: str | Path,
    which: str,
    device: str,
    runtime: str = "torch",
    precision: str = "auto",
    channels_last: bool = True,
) -> tuple[LoadedRun, Predictor]:
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
    class_names = loaded.class_names
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
    probabilities = torch.softmax(logits, dim=1)
    write_evaluation(
        loaded.run, metrics, split_data.sample_ids, split_data.labels, probabilities, class_names
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
    images = torch.stack(
        [
            load_image_file(p, record.channels, record.image_size, aspect=record.aspect)
            for p in image_paths
        ]
    )
    probabilities = torch.softmax(predict(images, 1024), dim=1)
    return [
        {"file": str(path), **row, "runtime": runtime}
        for path, row in zip(
            image_paths, top_classes(probabilities, loaded.class_names, top_k), strict=True
        )
    ]


def top_classes(
    probabilities: torch.Tensor, class_names: list[str], top_k: int
) -> list[dict[str, Any]]:
    """Per row of [N, K] probabilities: the predicted class, its confidence, the top k."""
    k = min(top_k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [
        {
            "predicted": class_names[int(idx[0])],
            "predicted_index": int(idx[0]),
            "confidence": float(val[0]),
            "top": [
                {"class": class_names[int(i)], "probability": float(v)}
                for v, i in zip(val, idx, strict=True)
            ],
        }
        for val, idx in zip(values, indices, strict=True)
    ]
