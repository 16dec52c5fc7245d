"""Cell states in the report: the per-compartment state table and the band profiles of the
sample page, and state features among the cohort associations."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
from _paths import line_points

from metaniche.report import render_report
from metaniche.report.rundata import RunData
from metaniche.report.sample_page import (
    MIN_STATE_BAND_CELLS,
    state_gradient_section,
    state_section,
)

SVG = "{http://www.w3.org/2000/svg}"


def states_table(sample: str = "S1") -> pd.DataFrame:
    """PD-L1+ macrophages: (n_positive, n_cells) per compartment; a lesion row to ignore."""
    counts = {"core": (3, 12), "border": (5, 10), "adjacent": (0, 8), "all": (8, 30)}
    rows = [{"sample": sample, "lesion_id": pd.NA, "compartment": c, "cell_type": "Macrophage",
             "state": "PDL1_pos", "n_cells": n, "n_positive": k, "fraction": k / n,
             "density_per_mm2": k / 0.5} for c, (k, n) in counts.items()]
    rows.append({"sample": sample, "lesion_id": 1, "compartment": "core",
                 "cell_type": "Macrophage", "state": "PDL1_pos", "n_cells": 4,
                 "n_positive": 4, "fraction": 1.0, "density_per_mm2": 8.0})
    rows.append({"sample": sample, "lesion_id": pd.NA, "compartment": "core",
                 "cell_type": "Tumor", "state": "PDL1_pos", "n_cells": 0, "n_positive": 0,
                 "fraction": np.nan, "density_per_mm2": 0.0})
    table = pd.DataFrame(rows)
    table["lesion_id"] = table["lesion_id"].astype("Int64")
    return table


def state_gradients_table(sample: str = "S1") -> pd.DataFrame:
    starts = np.arange(-100.0, 100.0, 10.0)          # 20 bands: no merging
    n_cells = np.where(np.arange(20) % 4 == 0, MIN_STATE_BAND_CELLS - 1, 20)
    n_positive = np.arange(20) % 10
    return pd.DataFrame({"sample": sample, "cell_type": "Macrophage", "state": "PDL1_pos",
                         "bin_start_um": starts, "bin_end_um": starts + 10.0,
                         "n_cells": n_cells, "n_positive": n_positive,
                         "fraction": n_positive / n_cells})


def test_state_table_shows_whole_sample_percentages(make_run, tmp_path):
    run = RunData(make_run({"states": states_table()}))
    section = state_section(run, "S1", "S1", tmp_path)
    assert section is not None and section.table.sortable
    head = section.table.columns
    assert head[:2] == ["state", "cell type"]
    assert head[2:6] == ["core (% positive)", "border (% positive)", "adjacent (% positive)",
                         "all (% positive)"]
    rows = {(r[0], r[1]): r for r in section.table.rows}
    # 3/12, 5/10, 0/8, 8/30 (the lesion row with 4/4 is not the whole sample)
    assert rows[("PDL1_pos", "Macrophage")][2:] == ["25", "50", "0", "26.7", "8 / 30"]
    assert rows[("PDL1_pos", "Tumor")][2] == "–"      # no tumour cell: not 0 %


def test_state_profiles_mask_bands_with_few_cells(make_run, tmp_path):
    run = RunData(make_run({"state_gradients": state_gradients_table()}))
    section = state_gradient_section(run, "S1", "S1", tmp_path)
    assert section is not None
    root = ET.fromstring(str(section.svg))
    # one panel, labelled by its state and type, holds every line
    panels = [g for g in root.findall(f"{SVG}g") if g.get("transform")]
    assert len(panels) == 1
    assert panels[0].find(f"{SVG}text").text.startswith("PDL1_pos · Macrophage")
    # every 4th band has fewer than the minimum cells: the line breaks there, so 5 runs of
    # 3 bands each, with the drawn points the shares of the kept bands
    lines = line_points(panels[0])
    assert len(lines) == 5
    assert all(len(points) == 3 for points in lines)
    assert f"fewer than {MIN_STATE_BAND_CELLS}" in section.caption


def test_sample_page_lists_states_and_cohort_lists_state_features(make_run, rng):
    feature = "state_fraction.border.Macrophage.PDL1_pos"
    association = pd.DataFrame({"feature": [feature, "density.core.B"],
                                "outcome": "response", "test": "mann_whitney",
                                "effect_name": "auc", "effect": [0.9, 0.6],
                                "ci_low": [0.7, 0.3], "ci_high": [1.0, 0.8],
                                "p": [0.001, 0.4], "q": [0.002, 0.4], "n": 12})
    run = make_run({"states": states_table(), "state_gradients": state_gradients_table()},
                   association=association)
    render_report(run)
    page = (run / "report" / "S1.html").read_text()
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert {"states", "state-gradients"} <= set(ids)
    index = (run / "report" / "index.html").read_text()
    passed = index[index.index('id="associations-passed"'):index.index('id="volcano"')]
    assert feature in passed and "density.core.B" not in passed
