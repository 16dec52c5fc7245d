"""Chart data prepared from the run's tables, against a direct per-type computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.plotting.prepare import gradient_panels, merge_bins


def _profiles(rng, n_types=5, n_bins=57, lesions=(None, 1)):
    rows = []
    for lesion in lesions:
        area = rng.uniform(0, 0.02, n_bins)
        area[rng.random(n_bins) < 0.15] = 0.0              # bins without area are masked
        for t in range(n_types):
            start = -400.0 + 10.0 * np.arange(n_bins)
            counts = rng.poisson(200 * area) if t else np.zeros(n_bins)   # type 0: no cells
            rows.append(pd.DataFrame({"lesion_id": lesion, "cell_type": f"T{(t * 7) % n_types}",
                                      "bin_start_um": start, "bin_end_um": start + 10.0,
                                      "n_cells": counts, "area_mm2": area}))
    table = pd.concat(rows, ignore_index=True)
    table["lesion_id"] = table["lesion_id"].astype("Int64")
    return table.sample(frac=1.0, random_state=1)          # row order must not matter


@pytest.mark.parametrize("max_bins", [40, 10, 100])
def test_gradient_panels_are_merge_bins_of_each_type(max_bins):
    rng = np.random.default_rng(3)
    table = _profiles(rng)
    panels = gradient_panels(table, max_bins=max_bins)
    whole = table[table["lesion_id"].isna()].sort_values(["cell_type", "bin_start_um"])
    expected = []
    for cell_type, part in whole.groupby("cell_type", sort=True):
        centre, density = merge_bins(part, "bin_start_um", "bin_end_um", max_bins)
        if np.nansum(density) > 0:
            expected.append((cell_type, centre, density))
    assert [p[0] for p in panels] == [e[0] for e in expected] and len(panels) == 4
    for (_, centre, density), (_, want_centre, want) in zip(panels, expected, strict=True):
        np.testing.assert_array_equal(centre, want_centre)
        np.testing.assert_allclose(density, want, rtol=1e-12, equal_nan=True)
    # no whole-sample rows: the first lesion's
    lesion_only = _profiles(rng, lesions=(2, 1))
    first = gradient_panels(lesion_only, max_bins=max_bins)
    assert [p[0] for p in first] == [p[0] for p in gradient_panels(
        lesion_only[lesion_only["lesion_id"] == 1], max_bins=max_bins)]
    assert gradient_panels(table.iloc[:0]) == []


def test_gradient_intervals_are_garwood_limits_of_each_bin():
    """Unmerged bins: the closed-form exact Poisson limits from chi-square quantiles."""
    from scipy.stats import chi2

    from metaniche.plotting.prepare import MIN_BAND_AREA_MM2, gradient_intervals

    rng = np.random.default_rng(4)
    table = _profiles(rng, n_bins=30)
    intervals = gradient_intervals(table, max_bins=30)
    panels = {label: density for label, _, density in gradient_panels(table, max_bins=30)}
    assert set(intervals) == set(panels)
    whole = table[table["lesion_id"].isna()]
    for cell_type, (low, high) in intervals.items():
        part = whole[whole["cell_type"] == cell_type].sort_values("bin_start_um")
        n = part["n_cells"].to_numpy(np.float64)
        area = part["area_mm2"].to_numpy(np.float64)
        shown = (area > 0) & (area >= MIN_BAND_AREA_MM2)
        with np.errstate(divide="ignore", invalid="ignore"):
            want_low = np.where(n > 0, chi2.ppf(0.025, 2 * n) / (2 * area), 0.0)
            want_high = chi2.ppf(0.975, 2 * n + 2) / (2 * area)
        np.testing.assert_allclose(low[shown], want_low[shown], rtol=1e-9)
        np.testing.assert_allclose(high[shown], want_high[shown], rtol=1e-9)
        assert np.isnan(low[~shown]).all() and np.isnan(high[~shown]).all()
        density = panels[cell_type]
        assert (low[shown] <= density[shown]).all() and (density[shown] <= high[shown]).all()


def test_gradient_intervals_cover_a_planted_density():
    """Counts drawn from a known density: the 95% interval covers it in at least 95% of the
    (type, bin) draws (exact intervals are conservative) and not in every one."""
    from metaniche.plotting.prepare import gradient_intervals

    rng = np.random.default_rng(5)
    n_bins, truth = 20, 150.0                       # cells/mm²
    start = -250.0 + 25.0 * np.arange(n_bins)
    area = np.full(n_bins, 0.02)
    covered = []
    for _ in range(200):
        rows = pd.DataFrame({"cell_type": "CD8_T", "bin_start_um": start,
                             "bin_end_um": start + 25.0,
                             "n_cells": rng.poisson(truth * area), "area_mm2": area})
        low, high = gradient_intervals(rows, max_bins=n_bins)["CD8_T"]
        covered.append((low <= truth) & (truth <= high))
    coverage = np.mean(covered)
    assert 0.95 <= coverage < 0.995, coverage
