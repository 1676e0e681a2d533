"""The speed targets (issue 17) and the BENCHMARKS.md block that benchmarks/speed.py writes.

Targets are relative to the peer measured in the same run: T is the median wall time of the
baseline recipe's first epoch over its seeds (the PyTorch MNIST example's recipe,
benchmarks/mnist_baseline.py; seeds 1..N, N = speed.py's --baseline-seeds, 3 by default; for an
even N the median is the mean of the two middle values, so of both for N = 2) in the results file
that also holds the cnnlab runs judged against it. Files written before the seeds (one baseline
run) give T = that run's first epoch, and the report says so. The block has one section per
machine kind (CPU model + what torch detects of it), each from the newest results of that kind
for every part, so a run on one machine never erases another machine's tables. Plain Python:
results are dicts read from benchmarks/results/speed-*.json; nothing here imports torch.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

TARGET_PARTS = ("mnist", "fashion", "cifar10")
PARTS = ("throughput", "baseline", *TARGET_PARTS, "profile")
NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST", "cifar10": "CIFAR-10 (JPEG folder)"}
THRESHOLDS = {
    "mnist": (0.98, 0.99, 0.994),
    "fashion": (0.90, 0.92, 0.93),
    "cifar10": (0.80, 0.85, 0.88),
}
# Training images/s of the baseline's own network, cnnlab at its best batch size over the
# baseline script: more where bfloat16 is native (AVX512-BF16 or AMX), the lever it gives.
THROUGHPUT_RATIO = {False: 2.0, True: 3.0}
BEGIN, END = "<!-- speed:begin -->", "<!-- speed:end -->"
NO_THEORETICAL_PEAK = "No theoretical peak (the note under this block says why)."


@dataclass(frozen=True)
class Target:
    accuracy: float  # median test accuracy of the seeds, at least
    multiple_of_t: float  # median wall seconds of the seeds, at most this many T

    def describe(self, key: str) -> str:
        return f"{NAMES[key]} >= {self.accuracy:.1%} within {self.multiple_of_t:g} x T"


TARGETS = {"mnist": Target(0.994, 1.0), "fashion": Target(0.93, 3.0), "cifar10": Target(0.88, 15.0)}


class ForeignBaseline(ValueError):
    """T must come from the baseline measured in the same run as the part judged against it."""


@dataclass(frozen=True)
class Yardstick:
    """T and what it was computed from."""

    seconds: float  # T
    how: str  # e.g. "median of 3 first epochs"
    seeds: tuple[int, ...]  # the baseline seeds, in the order they ran
    walls: tuple[float, ...]  # their first epochs' wall seconds, same order
    rates: tuple[float, ...]  # their first epochs' training images/s, same order


# ---------------------------------------------------------------- targets


def yardstick(baseline: dict) -> Yardstick:
    """T of a baseline record: the median of its seeds' first-epoch walls (the mean of the two
    middle ones for an even count); a record from before the seeds holds one run, seed 1."""
    seeds = baseline.get("seeds")
    if not seeds:  # an older file: one baseline run, T its first epoch
        first = baseline["epochs"][0]
        wall = float(first["wall_seconds"])
        how = (
            "the first epoch of a single baseline run (a file from before T was a median of seeds)"
        )
        return Yardstick(wall, how, (1,), (wall,), (first["train_images_per_second"],))
    walls = tuple(float(row["first_epoch_seconds"]) for row in seeds)
    how = {1: "the first epoch of 1 seed", 2: "median of 2 first epochs (their mean)"}
    return Yardstick(
        statistics.median(walls),
        how.get(len(walls), f"median of {len(walls)} first epochs"),
        tuple(row["seed"] for row in seeds),
        walls,
        tuple(row["train_images_per_second"] for row in seeds),
    )


def baseline_record(runs: list[tuple[int, dict]]) -> dict:
    """speed.py's baseline part from its workers' results, (seed, result) in the order they ran:
    the first seed's record as before (all its epochs: the time-to-threshold table), each seed's
    first epoch, and T with how it was computed."""
    record = dict(runs[0][1])
    record["seeds"] = [
        {
            "seed": seed,
            "first_epoch_seconds": result["epochs"][0]["wall_seconds"],
            "train_images_per_second": result["epochs"][0]["train_images_per_second"],
            "test_accuracy": result["epochs"][0]["test_accuracy"],
            "epochs": len(result["epochs"]),
            "setup_seconds": result.get("setup_seconds"),
            "peak_rss_mib": result.get("peak_rss_mib"),
        }
        for seed, result in runs
    ]
    t = yardstick(record)
    return {**record, "t_seconds": t.seconds, "t_from": t.how}


def t_line(baseline: dict) -> str:
    """T in one line: its value, how it was computed, each seed's first epoch and the spread."""
    t = yardstick(baseline)
    if len(t.walls) == 1:
        return f"T = {t.seconds:.1f} s, {t.how}: seed {t.seeds[0]}, {t.rates[0]:,.0f} images/s."
    each = ", ".join(
        f"seed {seed} {wall:.1f} s ({rate:,.0f} images/s)"
        for seed, wall, rate in zip(t.seeds, t.walls, t.rates, strict=True)
    )
    low, high = min(t.walls), max(t.walls)
    return (
        f"T = {t.seconds:.1f} s, {t.how}: {each}; spread {low:.1f}-{high:.1f} s "
        f"({high - low:.1f} s, {(high - low) / t.seconds:.0%} of T)."
    )


