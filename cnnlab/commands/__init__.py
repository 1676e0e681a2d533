"""The `cnnlab` commands: one module each, cnnlab/commands/NAME.py, whose `register(subparsers)`
adds its sub-parser with `handler` set; the flags several share are in `common`.

COMMANDS lists them in workflow order (look at the data, design a network, train, use it) with
the one-line purpose `cnnlab --help` shows; `cnnlab.cli` reads it to build the parser.
"""

COMMANDS: dict[str, str] = {
    "datasets": "list data sets and where they were found",
    "augment": "write a PNG grid of augmented training images",
    "duplicates": "find images copied or nearly copied across train, val and test",
    "models": "list the model registry",
    "summary": "layer-by-layer shapes, parameters, MACs and receptive fields",
    "ops": "apply the slides' image operations and draw each step",
    "recipes": "list the per-data-set training recipes and what they reached",
    "check": "sanity-check a training set-up in seconds before training it",
    "lr-find": "the learning-rate range test: a plot and a suggested rate",
    "train": "train a model and write a run directory",
    "tune": "search training settings with Optuna, one run per trial",
    "calibrate": "fit temperature and a two-class threshold on validation",
    "evaluate": "score a trained run on a split and write RUN/eval/",
    "predict": "classify image files with a trained run",
    "explain": "explain a run: feature spaces, neurons, where it looks",
    "report": "write one self-contained, interactive HTML report of a run",
    "export": "write a trained run's model as ONNX for ONNX Runtime",
    "compare": "compare classifier pipelines on identical splits",
    "cache": "list or clear the decoded-image cache",
}
