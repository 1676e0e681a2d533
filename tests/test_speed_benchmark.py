"""benchmarks/speed.py's targets and report (issue 17): targets are multiples of T, the median of
the baseline's first epochs over its seeds in the same run; one BENCHMARKS.md section per machine
kind; achieved GFLOP/s from multiply-accumulates. Hand-made results dicts (worker results faked)
and hand-computed values; nothing is trained."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from torch import nn

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.append(str(BENCHMARKS))  # appended: never shadows an installed module

import machine_peak  # noqa: E402
import speed_report  # noqa: E402
from speed_report import ForeignBaseline  # noqa: E402

_PATH = list(sys.path)
import speed  # noqa: E402  (it puts benchmarks/ first on sys.path: put it back)

sys.path[:] = _PATH

ZEN5 = {"cpu": "AMD EPYC", "capability": "AVX512 + AVX512-BF16", "cores": 2, "torch": "2.14.1",
        "date": "2026-12-01", "load_average_at_start": [0.5, 0.5, 0.5], "native_bf16": True,
        "flags": ["avx2", "avx512f", "avx512_bf16"], "cpu_family": 26}  # fmt: skip
ZEN3 = {"cpu": "AMD EPYC", "capability": "AVX2", "cores": 2, "torch": "2.14.1",
        "date": "2026-11-22", "load_average_at_start": [1.0, 1.0, 1.0]}  # fmt: skip


def runs(*pairs: tuple[float, float]) -> list[dict]:
    """cnnlab runs as speed.py records them: (wall seconds, test accuracy) per seed."""
    return [
        {
            "seed": seed,
            "wall_seconds": wall,
            "test_accuracy": accuracy,
            "train_seconds": wall - 5,
            "val_accuracy": [accuracy],
            "images_per_second": [1000.0],
            "peak_rss_mib": 900,
            "recipe": "mnist",
        }  # fmt: skip
        for seed, (wall, accuracy) in enumerate(pairs)
    ]


def baseline(*walls: float, reused_from: str | None = None) -> dict:
    epochs = [{"epoch": i + 1, "wall_seconds": wall, "train_images_per_second": 800.0,
               "test_accuracy": 0.98 + i / 1000} for i, wall in enumerate(walls)]  # fmt: skip
    return {"epochs": epochs, **({"reused_from": reused_from} if reused_from else {})}


def worker_result(*epochs: tuple[float, float]) -> dict:
    """What speed.py's baseline worker prints: (wall seconds, train images/s) per epoch."""
    rows = [{"epoch": i + 1, "train_seconds": wall - 3, "train_images_per_second": rate,
             "test_accuracy": 0.98 + i / 1000, "wall_seconds": wall}
            for i, (wall, rate) in enumerate(epochs)]  # fmt: skip
    return {
        "epochs": rows,
        "setup_seconds": 0.2,
        "process_wall_seconds": 99.0,
        "peak_rss_mib": 1200,
    }


# This session's two single-epoch Ts (39.0 s, 29.9 s) and a third: the median is 31.2 s.
THREE_SEEDS = [(1, worker_result((39.0, 1712.0), (70.0, 1800.0))),
               (2, worker_result((29.9, 2289.0))), (3, worker_result((31.2, 2200.0)))]  # fmt: skip


def throughput(base: int, by_batch: dict[str, int]) -> dict:
    row = {"infer_images_per_second": 1000, "peak_rss_mib": 900}
    return {
        "baseline": {"train_images_per_second": base, **row},
        "cnnlab": {b: {"train_images_per_second": rate, **row} for b, rate in by_batch.items()},
        "inference": [],
    }


# ---------------------------------------------------------------- targets


def test_mnist_target_is_met_at_exactly_99_4_percent_and_one_t():
    # medians: wall 40 of (50, 40, 30), accuracy 0.994 of (0.993, 0.994, 0.995); T = 40
    verdict = speed_report.judge("mnist", runs((50, 0.994), (40, 0.993), (30, 0.995)), 40.0)
    assert verdict["met"] and verdict["ratio_to_t"] == 1.0
    assert verdict["says"] == "median wall 40.0 s = 1.00 T, median test accuracy 99.40%"
    assert not speed_report.judge("mnist", runs((40.1, 0.995)), 40.0)["met"]  # 1.0025 T
    assert not speed_report.judge("mnist", runs((10, 0.9939)), 40.0)["met"]  # accuracy short


@pytest.mark.parametrize(
    ("key", "accuracy", "multiple"), [("fashion", 0.93, 3.0), ("cifar10", 0.88, 15.0)]
)
def test_fashion_and_cifar_targets_are_their_multiples_of_t(key, accuracy, multiple):
    t = 39.02
    assert speed_report.judge(key, runs((multiple * t, accuracy)), t)["met"]
    assert not speed_report.judge(key, runs((multiple * t + 0.1, accuracy)), t)["met"]
    assert not speed_report.judge(key, runs((t, accuracy - 0.0001)), t)["met"]


