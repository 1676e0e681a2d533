"""Forward hooks that always come off (STYLE.md rule 8), and layers found by dotted name.

Besides the modules' dotted names (`named_modules()`), two pseudo-layers exist: "input" (the
normalised image) and "last_hidden" (the input of the classifier, the last module to run).
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.specs.explain import PSEUDO_LAYERS

# A hook gets (module, inputs, output) and may return a replacement output, as in torch.
ForwardHook = Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]
ForwardPreHook = Callable[[nn.Module, tuple], None]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called `name` in `model.named_modules()`, with close names on a typo."""
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise CnnlabError(
        f"The model has no layer {name!r}.{hint} Layers are dotted names from named_modules() "
        f"(e.g. {', '.join(repr(n) for n in names[:3])}) or one of {', '.join(PSEUDO_LAYERS)}; "
        "`cnnlab summary` lists them."
    )


@contextlib.contextmanager
def hooks_attached(
    model: nn.Module,
    forward: dict[str, ForwardHook] | None = None,
    forward_pre: dict[str, ForwardPreHook] | None = None,
) -> Iterator[None]:
    """Attach forward (and pre-forward) hooks by layer name for the `with` block only.

    The handles are removed in `finally`, so an exception inside the block (or while attaching)
    leaves the model exactly as it was.
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, hook in (forward or {}).items():
            handles.append(get_layer(model, name).register_forward_hook(hook))
        for name, hook in (forward_pre or {}).items():
            handles.append(get_layer(model, name).register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks still attached anywhere in `model` (for tests)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


def execution_order(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The leaf modules (no children) in the order one forward pass calls them."""
    called: list[tuple[str, nn.Module]] = []
    leaves = {name: m for name, m in model.named_modules() if name and not any(m.children())}

    def recorder(name: str) -> ForwardPreHook:
        return lambda module, inputs: called.append((name, module))

    with hooks_attached(model, forward_pre={name: recorder(name) for name in leaves}):
        with torch.no_grad():
            model(example)
    return called


def classifier_name(model: nn.Module, example: torch.Tensor) -> str:
    """The module that produces the logits: the last leaf module to run in a forward pass.

    Its input is the last hidden layer (the seeds' last layer of perceptrons before the output).
    """
    called = execution_order(model, example)
    if not called:
        raise CnnlabError("The model ran no sub-module; its last hidden layer cannot be found.")
    return called[-1][0]


def first_conv_name(model: nn.Module, example: torch.Tensor) -> str | None:
    """The first module to run whose own weight is a 4-D kernel bank [out, in, kh, kw]."""
    for name, module in execution_order(model, example):
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 4:
            return name
    return None
