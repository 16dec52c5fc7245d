"""Each report section appears exactly when its table exists and shows the table's numbers."""

from __future__ import annotations

import base64
import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image

from metaniche.report import render_report
from metaniche.report.colours import COMPARTMENT_COLOURS
from metaniche.report.rundata import RunData
from metaniche.report.sample_page import (
    _grids,
    density_section,
    enrichment_section,
    merge_bins,
)
from metaniche.report.svg import heatmap_tip

SVG = "{http://www.w3.org/2000/svg}"
TYPES = ["B", "CD8_T", "Tumor"]


def composition_table(sample: str = "S1") -> pd.DataFrame:
    """Whole-sample composition rows: density = (index + 1) * 10 * compartment rank."""
    rows = []
    areas = {"core": 0.5, "border": 0.25, "adjacent": 1.0, "all": 1.75}
    for k, compartment in enumerate(("core", "border", "adjacent", "all")):
        for i, cell_type in enumerate(TYPES):
            density = (i + 1) * 10.0 * (k + 1)
            rows.append({"sample": sample, "lesion_id": pd.NA, "compartment": compartment,
                         "cell_type": cell_type, "n_cells": round(density * areas[compartment]),
                         "area_mm2": areas[compartment], "density_per_mm2": density,
                         "proportion": 1 / 3})
    table = pd.DataFrame(rows)
    table["lesion_id"] = table["lesion_id"].astype("Int64")
    return table


SAMPLE_SECTION_IDS = ["density", "gradients", "enrichment", "distances", "neighbourhoods",
                      "zonation", "aggregates"]