def baseline_seconds(results: dict, source: str = "this run") -> float:
    """T: the median of the baseline recipe's first-epoch walls, measured in the run `results`
    holds (never a baseline kept from another run)."""
    baseline = results.get("baseline")
    if not baseline or not baseline.get("epochs"):
        raise ForeignBaseline(
            f"{source} has no baseline recipe run, so it has no T; run the baseline in the same "
            "invocation (--baseline-epochs 1 or more)."
        )
    if "reused_from" in baseline:
        raise ForeignBaseline(
            f"the baseline in {source} was kept from {baseline['reused_from']}, another run; T "
            "must be measured in the same run: rerun the part with the baseline."
        )
    return yardstick(baseline).seconds


def judge(key: str, runs: list[dict], t_seconds: float) -> dict:
    """A target part's verdict: the medians of the seeds' test accuracy and wall time against
    the target's accuracy and multiple of T (both bounds inclusive)."""
    target = TARGETS[key]
    wall = statistics.median(r["wall_seconds"] for r in runs)
    accuracy = statistics.median(r["test_accuracy"] for r in runs)
    ratio = wall / t_seconds
    return {
        "target": target.describe(key),
        "t_seconds": t_seconds,
        "median_wall_seconds": wall,
        "median_test_accuracy": accuracy,
        "ratio_to_t": round(ratio, 2),
        "seeds": len(runs),
        "met": accuracy >= target.accuracy and ratio <= target.multiple_of_t,
        "says": f"median wall {wall:.1f} s = {ratio:.2f} T, median test accuracy {accuracy:.2%}",
    }


def judge_throughput(throughput: dict, native_bf16: bool) -> dict:
    """cnnlab at its best batch size against the baseline script, training images/s."""
    base = throughput["baseline"]["train_images_per_second"]
    batch, best = max(throughput["cnnlab"].items(), key=lambda kv: kv[1]["train_images_per_second"])
    rate = best["train_images_per_second"]
    needed = THROUGHPUT_RATIO[native_bf16]
    return {
        "target": f"training images/s on the baseline's network >= {needed:g}x the baseline script"
        f" ({'native' if native_bf16 else 'no native'} bf16)",
        "ratio": round(rate / base, 2),
        "met": rate / base >= needed,
        "says": f"{rate:,} against {base:,} images/s (cnnlab at batch {batch})",
    }


def time_to_threshold(baseline: dict | None, runs: list[dict], key: str) -> dict:
    """Seconds to reach each test-accuracy threshold: the baseline after the first epoch that
    reached it (wall since the start of its training), cnnlab the whole command when its final
    test accuracy reached it (an upper bound: cnnlab scores the test split only at the end)."""
    table = {}
    for threshold in THRESHOLDS[key]:
        base = None
        if baseline:
            reached = (
                r["wall_seconds"] for r in baseline["epochs"] if r["test_accuracy"] >= threshold
            )
            base = next(reached, None)
        reached = [r["wall_seconds"] for r in runs if r["test_accuracy"] >= threshold]
        ours = statistics.median(reached) if len(reached) * 2 > len(runs) else None
        table[f"{threshold:.1%}"] = {
            "baseline": f"{base:.0f} s" if base else "not reached",
            "cnnlab": f"{ours:.0f} s" if ours else "not reached",
            "ratio": f"{base / ours:.1f}x faster" if base and ours else "-",
        }
    return table


