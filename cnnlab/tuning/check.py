"""`cnnlab check`: sanity checks of a training set-up before a long run (seed 003's practitioner's
method; Karpathy's "A recipe for training neural networks", 2019): the labels, the input
normalisation, the loss at initialisation, the gradients and updates of every layer, the loss
falling, one small batch overfitted, and chance accuracy when the labels are shuffled.

Every check trains a fresh copy of the same initial weights at the configured peak learning rate
(no schedule, no augmentation), so each verdict is about the set-up, not about a warm-up.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.runtime.predict import predict_logits, prepare
from cnnlab.tuning.bench import Bench

PROBE_IMAGES = 512  # images the normalisation and the initial loss are measured on
SHORT_STEPS = 30  # the short training that every layer must move in
OVERFIT_STEPS = 300  # at most, to fit the small batch
SHUFFLED_STEPS, SHUFFLED_BATCH = 100, 32  # enough to fit noise; a leak would show
VAL_IMAGES = 2000  # at most, scored after the shuffled training
MEAN_TOLERANCE, STD_RANGE = 0.25, (0.75, 1.33)
INITIAL_LOSS_TOLERANCE = 0.25  # relative to ln(C)
EXPLODING_CHANGE = 10.0  # a layer whose weights moved by 10x their norm in the short training
MAJORITY_LIMIT = 0.95


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    value: float | None  # the number behind the verdict
    expected: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Stop the parameters whose dotted names start with a prefix from learning (to break a
    set-up on purpose); returns the names frozen."""
    names = [n for n, _ in model.named_parameters()]
    frozen = [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]
    unmatched = [p for p in prefixes if not any(n == p or n.startswith(p + ".") for n in names)]
    if unmatched:
        layers = sorted({n.rsplit(".", 1)[0] for n in names})
        raise ConfigError(
            f"--freeze {unmatched[0]!r} names no layer of the model; its layers are: "
            f"{', '.join(layers)}."
        )
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen


def run_checks(bench: Bench, overfit_images: int = 32) -> list[CheckResult]:
    """All checks, in the order a practitioner would run them."""
    return [
        check_labels(bench),
        check_normalization(bench),
        check_initial_loss(bench),
        *check_short_training(bench),
        check_overfit(bench, overfit_images),
        check_shuffled_labels(bench),
    ]


def check_labels(bench: Bench) -> CheckResult:
    """Every class has training images and no class holds nearly all of them."""
    classes = bench.record.class_names
    counts = torch.bincount(bench.train.labels.cpu(), minlength=len(classes))[: len(classes)]
    share = float(counts.max()) / max(int(counts.sum()), 1)
    missing = [classes[i] for i in range(len(classes)) if counts[i] == 0]
    largest = classes[int(counts.argmax())]
    passed = not missing and share <= MAJORITY_LIMIT
    if passed:
        message = f"all {len(classes)} classes have training images; the largest holds {share:.1%}"
    else:
        message = (
            f"{share:.1%} of the training labels are class {largest!r}"
            + (
                f"; no training image is labelled {', '.join(map(repr, missing[:5]))}"
                if missing
                else ""
            )
            + ": the labels do not describe the classes (check how they are read)"
        )
    return CheckResult(
        "labels", passed, share, f"largest class share <= {MAJORITY_LIMIT:.0%}", message
    )


def check_normalization(bench: Bench) -> CheckResult:
    """The model's input on a batch has mean ~0 and standard deviation ~1 per band."""
    x = prepare(bench.train.images[:PROBE_IMAGES], bench.settings)  # [B, C, H, W]
    means = x.mean(dim=(0, 2, 3)).tolist()
    stds = x.std(dim=(0, 2, 3)).tolist()
    low, high = STD_RANGE
    passed = all(abs(m) <= MEAN_TOLERANCE for m in means) and all(low <= s <= high for s in stds)
    shown = ", ".join(f"{m:.2f}/{s:.2f}" for m, s in zip(means, stds, strict=True))
    message = f"input mean/sd per band {shown}"
    if not passed:
        message += (
            f": the images are not standardised (the data's mean/sd per band is "
            f"{_pair(bench.record.normalization)}); normalise the input with them"
        )
    worst = max(max(abs(m) for m in means), max(abs(math.log(max(s, 1e-12))) for s in stds))
    return CheckResult(
        "normalization",
        passed,
        worst,
        f"|mean| <= {MEAN_TOLERANCE}, sd in [{low}, {high}]",
        message,
    )


