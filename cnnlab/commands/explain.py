"""`cnnlab explain RUN`: feature spaces per layer, separability against depth, neuron maps,
feature maps, the first kernel bank and where the network looks, written under RUN/explain/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from cnnlab.commands import COMMANDS, common
from cnnlab.specs.explain import (
    EXPLAINER_NAMES,
    POOLINGS,
    PROJECTION_NAMES,
    WHAT,
    ExplainConfig,
)

EPILOG = """examples:
  cnnlab explain runs/fmnist                       # everything, t-SNE, test split
  cnnlab explain runs/fmnist --untrained           # before/after: also the initialisation
  cnnlab explain runs/fmnist --what separability,features --method umap --max-points 5000
  cnnlab explain runs/parasites --what cam --masks masks/ --cam-methods gradcam,occlusion
  cnnlab explain runs/coins --what cam --masks auto   # masks derived: objects on a plain background
  cnnlab explain runs/fmnist --layers input,features.stage2,last_hidden --pooling gap

layers are dotted names from the model's named_modules() (`cnnlab summary` lists them), plus
"input" (the normalised image) and "last_hidden" (the input of the classifier). Default: input,
every stage output the model names (feature_layers) and last_hidden.

written under RUN/explain/SPLIT/:
  summary.json                     the last call: settings, timings, statements, files written
  projections-METHOD.png           small multiples: one panel per layer (rows: trained, untrained)
  projections/METHOD/NN-LAYER-STATE.png/.json   one layer's projection and its coordinates
  separability.png/.json           silhouette, k-NN accuracy, neighbourhood hit against depth
  neurons/LAYER-STATE.png/.json    neuron map coloured by ROC AUC per class; -top-images.png
  activations/NN-LAYER.png         one image's feature maps at every layer (--image-index)
  cam/METHOD-correct|confusions|top-losses.png, methods.png, galleries.json
  cam/object-share.png/.json       with --masks: importance inside the object, per class
  cam/object-share-masks.png       with --masks auto: the derived masks outlined on the images
and RUN/explain/filters-STATE.png/filters.json: the first convolution's kernel bank.

masks mirror the images: for folder: data the same relative path under --masks (any image suffix,
.png first); for named data sets MASKS/PART/INDEX.png for the sample "PART:INDEX" (e.g.
masks/test/17.png). White (> 127) is the object. --masks auto derives them from each image
(an approximation for objects on a plain background): Otsu's threshold, the object is the side
unlike the border's typical value, its largest connected component, small holes filled; images
where none is found (e.g. constant ones) are counted and left out. A folder named auto: ./auto.
"""


SHARED = ("split", "data", "data_dir", "checkpoint", "device")  # flags from commands.common
# Help of the other ExplainConfig fields, each the flag of the same name; "{default}" is the
# field's default, {parts} and {explainers} the names --what and --cam-methods take.
FIELD_HELP = {
    "layers": "comma-separated layers (default: input, feature_layers, last_hidden)",
    "method": "2-D projection (default: {default})",
    "what": "comma-separated parts, from: {parts} (default: all)",
    "max_points": "at most this many images, a seeded random sample; 0 for all "
    "(default: {default})",
    "seed": "seed of the sample, projections and galleries (default: {default})",
    "untrained": "also explain the untrained initialisation of the same spec "
    "(before/after training)",
    "pooling": "global feature of a layer: its maps flattened (average-pooled to at most "
    "--max-features first) or averaged per channel (default: {default})",
    "max_features": "cap on a flattened layer's dimensions (default: {default})",
    "neighbours": "k of k-NN accuracy and neighbourhood hit (default: {default})",
    "neuron_layers": "comma-separated layers for neuron maps (default: last_hidden)",
    "neuron_classes": "comma-separated class names or indices, one neuron-map panel each "
    "(default: the first 20 classes)",
    "cam_methods": "comma-separated, from: {explainers} (default: all)",
    "cam_layer": "layer of Grad-CAM(++) (default: the deepest spatial feature layer)",
    "image_index": "image of the split whose feature maps are shown (default: {default})",
    "per_cell": "images per confusion-matrix cell in the galleries (default: {default})",
    "masks": "object masks mirroring the images, or 'auto' to derive them (see below): report "
    "the share of importance inside the object",
    "batch_size": "images per forward pass (default: {default})",
}
METAVARS = {"masks": "DIR|auto"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help=COMMANDS["explain"],
        description="Explain a trained network on one split: projections of every layer's global "
        "features (coloured by class, misclassified marked), class separability against depth, "
        "neuron maps (Rauber et al. 2017), feature maps and the first kernel bank, and Grad-CAM, "
        "Grad-CAM++, saliency and occlusion galleries. Writes PNG + JSON under RUN/explain/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ExplainConfig()
    common.add_run_argument(parser)
    common.add_split_flag(parser, defaults.split)
    names = {"parts": ",".join(WHAT), "explainers": ",".join(sorted(EXPLAINER_NAMES))}
    choices = {"method": sorted(PROJECTION_NAMES), "pooling": POOLINGS}
    for field in dataclasses.fields(ExplainConfig):
        if field.name not in SHARED:
            default = getattr(defaults, field.name)
            text = FIELD_HELP[field.name].format(default=default, **names)
            _add_field_flag(parser, field, default, text, choices.get(field.name))
    common.add_data_flags(parser)
    common.add_checkpoint_flag(parser)
    common.add_device_flags(parser, runtime=False)
    common.add_json_flag(parser, "the summary")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(handler=run)


def _add_field_flag(
    parser: argparse.ArgumentParser,
    field: dataclasses.Field,
    default: Any,
    help: str,
    choices: Sequence[str] | None,
) -> None:
    """`--max-points` for `max_points`; the value type follows the field's annotation: tuples
    of names are comma-separated, booleans are switches."""
    flag = "--" + field.name.replace("_", "-")
    kind = str(field.type)
    if kind == "bool":
        parser.add_argument(flag, action="store_true", default=default, help=help)
        return
    value_type = (
        common.comma_names if kind.startswith("tuple") else int if kind.startswith("int") else str
    )
    parser.add_argument(
        flag,
        type=value_type,
        default=default,
        choices=choices,
        metavar=METAVARS.get(field.name),
        help=help,
    )


def run(args: argparse.Namespace) -> int:
    from cnnlab.explain import explain_run

    fields = {f.name for f in dataclasses.fields(ExplainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    if values["max_points"] == 0:
        values["max_points"] = None
    summary = explain_run(args.run, ExplainConfig(**values), show_progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    separability = summary.get("separability")
    if separability:
        print(separability["statement"])
    for layer, entry in summary.get("neurons", {}).items():
        trained = entry["trained"]
        print(
            f"neurons of {layer}: mean best ROC AUC {trained['mean_best_auc']:.3f}; "
            f"{trained['specialised_neurons']} of {trained['neurons']} reach "
            f"{trained['specialised_threshold']} for some class"
        )
        if "statement" in entry:
            print(entry["statement"])
    share = summary.get("cam", {}).get("object_share")
    if share:
        for text in [share.get("note"), share.get("statement")]:
            if text:
                print(text)
        for values in share["methods"].values():
            print(values["statement"])
    print(
        f"written: {len(summary['files'])} files under {args.run}/explain/ "
        f"(summary: {args.run}/explain/{summary['split']}/summary.json) "
        f"in {summary['total_seconds']:.1f} s"
    )
    return 0