def check_reusable(earlier: dict, machine: dict, source: str) -> None:
    """Only a run of the same machine kind may lend its parts to this one."""
    if machine_kind(earlier["machine"]) != machine_kind(machine):
        raise ForeignBaseline(
            f"{source} was measured on {machine_kind(earlier['machine'])}, not on this machine "
            f"({machine_kind(machine)}); reuse only a run of the same machine kind."
        )


def merge_reused(results: dict, earlier: dict, parts: list[str], source: str) -> dict:
    """Parts of an earlier run kept where this run does not measure them, marked reused. The
    baseline is kept only when no target part runs now: a target's T comes from its own run."""
    check_reusable(earlier, results["machine"], source)
    targets_now = any(part in TARGET_PARTS for part in parts)
    merged = dict(results)
    for key in PARTS:
        if key not in earlier or key in parts or key in results:
            continue
        if key == "baseline" and targets_now:
            continue
        merged[key] = {**earlier[key], "reused_from": earlier[key].get("reused_from", source)}
    return merged


# ---------------------------------------------------------------- machine kinds


def native_bf16(machine: dict) -> bool:
    """Recorded by newer runs; older ones hold only torch's capability string."""
    if "native_bf16" in machine:
        return bool(machine["native_bf16"])
    return "BF16" in machine["capability"] or "AMX" in machine["capability"]


def machine_kind(machine: dict) -> str:
    return f"{machine['cpu']}, {machine['capability']}"


def load_results(folder: Path) -> list[tuple[str, dict]]:
    """(file name, results) of every speed-*.json, oldest first (the names are UTC stamps)."""
    return [(p.name, json.loads(p.read_text())) for p in sorted(folder.glob("speed-*.json"))]


def newest_parts(files: list[tuple[str, dict]]) -> dict[str, dict[str, tuple[str, dict]]]:
    """kind -> part -> (file, results) of the newest run that measured the part itself."""
    kinds: dict[str, dict[str, tuple[str, dict]]] = {}
    for name, results in files:
        parts = kinds.setdefault(machine_kind(results["machine"]), {})
        for key in PARTS:
            if key in results and "reused_from" not in results[key]:
                parts[key] = (name, results)
    return kinds


# ---------------------------------------------------------------- markdown


def markdown_all(files: list[tuple[str, dict]]) -> str:
    """The whole block: one section per machine kind, the kind measured most recently first."""
    kinds = newest_parts(files)
    newest = {kind: max(name for name, _ in parts.values()) for kind, parts in kinds.items()}
    lines = []
    for kind in sorted(kinds, key=lambda k: newest[k], reverse=True):
        lines += section(kind, kinds[kind])
    return "\n".join(lines).rstrip() + "\n"


def section(kind: str, parts: dict[str, tuple[str, dict]]) -> list[str]:
    machines = [results["machine"] for _, results in parts.values()]
    latest = max(parts.values(), key=lambda item: item[0])[1]["machine"]
    dates = sorted({m["date"] for m in machines})
    flags = latest.get("flags")
    lines = [
        f"#### {kind}",
        "",
        f"{latest['cpu']}"
        + (f" (CPU family {latest['cpu_family']})" if "cpu_family" in latest else "")
        + f", {latest['cores']} cores, {'native' if native_bf16(latest) else 'no native'} "
        f"bfloat16; flags: {', '.join(flags) if flags else 'not recorded'}; torch "
        f"{', '.join(sorted({m['torch'] for m in machines}))}; measured "
        f"{dates[0] if len(dates) == 1 else f'{dates[0]} to {dates[-1]}'}.",
        "",
        "Runs used (newest of this kind for each part; `CNNLAB_DATA=../shared/datasets "
        ".venv/bin/python benchmarks/speed.py ...`):",
        "",
    ]
    by_file: dict[str, list[str]] = {}
    for key, (name, _) in parts.items():
        by_file.setdefault(name, []).append(key)
    for name in sorted(by_file):
        results = next(r for n, r in parts.values() if n == name)
        loads = [results["machine"].get(f"load_average_at_{when}") for when in ("start", "end")]
        load = " -> ".join(f"{pair[0]:.2f}" for pair in loads if pair)
        lines.append(
            f"- `{name}` ({', '.join(by_file[name])}; load average {load}): "
            f"`{results.get('argv', '')}`"
        )
    lines += ["", *targets_table(parts, native_bf16(latest)), ""]
    if "profile" in parts:
        lines += profile_table(parts["profile"][1]["profile"])
    if "throughput" in parts:
        lines += throughput_tables(parts["throughput"][1]["throughput"])
    if "baseline" in parts:
        lines += baseline_table(parts["baseline"][1]["baseline"], parts["baseline"][0])
    for key in TARGET_PARTS:
        if key in parts:
            lines += part_table(key, *parts[key])
    return lines


