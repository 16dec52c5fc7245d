"""Readable charts: masked tiny gradient bins, pooled profiles, KM at-risk numbers and units,
robust volcano limits, the overview first, methods from what ran."""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from _paths import line_points

from metaniche.config import PhenotypeParams
from metaniche.report import cohort_figures as cf
from metaniche.report import render_report
from metaniche.report.bands import MIN_BAND_AREA_MM2, merge_bins, pooled_profile
from metaniche.report.methods import methods_paragraphs
from metaniche.report.overview import call_explanation
from metaniche.report.rundata import RunData
from metaniche.report.sample_page import gradient_section


def _profile(areas: np.ndarray, cells: np.ndarray, sample: str = "S1") -> pd.DataFrame:
    starts = np.arange(len(areas)) * 10.0 - 50.0
    return pd.DataFrame({"sample": sample, "lesion_id": pd.array([pd.NA] * len(areas),
                                                                  dtype="Int64"),
                         "cell_type": "CD8_T", "bin_start_um": starts,
                         "bin_end_um": starts + 10.0, "n_cells": cells, "area_mm2": areas,
                         "density_per_mm2": cells / np.where(areas > 0, areas, np.nan)})


def test_bins_below_the_minimum_band_area_are_masked():
    areas = np.array([MIN_BAND_AREA_MM2 / 20, MIN_BAND_AREA_MM2 * 0.99, MIN_BAND_AREA_MM2,
                      0.02, 0.02, 0.0])
    cells = np.array([1.0, 2.0, 1.0, 3.0, 4.0, 0.0])
    centre, density = merge_bins(_profile(areas, cells), "bin_start_um", "bin_end_um", 40)
    np.testing.assert_allclose(centre, np.arange(6) * 10.0 - 45.0)
    assert np.isnan(density[[0, 1, 5]]).all()   # 1 cell in 0.00025 mm² would read 4,000/mm²
    np.testing.assert_allclose(density[2:5], cells[2:5] / areas[2:5])


def test_gradient_panel_does_not_draw_masked_bins(make_run, tmp_path):
    areas = np.r_[MIN_BAND_AREA_MM2 / 20, np.full(9, 0.02)]
    cells = np.r_[1.0, np.full(9, 2.0)]   # the masked bin alone would be 4,000 cells/mm²
    run = RunData(make_run({"gradients": _profile(areas, cells)}))
    section = gradient_section(run, "S1", "S1", tmp_path)
    markup = str(section.svg)
    lines = line_points(ET.fromstring(markup))
    assert len(lines) == 1 and len(lines[0]) == 9
    labels = set(re.findall(r">([^<>]+)</text>", markup))
    assert "4,000" not in labels and "0" in labels   # y from 0 to ~100, x ticks incl. 0
    assert f"{MIN_BAND_AREA_MM2:g} mm²" in section.caption


def test_pooled_profile_is_sum_over_sum_with_a_bootstrap_interval():
    rng = np.random.default_rng(1)
    cells = rng.poisson(5.0, size=(8, 6)).astype(float)
    area = rng.uniform(0.01, 0.05, size=(8, 6))
    area[:, 5] = MIN_BAND_AREA_MM2 / 100   # pooled 8 × that: still below the minimum
    density, low, high = pooled_profile(cells, area, n_boot=300)
    np.testing.assert_allclose(density[:5], cells[:, :5].sum(0) / area[:, :5].sum(0))
    assert np.isnan(density[5]) and np.isnan(low[5]) and np.isnan(high[5])
    assert np.all(low[:5] <= density[:5]) and np.all(density[:5] <= high[:5])
    assert np.all(high[:5] > low[:5])
    one = pooled_profile(cells[:1], area[:1])
    assert np.isnan(one[1]).all()


