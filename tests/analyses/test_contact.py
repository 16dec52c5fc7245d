"""The contact test (does proximity change state?) against exact truth.

Ground truth comes from the simulator's planted contact effect (log1p GZMB of CD8_T lowered by
``CONTACT_EFFECT`` per macrophage within ``CONTACT_RADIUS_UM``, in every compartment) and its
confounded null (GZMB lower in the border only, macrophages denser there, no contact effect);
the statistics are checked against statsmodels, brute-force neighbour counts and patsy.
"""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.spatial import cKDTree

from metaniche.analyses import contact as C
from metaniche.analyses.compartments import compartment_of
from metaniche.simulate import (
    BORDER_UM,
    CONTACT_EFFECT,
    CONTACT_RADIUS_UM,
    simulate_sample,
)


def _fit(sample, *, adjust: bool = True, n_permutations: int = 0, **kwargs) -> pd.DataFrame:
    """The CD8_T × GZMB × Macrophage test on a simulated sample's true geometry."""
    cells, truth = sample.cells, sample.truth
    signed = truth["signed_distance_um"].to_numpy()
    options = {"cell_types": ["CD8_T"], "partner_types": ["Macrophage"],
               "radius_um": CONTACT_RADIUS_UM} | kwargs
    return C.contact_effects(
        cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy(), cells[["GZMB"]], signed,
        compartment_of(signed, BORDER_UM), truth["lesion_id"].to_numpy(), adjust=adjust,
        n_permutations=n_permutations, **options)


# --- building blocks -------------------------------------------------------------------------

def test_counts_within_match_brute_force_with_boundary_and_coincident_cells() -> None:
    rng = np.random.default_rng(3)
    xy = np.round(rng.random((600, 2)) * 300)          # integer µm: many exact ties at r
    xy[1] = xy[0]                                      # a coincident pair
    xy[2] = xy[0] + [20.0, 0.0]                        # exactly at the radius
    codes = rng.integers(0, 4, len(xy))
    got = C.counts_within(xy, codes, 4, 20.0)
    distance = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    near = (distance <= 20.0) & ~np.eye(len(xy), dtype=bool)
    expected = np.stack([(near & (codes[None, :] == t)).sum(1) for t in range(4)], axis=1)
    np.testing.assert_array_equal(got, expected)
    assert got[0].sum() >= 2  # the coincident cell and the one at exactly r both count


def test_natural_spline_spans_patsy_cr_and_is_linear_beyond_the_outer_knots() -> None:
    patsy = pytest.importorskip("patsy")
    x = np.linspace(-3, 5, 400)
    knots = np.array([-2.0, -0.5, 1.0, 2.0, 4.0])
    ours = np.column_stack([np.ones_like(x), C.natural_spline_basis(x, knots)])
    inner = knots[1:-1]
    theirs = np.asarray(patsy.dmatrix(
        "cr(x, knots=inner, lower_bound=-2.0, upper_bound=4.0) - 1",
        {"x": x, "inner": inner}))
    inside = (x >= -2) & (x <= 4)
    # patsy's natural cubic regression spline spans the same space (with the intercept)
    coef, *_ = np.linalg.lstsq(ours[inside], theirs[inside], rcond=None)
    np.testing.assert_allclose(ours[inside] @ coef, theirs[inside], atol=1e-8)
    outside = x > 4.0
    second = np.diff(C.natural_spline_basis(x[outside], knots), n=2, axis=0)
    np.testing.assert_allclose(second, 0.0, atol=1e-9)


def test_fwl_cluster_robust_matches_statsmodels_full_ols() -> None:
    rng = np.random.default_rng(0)
    n = 900
    signed = rng.uniform(-400, 400, n)
    compartment = compartment_of(signed, 100.0)
    lesion = rng.integers(1, 3, n)
    density = rng.normal(3000, 300, n)
    place = C._place_design(signed, compartment, lesion, density, 5, 50.0, True)
    blocks = np.sort(rng.integers(0, 40, n))
    exposure = rng.poisson(1.0, (n, 3)).astype(float)
    y = rng.normal(size=(n, 2)) + 0.3 * exposure[:, :1] + 0.002 * signed[:, None]
    fit = C._fwl(place.q, C._residualise(place.q, y), exposure, C._cluster_starts(blocks))
    for p in range(3):
        for m in range(2):
            full = sm.OLS(y[:, m], np.column_stack([place.design, exposure[:, p]])).fit(
                cov_type="cluster", cov_kwds={"groups": blocks})
            assert fit.beta[p, m] == pytest.approx(full.params[-1], rel=1e-9)
            assert fit.se[p, m] == pytest.approx(full.bse[-1], rel=1e-9)