def _ids(html: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', html))


def gradients_table() -> pd.DataFrame:
    starts = np.arange(-500.0, 500.0, 10.0)
    parts = []
    for i, cell_type in enumerate(TYPES):
        parts.append(pd.DataFrame({
            "sample": "S1", "lesion_id": pd.array([pd.NA] * len(starts), dtype="Int64"),
            "cell_type": cell_type, "bin_start_um": starts, "bin_end_um": starts + 10.0,
            "n_cells": (i + 1) * np.ones(len(starts), dtype=int), "area_mm2": 0.01,
            "density_per_mm2": (i + 1) / 0.01}))
    return pd.concat(parts, ignore_index=True)


def enrichment_table() -> pd.DataFrame:
    rows = []
    for i, a in enumerate(TYPES):
        for j, b in enumerate(TYPES):
            z = float(i - j) * 2.5
            rows.append({"sample": "S1", "null": "sample", "type_a": a, "type_b": b,
                         "observed": 10.0 + z, "expected": 10.0, "z": z, "p": 0.01})
            rows.append({"sample": "S1", "null": "compartment", "type_a": a, "type_b": b,
                         "observed": 1.0, "expected": 1.0, "z": 99.0, "p": 1.0})
    return pd.DataFrame(rows)


def distances_table() -> pd.DataFrame:
    rows = [{"sample": "S1", "compartment": c, "lesion_id": pd.NA, "source_type": a,
             "target_type": b, "n_source": 5, "mean_um": 12.0 + i, "median_um": 10.0 + i + j}
            for c in ("all", "core") for i, a in enumerate(TYPES) for j, b in enumerate(TYPES)]
    table = pd.DataFrame(rows)
    table["lesion_id"] = table["lesion_id"].astype("Int64")
    return table


def neighbourhoods_table() -> pd.DataFrame:
    abundance = pd.DataFrame({"sample": "S1", "table": "abundance",
                              "compartment": ["all", "all", "core", "core"],
                              "neighbourhood": [1, 2, 1, 2], "cell_type": None,
                              "n_cells": [30, 10, 5, 5], "fraction": [0.75, 0.25, 0.5, 0.5]})
    composition = pd.DataFrame({"sample": None, "table": "composition", "compartment": None,
                                "neighbourhood": [1, 1, 2, 2], "cell_type": ["B", "Tumor"] * 2,
                                "n_cells": None, "fraction": [0.9, 0.1, 0.2, 0.8]})
    return pd.concat([abundance, composition], ignore_index=True)


def zonation_table() -> pd.DataFrame:
    eta = np.linspace(0, 0.9, 10)
    return pd.DataFrame({"sample": "S1", "subset": "outside", "cell_type": "B",
                         "eta_start": eta, "eta_end": eta + 0.1, "n_cells": 3,
                         "area_mm2": 0.1, "density_per_mm2": 30.0})


def aggregates_table() -> pd.DataFrame:
    return pd.DataFrame({"sample": ["S1"], "aggregate_id": [4], "kind": ["tls"],
                         "n_cells": [57], "area_mm2": [0.012], "centroid_x": [1.0],
                         "centroid_y": [2.0], "signed_distance_um": [250.0],
                         "grade": ["mature"]})


ALL_TABLES = {"composition": composition_table, "gradients": gradients_table,
              "enrichment": enrichment_table, "distances": distances_table,
              "neighbourhoods": neighbourhoods_table, "zonation": zonation_table,
              "aggregates": aggregates_table}


def test_only_composition_gives_only_the_density_section(make_run):
    run = make_run({"composition": composition_table()})
    render_report(run)
    html = (run / "report" / "S1.html").read_text()
    assert _ids(html) & set(SAMPLE_SECTION_IDS) == {"density"}
    index = (run / "report" / "index.html").read_text()
    assert not _ids(index) & {"features", "associations", "survival", "prediction"}


@pytest.mark.parametrize("name", sorted(set(ALL_TABLES) - {"composition"}))
def test_each_section_appears_with_its_table(make_run, name):
    tables = {"composition": composition_table(), name: ALL_TABLES[name]()}
    run = make_run(tables)
    render_report(run)
    html = (run / "report" / "S1.html").read_text()
    expected = {"density", name}
    assert _ids(html) & set(SAMPLE_SECTION_IDS) == expected
    if name != "aggregates":
        # the chart lives once, inline in the page, with a download link (no figure file)
        assert not (run / "report" / "figures" / f"S1.{name}.svg").exists()
        section = html[html.index(f'<section id="{name}">'):]
        section = section[:section.index("</section>")]
        assert section.count("<svg") == 1
        assert f'data-svg-download="S1.{name}.svg"' in section


def test_density_bars_are_proportional_to_density(make_run, tmp_path):
    run = RunData(make_run({"composition": composition_table()}))
    section = density_section(run, "S1", "S1", tmp_path)
    # one group of bars per compartment (in its colour), a bar per type in the table's order;
    # no hover titles: the table of the section holds the numbers
    root = ET.fromstring(str(section.svg))
    groups = {g.get("fill"): g.findall(f"{SVG}rect") for g in root.findall(f"{SVG}g")
              if g.get("fill")}
    assert not list(root.iter(f"{SVG}title"))
    types = [r[0] for r in section.table.rows]

    def bar(cell_type, compartment):
        return groups[COMPARTMENT_COLOURS[compartment]][types.index(cell_type)]

    # CD8_T (index 1) in border (rank 2): 2 * 10 * 2 = 40; the largest bar is Tumor adjacent 90.
    # Log axis from the decade below the smallest density (10) to the decade above the
    # largest (100): a bar's length is log10(v / 10) / log10(100 / 10) of the axis.
    width = float(bar("CD8_T", "border").get("width"))
    full = float(bar("Tumor", "adjacent").get("width"))
    assert width / full == pytest.approx(np.log10(40 / 10) / np.log10(90 / 10), rel=1e-3)
    ticks = {t.text for t in ET.fromstring(str(section.svg)).iter(f"{SVG}text")}
    assert {"10", "20", "50", "100"} <= ticks  # under two decades: 1-2-5 ticks labelled
    table_row = next(r for r in section.table.rows if r[0] == "CD8_T")
    assert table_row[1:5] == ["20", "40", "60", "80"]


def test_enrichment_uses_the_sample_null_and_reports_z(make_run, tmp_path):
    run = RunData(make_run({"enrichment": enrichment_table()}))
    section = enrichment_section(run, "S1", "S1", tmp_path)
    root = ET.fromstring(str(section.svg))
    data = json.loads(root.get("data-tips"))
    n_rows, n_cols = len(data["rows"]), len(data["cols"])
    # the cells: one image, a pixel per cell, in the colour of its z on the symmetric scale
    image = next(root.iter(f"{SVG}image"))
    assert (int(image.get("width")), int(image.get("height"))) == (n_cols, n_rows)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        image.get("href").split(",", 1)[1]))).convert("RGB"))
    assert pixels.shape == (n_rows, n_cols, 3)
    z = np.array([[float(heatmap_tip(data, i, j).split("z ")[1].split(",")[0])
                   for j in range(n_cols)] for i in range(n_rows)])
    limit = np.abs(z).max()
    expected = (np.asarray(colormaps["RdBu_r"]((z + limit) / (2 * limit)))[..., :3] * 255)
    np.testing.assert_allclose(pixels, expected, atol=1.01)
    tips = [heatmap_tip(data, i, j) for i in range(n_rows) for j in range(n_cols)]
    # Tumor (i=2) vs B (j=0): z = 5, observed 15, expected 10; the compartment null is ignored.
    tip = next(t for t in tips if t.startswith("Tumor – B:"))
    assert "z 5," in tip and "observed 15" in tip and "expected 10" in tip
    assert not any("99" in t for t in tips)


