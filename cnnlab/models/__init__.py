"""Networks: one registry, one contract. Importing this package registers every family."""

from cnnlab.models import lenet, small_cnn  # noqa: F401  (registers the families)
from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    model_description,
    model_options,
    register_model,
)

__all__ = [
    "MODELS",
    "ClassifierModel",
    "ModelSpec",
    "build_model",
    "model_description",
    "model_options",
    "register_model",
]
