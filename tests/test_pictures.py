"""Pictures a person can read: what augmentation pads with, the labelled `cnnlab augment` grid,
colour scales on CAM figures, and file names shortened to fit gallery tiles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from cnnlab.cli import main
from cnnlab.data.augment import augment_batch, resolve_augmentation
from cnnlab.data.loader import Normalizer
from cnnlab.errors import ConfigError
from cnnlab.specs.augmentation import Augmentation
from cnnlab.training.config import TrainConfig

MEAN, STD = (0.2, 0.5, 0.7), (0.25, 0.3, 0.2)  # per band, on 0..1
FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"  # `cnnlab train` of commit 96cabc2


def _images(batch=24, height=7, width=9, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(30, 226, (batch, 3, height, width), generator=generator).to(torch.uint8)


def _shift(out: torch.Tensor, image: torch.Tensor, padded: torch.Tensor, p: int) -> tuple:
    """The (dy, dx) whose crop of `padded` is `out`, found by trying all of them."""
    height, width = image.shape[1:]
    found = [
        (dy - p, dx - p)
        for dy in range(2 * p + 1)
        for dx in range(2 * p + 1)
        if torch.equal(out, padded[:, dy : dy + height, dx : dx + width])
    ]
    assert len(found) >= 1, "the output is no crop of the padded image"
    return found[0]


@pytest.mark.parametrize("pad_fill", ["zero", "mean", "edge"])
def test_a_shift_uncovers_black_the_mean_or_the_edge(pad_fill):
    x, p = _images(), 2
    augmentation = Augmentation(crop_padding=p, pad_fill=pad_fill)
    out = augment_batch(x, augmentation, torch.Generator().manual_seed(0), MEAN)
    mode = "edge" if pad_fill == "edge" else "constant"
    values = {"zero": 0.0, "mean": [m * 255 for m in MEAN]}.get(pad_fill, 0.0)
    normalise = Normalizer(MEAN, STD)
    shifts = set()
    for i in range(len(x)):
        # oracle: numpy's pad (constant value per band, or edge) of the unnormalised image
        bands = [
            np.pad(x[i, b].numpy().astype(np.float64), p, mode=mode)
            if mode == "edge"
            else np.pad(x[i, b].numpy().astype(np.float64), p, constant_values=values[b])
            if isinstance(values, list)
            else np.pad(x[i, b].numpy().astype(np.float64), p, constant_values=values)
            for b in range(3)
        ]
        padded = torch.from_numpy(np.stack(bands)).float()
        dy, dx = _shift(out[i], x[i], padded, p)
        shifts.add((dy, dx))
        if pad_fill == "zero" and (dy, dx) != (0, 0):
            # torchvision's own translation with its default fill=0 agrees
            moved = TF.affine(x[i], angle=0.0, translate=[-dx, -dy], scale=1.0, shear=[0.0, 0.0])
            assert torch.equal(out[i], moved.float())
        uncovered = torch.ones(7, 9, dtype=torch.bool)
        uncovered[max(0, -dy) : 7 - max(0, dy), max(0, -dx) : 9 - max(0, dx)] = False
        if uncovered.any():
            seen = normalise(out[i : i + 1])[0][:, uncovered]  # [3, uncovered pixels]
            if pad_fill == "zero":  # black in pixel space: (0 - mean) / std after normalising
                expected = torch.tensor([(0 - m) / s for m, s in zip(MEAN, STD, strict=True)])
                assert torch.allclose(seen, expected[:, None].expand_as(seen), atol=1e-6)
            elif pad_fill == "mean":  # the mean: 0 after normalising
                assert seen.abs().max() < 1e-5
    assert len(shifts) > 5  # the draws did shift the images


def test_rotation_and_zoom_uncover_the_chosen_fill():
    x = torch.full((64, 3, 8, 8), 200, dtype=torch.uint8)
    corners = {}
    for pad_fill in ("zero", "mean", "edge"):  # the same draws (seed 1) for each
        augmentation = Augmentation(rotate=30, scale=0.9, pad_fill=pad_fill)
        out = augment_batch(x, augmentation, torch.Generator().manual_seed(1), MEAN)
        corners[pad_fill] = out[:, :, 0, 0]  # [64, 3]: a corner that zooming out uncovers
    outside = (corners["zero"] < 1e-4).all(dim=1)  # images whose corner left the image entirely
    assert 10 < int(outside.sum()) < 64
    mean = torch.tensor(MEAN) * 255
    assert torch.allclose(corners["mean"][outside], mean.expand(int(outside.sum()), 3), atol=1e-3)
    assert torch.allclose(corners["edge"], torch.full((64, 3), 200.0), atol=1e-3)


def test_pad_fill_is_a_flag_with_its_choices_and_zero_by_default(capsys):
    assert Augmentation().pad_fill == "zero" and not Augmentation(pad_fill="edge").enabled
    assert resolve_augmentation({}, "cifar10", (32, 32), True).pad_fill == "zero"
    chosen = resolve_augmentation({"pad_fill": "mean"}, "cifar10", (32, 32), True)
    assert chosen.pad_fill == "mean" and chosen.crop_padding == 4
    assert TrainConfig.from_dict({"pad_fill": "edge"}).to_dict()["pad_fill"] == "edge"
    with pytest.raises(ConfigError, match=r"--pad-fill grey is invalid: .*zero, mean, edge"):
        TrainConfig(pad_fill="grey")
    with pytest.raises(ConfigError, match="pad_fill=grey is invalid"):
        Augmentation(pad_fill="grey")
    with pytest.raises(SystemExit):
        main(["augment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--pad-fill {zero,mean,edge} augment: what the pixels uncovered" in text


def test_an_old_run_without_the_setting_keeps_the_mean_fill(tmp_path):
    from cnnlab.run.paths import RunDir
    from cnnlab.training.resolve import resume_config

    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    written = json.loads((run / "config.json").read_text())
    assert "pad_fill" not in written["train"]  # written before the setting existed
    record = RunDir(run).config_record()
    assert record.train["pad_fill"] == "mean"
    assert Augmentation(**record.resolved["augmentation"]).pad_fill == "mean"
    assert record.to_dict() == {**written, "format": 1}  # the file is not rewritten with it
    config = resume_config(run, {})
    assert config.pad_fill == "mean"
    assert resolve_augmentation(config.to_dict(), "digits", (8, 8), config.augment).pad_fill == (
        "mean"
    )
    # a new run's record always holds the key (None: the data set's default, zero)
    new = {**written, "train": {**written["train"], "pad_fill": None}}
    (run / "config.json").write_text(json.dumps(new))
    assert resume_config(run, {}).pad_fill is None


def test_the_augment_grid_shows_the_originals_and_names_rows_and_columns():
    from cnnlab.data.augment_grid import augmentation_figure, augmentation_tiles, grid_labels

    x = _images(batch=3, height=6, width=6)
    augmentation = Augmentation(hflip=1.0, crop_padding=1)
    tiles = augmentation_tiles(x, augmentation, MEAN, STD, seed=0, variants=2)
    assert tiles.shape == (3, 3, 3, 6, 6) and tiles.dtype == torch.uint8
    assert torch.equal(tiles[:, 0], x)  # through the training normalisation and back: the image
    # the augmented columns are training's draws of batches 0 and 1, shown in pixels
    from cnnlab.data.augment import batch_seed

    drawn = augment_batch(x, augmentation, torch.Generator().manual_seed(batch_seed(0, 0, 1)), MEAN)
    assert torch.equal(tiles[:, 2], drawn.round().to(torch.uint8))
    class_names = ["cat", "a class name far longer than a row label has room for"]
    rows, columns = grid_labels(class_names, [0, 1, 0], ["train:4", "dir/sub/p_07.png", "val:2"], 2)
    assert rows == ["cat\ntrain:4", "a class name far long…\np_07.png", "cat\nval:2"]
    assert columns == ["original", "augmented 1", "augmented 2"]
    figure = augmentation_figure(tiles, rows, columns, "title")
    panels = figure.axes
    assert len(panels) == 9
    assert [panels[k].get_title() for k in range(3)] == columns
    assert [panels[3 * r].get_ylabel() for r in range(3)] == rows
    assert (panels[0].images[0].get_array() == x[0].permute(1, 2, 0).numpy()).all()
    assert figure._suptitle.get_text() == "title"


def test_shorten_name_keeps_start_end_and_extension():
    from cnnlab.explain.galleries import shorten_name

    name = "patient_0012_slide_07_cell_0345.png"  # 35 characters
    assert shorten_name(name, 40) == name
    assert shorten_name(name, 24) == "patient_00…cell_0345.png"  # 10 + 1 + 9 + 4 = 24
    assert shorten_name(name, 10) == "pat…45.png"  # 3 + 1 + 2 + 4
    assert shorten_name("a_very_long_name_without_extension", 11) == "a_ver…nsion"
    assert shorten_name("x" * 30 + ".tiff", 6) == "xxx…ff"  # no room to keep the extension
    assert shorten_name("p=0.93", 6) == "p=0.93"
    for width in range(4, 40):
        assert len(shorten_name(name, width)) == min(width, len(name))


def _tile_captions(figure) -> list:
    """The caption texts of plot_tile_rows's tile axes, in drawing order."""
    return [t for t in figure.axes[0].texts if t.get_ha() == "center"]


