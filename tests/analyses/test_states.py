"""Cell states (:mod:`metaniche.analyses.states`) against planted truth, closed forms and
independent (pandas groupby) counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.analyses.compartments import COMPARTMENTS, WHOLE
from metaniche.analyses.states import (
    STATE_COLUMNS,
    call_states,
    default_ratio_pairs,
    density_ratios,
    state_gradient_statistics,
    state_gradients,
    state_table,
    state_trend_test,
)
from metaniche.config import StateRule
from metaniche.errors import InputError
from metaniche.simulate import (
    STATE_MARKERS,
    STATE_THRESHOLD,
    analytic_compartment_areas,
    planted_state_probabilities,
    simulate_sample,
)


def _areas(values: dict[tuple[int, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"lesion_id": k[0], "compartment": k[1], "area_mm2": v}
                         for k, v in values.items()])


def _codes(labels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    codes, types = pd.factorize(labels, sort=True)
    return codes, [str(t) for t in types]


# --- planted truth ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    return simulate_sample("st", n_cells=40_000, seed=3, phenotype="inflamed", n_lesions=1,
                           states=True)


RULES = {
    "PDL1_pos": StateRule(marker="PDL1", threshold=STATE_THRESHOLD,
                          cell_types=("Macrophage", "Tumor")),
    "GZMB_pos": StateRule(marker="GZMB", threshold=STATE_THRESHOLD, cell_types=("CD8_T",)),
    "PD1_pos": StateRule(marker="PD1", threshold="otsu", cell_types=("CD8_T",)),
    "GZMB_PD1": StateRule(all_of=("GZMB_pos", "PD1_pos")),
}


def test_calls_equal_the_planted_states(planted):
    labels = planted.cells["cell_type"].to_numpy()
    calls = call_states(planted.cells, labels, RULES, "st")
    for j, name in enumerate(calls.names[:3]):
        assert np.array_equal(calls.positive[:, j], planted.truth[name].to_numpy()), name
    # the automatic threshold separates the planted levels too
    assert calls.thresholds.set_index("state").loc["PD1_pos", "method"] == "otsu"
    both = planted.truth["GZMB_pos"].to_numpy() & planted.truth["PD1_pos"].to_numpy()
    assert np.array_equal(calls.positive[:, 3], both)
    # the combination inherits its parts' lineages
    assert calls.cell_types["GZMB_PD1"] == ("CD8_T",)


def test_compartment_fractions_within_binomial_error_of_planted(planted):
    labels = planted.cells["cell_type"].to_numpy()
    codes, types = _codes(labels)
    truth = planted.truth
    calls = call_states(planted.cells, labels, RULES, "st")
    analytic = analytic_compartment_areas(planted)
    areas = _areas({(0, c): analytic[c] for c in COMPARTMENTS}
                   | {(0, WHOLE): sum(analytic[c] for c in COMPARTMENTS)})
    table = state_table(calls, codes, types, truth["compartment"].to_numpy(),
                        np.zeros(len(labels), np.int64), areas)
    assert list(table.columns) == STATE_COLUMNS
    probability = planted_state_probabilities(labels, truth["signed_distance_um"].to_numpy(),
                                              planted.phenotype)
    probability["GZMB_PD1"] = probability["GZMB_pos"] * probability["PD1_pos"]
    compartment = truth["compartment"].to_numpy()
    checked = 0
    for row in table.itertuples(index=False):
        inside = labels == row.cell_type
        if row.compartment != WHOLE:
            inside &= compartment == row.compartment
        p = probability[row.state][inside]
        assert row.n_cells == inside.sum()
        if row.n_cells < 30:
            continue
        expected = p.mean()
        se = math.sqrt(max(np.sum(p * (1 - p)), 1e-12)) / row.n_cells
        assert abs(row.fraction - expected) <= 4 * se + 1e-12, row
        area = areas.set_index("compartment")["area_mm2"][row.compartment]
        assert row.density_per_mm2 == pytest.approx(row.n_positive / area)
        checked += 1
    assert checked >= 12
    whole = table.set_index(["compartment", "cell_type", "state"])
    # the planted structure: PD-L1+ macrophages piled up at the border, GZMB+ CD8 in the core
    assert (whole.loc[("border", "Macrophage", "PDL1_pos"), "fraction"]
            > 2 * whole.loc[("adjacent", "Macrophage", "PDL1_pos"), "fraction"])
    assert (whole.loc[("core", "CD8_T", "GZMB_pos"), "fraction"]
            > 2 * whole.loc[("border", "CD8_T", "GZMB_pos"), "fraction"])


# --- counting, against an independent groupby ---------------------------------------------------
def _random_cells(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["A", "B", "C", "D"], n)
    cells = pd.DataFrame({"M1": rng.lognormal(0, 1, n), "M2": rng.lognormal(0, 1, n),
                          "flag": rng.random(n) < 0.3})
    compartment = rng.choice(list(COMPARTMENTS), n)
    lesion = rng.integers(0, 3, n)
    areas = _areas({(lesion_id, c): float(rng.uniform(0.1, 1.0))
                    for lesion_id in range(3) for c in (*COMPARTMENTS, WHOLE)})
    return labels, cells, compartment, lesion, areas


def test_state_table_matches_groupby_and_counts_a_cell_in_every_state():
    labels, cells, compartment, lesion, areas = _random_cells(0)
    rules = {"m1": StateRule(marker="M1", threshold=1.0),
             "m2": StateRule(marker="M2", threshold=0.5, cell_types=("A", "B")),
             "f": StateRule(column="flag")}
    calls = call_states(cells, labels, rules, "r")
    codes, types = _codes(labels)
    table = state_table(calls, codes, types, compartment, lesion, areas)
    positive = {"m1": cells["M1"].to_numpy() > 1.0,
                "m2": (cells["M2"].to_numpy() > 0.5) & np.isin(labels, ["A", "B"]),
                "f": cells["flag"].to_numpy()}
    both = positive["m1"] & positive["m2"]
    assert both.sum() > 100  # cells carrying two states ...
    frame = pd.DataFrame({"t": labels, "c": compartment, "l": lesion, **positive})
    for state, wanted in (("m1", "ABCD"), ("m2", "AB"), ("f", "ABCD")):
        sub = table[table["state"] == state]
        assert set(sub["cell_type"]) == set(wanted)
        for (lesion_id, comp), group in [((0, WHOLE), frame),
                                         *(((0, c), g) for c, g in frame.groupby("c")),
                                         *(((int(k[0]), k[1]), g) for k, g in
                                           frame[frame["l"] > 0].groupby(["l", "c"]))]:
            rows = sub[(sub["compartment"] == comp)
                       & (sub["lesion_id"].isna() if lesion_id == 0
                          else sub["lesion_id"] == lesion_id)].set_index("cell_type")
            expect = group.groupby("t")[state].agg(["size", "sum"])
            area = areas[(areas["lesion_id"] == lesion_id)
                         & (areas["compartment"] == comp)]["area_mm2"].iloc[0]
            for label in wanted:
                assert rows.loc[label, "n_cells"] == expect.loc[label, "size"]
                assert rows.loc[label, "n_positive"] == expect.loc[label, "sum"]
                assert rows.loc[label, "density_per_mm2"] == pytest.approx(
                    expect.loc[label, "sum"] / area)
    # ... is counted in both: the two states' positives overlap by exactly those cells
    m1 = table[(table["state"] == "m1") & table["lesion_id"].isna()
               & (table["compartment"] == WHOLE)].set_index("cell_type")["n_positive"]
    assert m1.sum() == positive["m1"].sum()
    assert calls.positive[:, 0][both].all() and calls.positive[:, 1][both].all()


def test_combination_and_column_calls():
    cells = pd.DataFrame({
        "G": [5.0, 5.0, 0.1, 5.0, np.nan, 5.0, 0.1, 5.0],
        "Phenotype PD1": ["PD1+", "PD1-", "PD1+", "PD1+", "PD1+", None, "PD1+", "PD1+"],
        "call01": [1, 0, 1, 1, 0, 1, 0, 1],
    })
    labels = np.array(["CD8", "CD8", "CD8", "CD4", "CD8", "CD8", "CD8", "CD8"])
    rules = {"g": StateRule(marker="G", threshold=1.0),
             "p": StateRule(column="phenotype pd1"),
             "q": StateRule(column="Phenotype PD1", positive=("PD1-",)),
             "z": StateRule(column="call01"),
             "gp": StateRule(all_of=("g", "p"), cell_types=("CD8",))}
    calls = call_states(cells, labels, rules)
    got = dict(zip(calls.names, calls.positive.T, strict=True))
    assert got["g"].tolist() == [True, True, False, True, False, True, False, True]
    assert got["p"].tolist() == [True, False, True, True, True, False, True, True]
    assert got["q"].tolist() == [False, True, False, False, False, False, False, False]
    assert got["z"].tolist() == [True, False, True, True, False, True, False, True]
    assert got["gp"].tolist() == [True, False, False, False, False, False, False, True]


def test_missing_marker_and_bad_column_are_input_errors():
    cells = pd.DataFrame({"A": [1.0, 2.0], "B": [0.3, 7.0]})
    labels = np.array(["x", "y"])
    with pytest.raises(InputError, match=r"sample 's1': state 'p' needs marker 'PDL1'.*"
                                         r"set \[states.p\] marker"):
        call_states(cells, labels, {"p": StateRule(marker="PDL1")}, "s1")
    with pytest.raises(InputError, match=r"state 'c' reads column 'Phenotype PDL1', which is "
                                         r"not in the cell table"):
        call_states(cells, labels, {"c": StateRule(column="Phenotype PDL1")}, "s1")
    with pytest.raises(InputError, match=r"numbers other than 0 and 1"):
        call_states(cells, labels, {"c": StateRule(column="B")}, "s1")


# --- automatic thresholds: closed form of two Gaussians ----------------------------------------
def test_gmm_threshold_matches_the_two_gaussian_closed_form():
    rng = np.random.default_rng(5)
    m1, m2, sd, w1 = 2.0, 6.0, 0.8, 0.7
    n = 200_000
    n1 = int(w1 * n)
    values = np.concatenate([rng.normal(m1, sd, n1), rng.normal(m2, sd, n - n1)])
    # equal variances: w1 N(x; m1) = w2 N(x; m2) at x = (m1 + m2) / 2 + sd² ln(w1 / w2) / (m2 - m1)
    closed = (m1 + m2) / 2 + sd**2 * math.log(w1 / (1 - w1)) / (m2 - m1)
    calls = call_states(pd.DataFrame({"M": values}), np.full(n, "T"),
                        {"s": StateRule(marker="M", threshold="gmm", transform="none")})
    threshold = calls.thresholds["threshold"].iloc[0]
    assert threshold == pytest.approx(closed, abs=0.03)
    assert calls.positive[:, 0].sum() == int((values > threshold).sum())
    # Otsu on equal weights and variances: the midpoint (within a histogram bin)
    half = np.concatenate([rng.normal(m1, sd, n // 2), rng.normal(m2, sd, n // 2)])
    calls = call_states(pd.DataFrame({"M": half}), np.full(n, "T"),
                        {"s": StateRule(marker="M", threshold="otsu", transform="none")})
    assert calls.thresholds["threshold"].iloc[0] == pytest.approx(
        (m1 + m2) / 2, abs=np.ptp(half) / 256 + 0.02)


# --- ratios ---------------------------------------------------------------------------------------
def test_density_ratios_against_hand_counts():
    labels = np.array(["CD8_T"] * 7 + ["Treg"] * 2 + ["CD8_T"] * 3 + ["Treg"] * 0 + ["X"] * 4)
    compartment = np.array(["core"] * 9 + ["border"] * 3 + ["adjacent"] * 4)
    areas = _areas({(0, "core"): 0.5, (0, "border"): 0.25, (0, "adjacent"): 1.0,
                    (0, WHOLE): 1.75})
    table = density_ratios(labels, compartment, areas, [("CD8_T", "Treg")], 0.5)
    ratio = table.set_index("compartment")["ratio"]
    assert ratio["core"] == pytest.approx((7 + 0.5) / (2 + 0.5))     # 7 CD8 / 2 Treg
    assert ratio["border"] == pytest.approx((3 + 0.5) / (0 + 0.5))   # no Treg: pseudocount
    assert math.isnan(ratio["adjacent"])                            # neither type there
    assert ratio[WHOLE] == pytest.approx((10 + 0.5) / (2 + 0.5))
    # with enough cells the ratio is the density ratio
    many = np.array(["A"] * 4000 + ["B"] * 1000)
    big = density_ratios(many, np.full(5000, "core"), areas, [("A", "B")], 0.5)
    assert big.set_index("compartment")["ratio"]["core"] == pytest.approx(4.0, rel=1e-3)
    assert default_ratio_pairs(["CD8_T", "FoxP3+", "Treg", "Tumor"], ["CD8_T"]) == [
        ("CD8_T", "FoxP3+"), ("CD8_T", "Treg")]


# --- band trend test ------------------------------------------------------------------------------
CENTRES = np.arange(-295.0, 300.0, 10.0)


def test_trend_test_recovers_a_planted_slope():
    rng = np.random.default_rng(2)
    slope = -0.8
    logit = -0.5 + slope * np.abs(CENTRES) / 100
    n = np.full(len(CENTRES), 60)
    covered = 0
    for _ in range(20):
        pos = rng.binomial(n, 1 / (1 + np.exp(-logit)))
        trend = state_trend_test(CENTRES, pos, n)
        assert trend.p < 1e-6
        covered += trend.ci_low <= slope <= trend.ci_high
    assert covered >= 16   # 95 % intervals: 19 of 20 expected


def test_trend_test_holds_its_size_under_the_null():
    rng = np.random.default_rng(7)
    centres = np.arange(-145.0, 150.0, 10.0)
    n_draws = 200
    p_values = []
    for _ in range(n_draws):
        n = rng.integers(5, 25, len(centres))
        pos = rng.binomial(n, 0.3)
        p_values.append(state_trend_test(centres, pos, n).p)
    p_values = np.asarray(p_values)
    assert np.isfinite(p_values).all()
    rate = float(np.mean(p_values < 0.05))
    # nominal 5 %, allowing the Monte-Carlo error of 200 draws (two binomial SE: 3.1 points)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / n_draws)


def test_quasi_binomial_holds_size_with_extra_binomial_variation():
    rng = np.random.default_rng(8)
    centres = np.arange(-145.0, 150.0, 10.0)
    n_draws = 200
    rejected = 0
    models = set()
    for _ in range(n_draws):
        n = np.full(len(centres), 40)
        p = rng.beta(3, 7, len(centres))        # band-to-band variation, no trend
        trend = state_trend_test(centres, rng.binomial(n, p), n)
        rejected += trend.p < 0.05
        models.add(trend.model)
    assert "quasi_binomial" in models
    assert rejected / n_draws <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / n_draws)


def test_band_profiles_and_statistics(planted):
    labels = planted.cells["cell_type"].to_numpy()
    codes, types = _codes(labels)
    calls = call_states(planted.cells, labels, RULES, "st")
    edges = np.arange(-500.0, 510.0, 10.0)
    sd = planted.truth["signed_distance_um"].to_numpy()
    profiles = state_gradients(calls, codes, types, sd, edges)
    mac = profiles[(profiles["cell_type"] == "Macrophage") & (profiles["state"] == "PDL1_pos")]
    inside = (labels == "Macrophage") & (sd >= -500) & (sd < 500)
    assert mac["n_cells"].sum() == inside.sum()
    assert mac["n_positive"].sum() == (inside & planted.truth["PDL1_pos"].to_numpy()).sum()
    statistics = state_gradient_statistics(profiles, 300.0).set_index(["cell_type", "state"])
    row = statistics.loc[("Macrophage", "PDL1_pos")]
    # planted: logit of 0.1 + 0.6 exp(-|d|/80) falls with |d|: negative slope, detected
    assert row["slope_per_100um"] < 0 and row["p"] < 0.01
    flat = statistics.loc[("CD8_T", "PD1_pos")]     # planted flat at 0.3
    assert flat["ci_low"] < 0 < flat["ci_high"] or flat["p"] > 0.001


def test_trend_test_needs_cells_and_variation():
    n = np.full(5, 10)
    assert math.isnan(state_trend_test(CENTRES[:5], np.zeros(5), n).p)
    assert math.isnan(state_trend_test(CENTRES[:5], n, n).p)
    assert math.isnan(state_trend_test(CENTRES[:2], np.array([1, 2]), np.array([5, 5])).p)


def test_simulated_state_markers_are_extra_columns_only():
    plain = simulate_sample("p", n_cells=2500, seed=1, phenotype="inflamed", n_lesions=1)
    with_states = simulate_sample("p", n_cells=2500, seed=1, phenotype="inflamed",
                                  n_lesions=1, states=True)
    pd.testing.assert_frame_equal(plain.cells, with_states.cells[plain.cells.columns])
    assert set(STATE_MARKERS.values()) <= set(with_states.cells.columns)
    assert stats.binomtest(int(with_states.truth["PD1_pos"].sum()),
                           int((with_states.cells["cell_type"] == "CD8_T").sum()),
                           0.3).pvalue > 1e-4
