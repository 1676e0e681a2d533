"""A short, deterministic run of the fuzz targets (fuzz/targets.py): the seeds and seeded mutations
of them through the same one-input functions the atheris harnesses fuzz (issue 16, item 9).
Every input must end in a value or a CnnlabError with a message, quickly."""

import sys
import time
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import seeds  # noqa: E402
import targets  # noqa: E402

INPUTS_PER_TARGET = 200
SLOWEST_SECONDS = 2.0  # one input; a hang shows up here rather than as a stuck suite
KNOWN = {
    # Found by the fuzzers; the fixes belong in cnnlab/data/idx.py and training/config.py (see
    # BENCHMARKS.md, "Fuzzing (issue 16)"). strict=False: passes on its own once fixed.
    "idx": "read_idx: a 13-byte header declaring 1 GiB allocates and zero-fills 1 GiB (seconds)",
    "toml": "load_toml: a non-table `train = 5` raises TypeError instead of a ConfigError",
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=KNOWN[name], strict=False))
        if name in KNOWN
        else name
        for name in targets.TARGETS
    ],
)
def test_every_input_ends_in_a_value_or_a_cnnlab_error(name):
    one_input = targets.TARGETS[name]
    slowest = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about corrupt EXIF and tags
        for data in seeds.corpus(name, INPUTS_PER_TARGET):
            start = time.perf_counter()
            one_input(data)
            slowest = max(slowest, time.perf_counter() - start)
    assert slowest < SLOWEST_SECONDS
