"""Explaining a trained CNN: feature spaces per layer, neurons, feature maps and where it looks.

`explain_run(RUN, ExplainConfig(...))` writes everything under RUN/explain/; the parts are usable
on their own (hooks, features, projection, separability, neurons, cam, plots, galleries).
"""

from cnnlab.explain.cam import EXPLAINERS, Explainer, GradCAM, GradCAMPlusPlus, Occlusion, Saliency
from cnnlab.explain.features import collect_features, default_layers
from cnnlab.explain.hooks import hooks_attached
from cnnlab.explain.pipeline import explain_run
from cnnlab.explain.projection import PROJECTIONS, procrustes_align, project_layers
from cnnlab.explain.separability import separability
from cnnlab.specs.explain import INPUT, LAST_HIDDEN, WHAT, ExplainConfig

__all__ = [
    "EXPLAINERS",
    "INPUT",
    "LAST_HIDDEN",
    "PROJECTIONS",
    "WHAT",
    "ExplainConfig",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "Occlusion",
    "Saliency",
    "collect_features",
    "default_layers",
    "explain_run",
    "hooks_attached",
    "procrustes_align",
    "project_layers",
    "separability",
]
