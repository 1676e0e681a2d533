"""`cnnlab report RUN1 RUN2 ...` (runs side by side) and `cnnlab report COMPARE_DIR` (a folder of
`cnnlab compare`): the pages' contents, the kind of folder, and both in headless Chromium."""

import json
import re
from pathlib import Path

import pytest

import cnnlab
from cnnlab.cli import main
from tests.test_report import open_report


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Two tiny digits runs, both evaluated, and a third that is trained but not evaluated."""
    root = tmp_path_factory.mktemp("many")
    paths, trained = [], []
    for name, model, epochs in (
        ("small", "conv4 -> relu -> maxpool2 -> fc", 2),
        ("wide", "conv16 -> bn -> relu -> maxpool2 -> fc", 3),
        ("raw", "conv4 -> relu -> maxpool2 -> fc", 1),
    ):
        path = root / name
        run = cnnlab.train(data="digits", model=model, epochs=epochs, out=str(path), progress=False)
        paths.append(path)
        trained.append(run)
    for run in trained[:2]:
        cnnlab.evaluate(run)
    return paths


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "digits"
    args = ["compare", "--data", "digits", "--pipelines", "raw-svm,random-bank-svm"]
    args += ["--folds", "2", "--curve", "0.5,1", "--max-images", "300", "--out", str(out)]
    assert main(args) == 0
    return out


def test_runs_side_by_side(runs, tmp_path, capsys, monkeypatch):
    small, wide, raw = runs
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(small), str(wide), str(raw)]) == 0
    printed = capsys.readouterr().out
    target = tmp_path / "report-small-and-2-more.html"
    assert f"written: {Path('report-small-and-2-more.html')}" in printed
    assert f"cnnlab evaluate {raw} --split test" in printed  # the missing evaluation, named
    html = target.read_text()
    for anchor in ("runs", "metrics", "curves", "per-class"):
        assert f'<section id="{anchor}">' in html
    accuracy = json.loads((wide / "eval" / "test.json").read_text())["accuracy"]
    assert f"{accuracy:.4f}" in html
    assert "recall: raw - small" not in html and "recall: wide - small" in html
    assert html.count("class='diff ") == 2 * 10  # recall and F1 difference for each digit
    assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)=[\"']?(https?:)?//", html)


def test_two_runs_default_name_and_out_flag(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(runs[0]), str(runs[1])]) == 0
    assert (tmp_path / "report-small-vs-wide.html").is_file()
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").is_file()


def test_comparison_report(comparison, capsys):
    assert main(["report", str(comparison)]) == 0
    assert f"written: {comparison / 'report.html'}" in capsys.readouterr().out
    html = (comparison / "report.html").read_text()
    for anchor in ("pipelines", "learning-curves", "splits"):
        assert f'<section id="{anchor}">' in html
    summary = json.loads((comparison / "summary.json").read_text())
    best = max(summary["pipelines"], key=lambda r: r["accuracy"])
    assert f"{best['accuracy']:.4f} +- {best['accuracy_sd']:.4f}" in html
    assert "paired t-test" in html and "stratified 2-fold cross-validation" in html
    assert summary["paired_test"] and f"p = {summary['paired_test']['p_value']:.3g}" in html


def test_kind_of_folder_is_detected_or_refused(runs, comparison, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is neither a run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["report", str(runs[0]), str(comparison), "--out", str(tmp_path / "r.html")]) == 2
    assert "is a comparison: report it alone" in capsys.readouterr().err


def test_browser_runs_side_by_side(runs, tmp_path):
    target = tmp_path / "two.html"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(target)]) == 0
    for page in open_report(target):
        for anchor in ("runs", "metrics", "curves", "per-class"):
            assert page.locator(f"section#{anchor} h2").is_visible()
        assert page.locator("section#curves canvas").count() >= 4
        lines = page.evaluate(
            """() => [...Bokeh.documents[0].all_models].filter(m => m.type === 'GlyphRenderer'
                && m.glyph.type === 'Line').map(m => m.glyph.line_color.value)"""
        )
        assert set(lines) == {"#1f77b4", "#ff7f0e"}  # one colour per run in every chart
        assert lines.count("#1f77b4") == lines.count("#ff7f0e") >= 4
        assert page.errors == [] and page.outside == []


def test_browser_comparison(comparison):
    main(["report", str(comparison)])
    for page in open_report(comparison / "report.html"):
        for anchor in ("pipelines", "learning-curves", "splits"):
            assert page.locator(f"section#{anchor} h2").is_visible()
        assert page.locator("section#learning-curves canvas").count() >= 1
        assert page.errors == [] and page.outside == []
