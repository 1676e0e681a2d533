"""cnnlab: a workbench for convolutional neural networks for image classification.

The Python API (cnnlab.api): `run = cnnlab.train(data="digits", model="lenet5", epochs=3,
out="runs/x")`, `cnnlab.evaluate(run)`, `model = cnnlab.load("runs/x")`, `model.predict(images)`;
`@cnnlab.register_model(name)` adds a model family. Imported on first use, so `import cnnlab`
and the command line's help stay fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "train": "cnnlab.api",
    "resume": "cnnlab.api",
    "evaluate": "cnnlab.api",
    "load": "cnnlab.api",
    "Model": "cnnlab.api",
    "Predictions": "cnnlab.api",
    "Run": "cnnlab.api",
    "register_model": "cnnlab.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