def test_throughput_needs_2x_without_native_bf16_and_3x_with_it():
    measured = throughput(1000, {"64": 1500, "128": 2000})  # best batch: 128, 2.00x
    plain = speed_report.judge_throughput(measured, native_bf16=False)
    assert plain["met"] and plain["ratio"] == 2.0 and "batch 128" in plain["says"]
    assert not speed_report.judge_throughput(measured, native_bf16=True)["met"]
    assert speed_report.judge_throughput(throughput(1000, {"64": 3000}), native_bf16=True)["met"]


def test_t_is_the_first_epoch_of_the_baseline_in_the_same_run():
    results = {
        "machine": ZEN5,
        "baseline": baseline(40.0, 80.0),
        "mnist": {"runs": runs((20, 0.995))},
    }
    assert speed_report.baseline_seconds(results) == 40.0
    row = speed_report.target_row("mnist", "speed-x.json", results)
    assert "| 0.50 T (T = 40.0 s) | **met** |" in row


def test_t_is_the_median_of_the_seeds_first_epochs_and_seed_1_keeps_its_epochs():
    record = speed_report.baseline_record(THREE_SEEDS)
    assert record["t_seconds"] == 31.2 and record["t_from"] == "median of 3 first epochs"
    assert [row["first_epoch_seconds"] for row in record["seeds"]] == [39.0, 29.9, 31.2]
    assert [row["train_images_per_second"] for row in record["seeds"]] == [1712.0, 2289.0, 2200.0]
    assert [row["epochs"] for row in record["seeds"]] == [2, 1, 1]
    assert [row["wall_seconds"] for row in record["epochs"]] == [39.0, 70.0]  # seed 1's, as before
    results = {"machine": ZEN5, "baseline": record, "mnist": {"runs": runs((31.2, 0.995))}}
    assert speed_report.baseline_seconds(results) == 31.2  # not seed 1's 39.0
    row = speed_report.target_row("mnist", "speed-x.json", results)
    assert "| 1.00 T (T = 31.2 s) | **met** |" in row
    kept = {**results, "baseline": {**record, "reused_from": "speed-old.json"}}
    with pytest.raises(ForeignBaseline, match="speed-old.json"):
        speed_report.baseline_seconds(kept)  # seeds or not, --reuse never lends T


@pytest.mark.parametrize(
    ("walls", "t", "how"),
    [
        ((40.0,), 40.0, "the first epoch of 1 seed"),
        ((40.0, 30.0), 35.0, "median of 2 first epochs (their mean)"),
        ((10.0, 40.0, 20.0, 30.0), 25.0, "median of 4 first epochs"),  # (20 + 30) / 2
        ((50.0, 10.0, 30.0, 20.0, 40.0), 30.0, "median of 5 first epochs"),
    ],
)
def test_t_of_one_two_and_more_seeds(walls, t, how):
    record = speed_report.baseline_record(
        [(seed, worker_result((wall, 1000.0))) for seed, wall in enumerate(walls, 1)]
    )
    assert (record["t_seconds"], record["t_from"]) == (t, how)
    assert speed_report.yardstick(record).seeds == tuple(range(1, len(walls) + 1))


def test_the_report_line_shows_t_each_seed_and_the_spread():
    line = speed_report.t_line(speed_report.baseline_record(THREE_SEEDS))
    # spread 39.0 - 29.9 = 9.1 s; 9.1 / 31.2 = 29%
    assert line == (
        "T = 31.2 s, median of 3 first epochs: seed 1 39.0 s (1,712 images/s), seed 2 29.9 s "
        "(2,289 images/s), seed 3 31.2 s (2,200 images/s); spread 29.9-39.0 s (9.1 s, 29% of T)."
    )
    files = [("speed-2026-12-01T0300.json", {"machine": ZEN5, "argv": "--parts mnist",
              "baseline": speed_report.baseline_record(THREE_SEEDS),
              "mnist": {"runs": runs((28.08, 0.995))}})]  # fmt: skip
    text = speed_report.markdown_all(files)
    assert line in text.splitlines()
    assert "| 0.90 T (T = 31.2 s) | **met** |" in text  # 28.08 / 31.2


