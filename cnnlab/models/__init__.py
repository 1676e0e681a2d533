"""Networks: one registry, one contract. Importing this package registers every family."""

from cnnlab.models import (  # noqa: F401  (registers the families)
    alexnet,
    densenet,
    efficientnet_lite,
    googlenet,
    lenet,
    resnet,
    small_cnn,
    specnet,
    timm_models,
    torchvision_models,
    vgg,
    xception,
)
from cnnlab.models.base import ClassifierModel
from cnnlab.models.registry import (
    MODELS,
    ModelSpec,
    build_model,
    model_description,
    model_min_image_size,
    model_options,
    register_model,
)
from cnnlab.models.specnet import SpecDoesNotFit, resolve_model_argument

__all__ = [
    "MODELS",
    "ClassifierModel",
    "ModelSpec",
    "SpecDoesNotFit",
    "build_model",
    "model_description",
    "model_min_image_size",
    "model_options",
    "register_model",
    "resolve_model_argument",
]
