"""What the part writers of `cnnlab explain` (cam_reports, space_reports, image_reports) need from
the pipeline that calls them, as protocols: the writers depend on these, never on
cnnlab.explain.pipeline, which imports them (so the import graph stays acyclic).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from cnnlab.explain.features import LayerFeatures


class Report(Protocol):
    """Progress lines and the list of files written (cnnlab.explain.pipeline.Reporter)."""

    timings: dict[str, float]

    def say(self, text: str) -> None: ...

    def wrote(self, path: Path, root: Path) -> Path:
        """Record that `path` is written (listed relative to `root`) and return it."""
        ...


class State(Protocol):
    """One model state explained, trained or untrained (cnnlab.explain.pipeline.ModelState)."""

    name: str
    model: nn.Module
    layers: list[LayerFeatures]
    logits: torch.Tensor | None
    embeddings: list[torch.Tensor]  # [N, 2] per chosen layer
    separability: list[dict[str, float]]


class Options(Protocol):
    """The flags the writers read (cnnlab.explain.pipeline.ExplainConfig); read-only."""

    @property
    def split(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def neighbours(self) -> int: ...
    @property
    def neuron_layers(self) -> tuple[str, ...]: ...
    @property
    def neuron_classes(self) -> tuple[str, ...]: ...
    @property
    def cam_methods(self) -> tuple[str, ...]: ...
    @property
    def cam_layer(self) -> str | None: ...
    @property
    def per_cell(self) -> int: ...
    @property
    def masks(self) -> str | None: ...
