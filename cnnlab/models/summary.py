"""A network layer by layer: output shape, parameters, multiply-accumulates and receptive field of
every layer (the slides' questions "what are the output dimensions?" and "how many trainable
parameters?", seed 003), from one forward pass traced with torch.fx, on the meta device if given."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from torch import fx, nn

Size2 = tuple[int, int]


@dataclass(frozen=True)
class LayerRow:
    name: str  # dotted module name, or the name of a function step such as "add" or "cat"
    layer: str  # module class or function
    output_shape: tuple[int, ...]  # per image, without the batch dimension
    parameters: int
    macs: int  # multiply-accumulates per image (convolutions and dense layers)
    receptive_field: Size2 | None  # (height, width) in input pixels; None: the whole image

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["output_shape"] = list(self.output_shape)
        row["receptive_field"] = (
            None if self.receptive_field is None else list(self.receptive_field)
        )
        return row


@dataclass(frozen=True)
class ModelSummary:
    model: str
    input_shape: tuple[int, int, int]  # [C, H, W]
    rows: tuple[LayerRow, ...]
    total_parameters: int
    trainable_parameters: int
    total_macs: int
    error: str | None = None  # why the shapes stop fitting, if they do
    note: str | None = None  # caveats, e.g. receptive fields estimated without tracing

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "rows": [row.to_dict() for row in self.rows],
            "total_parameters": self.total_parameters,
            "trainable_parameters": self.trainable_parameters,
            "total_macs": self.total_macs,
            "error": self.error,
            "note": self.note,
        }

    def format_table(self) -> str:
        header = ("layer", "type", "output", "params", "MACs", "RF")
        lines = [_cells(header)]
        for row in self.rows:
            shape = "x".join(map(str, row.output_shape))
            rf = _format_field(row.receptive_field)
            lines.append(
                _cells((row.name, row.layer, shape, f"{row.parameters:,}", f"{row.macs:,}", rf))
            )
        channels, height, width = self.input_shape
        lines.append("")
        lines.append(
            f"{self.model} on {channels}x{height}x{width}: {self.total_parameters:,} parameters "
            f"({self.trainable_parameters:,} trainable), {self.total_macs:,} multiply-accumulates "
            f"({self.total_macs / 1e6:,.2f} M) per image."
        )
        lines.append(
            "output: bands x height x width per image (or features); MACs: multiply-accumulates "
            "of convolutions and dense layers; RF: theoretical receptive field in input pixels "
            "(all: the whole image)."
        )
        if self.note:
            lines.append(f"Note: {self.note}")
        if self.error:
            lines.append("")
            lines.append(f"Stopped: {self.error}")
        return "\n".join(lines)


def _format_field(field: Size2 | None) -> str:
    if field is None:
        return "all"
    return str(field[0]) if field[0] == field[1] else f"{field[0]}x{field[1]}"


def _cells(values: tuple[str, ...]) -> str:
    name, layer, shape, params, macs, rf = values
    return f"{name:<34} {layer:<20} {shape:>14} {params:>12} {macs:>15} {rf:>7}"


class _Tracer(fx.Tracer):
    """Every module without children is one row; containers are traced through."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return next(module.children(), None) is None


class _ShapesDoNotFit(Exception):
    def __init__(self, node: fx.Node, error: Exception) -> None:
        super().__init__(str(error))
        self.node = node
        self.error = error


@dataclass
class _Field:
    """Receptive field (height, width) of one value and its jump: input pixels between
    neighbouring positions of its maps. size None: the value no longer has spatial maps."""

    size: Size2 | None
    jump: Size2 = (1, 1)


class _Recorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.rows: list[LayerRow] = []
        self.fields: dict[fx.Node, _Field] = {}
        self.seen_modules: set[str] = set()

    def run_node(self, node: fx.Node) -> Any:
        try:
            result = super().run_node(node)
        except Exception as error:  # any shape error of torch, reported with the layer's name
            raise _ShapesDoNotFit(node, error) from error
        if isinstance(result, torch.Tensor) and node.op not in ("get_attr", "output"):
            self._record(node, result)
        return result

    def _record(self, node: fx.Node, output: torch.Tensor) -> None:
        inputs = [a for a in node.all_input_nodes if a in self.fields]
        if node.op == "placeholder":
            self.fields[node] = _Field((1, 1))
            self.rows.append(LayerRow("input", "", tuple(output.shape[1:]), 0, 0, (1, 1)))
            return
        module = self.module.get_submodule(node.target) if node.op == "call_module" else None
        source = next((self.env[a] for a in inputs if self.env[a].dim() == 4), None)
        self.fields[node] = _propagate(module, [self.fields[a] for a in inputs], source, output)
        parameters = 0
        if module is not None and node.target not in self.seen_modules:
            self.seen_modules.add(node.target)
            parameters = sum(p.numel() for p in module.parameters())
        if module is not None:
            name, layer = node.target, type(module).__name__
        else:
            name, layer = node.name, getattr(node.target, "__name__", str(node.target))
        self.rows.append(
            LayerRow(
                name,
                layer,
                tuple(output.shape[1:]),
                parameters,
                _macs(module, output),
                self.fields[node].size,
            )  # fmt: skip
        )


