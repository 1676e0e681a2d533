"""`cnnlab explain RUN`: feature spaces per layer, separability against depth, neuron maps,
feature maps, the first kernel bank and where the network looks, written under RUN/explain/.
"""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  cnnlab explain runs/fmnist                       # everything, t-SNE, test split
  cnnlab explain runs/fmnist --untrained           # before/after: also the initialisation
  cnnlab explain runs/fmnist --what separability,features --method umap --max-points 5000
  cnnlab explain runs/parasites --what cam --masks masks/ --cam-methods gradcam,occlusion
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
and RUN/explain/filters-STATE.png/filters.json: the first convolution's kernel bank.

masks mirror the images: for folder: data the same relative path under --masks (any image suffix,
.png first); for named data sets MASKS/PART/INDEX.png for the sample "PART:INDEX" (e.g.
masks/test/17.png). White (> 127) is the object.
"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(commands) -> None:
    from cnnlab.explain import EXPLAINERS, PROJECTIONS, WHAT, ExplainConfig
    from cnnlab.explain.features import POOLINGS

    defaults = ExplainConfig()
    parser = commands.add_parser(
        "explain",
        help="explain a trained run: feature spaces per layer, neurons, where it looks",
        description="Explain a trained network on one split: projections of every layer's global "
        "features (coloured by class, misclassified marked), class separability against depth, "
        "neuron maps (Rauber et al. 2017), feature maps and the first kernel bank, and Grad-CAM, "
        "Grad-CAM++, saliency and occlusion galleries. Writes PNG + JSON under RUN/explain/.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", metavar="RUN", help="run directory written by `cnnlab train`")
    parser.add_argument(
        "--split",
        default=defaults.split,
        choices=("test", "val", "train"),
        help="split to explain (default: test)",
    )
    parser.add_argument(
        "--layers",
        type=_names,
        default=defaults.layers,
        help="comma-separated layers (default: input, feature_layers, last_hidden)",
    )
    parser.add_argument(
        "--method",
        default=defaults.method,
        choices=PROJECTIONS.names(),
        help=f"2-D projection (default: {defaults.method})",
    )
    parser.add_argument(
        "--what",
        type=_names,
        default=defaults.what,
        help=f"comma-separated parts, from: {','.join(WHAT)} (default: all)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=defaults.max_points,
        help="at most this many images, a seeded random sample; 0 for all "
        f"(default: {defaults.max_points})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of the sample, projections and galleries (default: 0)",
    )
    parser.add_argument(
        "--untrained",
        action="store_true",
        help="also explain the untrained initialisation of the same spec (before/after training)",
    )
    parser.add_argument(
        "--pooling",
        default=defaults.pooling,
        choices=POOLINGS,
        help="global feature of a layer: its maps flattened (average-pooled to at "
        "most --max-features first) or averaged per channel (default: flatten)",
    )
    parser.add_argument(
        "--max-features",
        type=int,
        default=defaults.max_features,
        help=f"cap on a flattened layer's dimensions (default: {defaults.max_features})",
    )
    parser.add_argument(
        "--neighbours",
        type=int,
        default=defaults.neighbours,
        help=f"k of k-NN accuracy and neighbourhood hit (default: {defaults.neighbours})",
    )
    parser.add_argument(
        "--neuron-layers",
        type=_names,
        default=defaults.neuron_layers,
        help="comma-separated layers for neuron maps (default: last_hidden)",
    )
    parser.add_argument(
        "--neuron-classes",
        type=_names,
        default=defaults.neuron_classes,
        help="comma-separated class names or indices, one neuron-map panel each "
        "(default: the first 20 classes)",
    )
    parser.add_argument(
        "--cam-methods",
        type=_names,
        default=defaults.cam_methods,
        help=f"comma-separated, from: {','.join(EXPLAINERS.names())} (default: all)",
    )
    parser.add_argument(
        "--cam-layer",
        default=None,
        help="layer of Grad-CAM(++) (default: the deepest spatial feature layer)",
    )
    parser.add_argument(
        "--image-index",
        type=int,
        default=defaults.image_index,
        help="image of the split whose feature maps are shown (default: 0)",
    )
    parser.add_argument(
        "--per-cell",
        type=int,
        default=defaults.per_cell,
        help="images per confusion-matrix cell in the galleries (default: 6)",
    )
    parser.add_argument(
        "--masks",
        metavar="DIR",
        help="object masks mirroring the images "
        "(see below): report the share of importance inside the object",
    )
    parser.add_argument(
        "--data",
        help="read the images from this data source instead of the one "
        "recorded in the run (same images and classes)",
    )
    parser.add_argument("--data-dir", help="folder to look for the data set in first")
    parser.add_argument(
        "--checkpoint",
        default="best",
        choices=("best", "last"),
        help="best validation checkpoint or the newest one (default: best)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"images per forward pass (default: {defaults.batch_size})",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace) -> int:
    import dataclasses

    from cnnlab.explain import ExplainConfig, explain_run

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
        for values in share["methods"].values():
            print(values["statement"])
    print(
        f"written: {len(summary['files'])} files under {args.run}/explain/ "
        f"(summary: {args.run}/explain/{summary['split']}/summary.json) "
        f"in {summary['total_seconds']:.1f} s"
    )
    return 0