def test_an_old_results_file_with_one_baseline_run_still_renders():
    # the shape of benchmarks/results/speed-2026-12-01T0202.json's baseline: no seeds, no T
    old = {"epochs": [{"epoch": 1, "train_seconds": 26.22, "train_images_per_second": 2288.6,
                       "test_accuracy": 0.9846, "wall_seconds": 29.95}],
           "setup_seconds": 0.17, "process_wall_seconds": 32.7, "peak_rss_mib": 1212}  # fmt: skip
    files = [("speed-2026-12-01T0202.json", {"machine": ZEN5, "argv": "--parts mnist",
              "baseline": old, "mnist": {"runs": runs((26.6, 0.995))}})]  # fmt: skip
    text = speed_report.markdown_all(files)
    assert (
        "T = 29.9 s, the first epoch of a single baseline run (a file from before T was a median "
        "of seeds): seed 1, 2,289 images/s."
    ) in text.splitlines()
    assert "| 0.89 T (T = 29.9 s) | **met** |" in text  # 26.6 / 29.95 = 0.888
    assert "| 1 | 29.95 | 2,289 | 0.9846 |" in text


def test_the_baseline_part_runs_seed_1_for_its_epochs_and_the_others_for_one(monkeypatch):
    calls = []
    fake = {str(seed): result for seed, result in THREE_SEEDS}

    def worker(name, *extra):
        calls.append((name, *extra))
        return fake[extra[1]]

    monkeypatch.setattr(speed, "worker", worker)
    record = speed.part_baseline(SimpleNamespace(baseline_epochs=2, baseline_seeds=3))
    assert calls == [("baseline", "2", "1"), ("baseline", "1", "2"), ("baseline", "1", "3")]
    assert record["t_seconds"] == 31.2 and len(record["seeds"]) == 3
    seeds = []
    monkeypatch.setattr(speed, "worker_baseline", lambda epochs, seed: seeds.append(seed) or {})
    speed.WORKERS["baseline"](["2", "3"])
    speed.WORKERS["baseline"](["1"])  # the older call form: seed 1, as before the seeds
    assert seeds == [3, 1]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_fewer_than_one_baseline_seed_is_refused(value):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "speed.py"), "--parts", "mnist",
         "--baseline-seeds", value], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument --baseline-seeds: '{value}' is not a whole number of at least 1" in (
        done.stderr
    )


def test_a_reused_baseline_never_supplies_t():
    results = {"machine": ZEN5, "baseline": baseline(40.0, reused_from="speed-old.json"),
               "mnist": {"runs": runs((20, 0.995))}}  # fmt: skip
    with pytest.raises(ForeignBaseline, match="speed-old.json"):
        speed_report.baseline_seconds(results)
    with pytest.raises(ForeignBaseline, match="no baseline"):
        speed_report.baseline_seconds({"machine": ZEN5})
    row = speed_report.target_row("mnist", "speed-x.json", results)
    assert "0.50 T of another run" in row and "not judged" in row and "**met**" not in row


def test_reuse_keeps_the_earlier_baseline_only_when_no_target_part_runs():
    earlier = {"machine": ZEN5, "baseline": baseline(40.0), "throughput": throughput(1, {"64": 2})}
    now = {"machine": ZEN5, "mnist": {"runs": runs((20, 0.995))}}
    merged = speed_report.merge_reused(now, earlier, ["mnist"], "speed-old.json")
    assert "baseline" not in merged  # T would be foreign
    assert merged["throughput"]["reused_from"] == "speed-old.json"
    profile_only = speed_report.merge_reused(
        {"machine": ZEN5}, earlier, ["profile"], "speed-old.json"
    )
    assert profile_only["baseline"]["reused_from"] == "speed-old.json"
    with pytest.raises(ForeignBaseline, match="AVX2"):
        speed_report.merge_reused({"machine": ZEN5}, {**earlier, "machine": ZEN3}, [], "z3.json")


def test_zero_baseline_epochs_with_a_target_part_is_refused():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "speed.py"), "--parts", "mnist",
         "--baseline-epochs", "0"], capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--baseline-epochs must be at least 1" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- report


def test_native_bf16_is_derived_for_files_that_did_not_record_it():
    assert not speed_report.native_bf16(ZEN3)
    assert speed_report.native_bf16({"capability": "AVX512 + AMX"})
    assert speed_report.native_bf16({"capability": "AVX512 + AVX512-BF16"})
    assert not speed_report.native_bf16({**ZEN5, "native_bf16": False})  # recorded wins


