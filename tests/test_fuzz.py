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
SLOWEST_SECONDS = 1.0  # one input; a hang shows up here rather than as a stuck suite


@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_every_input_ends_in_a_value_or_a_cnnlab_error(name):
    one_input = targets.TARGETS[name]
    one_input(b"")  # imports (torch among them) before the clock starts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about corrupt EXIF and tags
        for data in seeds.corpus(name, INPUTS_PER_TARGET):
            start = time.perf_counter()
            one_input(data)
            assert time.perf_counter() - start < SLOWEST_SECONDS, f"slow on {data[:60]!r}"


def test_a_huge_repeat_count_is_refused_not_expanded():
    from cnnlab.errors import ConfigError
    from cnnlab.specs.network import parse_spec

    # fuzz_spec.py's slow unit: "fc11111*1111111" took 10 s; nested repeats multiply (a hang).
    with pytest.raises(ConfigError, match="repetition count of 100,000"):
        parse_spec("fc16*100000 -> fc")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expand to 1,000,000,001 layers"):
        parse_spec("[[[conv8]*1000]*1000]*1000 -> fc")
    assert time.perf_counter() - started < 0.5  # counted, never expanded


def test_a_train_key_that_is_not_a_table_is_a_config_error(tmp_path):
    from cnnlab.errors import ConfigError
    from cnnlab.training.config import load_toml

    for text in ("train = 5", 'train = "ab"', "train = [1, 2]"):
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="'train' must be a table"):
            load_toml(path)
