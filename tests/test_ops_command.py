"""`cnnlab ops`: pipelines on small PNGs written by the tests, the slides' 4 x 4 example, errors."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.ops.pipeline import STEP_KINDS, parse_pipeline, parse_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_json(capsys, *argv):
    assert main(["ops", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def shapes_png(tmp_path):
    """A 32 x 24 colour image: a bright square on a dark, slightly noisy background."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(20, 40, size=(24, 32, 3), dtype=np.uint8)
    pixels[6:18, 8:20] = (220, 200, 60)
    path = tmp_path / "shapes.png"
    Image.fromarray(pixels).save(path)
    return path


def test_default_pipeline_writes_one_png_per_step(capsys, tmp_path, shapes_png):
    out = tmp_path / "figures"
    report = run_json(capsys, str(shapes_png), "--out", str(out))
    steps = [row["step"] for row in report["steps"]]
    assert steps == ["input", "LN", "CO", "BN", "RL", "PO"]
    assert report["steps"][0]["shape"] == [1, 3, 24, 32]
    assert report["steps"][2]["shape"] == [1, 2, 24, 32]  # sobel-x, sobel-y
    assert report["steps"][-1]["shape"] == [1, 2, 12, 16]  # 3 x 3 max pooling, stride 2
    assert [b["name"] for b in report["steps"][2]["bands"]] == ["sobel-x", "sobel-y"]
    assert report["steps"][1]["bands"][0]["min"] == [0] and report["steps"][1]["bands"][0][
        "max"
    ] == [1]
    assert report["steps"][4]["bands"][0]["min"] == [0]  # after ReLU
    for row in report["steps"]:
        (path,) = row["files"]
        with Image.open(path) as png:
            assert png.format == "PNG" and png.size[0] > 300
    assert sorted(p.name for p in (out / "shapes").iterdir()) == [
        "00-input.png", "01-LN.png", "02-CO.png", "03-BN.png", "04-RL.png", "05-PO.png"
    ]  # fmt: skip
    assert not list(out.rglob("*.tmp"))


def test_the_slides_4x4_example_through_the_command(capsys, tmp_path):
    image = np.array([[3, 2, 2, 5], [2, 2, 5, 1], [2, 3, 5, 0], [0, 4, 4, 1]], dtype=np.uint8)
    path = tmp_path / "slide.png"
    Image.fromarray(image).save(path)
    argv = [str(path), "--kernels", "sobel-x", "--pipeline", "CO,RL", "--out", str(tmp_path)]
    report = run_json(capsys, *argv)
    convolved, activated = report["steps"][1]["bands"][0], report["steps"][2]["bands"][0]
    assert (convolved["min"], convolved["max"]) == ([-19], [13])  # J of slide 000
    assert (activated["min"], activated["max"]) == ([0], [13])  # its ReLU R


def test_several_images_use_the_slides_per_pixel_batch_normalisation(capsys, tmp_path):
    paths = []
    for seed in range(2):
        pixels = np.random.default_rng(seed).integers(0, 255, size=(6, 7), dtype=np.uint8)
        paths.append(tmp_path / f"cell{seed}.png")
        Image.fromarray(pixels).save(paths[-1])
    report = run_json(capsys, *map(str, paths), "--pipeline", "BN", "--out", str(tmp_path / "o"))
    # With n = 2 images and sigma over n - 1, every value is +-(d/2) / (|d| / sqrt(2)) = +-0.7071
    # (or 0 where both images agree).
    bands = report["steps"][1]["bands"][0]
    assert bands["max"] == pytest.approx([0.5**0.5] * 2, abs=1e-6)
    assert bands["min"] == pytest.approx([-(0.5**0.5)] * 2, abs=1e-6)
    assert (
        len(report["steps"][1]["files"]) == 2 and "per pixel" in report["steps"][1]["description"]
    )


def test_large_images_are_shrunk_and_size_is_honoured(capsys, tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((30, 60), dtype=np.uint8)).save(path)
    report = run_json(
        capsys, str(path), "--max-side", "20", "--pipeline", "RL", "--out", str(tmp_path)
    )
    assert report["size"] == [10, 20] and "60x30" in report["note"]
    report = run_json(
        capsys, str(path), "--size", "9x4", "--pipeline", "RL", "--out", str(tmp_path)
    )
    assert report["steps"][0]["shape"] == [1, 1, 4, 9]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pipeline", "LN,CO,XX,RL"], "'XX' is not a step"),
        (["--pipeline", "LN,PO:mode=median"], "'median' is not one of max, min, average"),
        (["--pipeline", "PO:sise=3"], "PO does not take 'sise' (it takes mode, size, stride)"),
        (["--pipeline", "BN:stats=pixel"], "2 or more images"),
        (["--kernels", "sobelx"], "Did you mean 'sobel-x'"),
        (["--random-bank", "500"], "use 1 to 64 kernels"),
        (["--size", "big"], "--size: 'big' is not a size"),
    ],
)
def test_errors_name_the_offending_value(capsys, tmp_path, shapes_png, argv, message):
    assert main(["ops", str(shapes_png), "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.png"))[1:]  # nothing written but the input fixture


def test_pipeline_errors_point_at_the_token():
    with pytest.raises(ConfigError) as caught:
        parse_pipeline("LN,CO,XX,RL")
    assert "  LN,CO,XX,RL\n        ^^\n" in str(caught.value)
    with pytest.raises(ConfigError, match="did you mean PO"):
        parse_pipeline("LN,PQ")
    steps = parse_pipeline("ln, DN:size=25x5 ,PO:mode=min:size=2:stride=1")
    assert [s.kind.code for s in steps] == ["LN", "DN", "PO"]
    assert steps[1].options["size"] == (5, 25)  # (height, width): 25 wide, 5 high
    assert steps[2].options == {"mode": "min", "size": (2, 2), "stride": 1}
    assert parse_size("7") == (7, 7)


def test_help_lists_every_step_kernel_and_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["ops", "--help"])
    text = capsys.readouterr().out
    for code in STEP_KINDS:
        assert f"\n  {code}" in text
    assert "gaussian-blur" in text and "cnnlab ops photo.jpg --random-bank 8" in text


def test_output_folders_stay_apart_when_file_names_repeat():
    from pathlib import Path

    from cnnlab.commands.ops import _unique_stems

    paths = [Path("test/cat/0001.jpg"), Path("test/ship/0001.jpg"), Path("a.png"), Path("a.png")]
    assert _unique_stems(paths) == ["cat-0001", "ship-0001", "a", "a-2"]
