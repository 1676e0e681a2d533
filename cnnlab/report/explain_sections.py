"""The report's explain sections: the interactive projections of every explained layer, then
every image `cnnlab explain` listed in its summary.json, with its caption and statements."""

from __future__ import annotations

from cnnlab.report import charts
from cnnlab.report.collect import ReportInputs, missing
from cnnlab.report.html import Section, chart_slot, figure, paragraph
from cnnlab.report.images import file_data_uri, thumbnail_uris
from cnnlab.run.artifacts import explain_file

# (title, what a file's path contains, caption prefix), in the order the report shows them
GROUPS = (
    ("Projections (small multiples)", "projections-", "every layer, left to right"),
    ("Separability against depth", "separability", "separability per layer"),
    ("Neuron maps", "/neurons/", "neurons"),
    ("Feature maps of one image", "/activations/", "feature maps"),
    ("Kernel bank of the first convolution", "filters-", "kernels"),
    ("Object share", "object-share", "importance inside the object"),
    ("Where the network looks", "/cam/", "CAM"),
)


def projections_section(inputs: ReportInputs, colours: list[str]) -> Section:
    section = Section("projections", "Interactive projections")
    if not inputs.projections:
        section.missing.append(
            missing("the projections of the feature spaces", f"cnnlab explain {inputs.run.path}")
        )
        return section
    samples = list(inputs.projections[0].sample_ids)
    thumbnails: dict[str, str] = {}
    if inputs.images is not None:
        where = {sample: i for i, sample in enumerate(inputs.images.sample_ids)}
        known = [s for s in samples if s in where]
        rows = [where[s] for s in known]
        thumbnails = dict(zip(known, thumbnail_uris(inputs.images.images[rows]), strict=True))
    else:
        section.missing.append("Hovering shows no image: " + (inputs.data_note or ""))
    method = inputs.projections[0].method
    section.body = paragraph(
        f"{len(samples):,} images of the {inputs.split} split projected with {method} at every "
        "explained layer (crosses: misclassified). Hover a point to see its image; drag a box to "
        "select images and see where they lie in every other layer."
    ) + chart_slot("projections")
    section.charts["projections"] = charts.projection_grid(inputs.projections, thumbnails, colours)
    return section


def _caption(relative: str) -> str:
    name = relative.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return name.replace("-", " ").replace("_", " ")


def _statements(inputs: ReportInputs) -> dict[str, list[str]]:
    summary = inputs.explain or {}
    found = {"separability": [], "/neurons/": [], "object-share": []}
    statement = (summary.get("separability") or {}).get("statement")
    if statement:
        found["separability"].append(statement)
    for layer in (summary.get("neurons") or {}).values():
        if isinstance(layer, dict) and layer.get("statement"):
            found["/neurons/"].append(layer["statement"])
    share = (summary.get("cam") or {}).get("object_share") or {}
    if isinstance(share, dict):
        found["object-share"] += [share[k] for k in ("note", "statement") if share.get(k)]
        methods = share.get("methods") or {}
        found["object-share"] += [m["statement"] for m in methods.values() if "statement" in m]
    return found


def explain_section(inputs: ReportInputs) -> Section:
    section = Section("explain", "What `cnnlab explain` found")
    summary = inputs.explain
    if summary is None:
        section.missing.append(
            missing(f"explain/{inputs.split}/", f"cnnlab explain {inputs.run.path}")
        )
        return section
    pictures = [
        f for f in summary.get("files", []) if f.endswith(".png") and "/projections/" not in f
    ]
    statements = _statements(inputs)
    gone, placed = [], set()
    for title, key, prefix in GROUPS:
        members = [f for f in pictures if key in f and f not in placed]
        placed.update(members)
        if not members and not statements.get(key):
            continue
        section.body += f"<h3>{title}</h3>"
        section.body += "".join(paragraph(text, "statement") for text in statements.get(key, []))
        for relative in members:
            path = explain_file(inputs.run, relative)
            if path is None:
                gone.append(relative)
                continue
            section.body += figure(file_data_uri(path), f"{prefix}: {_caption(relative)}", "wide")
    if "object-share" not in " ".join(pictures) and not statements["object-share"]:
        section.missing.append(
            "No object share: it needs object masks. Derive them from the images (objects on a "
            f"plain background) with `cnnlab explain {inputs.run.path} --what cam --masks auto`, "
            "or give a folder of masks mirroring the images with `--masks DIR`."
        )
    if gone:
        section.missing.append(
            f"{len(gone)} file(s) listed in explain's summary.json are gone ({', '.join(gone[:3])}"
            f"...). Write them again with `cnnlab explain {inputs.run.path}`."
        )
    return section
