"""`cnnlab export RUN`: write a run's model as ONNX for ONNX Runtime (cnnlab.inference.onnx).

The export is also made on demand by `cnnlab evaluate/predict --runtime onnx`; this command makes
it explicit, for serving the model outside cnnlab.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cnnlab.commands import COMMANDS, common

EPILOG = """examples:
  cnnlab export runs/digits                     # writes runs/digits/export/model-best.onnx
  cnnlab export runs/digits --checkpoint last --out lenet.onnx
  cnnlab evaluate runs/digits --runtime onnx    # exports on first use, then reuses the file

The model takes normalised float32 images [batch, C, H, W]: x = (pixels / 255 - mean) / std,
with mean and std per band from RUN/dataset.json (also in FILE.onnx.json), and returns logits
[batch, classes]. FILE.onnx.json records the checkpoint it was made from (SHA-256, epoch, step),
the opset and the shapes; an export whose checkpoint is unchanged is reused, otherwise replaced.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help=COMMANDS["export"],
        description="Export the model of a trained run to ONNX (float32, batch size free), "
        "check that ONNX Runtime gives the same logits as PyTorch, and write a JSON record "
        "beside it. Needs the optional packages onnx and onnxruntime "
        "(`pip install 'cnnlab[onnx]'`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common.add_run_argument(parser)
    common.add_checkpoint_flag(parser, "--which")
    parser.add_argument(
        "--out",
        metavar="FILE.onnx",
        help="where to write (default: RUN/export/model-CHECKPOINT.onnx)",
    )
    parser.add_argument(
        "--force", action="store_true", help="export again even if the existing file is current"
    )
    common.add_json_flag(parser, "the export record")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.onnx import export_onnx, read_export_record

    path = export_onnx(args.run, args.checkpoint, args.out, force=args.force)
    record = read_export_record(path)
    if args.json:
        print(json.dumps({"onnx": str(path), **record}, indent=2))
        return 0
    checkpoint, model_input = record["checkpoint"], record["input"]
    shape = ", ".join(str(n) for n in model_input["shape"])
    print(f"onnx: {path}")
    print(
        f"from: {checkpoint['file']} (epoch {checkpoint['epoch']}, "
        f"step {checkpoint['global_step']}), opset {record['opset']}"
    )
    print(f"input: {model_input['name']} [{shape}] {model_input['dtype']}")
    normalization = model_input["normalization"]
    print(f"normalise: (pixels / 255 - {normalization['mean']}) / {normalization['std']}")
    print(f"output: {record['output']['name']} [{', '.join(map(str, record['output']['shape']))}]")
    return 0
