"""The roads to a classifier that `cnnlab compare` runs on identical splits, one registry: raw
pixels, the slides' random kernel bank (seed slide 000), hand-crafted features, each + a classical
classifier; pretrained features + a classifier; fine-tuning; a CNN trained from scratch."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import ConfigError
from cnnlab.registry import Registry
from cnnlab.transfer.classical import FittedClassifier, fit_classifier
from cnnlab.transfer.random_bank import RandomBankFeatures, RandomBankSettings, raw_pixel_features


@dataclass(frozen=True)
class Part:
    """Images of one part of a split: uint8 [N, C, H, W] and int64 labels [N]; `features`
    [N, D] their rows of a per-image feature table computed once (FeaturePipeline.per_image)."""

    images: torch.Tensor
    labels: torch.Tensor
    features: np.ndarray | None = None


@dataclass(frozen=True)
class PipelineOptions:
    """Settings every pipeline may read; one object so the registry's builders share a shape."""

    num_classes: int
    classifier: str = "linear-svm"
    bank: RandomBankSettings = RandomBankSettings()
    handcrafted: tuple[str, ...] = ()  # extractor names; empty: all
    scratch_epochs: int = 5  # scratch: and finetune: (cnnlab.training's TrainConfig fields)
    batch_size: int = 32
    learning_rate: float | None = None  # None: TrainConfig's default for its optimiser
    weights: str | None = None  # pretrained-svm: and finetune: start from this file
    freeze_epochs: int = 1
    lr_decay_per_stage: float = 1.0
    freeze_bn: bool = False
    seed: int = 0
    workers: int | None = None


