"""Checkpoints that lose nothing and run nothing.

Each checkpoint is three files written atomically in this order: weights (`.safetensors`), training
state (`.state.pt`: optimiser, scheduler, RNG, position; only tensors and plain types, so it loads
with `torch.load(weights_only=True)`) and a JSON sidecar holding both files' SHA-256. The sidecar is
written last, so a checkpoint without a matching sidecar is incomplete and is never used. The two
newest numbered checkpoints are kept so a corrupt latest one falls back to the previous good one;
`best.*` holds the weights with the best validation score.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from cnnlab.errors import CheckpointError
from cnnlab.fileio import atomic_write_bytes, atomic_write_json
from cnnlab.run.paths import CHECKPOINT_CHOICES

FORMAT = "cnnlab-checkpoint-1"
KEEP_NUMBERED = 2


@dataclass
class Checkpoint:
    weights: dict[str, torch.Tensor]
    state: dict[str, Any] | None
    meta: dict[str, Any]
    path: Path  # the sidecar


def weights_are_finite(model: nn.Module) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()
    )


def _weights_bytes(model: nn.Module) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return safetensors.torch.save(tensors, metadata={"format": FORMAT})


def _state_bytes(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(
    directory: Path, name: str, model: nn.Module, state: dict[str, Any] | None, meta: dict
) -> Path:
    """Write `name.safetensors` (+ `name.state.pt`), then `name.json`; return the sidecar."""
    if not weights_are_finite(model):
        raise CheckpointError(
            "Refusing to save a checkpoint: the model weights contain NaN or infinity."
        )
    weights = _weights_bytes(model)
    atomic_write_bytes(directory / f"{name}.safetensors", weights)
    sidecar = {"format": FORMAT, **meta, "weights_sha256": _sha256(weights)}
    if state is not None:
        state_data = _state_bytes(state)
        atomic_write_bytes(directory / f"{name}.state.pt", state_data)
        sidecar["state_sha256"] = _sha256(state_data)
    atomic_write_json(directory / f"{name}.json", sidecar)
    return directory / f"{name}.json"


def save_numbered(directory: Path, step: int, model: nn.Module, state: dict, meta: dict) -> Path:
    """Save `step-NNNNNNNN.*` and prune numbered checkpoints beyond the newest two."""
    path = save_checkpoint(directory, f"step-{step:08d}", model, state, meta)
    for old in numbered_sidecars(directory)[KEEP_NUMBERED:]:
        for suffix in (".json", ".safetensors", ".state.pt"):
            old.with_suffix("").with_suffix(suffix).unlink(missing_ok=True)
    return path


def numbered_sidecars(directory: Path) -> list[Path]:
    """Sidecars of numbered checkpoints, newest first."""
    return sorted(directory.glob("step-*.json"), reverse=True)


def read_checkpoint(sidecar: Path, with_state: bool = True) -> Checkpoint:
    """Read and verify one checkpoint; raise CheckpointError naming the file on any problem."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"Checkpoint sidecar '{sidecar}' is unreadable ({error}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"'{sidecar}' is not a {FORMAT} sidecar.")
    stem = sidecar.with_suffix("")
    weights = _load_weights(stem.with_suffix(".safetensors"), meta.get("weights_sha256"))
    state = None
    if with_state and "state_sha256" in meta:
        state = _load_state(stem.with_suffix(".state.pt"), meta["state_sha256"])
    return Checkpoint(weights=weights, state=state, meta=meta, path=sidecar)


def _read_verified(path: Path, expected_sha256: str | None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"Checkpoint file '{path}' cannot be read ({error}).") from None
    if expected_sha256 is not None and _sha256(data) != expected_sha256:
        raise CheckpointError(
            f"Checkpoint file '{path}' is corrupt or truncated: its SHA-256 does not match the one "
            "recorded when it was written."
        )
    return data


def _load_weights(path: Path, expected_sha256: str | None) -> dict[str, torch.Tensor]:
    data = _read_verified(path, expected_sha256)
    try:
        return safetensors.torch.load(data)
    except Exception as error:  # safetensors raises its own error types for malformed headers
        raise CheckpointError(
            f"'{path}' is not a valid safetensors file ({type(error).__name__}: {error})."
        ) from None


def load_state_file(path: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """Load a training-state file without executing code: only tensors and plain types."""
    return _load_state(path, expected_sha256)


def _load_state(path: Path, expected_sha256: str | None) -> dict[str, Any]:
    data = _read_verified(path, expected_sha256)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(
            f"Training state '{path}' was refused: it is not a plain tensor/number file "
            f"({type(error).__name__}: {first_line[:200]}). cnnlab never unpickles arbitrary "
            "objects; if this file came from elsewhere, do not trust it."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"Training state '{path}' does not hold a dictionary.")
    return state


def latest_checkpoint(directory: Path, with_state: bool = True) -> Checkpoint:
    """The newest numbered checkpoint that verifies; warn about each corrupt one skipped."""
    problems = []
    for sidecar in numbered_sidecars(directory):
        try:
            checkpoint = read_checkpoint(sidecar, with_state=with_state)
        except CheckpointError as error:
            problems.append(str(error))
            warnings.warn(f"{error} Falling back to the previous checkpoint.", stacklevel=2)
            continue
        return checkpoint
    detail = f" Problems: {' '.join(problems)}" if problems else ""
    raise CheckpointError(f"No usable checkpoint in '{directory}'.{detail}")


def load_model_weights(directory: Path, which: str = "best") -> Checkpoint:
    """Weights for evaluation: `best` if present and sound, else the latest good numbered one."""
    if which not in CHECKPOINT_CHOICES:
        raise CheckpointError(f"Unknown checkpoint {which!r}; choose 'best' or 'last'.")
    if which == "best" and (directory / "best.json").exists():
        try:
            return read_checkpoint(directory / "best.json", with_state=False)
        except CheckpointError as error:
            warnings.warn(f"{error} Using the latest checkpoint instead.", stacklevel=2)
    return latest_checkpoint(directory, with_state=False)


def apply_weights(model: nn.Module, checkpoint: Checkpoint) -> None:
    try:
        model.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"The weights in '{checkpoint.path}' do not fit the model described by model.json "
            f"({str(error).splitlines()[0]})."
        ) from None
