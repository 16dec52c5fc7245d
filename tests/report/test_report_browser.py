"""The demo report in a real browser: no page errors and a screenshot that is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from metaniche.config import Config
from metaniche.pipeline import run
from metaniche.report.browser import check_page, find_chromium, screenshot
from metaniche.simulate import simulate_cohort

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium is not installed; run 'make browser' (apt-get install chromium) to run "
           "the headless-browser report checks")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "run"
    samples, _ = simulate_cohort(n_samples=1, n_cells=2000, seed=3)
    inputs = out.parent / "cells"
    inputs.mkdir()
    for sample in samples:
        sample.cells.to_parquet(inputs / f"{sample.name}.parquet", index=False)
    run([inputs], out, Config())
    return out / "report"


def test_pages_load_without_errors(demo_report):
    pages = [demo_report / "index.html", *sorted(demo_report.glob("S*.html"))]
    assert len(pages) == 2
    for page in pages:
        result = check_page(page)
        assert result.errors == [], f"{page.name}: {result.errors}"
        assert "<h1>" in result.dom


def test_error_recorder_catches_a_broken_page(demo_report):
    broken = demo_report / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head></head><body><img src="missing.png">'
                      "<script>undefinedFunction();</script></body></html>")
    try:
        errors = check_page(broken).errors
    finally:
        broken.unlink()
    assert any("missing.png" in e for e in errors)
    assert any("undefinedFunction" in e for e in errors)


def test_screenshot_is_not_blank(demo_report, tmp_path):
    for page in (demo_report / "index.html", next(demo_report.glob("S*.html"))):
        target = tmp_path / f"{page.stem}.png"
        screenshot(page, target, height=1600)
        pixels = imread(target)[..., :3]
        # A blank page is one colour; figures and text give many distinct grey levels.
        assert pixels.std() > 0.05
        assert len(np.unique(np.round(pixels.mean(axis=2), 2))) > 20
