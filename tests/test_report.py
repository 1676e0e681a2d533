"""`cnnlab report`: one self-contained HTML file per run, built from the run directory alone; the
browser tests open it in headless Chromium (Debian's package, driven by Playwright)."""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.run import RunDir
from cnnlab.run.artifacts import read_predictions, read_projections

CHROMIUM = "/usr/bin/chromium"
SECTIONS = (
    "run",
    "data",
    "curves",
    "model",
    "metrics",
    "confusion",
    "top-losses",
    "projections",
    "explain",
)


@pytest.fixture(scope="module")
def run_path(tmp_path_factory) -> Path:
    """A tiny trained, evaluated and explained run (with --untrained), and its report."""
    path = tmp_path_factory.mktemp("report") / "run"
    run = cnnlab.train(
        data="digits",
        model="conv8 -> bn -> relu -> maxpool2 -> fc",
        epochs=2,
        out=str(path),
        progress=False,
    )
    cnnlab.evaluate(run)
    explain = [
        "explain",
        str(path),
        "--max-points",
        "200",
        "--method",
        "pca",
        "--untrained",
        "--what",
        "features,separability,cam",
        "--cam-methods",
        "gradcam",
        "--masks",
        "auto",
    ]
    assert main(explain) == 0
    assert main(["report", str(path)]) == 0
    return path


def _copy_without(run_path: Path, target: Path, *removed: str) -> Path:
    shutil.copytree(run_path, target, ignore=shutil.ignore_patterns("checkpoints", "report.html"))
    for name in removed:
        shutil.rmtree(target / name)
    return target


def test_report_is_one_self_contained_file(run_path):
    html = (run_path / "report.html").read_text()
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in html
        assert f'href="#{anchor}"' in html  # the table of contents
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//", html)
    assert "cdn.bokeh.org" not in html and "<script src" not in html
    assert html.count("data:image/png;base64,") > 200  # thumbnails and explain's figures
    assert "projection-points" in html and "confusion-data" in html
    assert "Training did not" in html or "separation" in html  # explain's statement is shown
    assert "<h3>Object share</h3>" in html and "Masks derived from the images" in html
    assert "importance inside the object: object share masks" in html  # the masks' outlines
    assert "Training used no augmentation." in html  # digits' default