def _pair(normalization) -> str:
    return ", ".join(
        f"{m:.3f}/{s:.3f}" for m, s in zip(normalization.mean, normalization.std, strict=True)
    )


def check_initial_loss(bench: Bench) -> CheckResult:
    """Before training the network should be unsure: cross-entropy ~ ln(C). Label smoothing and
    class weights leave that value unchanged, as they do for any uniform prediction."""
    classes = bench.record.num_classes
    expected = math.log(classes)
    # In training mode, as the first step sees it: batch norm uses the batch's statistics (its
    # initial running ones would scale the activations arbitrarily); on a copy, which they change.
    model = copy.deepcopy(bench.model).train()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, min(PROBE_IMAGES, len(bench.train.labels)), bench.config.batch_size):
            stop = min(start + bench.config.batch_size, PROBE_IMAGES)
            x = prepare(bench.train.images[start:stop], bench.settings)
            labels = bench.train.labels[start:stop]
            total += bench.loss_fn(model(x), labels).item() * len(labels)
            count += len(labels)
    loss = total / max(count, 1)
    passed = math.isfinite(loss) and abs(loss - expected) <= INITIAL_LOSS_TOLERANCE * expected
    message = f"loss at initialisation {loss:.3f}, ln({classes}) = {expected:.3f}"
    if not passed:
        message += (
            ": the initial predictions are far from uniform (too large initial weights or "
            "inputs, or a biased classifier)"
        )
    return CheckResult(
        "initial_loss",
        passed,
        loss,
        f"within {INITIAL_LOSS_TOLERANCE:.0%} of {expected:.3f}",
        message,
    )


def _train_copy(
    bench: Bench,
    steps: int,
    batches,
    until: Callable[[nn.Module, int], bool] = lambda model, step: False,
) -> tuple[nn.Module, list[float], dict[str, float]]:
    """A copy of the initial model trained for `steps` at the peak rate; the losses, and the
    gradient norm of every parameter at the first step."""
    model = copy.deepcopy(bench.model)
    optimizer = bench.optimizer(model)
    losses, first_gradients = [], {}
    for step in range(steps):
        model.train()
        images, labels = next(batches)
        loss = bench.loss_fn(model(prepare(images, bench.settings)), labels)
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            break
        loss.backward()
        if step == 0:
            first_gradients = {
                n: (p.grad.norm().item() if p.grad is not None else 0.0)
                for n, p in model.named_parameters()
            }
        optimizer.step()
        if until(model, step):
            break
    return model, losses, first_gradients


def check_short_training(bench: Bench) -> list[CheckResult]:
    """A short training: every layer's gradient is non-zero and finite, its weights move but do
    not explode, and the loss falls."""
    rate = bench.config.resolved_learning_rate
    batches = bench.batches(bench.config.batch_size, bench.config.seed)
    model, losses, gradients = _train_copy(bench, SHORT_STEPS, batches)
    before = _layer_weights(bench.model)
    after = _layer_weights(model)
    changes = {
        layer: ((after[layer] - w).norm() / w.norm().clamp(min=1e-12)).item()
        for layer, w in before.items()
    }
    layer_gradients: dict[str, float] = {}
    for name, norm in gradients.items():
        layer = name.rsplit(".", 1)[0]
        layer_gradients[layer] = math.hypot(layer_gradients.get(layer, 0.0), norm)
    still = [layer for layer, c in changes.items() if c <= 1e-7 or layer_gradients.get(layer) == 0]
    exploding = [
        layer for layer, c in changes.items() if not math.isfinite(c) or c > EXPLODING_CHANGE
    ]
    return [_moving_verdict(changes, still, exploding, rate), _falling_verdict(losses, rate)]


def _layer_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each layer's parameters (weights and bias) as one flat vector, by dotted layer name."""
    layers: dict[str, list[torch.Tensor]] = {}
    for name, parameter in model.named_parameters():
        layers.setdefault(name.rsplit(".", 1)[0], []).append(parameter.detach().flatten())
    return {layer: torch.cat(parts).cpu().clone() for layer, parts in layers.items()}


