"""The image parts of `cnnlab explain`: one image's feature maps at every layer (bands as a grid),
the first convolution's kernel bank, and the top-activating images of selected neurons.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.contracts import Report, State
from cnnlab.explain.galleries import (
    plot_band_grid,
    plot_kernel_bank,
    plot_tile_rows,
    to_rgb,
)
from cnnlab.explain.hooks import (
    classifier_name,
    first_conv_name,
    get_layer,
    hooks_attached,
)
from cnnlab.fileio import atomic_write_json
from cnnlab.runtime.predict import StepSettings, prepare
from cnnlab.specs.explain import INPUT, LAST_HIDDEN

if TYPE_CHECKING:
    from cnnlab.run.splits import SplitData


def layer_outputs(model: nn.Module, x: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """The full outputs of the named layers (and the pseudo-layers) for a batch x, float32."""
    outputs: dict[str, torch.Tensor] = {}

    def output_hook(name: str):
        return lambda module, inputs, output: outputs.__setitem__(name, output.detach().clone())

    forward = {n: output_hook(n) for n in layers if n not in (INPUT, LAST_HIDDEN)}
    forward_pre = {}
    if LAST_HIDDEN in layers:
        forward_pre[classifier_name(model, x)] = lambda module, inputs: outputs.__setitem__(
            LAST_HIDDEN, inputs[0].detach().clone()
        )
    with hooks_attached(model, forward, forward_pre), torch.no_grad():
        model.eval()
        model(x)
    if INPUT in layers:
        outputs[INPUT] = x.detach().clone()
    return {name: outputs[name].float() for name in layers if name in outputs}


def write_activations(
    model: nn.Module,
    split: SplitData,
    layers: list[str],
    settings: StepSettings,
    image_index: int,
    out: Path,
    report: Report,
) -> dict[str, Any]:
    """Feature maps of one image of the split at every chosen layer, one band grid each."""
    if not 0 <= image_index < len(split.labels):
        raise CnnlabError(
            f"--image-index {image_index} is outside the split's "
            f"{len(split.labels)} images (0 to {len(split.labels) - 1})."
        )
    device = next(model.parameters()).device
    image = split.images[image_index]
    x = prepare(image[None].to(device), settings)
    outputs = layer_outputs(model, x, layers)
    folder = out / "activations"
    shown = []
    for index, layer in enumerate(layers):
        activation = outputs[layer][0].cpu()
        path = report.wrote(folder / f"{index:02d}-{layer}.png", out.parent)
        facts = plot_band_grid(
            image, activation, f"{layer}: output for {split.sample_ids[image_index]}", path
        )
        shown.append({"layer": layer, "shape": list(activation.shape), "file": path.name} | facts)
    result = {
        "image_index": image_index,
        "sample_id": split.sample_ids[image_index],
        "label": int(split.labels[image_index]),
        "layers": shown,
    }
    atomic_write_json(report.wrote(folder / "activations.json", out.parent), result)
    return {k: v for k, v in result.items() if k != "layers"} | {"layers": len(shown)}


def write_filters(
    states: list[State],
    example_images: torch.Tensor,
    settings: StepSettings,
    root: Path,
    report: Report,
) -> dict[str, Any]:
    """The first convolution's kernel bank of each model state, as images."""
    result: dict[str, Any] = {}
    for state in states:
        device = next(state.model.parameters()).device
        x = prepare(example_images.to(device), settings)
        name = first_conv_name(state.model, x)
        if name is None:
            result[state.name] = {"layer": None, "note": "the model runs no 4-D kernel bank"}
            continue
        weight = get_layer(state.model, name).weight
        path = report.wrote(root / f"filters-{state.name}.png", root)
        facts = plot_kernel_bank(weight, f"First convolution {name!r} ({state.name})", path)
        result[state.name] = {"layer": name, "file": path.name} | facts
    atomic_write_json(report.wrote(root / "filters.json", root), result)
    return result


def write_top_images(
    images: torch.Tensor,
    labels: torch.Tensor,
    activations: torch.Tensor,
    auc: torch.Tensor,
    chosen: list[int],
    class_names: list[str],
    title: str,
    path: Path,
) -> list[dict[str, Any]]:
    """For each class, its best detector neuron's top-activating images, one row per class.
    images uint8 [N, C, H, W], activations [N, U], auc [K, U], chosen: one neuron per class."""
    rows, described = [], []
    for c, neuron in enumerate(chosen):
        top = activations[:, neuron].topk(min(8, len(activations))).indices
        tiles = [
            (
                to_rgb(images[i]),
                class_names[int(labels[i])][:14],
                "black" if int(labels[i]) == c else "red",
            )
            for i in top.tolist()
        ]
        rows.append((f"{class_names[c]}\nneuron {neuron}\nAUC {float(auc[c, neuron]):.3f}", tiles))
        described.append(
            {
                "class": class_names[c],
                "neuron": neuron,
                "auc": round(float(auc[c, neuron]), 4),
                "top_rows": top.tolist(),
            }
        )
    plot_tile_rows(
        rows,
        f"Top-activating images of each class's best detector, {title} "
        "(caption: true class, red if not the row's class)",
        path,
    )
    return described
