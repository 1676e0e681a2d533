"""`--masks auto`: object masks derived from images on a plain background, against hand-made
images whose object is known exactly; and the whole path through `cnnlab explain`."""

import json

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.explain.masks import derive_mask, derive_masks, outline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _disk(size: int = 32, radius: float = 8.5) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (y - 15.5) ** 2 + (x - 13.5) ** 2 <= radius**2  # [H, W], off centre on purpose


def _within_a_pixel(derived: torch.Tensor, truth: torch.Tensor) -> bool:
    """Every disagreement lies on the true shape's outline or just outside it."""
    grown = torch.nn.functional.max_pool2d(truth[None, None].float(), 3, 1, 1)[0, 0].bool()
    differ = derived ^ truth
    return bool((differ & ~(grown & ~(truth & ~outline(truth)))).sum() == 0)


def test_bright_disk_on_a_dark_background():
    truth = _disk()
    image = torch.where(truth, 210, 30).to(torch.uint8)[None]  # [1, H, W]
    image = (
        (
            image.int()
            + torch.randint(-8, 9, image.shape, generator=torch.Generator().manual_seed(0))
        )
        .clamp(0, 255)
        .to(torch.uint8)
    )
    derived = derive_mask(image)
    assert derived is not None and torch.equal(derived, truth)


def test_dark_square_on_a_light_background_speck_and_hole():
    truth = torch.zeros(40, 40, dtype=torch.bool)
    truth[10:26, 12:30] = True
    pixels = torch.where(truth, 40, 220)
    pixels[12, 14] = 220  # a one-pixel hole in the object: filled
    pixels[34:36, 2:4] = 40  # a dark speck away from the object: not the largest component
    image = pixels.to(torch.uint8).expand(3, -1, -1).clone()  # colour [3, H, W]
    derived = derive_mask(image)
    assert derived is not None and torch.equal(derived, truth)


def test_blurred_edges_are_within_a_pixel():
    truth = _disk(radius=9.0)
    image = truth.float()[None, None] * 180 + 40
    blurred = torch.nn.functional.avg_pool2d(image, 3, 1, 1, count_include_pad=False)[0]
    derived = derive_mask(blurred.round().to(torch.uint8))
    assert derived is not None and _within_a_pixel(derived, truth)


def test_constant_image_has_no_object():
    constant = torch.full((1, 16, 16), 128, dtype=torch.uint8)
    assert derive_mask(constant) is None
    disk = torch.where(_disk(16, 4.0), 255, 0).to(torch.uint8)[None]
    found = derive_masks(torch.stack([constant, disk, constant]))
    assert found.rows == [1] and found.without_object == [0, 2]
    assert (
        found.describe()["images_without_object"] == 2
        and "approximation" in found.describe()["note"]
    )
    empty = derive_masks(constant[None])
    assert empty.rows == [] and empty.masks.shape == (0, 16, 16)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("masks") / "run"
    cnnlab.train(
        data="digits",
        model="conv4 -> relu -> maxpool2 -> fc",
        epochs=1,
        out=str(path),
        progress=False,
    )
    return path


def test_cli_explain_with_derived_masks(digits_run, capsys):
    args = ["explain", str(digits_run), "--what", "cam", "--max-points", "60", "--quiet"]
    assert main([*args, "--cam-methods", "gradcam", "--per-cell", "1", "--masks", "auto"]) == 0
    printed = capsys.readouterr().out
    assert "an approximation" in printed
    out = digits_run / "explain" / "test"
    summary = json.loads((out / "summary.json").read_text())
    share = summary["cam"]["object_share"]
    assert (
        share["masks"] == "auto"
        and share["images_with_masks"] + share["images_without_object"] == 60
    )
    assert 0 < share["mean_object_area"] < 1 and "approximation" in share["note"]
    assert "approximation" in share["methods"]["gradcam"]["statement"]
    for name in ("cam/object-share.png", "cam/object-share-masks.png", "cam/object-share.json"):
        assert f"test/{name}" in summary["files"] and (out / name).is_file()


def test_cli_explain_constant_images_say_no_object(digits_run, capsys, monkeypatch):
    import cnnlab.explain.cam_reports as cam_reports
    from cnnlab.explain import masks

    monkeypatch.setattr(
        cam_reports,
        "object_masks",
        lambda *a: masks.derive_masks(torch.zeros(5, 1, 8, 8, dtype=torch.uint8)),
    )
    args = ["explain", str(digits_run), "--what", "cam", "--max-points", "30", "--quiet"]
    assert main([*args, "--cam-methods", "gradcam", "--per-cell", "1", "--masks", "auto"]) == 0
    assert "No object was found in any of the 30 images" in capsys.readouterr().out


def test_otsu_threshold_matches_scikit_image_on_overlapping_modes():
    from skimage.filters import threshold_otsu

    from cnnlab.explain.masks import otsu_threshold

    generator = torch.Generator().manual_seed(1)
    values = torch.cat(
        [
            torch.randn(600, generator=generator) * 25 + 90,
            torch.randn(400, generator=generator) * 30 + 170,
        ]
    )
    image = values.clamp(0, 255).round().to(torch.uint8).reshape(25, 40).numpy()
    ours, theirs = otsu_threshold(image.astype(float)), threshold_otsu(image)
    assert ((image > ours) == (image > theirs)).all()
