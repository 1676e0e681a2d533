"""The fast path: precision, memory format and threads chosen from what the machine supports.

`choose_fast_path()` turns the `--precision`, `--channels-last` and `--threads` settings into one
`FastPath`, resolving "auto" from the device:

- CUDA GPU: bfloat16 autocast where the GPU supports it, else float16 autocast with a gradient
  scaler; channels_last.
- CPU with AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later): bfloat16 autocast,
  where oneDNN runs bf16 convolutions natively (PERF-NOTES.md: 1.4-4x over float32).
- Any other CPU (AVX2 machines, AMD Zen 3, Apple silicon under Rosetta...): float32. bfloat16 is
  emulated there, and measured 6-10x *slower* than float32 on a 2-core AMD EPYC (BENCHMARKS.md).
  So is a CPU whose oneDNN is capped below AVX512_CORE_BF16 by ONEDNN_MAX_CPU_ISA (with
  ATEN_CPU_CAPABILITY=avx2 that makes an AVX-512 machine stand in for an AVX2 one).

channels_last is on by default everywhere: on the 2-core AVX2 machine it trained conv-BN-ReLU
networks 1.6-1.8x faster than NCHW (BENCHMARKS.md, "Speed"). Master weights and the loss stay
float32 in every mode. Each choice is shown at the start of training and can be turned off.

`fast_model()` puts a model on that path for training: channels_last, and every plain
torch.nn.Dropout replaced by cnnlab's (cnnlab.ops.dropout: the same operation with a mask 5x
cheaper to draw on a CPU). With channels_last it also keeps the gradient that flows back into
a model's `features` in channels_last: a head that flattens or globally pools hands back an
NCHW gradient, and PyTorch's elementwise backward kernels (ReLU's, BatchNorm's) are 10-30x
slower when their gradient and saved input differ in layout than the one copy that aligns them
(BENCHMARKS.md, "Levers": 1.04-1.09x on the Fashion-MNIST recipe's steps).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers.dropout import use_fast_dropout

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast


@dataclass(frozen=True)
class FastPath:
    device: torch.device
    precision: str  # "fp32", "bf16" or "fp16" (never "auto")
    channels_last: bool
    threads: int  # CPU threads torch uses (intra-op)
    reason: str  # why this precision was chosen, shown to the user

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return AUTOCAST_DTYPES.get(self.precision)

    @property
    def needs_grad_scaler(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
        return self.precision == "fp16"

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW (channels_last off)"
        where = f"{self.device}"
        if self.device.type == "cpu":
            where += f" ({cpu_description()}), {self.threads} threads"
        return f"device {where} | precision {self.precision}: {self.reason} | {layout}"

    def to_dict(self) -> dict:
        return {
            "device": str(self.device),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "threads": self.threads,
            "reason": self.reason,
        }


def fast_model(model: nn.Module, fast: FastPath, dropout: bool = True) -> nn.Module:
    """The model, on `fast`'s device already, in the memory format training uses and, with
    `dropout`, cnnlab's dropout (a cheaper mask on the CPU, PyTorch's elsewhere); weights are
    unchanged."""
    if fast.channels_last:
        model = model.to(memory_format=torch.channels_last)
        keep_feature_gradients_channels_last(model)
    if dropout:
        use_fast_dropout(model)
    return model


def keep_feature_gradients_channels_last(model: nn.Module) -> bool:
    """Have the gradient of `model.features`' output (a cnnlab model's maps, before its head)
    turned channels_last as it flows back, when that output is channels_last. A gradient that
    already is one is passed on as it is; values never change. Returns whether the model has
    `features` (registered once, however often this is called)."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        return False
    if not getattr(features, "_cnnlab_gradient_layout", False):
        features.register_forward_hook(_align_gradient_layout)
        features._cnnlab_gradient_layout = True
    return True


def _align_gradient_layout(module: nn.Module, inputs: object, output: object) -> None:
    if (
        isinstance(output, torch.Tensor)
        and output.requires_grad
        and output.dim() == 4
        and output.is_contiguous(memory_format=torch.channels_last)
    ):
        output.register_hook(_channels_last)


def _channels_last(gradient: torch.Tensor) -> torch.Tensor:
    return gradient.contiguous(memory_format=torch.channels_last)


# oneDNN instruction-set caps (ONEDNN_MAX_CPU_ISA, or its older name DNNL_MAX_CPU_ISA) that lie
# below AVX512_CORE_BF16: with one set, oneDNN emulates bfloat16 even on a CPU that has it
ISA_CAPS_WITHOUT_BF16 = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"
)  # fmt: skip


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is capped at by the environment, or None (no cap)."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return value
    return None


def cpu_supports_bf16() -> bool:
    """True where oneDNN runs bfloat16 natively: AVX512-BF16 or AMX tiles, and no cap below."""
    if onednn_isa_cap() in ISA_CAPS_WITHOUT_BF16:
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_description() -> str:
    capability = torch.backends.cpu.get_cpu_capability()  # "AVX2", "AVX512", ...
    extras = [
        name
        for name, present in (
            ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
            ("AMX", torch.cpu._is_amx_tile_supported()),
        )
        if present
    ]
    cap = onednn_isa_cap()
    return " + ".join([capability, *extras]) + (f" (oneDNN capped at {cap})" if cap else "")


def available_cores() -> int:
    """CPUs this process may use: its affinity (taskset, cpusets), capped by a cgroup v2 CPU quota
    (`docker --cpus`, Kubernetes limits), which the affinity does not show."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def choose_fast_path(
    device: torch.device,
    precision: str = "auto",
    channels_last: bool = True,
    threads: int | None = None,
) -> FastPath:
    """Resolve the settings into a FastPath and apply the thread count to torch.

    threads: None keeps torch's count (one per physical core), capped at the cores available.
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"--precision {precision!r} is invalid: choose one of {', '.join(PRECISIONS)}."
        )
    chosen, reason = _precision(device, precision)
    # torch starts with one thread per physical core of the machine, which oversubscribes a
    # container limited to fewer; a thread count set earlier (by the caller) is kept.
    threads = threads or min(torch.get_num_threads(), available_cores())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return FastPath(device, chosen, channels_last, threads, reason)


def _precision(device: torch.device, asked: str) -> tuple[str, str]:
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
        if asked == "auto":
            return ("bf16", "GPU supports bfloat16") if bf16 else ("fp16", "GPU lacks bfloat16")
        if asked == "bf16" and not bf16:
            raise ConfigError(
                "--precision bf16: this GPU has no native bfloat16; use --precision fp16 or auto."
            )
        return asked, "as asked (--precision)"
    native = cpu_supports_bf16()
    if asked == "auto":
        if native:
            return "bf16", "CPU has native bfloat16 (AVX512-BF16/AMX)"
        if onednn_isa_cap() in ISA_CAPS_WITHOUT_BF16:
            return (
                "fp32",
                f"oneDNN capped at {onednn_isa_cap()} (ONEDNN_MAX_CPU_ISA), where "
                "bfloat16 would be emulated and slower",
            )
        return "fp32", "no AVX512-BF16/AMX on this CPU, where bfloat16 would be emulated and slower"
    if asked in ("bf16", "fp16") and not native:
        return asked, "as asked (--precision); emulated on this CPU, expect it to be much slower"
    return asked, "as asked (--precision)"
