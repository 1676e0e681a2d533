"""`cnnlab summary MODEL_OR_SPEC`: every layer's output shape, parameters, multiply-accumulates and
receptive field, and totals (seed 003's output-size and parameter-count questions, for a whole
network). Computed on torch's meta device, so even VGG-16 at 224 px takes a fraction of a second."""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.errors import ConfigError
from cnnlab.specs.network import SPEC_GRAMMAR

EPILOG = (
    """examples:
  cnnlab summary resnet20 --input 3,32,32 --classes 10
  cnnlab summary tv-vgg16 --input 3,224,224 --classes 1000 --json
  cnnlab summary "conv8x5 -> fc" --input 3,28,28 --classes 2
  cnnlab summary "[[conv32 -> relu]*2 -> pool]*5 -> fc" --input 1,28,28   # shows where it fails

"""
    + SPEC_GRAMMAR
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "summary",
        help=COMMANDS["summary"],
        description="Show one row per layer of a registered model or a network spec: output "
        "shape, trainable parameters, multiply-accumulates and receptive field, then the totals. "
        "If the input is too small for the network, the table stops at the layer that fails and "
        "a sentence says why (exit status 2).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model", metavar="MODEL_OR_SPEC", help="a name from `cnnlab models` or a spec"
    )
    parser.add_argument(
        "--input", default="3,32,32", metavar="C,H,W",
        help="bands, height and width of the input images (default: 3,32,32)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", type=int, default=10, metavar="N", help="number of classes (default: 10)"
    )
    parser.add_argument(
        "--model-options", action="append", default=[], metavar="KEY=VALUE",
        help="builder options as in `cnnlab train` (repeatable; VALUE parsed as JSON)",
    )  # fmt: skip
    common.add_json_flag(parser, "the summary")
    parser.set_defaults(handler=run)


def parse_input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"--input {text!r} is invalid: expected three positive integers C,H,W "
            "(bands, height, width), e.g. --input 3,32,32."
        )
    return shape


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnlab.models import ModelSpec, SpecDoesNotFit, build_model, resolve_model_argument
    from cnnlab.models.summary import summarize
    from cnnlab.training.config import parse_model_option

    shape = parse_input_shape(args.input)
    if args.classes < 1:
        raise ConfigError(f"--classes {args.classes} is invalid: it must be at least 1.")
    options = dict(parse_model_option(text) for text in args.model_options)
    name, options = resolve_model_argument(args.model, options)
    spec = ModelSpec(name, shape[0], args.classes, shape[1:], options)
    title = f"spec {options['spec']!r}" if "spec" in options and name == "spec" else name
    with torch.device("meta"):
        try:
            model, error = build_model(spec), None
        except SpecDoesNotFit as failure:
            # Summarise the layers that were built, under the names they have in the network.
            model, error = torch.nn.Sequential(OrderedDict(features=failure.partial)), str(failure)
            title += " (the layers before the failure)"
    summary = summarize(model, shape, title)
    error = error or summary.error
    if args.json:
        print(
            json.dumps(
                {**summary.to_dict(), "error": error, "model_spec": spec.to_dict()}, indent=2
            )
        )
    else:
        text = summary.format_table()
        if error and not summary.error:
            text += f"\n\nStopped: {error}"
        print(text)
    return 2 if error else 0
