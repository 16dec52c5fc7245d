"""Cohort drawers: the effector strip's medians and its fading with many samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from metaniche.plotting.cohort import draw_effector_strip


def _medians(ax):
    """(x centre, y) of the median bars (the LineCollection labelled or drawn at zorder 4)."""
    bars = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_zorder() == 4]
    out = []
    for bar in bars:
        for segment in bar.get_segments():
            (x0, y0), (x1, y1) = segment
            assert y0 == y1
            out.append(((x0 + x1) / 2, y0))
    return out


def test_median_bar_of_each_group_and_compartment():
    rng = np.random.default_rng(0)
    density = pd.DataFrame(rng.lognormal(3, 1, (9, 3)), columns=["core", "border", "adjacent"],
                           index=[f"S{i}" for i in range(9)])
    density.iloc[0, 0] = 0.0               # a zero counts
    density.iloc[1, 2] = np.nan            # no adjacent tissue: left out
    groups = pd.Series(["R", "N", "R", "N", "R", "N", "R", "N", "N"], index=density.index)
    ax = draw_effector_strip(Figure().add_subplot(), density, groups, 50.0, ["CD8_T"])
    bars = _medians(ax)
    assert len(bars) == 6
    for level, offset in (("N", -0.2), ("R", 0.2)):      # groups sorted, 0.8 / 2 apart
        part = density[groups == level]
        for k, compartment in enumerate(density.columns):
            want = float(np.nanmedian(part[compartment]))
            x, y = min(bars, key=lambda b: abs(b[0] - (k + offset)))
            assert abs(x - (k + offset)) < 1e-9
            assert y == want or (want == 0 and y < 1)       # a zero median on the 0 line
    assert "median" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_lines_fade_and_dots_shrink_with_many_samples():
    rng = np.random.default_rng(1)

    def strip(n):
        density = pd.DataFrame(rng.lognormal(3, 1, (n, 3)),
                               columns=["core", "border", "adjacent"])
        ax = draw_effector_strip(Figure().add_subplot(), density, None, 50.0, ["CD8_T"])
        lines = next(c for c in ax.collections if isinstance(c, LineCollection)
                     and c.get_zorder() != 4)
        return lines.get_alpha(), ax.collections[1].get_sizes()[0]

    assert strip(20) == (0.25, 22)
    alpha, size = strip(200)
    assert alpha == 0.25 * 50 / 200 and size == 10
    assert strip(2000)[0] == 0.04


def test_gradient_overlay_labels_0_only_when_something_drawn_is_0_and_spans_drawn_bins():
    from metaniche.plotting.cohort import draw_gradient_overlay

    centre = np.array([-100.0, -50.0, 0.0, 50.0, 400.0])
    density = np.array([1.0, 5.0, 20.0, 10.0, np.nan])       # the far bin masked
    per_sample = np.array([[1.0, 5.0, 20.0, 10.0, 50_000.0]])  # not drawn: no say in the axes

    def draw(low):
        profiles = {"centre": centre, "per_sample": per_sample,
                    "curves": {"all samples": (3, density, low, density * 2)}}
        return draw_gradient_overlay(Figure().add_subplot(), profiles, 25.0, "CD8_T")

    ax = draw(density / 2)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert "0" not in labels and ax.get_ylim()[1] == 100.0
    assert ax.get_xlim()[1] < 400.0                          # the masked bin is not spanned
    ax = draw(np.array([0.0, 2.0, 10.0, 5.0, np.nan]))       # an interval down to 0
    assert ax.get_yticklabels()[0].get_text() == "0"
