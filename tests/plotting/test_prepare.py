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