def test_logistic_state_effect_recovers_a_planted_log_odds_ratio() -> None:
    rng = np.random.default_rng(11)
    n = 60_000
    xy = rng.random((n, 2)) * 4000
    labels = np.where(rng.random(n) < 0.3, "A", np.where(rng.random(n) < 0.15, "B", "C"))
    signed = xy[:, 0] - 2000.0
    compartment = compartment_of(signed, 100.0)
    codes = (labels == "B").astype(np.int64)
    exposure = C.counts_within(xy, codes, 2, 30.0)[:, 1]
    truth = 0.6
    logit = -1.0 + truth * exposure - 0.8 * (compartment == "border")
    state = rng.random(n) < 1 / (1 + np.exp(-logit))
    result = C.contact_effects(xy, labels, pd.DataFrame({"S": state}), signed, compartment,
                               np.ones(n), cell_types=["A"], partner_types=["B"],
                               radius_um=30.0, n_permutations=0)
    row = result.table.iloc[0]
    assert row["model"] == "logistic"
    assert row["ci_low"] < truth < row["ci_high"]
    assert row["p"] < 1e-6


def test_bad_exposure_is_one_clear_sentence() -> None:
    with pytest.raises(ValueError, match="`exposure` must be one of count, log_distance"):
        C.contact_effects(np.zeros((3, 2)), np.array(["A", "B", "C"]), pd.DataFrame(
            {"m": [1.0, 2.0, 3.0]}), np.zeros(3), np.array(["core"] * 3), np.ones(3),
            exposure="bogus")


# --- the done-when tests ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_planted_contact_effect_is_found_in_every_seed(seed: int) -> None:
    sample = simulate_sample("S", n_cells=100_000, seed=seed, phenotype="inflamed",
                             contact="effect")
    row = _fit(sample).table.iloc[0]
    assert row["p"] < 0.001
    assert abs(row["effect"] - CONTACT_EFFECT) <= 0.2 * abs(CONTACT_EFFECT), row["effect"]
    assert row["ci_low"] < CONTACT_EFFECT < row["ci_high"] or abs(
        row["effect"] - CONTACT_EFFECT) < 0.1


def test_confounded_null_keeps_its_size_where_the_unadjusted_regression_does_not(
        record_property) -> None:
    """≥ 40 confounded-null tissues: adjusted false-positive rate ≤ 5 % at α = 0.05, while a
    naive GZMB ~ macrophage count regression rejects in most of them."""
    n_draws = 40
    adjusted = unadjusted = 0
    for k in range(n_draws):
        sample = simulate_sample("N", n_cells=10_000, seed=100 + k, phenotype="inflamed",
                                 contact="confounded_null")
        adjusted += _fit(sample).table["p"].iloc[0] < 0.05
        unadjusted += _fit(sample, adjust=False).table["p"].iloc[0] < 0.05
    rate, naive = adjusted / n_draws, unadjusted / n_draws
    record_property("adjusted_false_positive_rate", rate)
    record_property("unadjusted_false_positive_rate", naive)
    print(f"confounded null, {n_draws} draws: adjusted rejects {rate:.1%}, "
          f"unadjusted {naive:.1%}")
    assert rate <= 0.05
    assert naive >= 0.5


def test_nulls_separate_contact_from_place() -> None:
    effect = simulate_sample("E", n_cells=40_000, seed=7, phenotype="inflamed",
                             contact="effect")
    row = _fit(effect, n_permutations=99).table.iloc[0]
    assert row["p_perm"] == pytest.approx(0.01)      # no shuffled draw as extreme
    assert row["p_shift"] == pytest.approx(0.01)
    null = simulate_sample("N", n_cells=20_000, seed=1, phenotype="inflamed",
                           contact="confounded_null")
    naive = _fit(null, adjust=False, n_permutations=99).table.iloc[0]
    # the stratified shuffle keeps macrophages where they are dense, so it protects even
    # the unadjusted effect; the toroidal shift does not (it moves them off the border)
    assert naive["p"] < 0.05
    assert naive["p_perm"] > 0.05
    assert naive["p_shift"] <= 0.05