def test_report_shows_the_recorded_augmentation_as_a_grid(run_path, tmp_path):
    copy = _copy_without(run_path, tmp_path / "run")
    config = json.loads((copy / "config.json").read_text())
    config["resolved"]["augmentation"].update(hflip=0.5, crop_padding=1)
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["report", str(copy), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "<h3>The augmentation grid</h3>" in html and "hflip=0.5, crop_padding=1" in html


def test_the_curves_say_which_weights_were_evaluated(run_path, tmp_path):
    assert (
        "Green line: the best epoch (its checkpoint is the one evaluated)"
        in (run_path / "report.html").read_text()
    )
    copy = _copy_without(run_path, tmp_path / "run")
    config = json.loads((copy / "config.json").read_text())
    config["train"]["keep"] = "last"
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["report", str(copy), "--out", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "(--keep last: the weights of the last epoch are the ones evaluated)" in html


def test_the_augmentation_grid_starts_each_row_with_the_image():
    from cnnlab.data.augment_grid import GAP, MIN_TILE, augmentation_grid
    from cnnlab.specs.augmentation import Augmentation

    images = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    grid = augmentation_grid(images, Augmentation(hflip=1.0), (0.5,), variants=2)
    side = MIN_TILE  # 8 px tiles are enlarged 8x
    assert grid.shape == (1, 3 * (side + GAP) + GAP, 3 * (side + GAP) + GAP)
    first = grid[:, GAP : GAP + side, GAP : GAP + side]
    assert torch.equal(first, images[0].repeat_interleave(8, 1).repeat_interleave(8, 2))
    flipped = grid[:, GAP : GAP + side, 2 * GAP + side : 2 * GAP + 2 * side]
    assert torch.equal(flipped, first.flip(-1))  # hflip=1: every variant is the mirror image


def test_report_states_missing_parts_and_their_commands(run_path, tmp_path, capsys):
    copy = _copy_without(run_path, tmp_path / "run", "explain", "eval")
    assert main(["report", str(copy), "--out", str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    html = (tmp_path / "r.html").read_text()
    for text in (printed, html):
        assert f"cnnlab explain {copy}" in text
        assert f"cnnlab evaluate {copy}" in text
    assert '<section id="curves">' in html and "projection-points" not in html


def test_report_without_object_share_names_masks_auto(run_path, tmp_path, capsys):
    copy = _copy_without(run_path, tmp_path / "run")
    summary_path = copy / "explain" / "test" / "summary.json"
    summary = json.loads(summary_path.read_text())
    del summary["cam"]["object_share"]
    summary["files"] = [f for f in summary["files"] if "object-share" not in f]
    summary_path.write_text(json.dumps(summary))
    assert main(["report", str(copy), "--out", str(tmp_path / "r.html")]) == 0
    assert f"cnnlab explain {copy} --what cam --masks auto" in capsys.readouterr().out
    assert "<h3>Object share</h3>" not in (tmp_path / "r.html").read_text()


def test_read_functions_match_what_evaluate_and_explain_wrote(run_path):
    run = RunDir(run_path)
    predictions = read_predictions(run, "test")
    assert len(predictions) == 359
    first = predictions[0]
    assert first.probability_of(first.predicted) == pytest.approx(first.confidence)
    assert sum(p.correct for p in predictions) / 359 == pytest.approx(
        run.read("eval/test.json")["accuracy"]
    )
    # every row records p(true): the loss of each image is known (a correct row's p(true) is
    # its confidence)
    assert all(p.true_probability is not None for p in predictions)
    assert all(p.true_probability == p.confidence for p in predictions if p.correct)
    losses = [p.loss for p in predictions]
    assert min(losses) >= 0 and max(losses) == pytest.approx(-math.log(min(
        p.true_probability for p in predictions)), rel=1e-6)  # fmt: skip
    projections = read_projections(run, "test", "pca")
    assert [(p.state, p.layer) for p in projections][:1] == [("trained", "input")]
    assert {p.state for p in projections} == {"trained", "untrained"}
    assert all(p.sample_ids == projections[0].sample_ids for p in projections)
    assert read_predictions(run, "val") is None


def test_report_imports_no_training_code(run_path, tmp_path):
    code = (
        "import sys; from cnnlab.report import write_report; "
        f"write_report({str(run_path)!r}, {str(tmp_path / 'r.html')!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('cnnlab.training')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- in a browser -------------------------------------------------------------------------------

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
POINT_JS = """(name) => {
  const doc = Bokeh.documents[0];
  const view = Bokeh.index.find_one(doc.get_model_by_name(name));
  const source = doc.get_model_by_name('projection-points');
  const column = name.replace('projection-', '');
  const x = source.data['x' + column][0], y = source.data['y' + column][0];
  const box = view.canvas_view.el.getBoundingClientRect();
  return {x: box.left + view.frame.x_scale.compute(x), y: box.top + view.frame.y_scale.compute(y),
          frame: [box.left + view.frame.bbox.left, box.top + view.frame.bbox.top,
                  view.frame.bbox.width, view.frame.bbox.height]};
}"""


def open_report(path: Path):
    """Yield `path` open in headless Chromium, with `.errors` (console) and `.outside` (refused
    requests that would leave the file); shared with tests/test_report_many.py."""
    missing = [] if Path(CHROMIUM).exists() else [f"{CHROMIUM} (apt-get install chromium)"]
    if not importlib.util.find_spec("playwright"):
        missing.append("playwright (pip install '.[test]')")
    if missing:  # .ci/run installs both and sets CNNLAB_REQUIRE_BROWSER: no silent skip in CI
        (pytest.fail if os.environ.get("CNNLAB_REQUIRE_BROWSER") else pytest.skip)(
            f"browser tests need {', '.join(missing)}"
        )
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        opened = browser.new_page(viewport={"width": 1400, "height": 1000})
        opened.errors, opened.outside = [], []
        opened.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
        opened.on("pageerror", lambda error: opened.errors.append(str(error)))

        def refuse(route):
            opened.outside.append(route.request.url)
            route.abort()

        opened.route(re.compile(r"^(?!file:|data:|blob:)"), refuse)
        opened.goto(path.as_uri())
        opened.wait_for_function("window.Bokeh && Bokeh.documents.length > 0")
        opened.wait_for_timeout(500)
        yield opened
        browser.close()


@pytest.fixture(scope="module")
def page(run_path):
    """The report open in headless Chromium; every request that leaves the file is refused."""
    yield from open_report(run_path / "report.html")


def test_browser_renders_every_section_offline(page):
    for anchor in SECTIONS:
        assert page.locator(f"section#{anchor} h2").is_visible()
    assert page.locator("section#projections canvas").count() >= 6  # 3 layers, before and after
    assert page.locator("section#curves canvas").count() >= 3
    assert page.errors == [] and page.outside == []


def test_browser_hover_shows_the_thumbnail(page):
    page.locator("#projections").scroll_into_view_if_needed()
    point = page.evaluate(POINT_JS, "projection-0")
    page.mouse.move(point["x"], point["y"])
    tip = page.locator(".point-tip img").last
    tip.wait_for(state="visible", timeout=3000)
    assert tip.get_attribute("src").startswith("data:image/png;base64,")
    assert "true:" in page.locator(".point-tip").last.inner_text()


def test_browser_selection_in_one_layer_highlights_the_others(page):
    page.locator("#projections").scroll_into_view_if_needed()
    left, top, width, height = page.evaluate(POINT_JS, "projection-0")["frame"]
    page.mouse.move(left + 2, top + 2)
    page.mouse.down()
    page.mouse.move(left + width / 2, top + height - 2, steps=5)
    page.mouse.up()
    selected = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('projection-points').selected.indices.length"
    )
    assert selected > 0
    readout = page.evaluate(
        "() => Bokeh.documents[0].get_model_by_name('selection-readout').text"
    )  # the Div renders in Bokeh's shadow DOM
    assert readout.startswith(f"{selected} images selected")
    # every layer draws from that one source, so the deepest layer shows the same selection
    shared = page.evaluate("""() => { const doc = Bokeh.documents[0];
        const source = doc.get_model_by_name('projection-points');
        return [...doc.all_models].filter(m => m.data_source === source).length; }""")
    assert shared == 6


def test_browser_confusion_cell_opens_its_images(page):
    cell = page.locator("td.cell[data-true='1'][data-pred='1']")
    cell.scroll_into_view_if_needed()
    cell.click()
    panel = page.locator("#confusion-images")
    assert "true 1, predicted 1" in panel.inner_text()
    count = int(cell.inner_text())
    assert panel.locator("img").count() == min(count, 48)
    assert "p(1) =" in panel.inner_text()
    assert page.errors == [] and page.outside == []


def test_report_of_a_run_written_by_cnnlab_0_1_0(tmp_path, capsys):
    old_run = shutil.copytree(Path(__file__).parent / "fixtures" / "run-0.1.0", tmp_path / "old")
    assert main(["report", str(old_run)]) == 0
    html = (old_run / "report.html").read_text()
    assert '<section id="model">' in html and "receptive field" in html
    assert f"cnnlab explain {old_run}" in capsys.readouterr().out
