"""Run one target of targets.py under atheris (libFuzzer flags pass through: -max_total_time=60,
-timeout=5, a corpus folder); without a folder, the seeds (seeds.py) are written into
TMPDIR/cnnlab-fuzz-corpus/NAME/, which then collects the corpus."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
MODULES = {
    "spec": ["cnnlab.specs.network", "cnnlab.specs.grammar"],
    "idx": ["cnnlab.data.idx"],
    "image": ["cnnlab.data.images", "PIL.Image", "PIL.PngImagePlugin", "PIL.JpegImagePlugin"],
    "toml": ["tomllib", "cnnlab.training.config", "cnnlab.specs.recipes"],
}


def main(name: str) -> None:
    sys.path.insert(0, str(HERE))
    import importlib

    import cnnlab.errors  # noqa: F401  (imported before instrumenting: not under test)

    with atheris.instrument_imports(include=["cnnlab", "PIL", "tomllib"]):
        for module in MODULES[name]:
            importlib.import_module(module)
        import targets
    from seeds import write_seeds

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        argv.append(
            str(write_seeds(name, Path(tempfile.gettempdir()) / "cnnlab-fuzz-corpus" / name))
        )
    atheris.Setup(argv, targets.TARGETS[name])
    atheris.Fuzz()