def test_two_machine_kinds_give_two_sections_each_with_its_newest_parts():
    files = [
        ("speed-2026-11-22T0410.json", {"machine": ZEN3, "argv": "--parts mnist",
         "baseline": baseline(80.0), "mnist": {"runs": runs((60, 0.990))}}),
        ("speed-2026-11-22T0500.json", {"machine": ZEN3, "argv": "--parts mnist",
         "baseline": baseline(100.0), "mnist": {"runs": runs((50, 0.995))}}),
        ("speed-2026-11-22T0600.json", {"machine": ZEN3, "argv": "--parts throughput --reuse x",
         "throughput": throughput(500, {"64": 1000}),
         "mnist": {"runs": runs((1, 0.1)), "reused_from": "x"}}),
        ("speed-2026-12-01T0013.json", {"machine": ZEN5, "argv": "--parts mnist",
         "baseline": baseline(40.0), "mnist": {"runs": runs((48, 0.995))}}),
    ]  # fmt: skip
    text = speed_report.markdown_all(files)
    sections = text.split("#### ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        "AMD EPYC, AVX512 + AVX512-BF16",
        "AMD EPYC, AVX2",
    ]
    zen5, zen3 = sections
    assert "| 1.20 T (T = 40.0 s) | not met |" in zen5  # 48 s > 1.0 x 40 s
    assert "native bfloat16" in zen5 and "CPU family 26" in zen5
    assert "| 0.50 T (T = 100.0 s) | **met** |" in zen3  # the newest mnist run, its own T
    assert "0.1000" not in zen3  # a reused part is never the newest measurement
    assert "| 1,000 against 500 images/s (cnnlab at batch 64) | 2.00x | **met** |" in zen3


def test_the_block_between_the_markers_is_replaced_and_nothing_else(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# head\n{speed_report.BEGIN}\nold\n{speed_report.END}\ntail\n")
    speed_report.write_block(path, "new")
    assert path.read_text() == f"# head\n{speed_report.BEGIN}\nnew\n{speed_report.END}\ntail\n"


# ---------------------------------------------------------------- GFLOP/s and the profile


def test_achieved_gflops_of_a_tiny_network_from_hand_counted_macs():
    # conv 1->2, 3x3 on 4x4: 2x2x2 outputs x 9 MACs = 72; fc 8->3: 24; 96 MACs per image
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    assert machine_peak.macs_per_image(model, (1, 4, 4)) == 96
    assert machine_peak.training_gflops(96, 1e6) == pytest.approx(6 * 96 * 1e6 / 1e9)  # 0.576
    assert machine_peak.matmul_gflops(2048, 1.0) == pytest.approx(2 * 2048**3 / 1e9)


@pytest.mark.parametrize(
    ("chain", "kind"),
    [
        (("aten::mkldnn_convolution", "aten::_convolution", "aten::conv2d"), "conv forward"),
        (
            ("aten::as_strided_", "aten::convolution_backward", "ConvolutionBackward0"),
            "conv backward",
        ),
        (("aten::copy_", "aten::_to_copy", "aten::to", "aten::conv2d"), "casts"),
        (("aten::mul_", "Optimizer.step#SGD.step"), "optimizer"),
        (("aten::empty", "aten::native_batch_norm", "aten::batch_norm"), "batch norm"),
        (("aten::clamp_min", "aten::relu"), "activation"),
        (("aten::max_pool2d_with_indices_backward", "MaxPool2DWithIndicesBackward0"), "pooling"),
        (("aten::mm", "AddmmBackward0"), "other"),
    ],
)
def test_operator_kinds_are_decided_by_the_nearest_telling_name(chain, kind):
    assert machine_peak.operator_kind(chain) == kind


def test_operator_seconds_add_self_times_by_kind():
    conv = SimpleNamespace(name="aten::conv2d", cpu_parent=None, self_cpu_time_total=100.0)
    inner = SimpleNamespace(
        name="aten::mkldnn_convolution", cpu_parent=conv, self_cpu_time_total=3e6
    )
    step = SimpleNamespace(name="Optimizer.step#SGD.step", cpu_parent=None, self_cpu_time_total=0.0)
    mul = SimpleNamespace(name="aten::mul_", cpu_parent=step, self_cpu_time_total=1e6)
    seconds = machine_peak.operator_seconds([conv, inner, step, mul])
    assert seconds["conv forward"] == pytest.approx(3.0001)
    assert seconds["optimizer"] == pytest.approx(1.0) and seconds["other"] == 0.0


def test_profile_table_shows_shares_and_the_fraction_of_the_measured_peak():
    profile = {
        "steps": 30, "operator_kinds": list(machine_peak.OPERATOR_KINDS),
        "peak": {"size": 2048, "repeats": 5, "threads": 2, "fp32_gflops": 200.0,
                 "bf16_gflops": 400.0},
        "recipes": [{"recipe": "mnist", "macs_per_image": 1_900_000, "batch_size": 128,
                     "precision": "bf16", "channels_last": True, "images_per_second": 8771.9,
                     "achieved_gflops": 100.0, "shares": {"conv forward": 0.25, "other": 0.75}}],
    }  # fmt: skip
    row = speed_report.profile_table(profile)[-2]
    assert row.startswith("| mnist | 1.9 M | 128, bf16 channels_last | 8,772 | 100.0 | 25% | 25% |")
    assert row.endswith("| 75% |")