def test_a_gallery_of_long_file_names_keeps_captions_apart(tmp_path):
    from cnnlab.explain.galleries import CAPTION_POINTS, fitting_chars, overlay, plot_tile_rows

    image, heat = torch.full((1, 12, 12), 90, dtype=torch.uint8), torch.rand(12, 12)
    names = [f"slide_{i:03d}_{'x' * 96}_cell_{i:04d}.png" for i in range(10)]
    assert all(len(n) == 120 for n in names)
    rows = [
        (f"class {'long ' * 20}{r}", [(overlay(image, heat), f"{n}\np=0.5") for n in names[:5]])
        for r in range(2)
    ]
    figure = plot_tile_rows(rows, "long names", tmp_path / "g.png", colour_scale="importance")
    limit = fitting_chars(96 + 6 - 2, CAPTION_POINTS)
    captions = _tile_captions(figure)
    assert len(captions) == 10 and 12 <= limit < 120
    for text in captions:
        first, second = text.get_text().split("\n")
        assert len(first) == limit and first.endswith(".png") and "…" in first
        assert second == "p=0.5"
    # measured by matplotlib: neighbouring captions in a row do not overlap
    renderer = figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in captions]
    for left, right in zip(boxes[:4], boxes[1:5], strict=True):
        assert left.x1 < right.x0
    labels = [t for t in figure.axes[0].texts if t.get_ha() == "right"]
    assert all(box.x0 >= 0 for box in (t.get_window_extent(renderer) for t in labels))
    assert (tmp_path / "g.png").stat().st_size > 0


