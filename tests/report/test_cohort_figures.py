"""Cohort figures are drawn without pyplot or the global backend, and written as PNG/SVG."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_cohort_figures_use_no_pyplot_and_leave_the_backend_alone(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import matplotlib
        import numpy as np
        import pandas as pd
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.image import imread
        from metaniche.report import cohort_figures as cf

        # The raw rcParams entry: matplotlib.get_backend() would itself import pyplot.
        backend = dict.__getitem__(matplotlib.rcParams, "backend")
        out = Path({str(tmp_path)!r})
        (out / "figures").mkdir()
        rng = np.random.default_rng(0)
        assoc = pd.DataFrame({{"feature": ["a", "b", "c"], "outcome": "response",
                              "test": "mann_whitney", "effect": [0.2, 0.5, 0.9],
                              "p": [0.5, 0.01, 0.001], "q": [0.5, 0.02, 0.003],
                              "effect_name": "auc"}})
        paths = cf.volcano(assoc, out)
        assert paths == ["figures/cohort.volcano.png", "figures/cohort.volcano.svg"], paths
        height, width = imread(out / paths[0]).shape[:2]
        assert (width, height) == (506, 429), (width, height)  # 4.6 x 3.9 in at 110 dpi
        assert (out / paths[1]).read_text().lstrip().startswith("<?xml")
        assert isinstance(cf.new_figure((2.0, 2.0)).canvas, FigureCanvasAgg)
        assert "matplotlib.pyplot" not in sys.modules
        assert dict.__getitem__(matplotlib.rcParams, "backend") == backend
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False)
    assert result.stdout.strip() == "ok", result.stderr


def test_cohort_png_is_a_palette_image_close_to_the_rendering(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from metaniche.report import cohort_figures as cf

    fig = cf.new_figure((5.0, 3.0))
    ax = fig.add_subplot()
    # worst case for a palette: a continuous colour map with thousands of distinct values
    ax.imshow(np.linspace(0, 1, 100 * 100).reshape(100, 100), cmap="RdBu_r")
    ax.set_title("time (months)")
    paths = cf.save_figure(fig, tmp_path, "cohort.test")
    assert paths == ["figures/cohort.test.png", "figures/cohort.test.svg"]
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=cf.FIGURE_DPI, facecolor="white")
    with Image.open(buffer) as image:
        rendered = np.asarray(image.convert("RGB")).astype(int)
    with Image.open(tmp_path / paths[0]) as image:
        assert image.mode == "P"
        decoded = np.asarray(image.convert("RGB")).astype(int)
    assert decoded.shape == rendered.shape
    error = np.abs(decoded - rendered).max(axis=2)
    assert np.percentile(error, 99) <= 8 and error.mean() < 2
    svg = (tmp_path / paths[1]).read_text()
    assert ">time (months)</text>" in svg


def test_cohort_svg_geometry_is_rounded_and_text_kept(tmp_path):
    import re
    import xml.etree.ElementTree as ET

    import numpy as np

    from metaniche.report import cohort_figures as cf

    svg = ('<svg><path d="M 74.192727 37.752855 L -0.001 1e-05 L 3.5 2"/>'
           '<text x="12.345678" y="-7.891">p = 0.012345</text>'
           '<g style="stroke-width: 0.812345"/></svg>')
    assert cf.round_svg_coordinates(svg) == (
        '<svg><path d="M 74.19 37.75 L 0 1e-05 L 3.5 2"/>'
        '<text x="12.35" y="-7.89">p = 0.012345</text>'
        '<g style="stroke-width: 0.812345"/></svg>')
    # a saved figure: every number of its geometry has at most two decimals, its text intact
    fig = cf.new_figure((4.0, 3.0))
    ax = fig.add_subplot()
    ax.plot(np.linspace(0, 1, 50), np.sin(np.linspace(0, 3, 50)))
    ax.set_title("log-rank p = 0.0123")
    paths = cf.save_figure(fig, tmp_path, "cohort.round")
    text = (tmp_path / paths[1]).read_text()
    root = ET.fromstring(text)
    assert "log-rank p = 0.0123" in ["".join(t.itertext()) for t in root.iter(
        "{http://www.w3.org/2000/svg}text")]
    for value in re.findall(r'\sd="([^"]*)"', text):
        assert not re.search(r"\d\.\d{3,}", value)