def test_log_distance_exposure_has_the_opposite_sign() -> None:
    sample = simulate_sample("D", n_cells=40_000, seed=2, phenotype="inflamed",
                             contact="effect")
    row = _fit(sample, exposure="log_distance", n_permutations=9).table.iloc[0]
    assert row["exposure"] == "log_nearest_distance_um"
    assert row["effect"] > 0 and row["p"] < 0.001   # GZMB rises with distance to macrophages
    assert np.isfinite(row["p_perm"]) and np.isfinite(row["p_shift"])


def test_null_draws_do_not_depend_on_batching_or_on_other_pairs(monkeypatch) -> None:
    sample = simulate_sample("B", n_cells=5_000, seed=5, phenotype="inflamed",
                             contact="effect")
    cells, truth = sample.cells, sample.truth
    signed = truth["signed_distance_um"].to_numpy()
    args = (cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy(),
            cells[["GZMB", "CD8"]], signed, compartment_of(signed, BORDER_UM),
            truth["lesion_id"].to_numpy())
    one = C.contact_effects(*args, cell_types=["CD8_T"], min_cells=20, min_exposed=3,
                            n_permutations=30, seed=4).table
    monkeypatch.setattr(C, "_CHUNK_ELEMENTS", 1)       # one draw per batch
    monkeypatch.setattr(C, "_DRAWS_PER_TASK", 3)       # other groups of draws per product
    monkeypatch.setattr(C, "_SHUFFLE_CACHE_BYTES", 0)  # reshuffle for every focus type
    every = C.contact_effects(*args, min_cells=20, min_exposed=3, n_permutations=30,
                              seed=4).table
    subset = every[every["cell_type"] == "CD8_T"].reset_index(drop=True)
    columns = ["partner_type", "marker", "effect", "p", "p_perm", "p_shift"]
    pd.testing.assert_frame_equal(one[columns].sort_values(columns[:2]).reset_index(drop=True),
                                  subset[columns].sort_values(columns[:2]).reset_index(
                                      drop=True))
    other = C.contact_effects(*args, cell_types=["CD8_T"], min_cells=20, min_exposed=3,
                              n_permutations=30, seed=5).table
    assert not np.allclose(other["p_perm"], one["p_perm"])


def test_shift_null_is_skipped_where_the_tissue_does_not_fill_its_box() -> None:
    rng = np.random.default_rng(2)
    n = 4000
    angle = rng.random(n) * 2 * np.pi
    radius = 900 + rng.random(n) * 150          # a thin ring: most of the box is empty
    xy = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    labels = np.where(rng.random(n) < 0.3, "A", "B")
    result = C.contact_effects(xy, labels, pd.DataFrame({"m": rng.normal(size=n)}),
                               np.full(n, np.nan), np.full(n, "adjacent"), np.zeros(n),
                               radius_um=30.0, n_permutations=9)
    assert result.table["p_shift"].isna().all()
    assert np.isfinite(result.table["p_perm"]).all()
    assert any("bounding box" in w for w in result.warnings)
    assert (result.table["adjusted_for"] == "density_50um").all()


def test_profiles_are_the_mean_outcome_by_partner_count_and_compartment() -> None:
    sample = simulate_sample("P", n_cells=20_000, seed=3, phenotype="inflamed",
                             contact="effect")
    result = _fit(sample, top_profiles=1)
    profiles = result.profiles
    cells, truth = sample.cells, sample.truth
    cd8 = (cells["cell_type"] == "CD8_T").to_numpy()
    macrophage = (cells["cell_type"] == "Macrophage").to_numpy()
    xy = cells[["x", "y"]].to_numpy()
    count = cKDTree(xy[macrophage]).query_ball_point(xy[cd8], CONTACT_RADIUS_UM,
                                                     return_length=True)
    frame = pd.DataFrame({"compartment": compartment_of(
        truth["signed_distance_um"].to_numpy()[cd8], BORDER_UM),
        "n_partners": np.minimum(count, 3), "y": np.log1p(cells["GZMB"].to_numpy()[cd8])})
    expected = frame.groupby(["compartment", "n_partners"])["y"].agg(["mean", "size"])
    got = profiles.set_index(["compartment", "n_partners"]).sort_index()
    np.testing.assert_allclose(got["mean"], expected["mean"].sort_index(), rtol=1e-12)
    np.testing.assert_array_equal(got["n_cells"], expected["size"].sort_index())