def test_every_cam_figure_has_a_colour_scale(tmp_path, monkeypatch):
    from cnnlab.explain import cam_reports, galleries
    from cnnlab.explain.cam_reports import ScoredImages, select_gallery_rows

    labels = torch.tensor([0, 0, 1, 1, 1])
    predictions = torch.tensor([0, 1, 1, 0, 1])
    logits = 4.0 * torch.nn.functional.one_hot(predictions, 2).float()
    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    ids = [f"data/{'n' * 90}_{i}.png" for i in range(5)]
    scored = ScoredImages.from_logits(images, labels, ids, ["a", "b"], logits)
    chosen = select_gallery_rows(scored, per_cell=2, seed=0)
    maps = {m: {i: torch.rand(6, 6) for i in range(5)} for m in ("gradcam", "saliency")}
    figures = []

    def recording(*args, **kwargs):
        figures.append(galleries.plot_tile_rows(*args, **kwargs))
        return figures[-1]

    class Report:
        def wrote(self, path, root):
            return path

    monkeypatch.setattr(cam_reports, "plot_tile_rows", recording)
    (tmp_path / "explain" / "cam").mkdir(parents=True)
    cam_reports._plot_galleries(scored, chosen, maps, "stages.1", Report(), tmp_path / "explain")
    assert len(figures) == 7  # correct, confusions, top losses per method; the methods together
    for figure in figures:
        bars = [
            axes for axes in figure.axes if axes.get_ylabel().endswith("(normalised 0-1 per map)")
        ]
        assert len(bars) == 1
        assert bars[0].get_ylim() == (0.0, 1.0)
    assert figures[0].axes[1].get_ylabel().startswith("class activation")
    assert figures[3].axes[1].get_ylabel().startswith("importance")
