"""`cnnlab export RUN`: write a run's model as ONNX for ONNX Runtime (cnnlab.inference.onnx).

The export is also made on demand by `cnnlab evaluate/predict --runtime onnx`; this command makes
it explicit, for serving the model outside cnnlab.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

EPILOG = """examples:
  cnnlab export runs/digits                     # writes runs/digits/export/model-best.onnx
  cnnlab export runs/digits --checkpoint last --out lenet.onnx
  cnnlab evaluate runs/digits --runtime onnx    # exports on first use, then reuses the file

The model takes normalised float32 images [batch, C, H, W]: x = (pixels / 255 - mean) / std,
with mean and std per band from RUN/dataset.json (also in FILE.onnx.json), and returns logits
[batch, classes]. FILE.onnx.json records the checkpoint it was made from (SHA-256, epoch, step),
the opset and the shapes; an export whose checkpoint is unchanged is reused, otherwise replaced.
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "export",
        help="write a trained run's model as ONNX for ONNX Runtime",
        description="Export the model of a trained run to ONNX (float32, batch size free), "
        "check that ONNX Runtime gives the same logits as PyTorch, and write a JSON record "
        "beside it. Needs the optional packages onnx and onnxruntime "
        "(`pip install 'cnnlab[onnx]'`).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run directory written by `cnnlab train`")
    parser.add_argument(
        "--checkpoint", "--which", dest="which", default="best", choices=("best", "last"),
        help="best validation checkpoint or the newest one (default: best, else last)",
    )  # fmt: skip
    parser.add_argument(
        "--out", metavar="FILE.onnx", help="where to write (default: RUN/export/model-WHICH.onnx)"
    )
    parser.add_argument(
        "--force", action="store_true", help="export again even if the existing file is current"
    )
    parser.add_argument("--json", action="store_true", help="print the export record as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.inference.onnx import export_onnx, export_record_path

    path = export_onnx(args.run, args.which, args.out, force=args.force)
    record = json.loads(export_record_path(path).read_text(encoding="utf-8"))
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
