"""Association results in the report: one effect type per volcano panel, family and contrast
columns in the table, the KM split as the survival table made it, methods text on
``min_non_missing``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd

from metaniche.cohort.survival import kaplan_meier_table
from metaniche.report import cohort_figures as cf
from metaniche.report import render_report
from metaniche.report.methods import methods_paragraphs


def _condition_rows(rng: np.random.Generator) -> pd.DataFrame:
    """Rows as the cohort step writes them for a three-level condition plus survival."""
    n = 12
    features = [f"f{i}" for i in range(n)]
    parts = []
    for contrast in ("B vs A", "C vs A", "C vs B"):
        parts.append(pd.DataFrame({"feature": features, "outcome": "condition",
                                   "test": "mann_whitney", "effect_name": "auc",
                                   "contrast": contrast, "effect": rng.uniform(0, 1, n)}))
    parts.append(pd.DataFrame({"feature": features, "outcome": "condition",
                               "test": "kruskal_wallis", "effect_name": "epsilon_squared",
                               "contrast": "A / B / C", "effect": rng.uniform(0, 0.5, n)}))
    parts.append(pd.DataFrame({"feature": features, "outcome": "condition",
                               "test": "mixed_model", "effect_name": "difference_sd",
                               "contrast": "B vs A", "effect": rng.normal(0, 2, n)}))
    parts.append(pd.DataFrame({"feature": features, "outcome": "os", "test": "cox",
                               "effect_name": "hr_per_sd", "effect": np.exp(rng.normal(0, 1, n))}))
    table = pd.concat(parts, ignore_index=True)
    table["p"] = rng.uniform(1e-4, 1, len(table))
    table["q"] = np.minimum(table["p"] * 5, 1.0)
    table["family"] = np.where(table["feature"] == "f0", "primary", "exploratory")
    return table


def test_volcano_panels_never_mix_effect_types(rng):
    table = _condition_rows(rng)
    # one test that reported two effect types (a stray row) must still split
    table.loc[0, "effect_name"] = "cliffs_delta"
    panels = cf.volcano_panels(table)
    for (outcome, test, effect_name), part in panels:
        assert set(part["effect_name"]) == {effect_name}, (outcome, test)
        assert set(part["outcome"]) == {outcome} and set(part["test"]) == {test}
    keys = [key for key, _ in panels]
    assert ("condition", "mann_whitney", "auc") in keys
    assert ("condition", "mann_whitney", "cliffs_delta") in keys
    assert len(keys) == len(set(keys)) == 5
    # every finite row is in exactly one panel
    assert sum(len(part) for _, part in panels) == len(table)
    # outcomes in the table's order: condition before os
    assert [k[0] for k in keys].index("os") == len(keys) - 1


def test_volcano_titles_name_the_contrasts(rng, tmp_path):
    table = _condition_rows(rng)
    paths = cf.volcano(table, tmp_path)
    root = ET.parse(tmp_path / paths[1]).getroot()   # text kept as <text>, one per line
    texts = ["".join(e.itertext()) for e in root.iter("{http://www.w3.org/2000/svg}text")]
    joined = "\n".join(texts)
    assert "3 contrasts" in joined            # the pairwise AUCs of three groups
    assert "A / B / C" in joined              # the omnibus panel names its groups
    assert "log2 hr_per_sd" in texts       # Cox HRs on their own log2 axis
    assert "epsilon_squared" in texts and "difference_sd" in texts


def test_association_table_shows_family_and_contrast(make_run, rng):
    table = _condition_rows(rng)
    table["q"] = np.where(table["feature"].isin(["f0", "f1"]), 0.01, 0.5)
    table["ci_low"], table["ci_high"], table["n"] = np.nan, np.nan, 12
    table["unit"] = "sample"
    run = make_run(association=table)
    index = render_report(run).read_text()
    passed = index[index.index('id="associations-passed"'):index.index('id="volcano"')]
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", passed)
    assert header[:5] == ["feature", "feature unit", "family", "outcome", "contrast"]
    rows = re.findall(r"<tr><td>(.*?)</td><td>.*?</td><td>(.*?)</td><td>(.*?)</td>"
                      r"<td>(.*?)</td>", passed)
    assert rows and {r[0] for r in rows} == {"f0", "f1"}
    assert all(r[1] == ("primary" if r[0] == "f0" else "exploratory") for r in rows)
    # primary rows first
    families = [r[1] for r in rows]
    assert families == sorted(families, key=lambda f: f != "primary")
    assert {r[3] for r in rows if r[2] == "condition"} >= {"B vs A", "A / B / C"}
    assert "epsilon² (rank-based share of variance)" in passed
    assert "within each outcome × test × family" in passed


def test_methods_state_min_non_missing_applies_to_the_prediction_only():
    config = {"cohort": {"analyses": ["response"], "min_non_missing": 0.8, "min_group": 3,
                         "min_events": 5}}
    association = pd.DataFrame({"feature": ["a", "b"], "family": ["primary", "exploratory"]})
    text = " ".join(methods_paragraphs(config, "t", {"association": association}))
    assert "each test uses the units in which the feature was measured" in text
    assert "prediction from the features measured in a fraction of at least 0.8" in text
    assert "features kept with" not in text
    assert "× family" in text


def test_km_figure_states_the_split_the_survival_table_made(tmp_path):
    # 9 of 12 units at the maximum: the median split puts ties high, a binary flag by value
    x = np.r_[1.0, 2.0, 3.0, np.full(9, 5.0)]
    flag = np.r_[np.zeros(4), np.ones(8)]
    rng = np.random.default_rng(1)
    values = pd.DataFrame({"many_at_max": x, "flag": flag})
    time = pd.Series(rng.exponential(10, 12))
    tests, curves = kaplan_meier_table(values, time, pd.Series(np.ones(12)))
    assert set(curves["feature"]) == {"many_at_max", "flag"}   # neither has an empty group
    association = tests.assign(outcome="os")
    features = values.assign(sample=[f"S{i}" for i in range(12)])
    _, drawn, splits = cf.kaplan_meier(curves, association, tmp_path, features=features,
                                       time_unit="months")
    said = dict(zip(drawn, splits, strict=True))
    assert said["many_at_max"] == ("split at the cohort median 5, ties high (most units at "
                                   "the median)")
    assert said["flag"] == "binary feature: split by its two values (0 vs 1)"