def targets_table(parts: dict[str, tuple[str, dict]], native: bool) -> list[str]:
    lines = ["| target | measured | ratio | verdict |", "|---|---|---|---|"]
    for key in TARGET_PARTS:
        if key in parts:
            lines.append(target_row(key, *parts[key]))
        else:
            lines.append(f"| {TARGETS[key].describe(key)} | not measured on this kind | - | - |")
    if "throughput" in parts:
        verdict = judge_throughput(parts["throughput"][1]["throughput"], native)
        met = "**met**" if verdict["met"] else "not met"
        lines.append(
            f"| {verdict['target']} | {verdict['says']} | {verdict['ratio']:.2f}x | {met} |"
        )
    else:
        lines.append(
            f"| training images/s on the baseline's network >= {THROUGHPUT_RATIO[native]:g}x the "
            "baseline script | not measured on this kind | - | - |"
        )
    return lines


def target_row(key: str, name: str, results: dict) -> str:
    """One target's row; a run whose baseline was kept from another run (older files, made
    before T was defined) shows its ratio to that T but is not judged."""
    runs = results[key]["runs"]
    try:
        verdict = judge(key, runs, baseline_seconds(results, name))
        ratio = f"{verdict['ratio_to_t']:.2f} T (T = {verdict['t_seconds']:.1f} s)"
        met = "**met**" if verdict["met"] else "not met"
    except ForeignBaseline:
        baseline = results.get("baseline")
        if baseline:
            verdict = judge(key, runs, yardstick(baseline).seconds)
            ratio = f"{verdict['ratio_to_t']:.2f} T of another run (`{baseline['reused_from']}`)"
        else:
            verdict, ratio = judge(key, runs, float("inf")), "no T"
        met = "not judged: T not measured in the same run"
    return (
        f"| {verdict['target']} | {verdict['median_test_accuracy']:.2%} test in "
        f"{verdict['median_wall_seconds']:,.1f} s (median of {len(runs)}) | {ratio} | {met} |"
    )


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def throughput_tables(t: dict) -> list[str]:
    base = t["baseline"]
    lines = [
        "**The baseline's own network** (PyTorch MNIST example: conv32-conv64-maxpool-fc128, "
        "Adadelta), images/s:",
        "",
        "| | train | inference | train ratio | inference ratio | peak memory |",
        "|---|---|---|---|---|---|",
        f"| (a) baseline script, batch 64 | {base['train_images_per_second']:,} | "
        f"{base['infer_images_per_second']:,} | 1.00 | 1.00 | {base['peak_rss_mib']} MiB |",
    ]
    for batch_size, row in t["cnnlab"].items():
        precision = row.get("fast_path", {}).get("precision", "fp32")
        lines.append(
            f"| (b) cnnlab, batch {batch_size}, {precision} | {row['train_images_per_second']:,} | "
            f"{row['infer_images_per_second']:,} | "
            f"{row['train_images_per_second'] / base['train_images_per_second']:.2f} | "
            f"{row['infer_images_per_second'] / base['infer_images_per_second']:.2f} | "
            f"{row['peak_rss_mib']} MiB |"
        )
    lines += [
        "",
        "**Inference**, images/s on the 10,000 MNIST test images (batch 1024):",
        "",
        "| network | torch NCHW fp32 | torch fast path | ONNX Runtime |",
        "|---|---|---|---|",
    ]
    for row in t["inference"]:
        r = row["images_per_second"]
        name = "LeNet-5" if row["model"] == "lenet5" else "MNIST recipe network"
        lines.append(
            f"| {name} | {_number(r['torch NCHW fp32'])} | {_number(r['torch fast path'])} | "
            f"{_number(r['onnxruntime'])} |"
        )
    return [*lines, ""]