class Pipeline:
    """fit(train, val) then scores(images) -> [N, K]; the class is the argmax. `name` is the
    pipeline as written on the command line; `details` what fit chose (JSON types). `uses` names
    the PipelineOptions fields its results depend on: a stored result whose values of them differ
    is computed again (settings_used)."""

    uses: tuple[str, ...] = ()

    def __init__(self, name: str, argument: str | None, options: PipelineOptions) -> None:
        self.name, self.argument, self.options = name, argument, options
        self.details: dict = {}

    def fit(self, train: Part, val: Part) -> None:
        raise NotImplementedError

    def scores(self, images: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def predict(self, part: Part) -> np.ndarray:
        """scores() of a part of a split."""
        return self.scores(part.images)


class FeaturePipeline(Pipeline):
    """Features of the images, then a classical classifier with C (and gamma) chosen on val.

    `per_image`: an image's features depend on that image alone (nothing is fitted), so the
    runner computes them once for all the comparison's images (`features(pool)`) and hands each
    Part its rows: one extraction for every fold and curve point."""

    classifier: FittedClassifier
    uses = ("classifier",)
    per_image = False

    def fit_features(self, images: torch.Tensor) -> None:
        """Fit what the features learn from the training images (nothing by default)."""

    def features(self, images: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def part_features(self, part: Part) -> np.ndarray:
        return part.features if part.features is not None else self.features(part.images)

    def fit(self, train: Part, val: Part) -> None:
        self.fit_features(train.images)
        self.classifier = fit_classifier(
            self.options.classifier,
            self.part_features(train),
            train.labels.numpy(),
            self.part_features(val),
            val.labels.numpy(),
        )
        self.details = {"classifier": self.options.classifier, **self.classifier.setting}

    def scores(self, images: torch.Tensor) -> np.ndarray:
        return self.classifier.class_scores(self.features(images), self.options.num_classes)

    def predict(self, part: Part) -> np.ndarray:
        return self.classifier.class_scores(self.part_features(part), self.options.num_classes)


@dataclass(frozen=True)
class PipelineKind:
    name: str
    description: str
    build: Callable[[str, str | None, PipelineOptions], Pipeline]
    argument: str | None = None  # what follows "name:", e.g. "BACKBONE"; None: takes none


PIPELINES: Registry[PipelineKind] = Registry("pipeline")


def register_pipeline(name: str, description: str, argument: str | None = None) -> Callable:
    def decorator(cls: type[Pipeline]) -> type[Pipeline]:
        PIPELINES.add(name, PipelineKind(name, description, cls, argument))
        return cls

    return decorator


@register_pipeline("raw-svm", "the pixels on [0, 1], flattened, + the classifier")
class RawPixels(FeaturePipeline):
    def features(self, images: torch.Tensor) -> np.ndarray:
        return raw_pixel_features(images).numpy()


@register_pipeline("random-bank-svm", "the slides' LN, CO (random bank), BN, RL, PO + classifier")
class RandomBank(FeaturePipeline):
    uses = ("classifier", "bank")

    def fit_features(self, images: torch.Tensor) -> None:
        self.bank = RandomBankFeatures(self.options.bank).fit(images)

    def features(self, images: torch.Tensor) -> np.ndarray:
        return self.bank.transform(images).numpy()


@register_pipeline("handcrafted-svm", "LBP, GLCM, Hu, shape, HOG, histograms + the classifier")
class Handcrafted(FeaturePipeline):
    uses = ("classifier", "handcrafted")
    per_image = True

    def features(self, images: torch.Tensor) -> np.ndarray:
        from cnnlab.transfer.handcrafted import handcrafted_features

        names = self.options.handcrafted or None
        return handcrafted_features(images.numpy(), names, self.options.workers)


@register_pipeline(
    "pretrained-svm", "a pretrained backbone's features + the classifier", "BACKBONE"
)
class PretrainedFeatures(FeaturePipeline):
    uses = ("classifier", "weights")
    per_image = True

    def features(self, images: torch.Tensor) -> np.ndarray:
        from cnnlab.transfer.features import backbone_features

        weights = self.options.weights
        return backbone_features(self.argument, images, weights=weights, progress=False).numpy()


@register_pipeline("scratch", "a cnnlab model trained from scratch (--scratch-epochs)", "MODEL")
class Scratch(Pipeline):
    pretrained = False
    uses = ("scratch_epochs", "batch_size", "learning_rate", "seed")

    def fit(self, train: Part, val: Part) -> None:
        from cnnlab.compare.training import train_in_memory

        self.trained = train_in_memory(
            self.argument, train, val, self.options, pretrained=self.pretrained
        )
        self.details = self.trained.details

    def scores(self, images: torch.Tensor) -> np.ndarray:
        return self.trained.scores(images)


@register_pipeline(
    "finetune", "a pretrained backbone fine-tuned (--scratch-epochs, --freeze-epochs)", "BACKBONE"
)
class Finetune(Scratch):
    pretrained = True
    uses = (*Scratch.uses, "weights", "freeze_epochs", "lr_decay_per_stage", "freeze_bn")


def parse_pipelines(text: str) -> list[tuple[str, str | None]]:
    """ "raw-svm,scratch:lenet5" -> [("raw-svm", None), ("scratch", "lenet5")], checked."""
    parsed = []
    for token in (t.strip() for t in text.split(",")):
        name, _, argument = token.partition(":")
        kind = PIPELINES.get(name)
        if kind.argument and not argument:
            raise ConfigError(
                f"Pipeline {name!r} needs a {kind.argument}: write {name}:{kind.argument}, "
                f"e.g. {name}:resnet18."
            )
        if argument and not kind.argument:
            raise ConfigError(f"Pipeline {name!r} takes no argument; write {name} alone.")
        parsed.append((name, argument or None))
    labels = [f"{n}:{a}" if a else n for n, a in parsed]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--pipelines names a pipeline twice: {text!r}. Name each once.")
    return parsed


def settings_used(name: str, options: PipelineOptions) -> dict:
    """The values of the options pipeline `name` reads (JSON types); a weights file also by the
    SHA-256 of its bytes, so a file replaced under the same name counts as changed."""
    used = {}
    for key in PIPELINES.get(name).build.uses:
        value = getattr(options, key)
        used[key] = asdict(value) if is_dataclass(value) else value
        if key == "weights" and value is not None:
            path = Path(value).expanduser().resolve()
            stat = path.stat() if path.is_file() else None
            used["weights_sha256"] = _file_digest(
                str(path), stat and (stat.st_mtime_ns, stat.st_size)
            )
    return json.loads(json.dumps(used))  # tuples -> lists: equal to what a result file holds


def settings_fingerprint(used: dict) -> str:
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]


@functools.cache
def _file_digest(path: str, version: tuple[int, int] | None) -> str:
    if version is None:
        return "missing"  # the pipeline itself says so, in one line, when it loads the file
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def build_pipeline(name: str, argument: str | None, options: PipelineOptions) -> Pipeline:
    label = f"{name}:{argument}" if argument else name
    return PIPELINES.get(name).build(label, argument, options)


@dataclass
class Timed:
    """What one (pipeline, fold, curve point) produced: scores and the seconds spent."""

    scores: np.ndarray  # [N_test, K]
    fit_seconds: float
    predict_seconds: float
    details: dict = field(default_factory=dict)


def fit_and_score(pipeline: Pipeline, train: Part, val: Part, test: Part) -> Timed:
    start = time.perf_counter()
    pipeline.fit(train, val)
    fitted = time.perf_counter()
    scores = np.asarray(pipeline.predict(test), dtype=np.float64)
    done = time.perf_counter()
    return Timed(scores, fitted - start, done - fitted, dict(pipeline.details))