def _moving_verdict(
    changes: dict[str, float], still: list[str], exploding: list[str], rate: float
) -> CheckResult:
    finite = [c for c in changes.values() if math.isfinite(c)]
    smallest = min(finite) if finite else float("nan")
    if still:
        message = (
            f"layer(s) {_names(still)} did not change in {SHORT_STEPS} steps (zero gradient "
            "or frozen): they do not learn"
        )
    elif exploding:
        message = (
            f"layer(s) {_names(exploding)} exploded in {SHORT_STEPS} steps (weights moved by "
            f"more than {EXPLODING_CHANGE:g}x their size or became NaN) at learning rate "
            f"{rate:g}: lower --learning-rate"
        )
    else:
        low = min(changes, key=changes.get)
        high = max(changes, key=changes.get)
        message = (
            f"every layer moved in {SHORT_STEPS} steps: relative change from "
            f"{changes[low]:.2g} ({low}) to {changes[high]:.2g} ({high})"
        )
    return CheckResult(
        "layers_learn",
        not still and not exploding,
        smallest,
        f"every layer's relative change in (1e-7, {EXPLODING_CHANGE:g}]",
        message,
    )


def _names(layers: list[str], shown: int = 4) -> str:
    more = f" and {len(layers) - shown} more" if len(layers) > shown else ""
    return ", ".join(layers[:shown]) + more


def _falling_verdict(losses: list[float], rate: float) -> CheckResult:
    window = 10
    start = losses[0]  # before the first update
    end = sum(losses[-window:]) / len(losses[-window:])
    passed = len(losses) == SHORT_STEPS and math.isfinite(end) and end < start
    message = (
        f"training loss {start:.3f} -> {end:.3f} (the first step; the mean of the last {window})"
    )
    if not passed:
        where = (
            f"became {losses[-1]} at step {len(losses)}"
            if len(losses) < SHORT_STEPS
            else f"rose to {end:.3f}"
        )
        message = (
            f"the training loss {where} (from {start:.3f}) at learning rate {rate:g}: lower "
            "--learning-rate (`cnnlab lr-find` suggests one)"
        )
    return CheckResult("loss_falls", passed, end, f"below the start, {start:.3f}", message)


def check_overfit(bench: Bench, images: int) -> CheckResult:
    """A network that cannot fit one small batch cannot learn: fit `images` training images."""
    x, y = bench.train.images[:images], bench.train.labels[:images]

    def accuracy(model: nn.Module) -> float:
        logits = predict_logits(model, x, bench.settings)
        return (logits.argmax(1) == y.cpu()).float().mean().item()

    def repeat():
        while True:
            yield x, y

    def fitted(model: nn.Module, step: int) -> bool:
        return step % 10 == 9 and accuracy(model) == 1.0

    model, losses, _ = _train_copy(bench, OVERFIT_STEPS, repeat(), until=fitted)
    reached = accuracy(model) if math.isfinite(losses[-1]) else 0.0
    passed = reached >= 0.97
    message = f"{reached:.0%} of {len(y)} images fitted in {len(losses)} steps"
    if not passed:
        message += (
            f" (loss {losses[-1]:.3g}): the model cannot memorise one batch at learning rate "
            f"{bench.config.resolved_learning_rate:g}; check the learning rate, the model and "
            "the layers that do not learn"
        )
    return CheckResult("overfit_batch", passed, reached, ">= 97% training accuracy", message)


def check_shuffled_labels(bench: Bench) -> CheckResult:
    """Trained on randomly permuted labels, a model must score at chance on validation: if it
    does better, the input carries the label some other way (a leak)."""
    if not len(bench.val.labels):
        return CheckResult(
            "shuffled_labels", True, None, "a validation split", "skipped: --val-fraction is 0"
        )
    generator = torch.Generator().manual_seed(bench.config.seed)
    permutation = torch.randperm(len(bench.train.labels), generator=generator)
    shuffled = copy.copy(bench)
    labels = bench.train.labels[permutation.to(bench.device)]
    shuffled.train = type(bench.train)(bench.train.images, labels, bench.train.sample_ids)
    batches = shuffled.batches(SHUFFLED_BATCH, bench.config.seed)
    model, _, _ = _train_copy(shuffled, SHUFFLED_STEPS, batches)
    val = bench.val.labels[:VAL_IMAGES].cpu()
    images = bench.val.images[:VAL_IMAGES]
    accuracy = predict_logits(model, images, bench.settings).argmax(1) == val
    accuracy = accuracy.float().mean().item()
    chance = torch.bincount(val).max().item() / len(val)  # always guessing the largest class
    limit = chance + max(0.05, 3 * math.sqrt(chance * (1 - chance) / len(val)))
    passed = accuracy <= limit
    message = (
        f"validation accuracy {accuracy:.3f} after training on shuffled labels; chance {chance:.3f}"
    )
    if not passed:
        message += ": the model learns the labels from something other than the labels (a leak)"
    return CheckResult("shuffled_labels", passed, accuracy, f"<= {limit:.3f}", message)