def baseline_table(baseline: dict, name: str) -> list[str]:
    lines = [
        f"**Baseline recipe on MNIST** (`{name}`; seed {yardstick(baseline).seeds[0]}'s test "
        "accuracy after each epoch, wall from the start of training).",
        "",
        t_line(baseline),
        "",
        "| epoch | wall (s) | train images/s | test accuracy |",
        "|---|---|---|---|",
    ]
    for row in baseline["epochs"]:
        lines.append(
            f"| {row['epoch']} | {row['wall_seconds']} | {row['train_images_per_second']:,.0f} | "
            f"{row['test_accuracy']:.4f} |"
        )
    return [*lines, ""]


def part_table(key: str, name: str, results: dict) -> list[str]:
    part = results[key]
    lines = [
        f"**{NAMES[key]}** (`{name}`), `cnnlab train --test` with the default recipe "
        f"({part['runs'][0]['recipe']}):",
        "",
        "| seed | wall (s) | training (s) | test accuracy | val accuracy per epoch | "
        "train images/s | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in part["runs"]:
        rates = row["images_per_second"]
        lines.append(
            f"| {row['seed']} | {row['wall_seconds']} | {row['train_seconds']} | "
            f"{row['test_accuracy']:.4f} | {_val_curve(row['val_accuracy'])} | "
            f"{min(rates):,.0f}-{max(rates):,.0f} | {row['peak_rss_mib']} MiB |"
        )
    # Time to each threshold against this file's baseline, kept from another run or not: the
    # same machine kind either way (only T, which decides the targets, must be this run's).
    thresholds = time_to_threshold(
        results.get("baseline") if key == "mnist" else None, part["runs"], key
    )
    if key == "mnist":
        lines += ["", "| test accuracy reached | baseline recipe | cnnlab (median) | ratio |",
                  "|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {n} | {r['baseline']} | {r['cnnlab']} | {r['ratio']} |"
            for n, r in thresholds.items()
        ]
    else:
        shown = ", ".join(f"{n}: {r['cnnlab']}" for n, r in thresholds.items())
        lines += ["", f"Time to test accuracy (median): {shown}."]
    return [*lines, ""]


def profile_table(profile: dict) -> list[str]:
    peak = profile["peak"]
    kinds = profile["operator_kinds"]
    lines = [
        f"**Where the time goes and how close to the peak** ({profile['steps']} profiled training "
        "steps per recipe network on random images of its shape; torch.profiler, self time of "
        "operators by kind). Measured peak: torch.mm of two "
        f"{peak['size']}x{peak['size']} matrices, best of {peak['repeats']}, {peak['threads']} "
        f"threads: {peak['fp32_gflops']:,.0f} GFLOP/s fp32, {peak['bf16_gflops']:,.0f} GFLOP/s "
        f"bf16. {peak.get('theoretical', NO_THEORETICAL_PEAK)} Achieved = 6 x MACs "
        "per image x images/s (forward 2 FLOP per multiply-accumulate, backward twice forward).",
        "",
        "| recipe | MACs/image | batch, precision | train images/s | achieved GFLOP/s | of "
        "measured peak | " + " | ".join(kinds) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(kinds),
    ]
    for row in profile["recipes"]:
        peak_rate = peak["bf16_gflops" if row["precision"] == "bf16" else "fp32_gflops"]
        shares = " | ".join(f"{row['shares'].get(kind, 0.0):.0%}" for kind in kinds)
        lines.append(
            f"| {row['recipe']} | {row['macs_per_image'] / 1e6:.1f} M | {row['batch_size']}, "
            f"{row['precision']}{' channels_last' if row['channels_last'] else ''} | "
            f"{row['images_per_second']:,.0f} | {row['achieved_gflops']:,.1f} | "
            f"{row['achieved_gflops'] / peak_rate:.0%} | {shares} |"
        )
    return [*lines, ""]


def write_block(path: Path, text: str) -> None:
    """Replace what stands between the speed markers of BENCHMARKS.md with `text`."""
    content = path.read_text()
    if BEGIN in content:
        head, rest = content.split(BEGIN, 1)
        content = f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}"
    else:
        content += f"\n## Speed\n\n{BEGIN}\n{text}\n{END}\n"
    path.write_text(content)


def _val_curve(values: list) -> str:
    """The per-epoch validation accuracies, or a word where the recipe holds no split out."""
    if values and all(value == "-" for value in values):
        return "none (no validation split)"
    return ", ".join(map(str, values))