# --- the nulls against brute force -------------------------------------------------------------

def _null_sample(seed: int = 0, n: int = 1500):
    """A small sample with integer coordinates (ties at the radius) and one focus type's fit."""
    rng = np.random.default_rng(seed)
    xy = np.round(rng.random((n, 2)) * 600)
    xy[1] = xy[0]                                       # a coincident pair
    codes = rng.integers(0, 3, n)
    codes[0] = 0
    xy[2] = xy[0] + [30.0, 0.0]                         # exactly at the radius of a focus cell
    signed = xy[:, 0] - 300.0
    compartment = compartment_of(signed, 100.0)
    strata = C._strata(compartment, np.floor(signed / 50.0).astype(np.int64))
    counter = C._Counter(xy, 30.0)
    sub = np.flatnonzero(codes == 0)
    place = C._place_design(signed[sub], compartment[sub], np.ones(len(sub)),
                            rng.normal(size=len(sub)), 5, 50.0, True)
    y = rng.normal(size=(len(sub), 2))
    position = np.empty(n, dtype=np.int64)
    position[counter.grid.order] = np.arange(n)
    order = np.argsort(position[sub], kind="stable")
    return xy, codes, strata, counter, sub, place, y, order


def _brute_beta(design: np.ndarray, y: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """β of exposure p on outcome m in the full least-squares fit on [design, e_p]."""
    beta = np.empty((exposure.shape[1], y.shape[1]))
    for p in range(exposure.shape[1]):
        x = np.column_stack([design, exposure[:, p]])
        beta[p] = np.linalg.lstsq(x, y, rcond=None)[0][-1]
    return beta


def test_neighbour_lists_match_brute_force_with_boundary_and_coincident_cells() -> None:
    xy, _, _, counter, sub, *_ = _null_sample()
    ptr, index = counter.neighbours(xy[sub], sub)
    distance = np.sqrt(((xy[sub][:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    near = (distance <= 30.0) & (sub[:, None] != np.arange(len(xy))[None, :])
    for row in range(len(sub)):
        got = np.sort(counter.grid.order[index[ptr[row]:ptr[row + 1]]])
        np.testing.assert_array_equal(got, np.flatnonzero(near[row]))
    assert {1, 2} <= set(counter.grid.order[index[ptr[0]:ptr[1]]])


def test_density_counts_every_other_cell_within_the_radius_like_the_kd_tree() -> None:
    xy = _null_sample()[0]                                     # integer µm: ties at 50 µm
    expected = cKDTree(xy).query_ball_point(xy, 50.0, return_length=True) - 1
    np.testing.assert_array_equal(C._Counter(xy, 50.0).totals(), expected)
    np.testing.assert_allclose(C._density(xy, 50.0), expected / (np.pi * 50.0**2 / 1e6))


def test_shuffle_null_permutes_within_strata_and_matches_a_brute_force_refit() -> None:
    xy, codes, strata, counter, sub, place, y, order = _null_sample()
    pair_codes = np.array([1, 2])
    shuffles = C._Shuffles(xy, codes, strata, 3, 4, seed=9)
    draws = C._shuffle_null(xy, codes, sub, 0, pair_codes, shuffles, counter, "count",
                            place.q, C._residualise(place.q, y), 3,
                            C._csr_rows(*counter.neighbours(xy[sub], sub), order), order)()
    distance = np.sqrt(((xy[sub][:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    near = (distance <= 30.0) & (sub[:, None] != np.arange(len(xy))[None, :])
    eligible = shuffles.canonical[codes[shuffles.canonical] != 0]
    moved = 0
    for k in range(4):
        labels = shuffles.draw(k)
        permuted = codes.copy()
        permuted[eligible] = labels[labels != 0]
        assert (permuted[codes == 0] == 0).all() and (permuted[codes != 0] != 0).all()
        for stratum in np.unique(strata):   # every stratum keeps its labels
            inside = strata == stratum
            np.testing.assert_array_equal(np.bincount(permuted[inside], minlength=3),
                                          np.bincount(codes[inside], minlength=3))
        moved += (permuted != codes).sum()
        exposure = np.stack([(near & (permuted[None, :] == b)).sum(1) for b in pair_codes], 1)
        np.testing.assert_allclose(draws[k], _brute_beta(place.design, y, exposure),
                                   rtol=1e-9)
    assert moved > 0


def test_shift_null_matches_a_brute_force_count_on_the_torus() -> None:
    xy, codes, _, counter, sub, place, y, order = _null_sample(seed=1)
    pair_codes = np.array([1, 2])
    shifts = C._draw_shifts(counter, 4, 3, 30.0)
    draws = C._shift_null(xy, codes, sub, pair_codes, counter, "count", place.q,
                          C._residualise(place.q, y), shifts, 3, order)()
    periods = np.asarray(counter.periods)
    origin = xy.min(axis=0)
    for k, vector in enumerate(shifts):
        moved = np.mod(xy - origin + vector, periods)            # partners translated by +v
        diff = np.mod(xy[sub] - origin, periods)[:, None, :] - moved[None, :, :]
        diff -= periods * np.round(diff / periods)                # minimum image
        near = np.sqrt((diff ** 2).sum(-1)) <= 30.0
        exposure = np.stack([(near & (codes[None, :] == b)).sum(1) for b in pair_codes], 1)
        np.testing.assert_allclose(draws[k], _brute_beta(place.design, y, exposure),
                                   rtol=1e-9)


def test_results_do_not_depend_on_the_number_of_threads() -> None:
    sample = simulate_sample("W", n_cells=8_000, seed=6, phenotype="inflamed",
                             contact="effect")
    cells, truth = sample.cells, sample.truth
    signed = truth["signed_distance_um"].to_numpy()
    args = (cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy(),
            cells[["GZMB", "CD8"]], signed, compartment_of(signed, BORDER_UM),
            truth["lesion_id"].to_numpy())
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = C.contact_effects(*args, min_cells=20, min_exposed=3, n_permutations=19,
                                   seed=2).table
    finally:
        numba.set_num_threads(threads)
    pd.testing.assert_frame_equal(
        C.contact_effects(*args, min_cells=20, min_exposed=3, n_permutations=19,
                          seed=2).table, single, check_exact=True)


def test_unshuffled_draws_reproduce_the_observed_effect_for_every_finite_pattern(
        monkeypatch) -> None:
    sample = simulate_sample("U", n_cells=6_000, seed=8, phenotype="inflamed",
                             contact="effect")
    cells, truth = sample.cells, sample.truth
    signed = truth["signed_distance_um"].to_numpy()
    outcomes = cells[["GZMB", "CD8"]].copy()
    rng = np.random.default_rng(1)
    outcomes.loc[rng.random(len(cells)) < 0.2, "GZMB"] = np.nan  # two sets of cells fitted
    monkeypatch.setattr(C._Shuffles, "draw", lambda self, k: self.labels)  # identity
    monkeypatch.setattr(C, "_shift_allowed", lambda *args: (False, ""))     # shuffle only
    seen: list[tuple[float, np.ndarray]] = []
    original = C._monte_carlo_p

    def record(observed: float, draws: np.ndarray) -> float:
        seen.append((observed, draws.copy()))
        return original(observed, draws)

    monkeypatch.setattr(C, "_monte_carlo_p", record)
    table = C.contact_effects(cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy(),
                              outcomes, signed, compartment_of(signed, BORDER_UM),
                              truth["lesion_id"].to_numpy(), min_cells=20, min_exposed=3,
                              n_permutations=3, seed=1).table
    assert len(seen) == len(table) and table["marker"].nunique() == 2
    for observed, draws in seen:
        np.testing.assert_allclose(draws, observed, rtol=1e-9)