def _propagate(
    module: nn.Module | None,
    inputs: list[_Field],
    source: torch.Tensor | None,
    output: torch.Tensor,
) -> _Field:
    """Receptive field after one step: r' = r + (k - 1) * j and j' = j * s per axis, for the
    widest input (branches that are added or concatenated see at most the widest field)."""
    spatial = [f for f in inputs if f.size is not None]
    if output.dim() != 4 or not spatial or source is None:
        return _Field(None)
    size = tuple(max(f.size[i] for f in spatial) for i in range(2))
    jump = tuple(max(f.jump[i] for f in spatial) for i in range(2))
    kernel_size = getattr(module, "kernel_size", None)
    if kernel_size is not None:
        kernel = _pair(kernel_size)
        # Pooling modules store stride=None as their window; modules without one slide by 1.
        stride = _pair(getattr(module, "stride", 1) or kernel_size)
        dilation = _pair(getattr(module, "dilation", 1))
    else:  # no window attribute: infer one from the shapes (adaptive pooling and the like)
        before, after = source.shape[2:], output.shape[2:]
        stride = tuple(max(1, b // a) if a else 1 for b, a in zip(before, after, strict=True))
        kernel = tuple(
            b - (a - 1) * s if a and b != a else 1
            for b, a, s in zip(before, after, stride, strict=True)
        )
        dilation = (1, 1)
    return _Field(
        tuple(size[i] + (dilation[i] * (kernel[i] - 1)) * jump[i] for i in range(2)),
        tuple(jump[i] * stride[i] for i in range(2)),
    )


def _pair(value: int | tuple[int, ...]) -> Size2:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


def _macs(module: nn.Module | None, output: torch.Tensor) -> int:
    per_image = output[0].numel() if output.dim() > 0 else 0
    if isinstance(module, nn.Conv2d):
        kernel = math.prod(module.kernel_size)
        return per_image * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return per_image * module.in_features
    return 0


def summarize(
    model: nn.Module, input_shape: tuple[int, int, int], name: str = "model"
) -> ModelSummary:
    """Trace `model` on one image of `input_shape` [C, H, W], on the device of its parameters
    (build it under `torch.device("meta")` to skip all memory and arithmetic)."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.zeros(1, *input_shape, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            try:
                tracer = _Tracer()
                graph = tracer.trace(model)
                traced = fx.GraphModule(tracer.root, graph)
            except Exception as error:  # data-dependent Python control flow cannot be traced
                rows, failure = _run_with_hooks(model, x)
                note = (
                    "the model could not be traced with torch.fx "
                    f"({type(error).__name__}), so receptive fields assume its layers form a chain."
                )
            else:
                recorder, note = _Recorder(traced), None
                try:
                    recorder.run(x)
                    failure = None
                except _ShapesDoNotFit as caught:
                    failure = _explain(caught, recorder)
                rows = recorder.rows
    finally:
        model.train(was_training)
    return ModelSummary(
        model=name,
        input_shape=tuple(input_shape),
        rows=tuple(rows),
        total_parameters=sum(p.numel() for p in model.parameters()),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_macs=sum(row.macs for row in rows),
        error=failure,
        note=note,
    )


def _run_with_hooks(model: nn.Module, x: torch.Tensor) -> tuple[list[LayerRow], str | None]:
    """Rows for every module without children, in the order they run, from forward hooks."""
    rows = [LayerRow("input", "", tuple(x.shape[1:]), 0, 0, (1, 1))]
    field, running = _Field((1, 1)), []

    def before(module: nn.Module, inputs: tuple, name: str) -> None:
        running.append(name)

    def after(module: nn.Module, inputs: tuple, output: Any, name: str) -> None:
        nonlocal field
        running.pop()
        source = next((t for t in inputs if isinstance(t, torch.Tensor) and t.dim() == 4), None)
        if isinstance(output, torch.Tensor):
            field = _propagate(module, [field], source, output)
            parameters = sum(p.numel() for p in module.parameters())
            rows.append(
                LayerRow(
                    name,
                    type(module).__name__,
                    tuple(output.shape[1:]),
                    parameters,
                    _macs(module, output),
                    field.size,
                )  # fmt: skip
            )

    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            handles.append(module.register_forward_pre_hook(partial(before, name=name)))
            handles.append(module.register_forward_hook(partial(after, name=name)))
    try:
        model(x)
        return rows, None
    except Exception as error:  # any shape error of torch, reported with the layer's name
        where = running[-1] if running else "a step between layers"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return rows, f"the shapes do not fit at {where} and it cannot process its input ({reason})."
    finally:
        for handle in handles:
            handle.remove()


def _explain(failure: _ShapesDoNotFit, recorder: _Recorder) -> str:
    node = failure.node
    shapes = [
        "x".join(map(str, recorder.env[a].shape[1:]))
        for a in node.all_input_nodes
        if isinstance(recorder.env.get(a), torch.Tensor)
    ]
    if node.op == "call_module":
        what = f"{node.target} ({type(recorder.module.get_submodule(node.target)).__name__})"
    else:
        what = node.name
    reason = str(failure.error).strip().splitlines()[0] if str(failure.error).strip() else ""
    return (
        f"the shapes do not fit at {what}: it gets {' and '.join(shapes) or 'no tensor'} "
        f"and cannot process it ({reason}). The input is too small for this network, or a "
        "layer's size does not match the one before it."
    )