def _km_curves() -> pd.DataFrame:
    """Two step curves with their numbers at risk (as cohort.survival writes them)."""
    rows = []
    for group, times, at_risk, surv in (
            ("low", [0.0, 3.0, 7.0, 12.0], [5, 5, 3, 1], [1.0, 0.8, 0.5, 0.5]),
            ("high", [0.0, 5.0, 9.0, 14.0], [4, 4, 2, 1], [1.0, 0.75, 0.6, 0.6])):
        for t, n, s in zip(times, at_risk, surv, strict=True):
            rows.append({"feature": "density.core.CD8_T", "group": group, "threshold": 2.0,
                         "time": t, "survival": s, "ci_low": s - 0.1, "ci_high": 1.0,
                         "n_at_risk": n})
    return pd.DataFrame(rows)


def _svg_texts(path) -> list[str]:
    """Every text of a cohort figure's SVG: save_figure keeps text as <text> elements (one
    per line), not as glyph outlines."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    assert not re.search(r"<!-- .* -->", path.read_text())   # no glyph-outline text left
    return ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]


def test_km_figure_has_time_unit_numbers_at_risk_and_logrank_p(tmp_path):
    association = pd.DataFrame({"feature": ["density.core.CD8_T"], "test": ["logrank"],
                                "p": [0.0123]})
    paths, drawn, splits = cf.kaplan_meier(_km_curves(), association, tmp_path,
                                              time_unit="months", unit_name="patients")
    texts = _svg_texts(tmp_path / paths[1])
    assert "time (months)" in texts
    assert "log-rank p = 0.0123" in " ".join(texts)
    assert "at risk (patients)" in texts
    assert drawn == ["density.core.CD8_T"]
    assert splits == ["split at the cohort median 2"]
    # numbers at risk at the labelled ticks (0, 2, …, 14): brute force from the step data
    curves = _km_curves()
    ticks = [0, 2, 4, 6, 8, 10, 12, 14]
    for group in ("low", "high"):
        rows = curves[curves["group"] == group]
        expected = [int(rows.loc[rows["time"] >= t, "n_at_risk"].iloc[0])
                    if (rows["time"] >= t).any() else 0 for t in ticks]
        assert cf._at_risk(rows, np.array(ticks, dtype=float)) == expected
    assert "5" in texts and "4" in texts   # at-risk counts drawn


def test_km_binary_feature_split_by_its_two_values():
    values = pd.Series([0.0, 1.0, 1.0, 0.0, np.nan])
    labels, split = cf.km_group_labels("phenotype.inflamed", 0.0, values)
    assert labels == {"low": "= 0", "high": "= 1"}
    assert split == "binary feature: split by its two values (0 vs 1)"
    labels, split = cf.km_group_labels("x", 2.5, pd.Series([1.0, 2.0, 3.0, 4.0]))
    assert labels == {"low": "≤ 2.5", "high": "> 2.5"}


def test_robust_limits_ignore_one_extreme_estimate():
    effects = np.r_[np.linspace(-1.0, 1.0, 200), np.log2(89.7)]
    low, high = cf.robust_limits(effects)
    assert high < np.log2(89.7)      # the extreme fit is clipped, not stretching the axis
    assert low < -0.9 and high > 0.9
    q1, q99 = np.percentile(effects, [1, 99])
    assert high == pytest.approx(q99 + cf.VOLCANO_MARGIN * (q99 - q1))


def test_volcano_marks_clipped_effects(tmp_path):
    n = 60
    association = pd.DataFrame({"feature": [f"f{i}" for i in range(n)], "outcome": "os",
                                "test": "cox", "effect_name": "hazard_ratio",
                                "effect": np.r_[np.exp(np.linspace(-0.5, 0.5, n - 1)), 89.7],
                                "p": np.linspace(0.001, 0.9, n), "q": np.linspace(0.01, 1, n)})
    paths = cf.volcano(association, tmp_path)
    texts = _svg_texts(tmp_path / paths[1])
    assert any("1 clipped" in t for t in texts)
    assert "log2 hazard_ratio" in texts


def test_call_explanation_states_values_against_thresholds():
    params = PhenotypeParams()
    assert call_explanation("desert", 3.9, 4.0, params) == (
        "core 3.9 and border 4 < 50 cells/mm² → desert")
    assert call_explanation("excluded", 3.6, 267.0, params) == (
        "not desert; core / border = 0.0135 < 0.3 → excluded")
    assert call_explanation("undetermined", np.nan, 5.0, params, "no core tissue") == (
        "undetermined: no core tissue")


def test_methods_only_for_what_ran():
    config = {"compartments": {"grid_um": 0.0, "border_um": 100.0, "tumor_fraction": 0.0},
              "zonation": {"portal_types": ["Portal_vein"], "central_types": ["Central_vein"]},
              "aggregates": {"fdc_types": ["FDC"], "gc_types": ["GC_B"]}}
    used = pd.DataFrame({"grid_um": [4.0, 6.5]})
    aggregates = pd.DataFrame({"aggregate_id": [1], "kind": ["tls"], "n_fdc": [0], "n_gc": [0]})
    text = " ".join(methods_paragraphs(config, "t", {"compartments": used,
                                                      "aggregates": aggregates}))
    assert "Zonation" not in text and "portal" not in text
    assert "follicular dendritic" not in text and "FDC" not in text
    assert "4–6.5 µm (automatic" in text and "0 means automatic" not in text
    graded = aggregates.assign(n_fdc=[3])
    zonation = pd.DataFrame({"sample": ["S1"], "eta_start": [0.0]})
    text = " ".join(methods_paragraphs(config, "t", {"aggregates": graded,
                                                      "zonation": zonation}))
    assert "Zonation" in text and "follicular dendritic cells (FDC)" in text


def test_overview_is_the_first_section_and_tables_are_sortable(make_run):
    rows = [{"sample": "S1", "lesion_id": pd.NA, "compartment": c, "cell_type": t,
             "n_cells": n, "area_mm2": a, "density_per_mm2": n / a, "proportion": 0.5}
            for c, a in (("core", 0.5), ("border", 0.25), ("adjacent", 1.0), ("all", 1.75))
            for t, n in (("CD8_T", 40), ("Tumor", 400))]
    composition = pd.DataFrame(rows).astype({"lesion_id": "Int64"})
    run = make_run({"composition": composition})
    index = render_report(run).read_text()
    sections = re.findall(r'<section id="([^"]+)"', index)
    assert sections[0] == "overview"
    assert sections.index("status") > sections.index("overview")
    assert sections[-1] == "methods"
    assert '<table class="sortable">' in index
    # core 80 / border 160 cells/mm² = 0.5 ≥ 0.3 (not desert): the rule with the values
    assert "not desert; core / border = 0.5 ≥ 0.3 → inflamed" in index


def test_undetermined_call_shows_the_reason_from_the_warnings(make_run):
    reason = ("no core tissue: every tumour pixel lies within border_um of the boundary; set "
              "[compartments] border_um smaller")
    samples = {"S1": {"sample": "S1", "file_name": "S1", "status": "ok", "error": None,
                      "seconds": 1.0, "phenotype": "undetermined",
                      "warnings": ["tumour covers 3 % of the tissue.",
                                   f"immune phenotype undetermined: {reason}."]}}
    index = render_report(make_run(samples=samples)).read_text()
    assert f"undetermined: {reason}" in index
    assert "undetermined: immune phenotype" not in index


def test_heatmap_selection_skips_near_constant_columns():
    rng = np.random.default_rng(3)
    n = 12
    spike = np.zeros(n)
    spike[0] = 100.0          # one outlier: the largest variance and CV, but near-constant
    features = pd.DataFrame({"spike": spike, "spread": rng.normal(10.0, 3.0, n),
                             "narrow": rng.normal(10.0, 0.1, n)})
    chosen = cf.select_features(features, None)
    assert "spike" not in chosen
    assert chosen == ["spread", "narrow"]   # larger IQR / median first


def test_heatmap_treats_infinite_values_as_missing(tmp_path):
    """borderline_index is inf where a type is absent from core and adjacent: the heatmap
    neither warns on it nor z-scores it; too many inf drop the column like missing values."""
    rng = np.random.default_rng(4)
    n = 20
    ratio = rng.lognormal(0.0, 1.0, n)
    ratio[:2] = np.inf                      # 10 % infinite: kept, those cells blank
    mostly_inf = rng.lognormal(0.0, 1.0, n)
    mostly_inf[:6] = np.inf                 # 30 % infinite: over max_missing (20 %)
    features = pd.DataFrame({"sample": [f"S{i}" for i in range(n)], "ratio": ratio,
                             "mostly_inf": mostly_inf, "spread": rng.normal(10.0, 3.0, n)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = cf.select_features(features.drop(columns="sample"), None)
        drawn = cf.feature_heatmap(features, None, tmp_path)
    assert set(chosen) == {"ratio", "spread"}
    assert drawn is not None and drawn[1] == 2
    z = cf.zscore(cf.finite(features[["ratio"]]))["ratio"].to_numpy()
    assert np.isnan(z[:2]).all() and np.isfinite(z[2:]).all()
    finite_part = ratio[2:]
    assert np.allclose(z[2:], (finite_part - finite_part.mean()) / finite_part.std(ddof=1))


@pytest.mark.parametrize(("clinical", "unit"), [
    ({"os_time": "survival_days"}, "days"),          # the NSCLC example: read from the name
    ({"os_time": "OS (months)"}, "months"),
    ({"os_time": "survival_days", "time_unit": "weeks"}, "weeks"),   # stated: it wins
    ({"os_time": "os_time"}, ""),                    # no unit claimed
])
def test_survival_axis_unit_comes_from_the_config_or_the_column_name(make_run, clinical, unit):
    from metaniche.report.cohort_page import survival_section

    association = pd.DataFrame({"feature": ["density.core.CD8_T"], "test": ["logrank"],
                                "outcome": ["os"], "p": [0.0123]})
    run = RunData(make_run({"km_curves": _km_curves()}, association=association,
                           config={"clinical": clinical}))
    section = survival_section(run, run.dir.report_dir)
    texts = _svg_texts(run.dir.report_dir / section.files[1])
    if unit:
        assert f"time ({unit})" in texts and section.caption.endswith(f"time in {unit}.")
    else:
        assert "time (unit of the clinical table)" in texts
        assert section.caption.endswith("the unit of the clinical table.")


def test_pooled_bins_reached_by_few_samples_are_masked():
    """Far bins that only one of thirty samples reaches (a planted outlier density there)
    are not drawn; bins every sample reaches are."""
    rng = np.random.default_rng(3)
    n, n_bins = 30, 6
    area = rng.uniform(0.01, 0.05, size=(n, n_bins))
    cells = rng.poisson(100 * area).astype(float)
    area[1:, 5] = 0.0                      # only sample 0 reaches the last bin …
    cells[1:, 5] = 0.0
    cells[0, 5] = 5000 * area[0, 5]        # … where its density is 50 times the rest
    area[2:, 4] = 0.0                      # two samples reach bin 4: below 10 % of 30
    cells[2:, 4] = 0.0
    density, low, high = pooled_profile(cells, area, n_boot=200)
    assert np.isfinite(density[:4]).all() and np.isfinite(low[:4]).all()
    assert np.isnan(density[4:]).all() and np.isnan(high[4:]).all()
    # a share of 0 keeps every bin at least MIN_POOLED_SAMPLES (2) samples reach
    kept = np.isfinite(pooled_profile(cells, area, n_boot=50, min_sample_share=0.0)[0])
    assert kept.tolist() == [True] * 5 + [False]