def test_grids_match_pandas_pivot(rng):
    rows = pd.DataFrame({"a": rng.choice(list("xyz"), 30), "b": rng.choice(list("uv"), 30),
                         "v": rng.normal(size=30)}).drop_duplicates(["a", "b"])
    ours = _grids(rows, "a", "b", ["v"])["v"]
    theirs = rows.pivot(index="a", columns="b", values="v").reindex(index=ours.index,
                                                                   columns=ours.columns)
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy())


def test_merge_bins_sums_cells_and_areas():
    part = pd.DataFrame({"bin_start_um": np.arange(0.0, 100.0, 10.0),
                         "bin_end_um": np.arange(10.0, 110.0, 10.0),
                         "n_cells": np.arange(10), "area_mm2": np.r_[np.zeros(3), np.ones(7)]})
    centre, density = merge_bins(part, "bin_start_um", "bin_end_um", max_bins=4)
    # factor ceil(10 / 4) = 3: groups [0,1,2] (area 0 -> NaN), [3,4,5], [6,7,8], [9].
    np.testing.assert_allclose(centre, [15.0, 45.0, 75.0, 95.0])
    assert np.isnan(density[0])
    np.testing.assert_allclose(density[1:], [12 / 3, 21 / 3, 9 / 1])


def test_cohort_sections_from_association_km_and_prediction(make_run, rng):
    features = pd.DataFrame({"sample": [f"S{i}" for i in range(8)],
                             "density.core.B": rng.normal(size=8),
                             "constant": np.ones(8),
                             "mostly_missing": [1.0, np.nan, np.nan, np.nan, 2.0, np.nan,
                                                np.nan, 3.0]})
    association = pd.DataFrame({"feature": ["density.core.B"], "outcome": ["response"],
                                "test": ["mann_whitney"], "statistic": [3.0], "effect": [0.8],
                                "ci_low": [0.6], "ci_high": [0.95], "p": [0.01], "q": [0.02]})
    km = pd.DataFrame({"feature": "density.core.B", "group": ["low"] * 3 + ["high"] * 3,
                       "time": [0, 5, 9] * 2, "survival": [1, 0.5, 0.25, 1, 0.8, 0.6]})
    prediction = {"unit_count": 8, "n_responders": 4, "n_folds": 2, "n_repeats": 1,
                  "model": "logistic <b>", "spatial": {"auc": 1.0, "ci_low": 1.0,
                                                       "ci_high": 1.0, "n_features": 1},
                  "baseline": None, "difference": None,
                  "predictions": [{"unit": f"S{i}", "responder": int(i % 2),
                                   "spatial": float(i % 2), "baseline": None}
                                  for i in range(8)]}
    run = make_run({"km_curves": km}, features=features, association=association,
                   prediction=prediction)
    render_report(run)
    index = (run / "report" / "index.html").read_text()
    assert {"features", "associations", "survival", "prediction"} <= _ids(index)
    assert "logistic &lt;b&gt;" in index
    figures = run / "report" / "figures"
    for stem in ("cohort.volcano", "cohort.km", "cohort.roc"):
        assert (figures / f"{stem}.png").is_file() and (figures / f"{stem}.svg").is_file()
    assert (figures / "cohort.features.png").is_file()
    assert "density.core.B" in index


def test_methods_list_every_parameter(make_run):
    config = {"um_per_unit": 0.5, "compartments": {"border_um": 250.0, "grid_um": 4.0},
              "relations": {"count_within_um": [10.0, 20.0], "seed": 3}}
    run = make_run({"composition": composition_table()}, config=config)
    index = render_report(run).read_text()
    for key, value in (("um_per_unit", "0.5"), ("compartments.border_um", "250.0"),
                       ("compartments.grid_um", "4.0"), ("relations.count_within_um",
                                                          "10.0, 20.0"),
                       ("relations.seed", "3")):
        assert re.search(rf"<td>{re.escape(key)}</td><td class=\"text\">{re.escape(value)}</td>",
                         index), key
    assert "w = 250.0 µm" in index


def test_a_long_table_scrolls_in_a_box_and_a_short_one_does_not():
    from metaniche.report.html import _ENV
    from metaniche.report.sections import Table

    macros = _ENV.get_template("_macros.html").module
    long = str(macros.data_table(Table(["a"], [[str(i)] for i in range(26)], sortable=True)))
    short = str(macros.data_table(Table(["a"], [[str(i)] for i in range(25)], sortable=True)))
    assert long.count('<div class="table-scroll">') == 1 and long.rstrip().endswith("</div>")
    assert long.index('<div class="table-scroll">') < long.index("<table")
    assert "table-scroll" not in short
