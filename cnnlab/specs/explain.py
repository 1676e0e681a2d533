"""What `cnnlab explain` can do, as plain data: the parts, projection methods, explainers, pooling
choices, pseudo-layer names and ExplainConfig, importable without torch so that
`cnnlab explain --help` lists them at once. cnnlab/explain/ registers its projections and
explainers under exactly these names (tests/test_startup.py checks that the lists agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.registry import Registry

WHAT = ("features", "separability", "neurons", "activations", "filters", "cam")
PROJECTION_NAMES = ("pca", "tsne", "umap")  # cnnlab.explain.projection.PROJECTIONS
EXPLAINER_NAMES = ("gradcam", "gradcam++", "saliency", "occlusion")  # cnnlab.explain.cam
POOLINGS = ("flatten", "gap")
INPUT = "input"  # the normalised image
LAST_HIDDEN = "last_hidden"  # the input of the classifier
PSEUDO_LAYERS = (INPUT, LAST_HIDDEN)


@dataclass(frozen=True)
class ExplainConfig:
    """What `cnnlab explain` does; each field is the flag of the same name."""

    split: str = "test"
    layers: tuple[str, ...] = ()  # empty: input, every feature_layers entry, last hidden layer
    method: str = "tsne"
    what: tuple[str, ...] = WHAT
    max_points: int | None = 10_000
    seed: int = 0
    untrained: bool = False
    pooling: str = "flatten"
    max_features: int = 2048
    neighbours: int = 5
    neuron_layers: tuple[str, ...] = (LAST_HIDDEN,)
    neuron_classes: tuple[str, ...] = ()  # empty: the first 20 classes, one panel each
    cam_methods: tuple[str, ...] = EXPLAINER_NAMES
    cam_layer: str | None = None
    image_index: int = 0
    per_cell: int = 6
    masks: str | None = None
    checkpoint: str = "best"
    device: str = "auto"
    data: str | None = None
    data_dir: str | None = None
    batch_size: int = 500

    def check(self) -> None:
        unknown = sorted(set(self.what) - set(WHAT))
        if unknown:
            raise CnnlabError(
                f"--what has unknown part(s) {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(WHAT)} (comma-separated)."
            )
        _known("projection method", PROJECTION_NAMES, self.method)
        for name in self.cam_methods:
            _known("explainer", EXPLAINER_NAMES, name)
        if self.pooling not in POOLINGS:
            raise CnnlabError(f"--pooling must be one of {', '.join(POOLINGS)}.")
        if self.masks not in (None, "auto") and not Path(self.masks).is_dir():
            raise CnnlabError(
                f"--masks '{self.masks}' is not a folder. Give the folder of object masks that "
                "mirrors the images (see `cnnlab explain --help`), or 'auto' to derive them."
            )
        if self.max_features < 1 or self.neighbours < 1 or self.per_cell < 1:
            raise CnnlabError("--max-features, --neighbours and --per-cell must be at least 1.")


def _known(kind: str, names: tuple[str, ...], name: str) -> None:
    """The registries' own error for an unknown name (close names suggested), from the names."""
    table: Registry[str] = Registry(kind)
    for known in names:
        table.add(known, known)
    table.get(name)
