"""Any contrast: rank tests, pairwise effects, mixed models and FDR families on planted truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort import analyse_cohort
from metaniche.cohort.families import feature_families
from metaniche.cohort.groups import MIXED_UNIT, kruskal_wallis_table
from metaniche.cohort.mixed import mixed_model_groups
from metaniche.cohort.response import hodges_lehmann, mann_whitney_table
from metaniche.config import ClinicalColumns, CohortParams, Config, load_config
from metaniche.errors import InputError
from metaniche.io.clinical import condition_groups

ARMS = ("sham", "arm_a", "arm_b")


def _config(reference: str = "", **cohort) -> Config:
    """Condition analysis only (no response column in the tables below)."""
    return Config(clinical=ClinicalColumns(condition="arm", condition_reference=reference),
                  cohort=CohortParams(analyses=("response",), **cohort))


def _arm_cohort(rng: np.random.Generator, per_arm: int, n_null: int, shift: float = 0.0,
                images: int = 1, patient_sd: float = 0.0, image_sd: float = 1.0):
    """Features and clinical table of a 3-arm cohort built directly with numpy.

    ``planted`` is shifted by ``shift`` in ``arm_b``; ``null_<i>`` carry no arm effect.
    Each patient has ``images`` images; every feature has a patient effect of SD
    ``patient_sd`` (shared by a patient's images) plus image noise of SD ``image_sd``.
    """
    arm = np.repeat(ARMS, per_arm)
    n_patients = len(arm)
    patient = np.repeat(np.arange(n_patients), images)
    n = len(patient)
    names = ["planted"] + [f"null_{i}" for i in range(n_null)]
    effect = rng.normal(0, patient_sd, (n_patients, len(names)))[patient]
    x = effect + rng.normal(0, image_sd, (n, len(names)))
    x[:, 0] += shift * (arm[patient] == "arm_b")
    samples = [f"s{i}" for i in range(n)]
    features = pd.DataFrame(x, columns=names).assign(sample=samples)
    clinical = pd.DataFrame({"sample": samples, "patient": [f"p{i}" for i in patient],
                             "arm": arm[patient]})
    return features, clinical


def test_kruskal_wallis_matches_scipy_with_ties_and_missing_values():
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(0, 1, (40, 6)), 1)  # ties
    x[rng.random(x.shape) < 0.15] = np.nan  # each feature missing in some units
    x[:, 5] += np.repeat([0.0, 0.0, 2.0, 0.0], 10)
    labels = pd.Series(np.repeat(["a", "b", "c", None], 10))  # last ten units unknown
    table = kruskal_wallis_table(pd.DataFrame(x), labels, ("a", "b", "c"), min_group=3)
    for j in range(x.shape[1]):
        samples = [x[:10, j], x[10:20, j], x[20:30, j]]
        samples = [s[np.isfinite(s)] for s in samples]
        expected = stats.kruskal(*samples)
        assert table["statistic"][j] == pytest.approx(expected.statistic, rel=1e-10)
        assert table["p"][j] == pytest.approx(expected.pvalue, rel=1e-10)
        n = sum(len(s) for s in samples)
        assert table["n"][j] == n
        assert table["effect"][j] == pytest.approx(expected.statistic / (n - 1))
        assert table["group_n"][j] == ", ".join(
            f"{g}={len(s)}" for g, s in zip("abc", samples, strict=True))
    assert table["p"][5] < 1e-3


def test_too_few_values_in_a_group_gives_no_test():
    x = np.arange(12, dtype=float)[:, None].repeat(2, axis=1)
    x[8:, 1] = np.nan  # feature 1: group c has no value
    labels = pd.Series(np.repeat(["a", "b", "c"], 4))
    table = kruskal_wallis_table(pd.DataFrame(x, columns=["full", "gap"]), labels,
                                 ("a", "b", "c"), min_group=3)
    assert np.isfinite(table["p"][0]) and np.isnan(table["p"][1])
    assert table["n"].tolist() == [12, 8]


def test_three_arms_planted_shift_is_found_and_pairwise_contrasts_point_to_it():
    rng = np.random.default_rng(2)
    features, clinical = _arm_cohort(rng, per_arm=25, n_null=30, shift=1.5)
    result = analyse_cohort(features, clinical, _config(reference="sham"))
    table = result.association
    assert set(table["outcome"]) == {"condition"}
    assert (table["unit"] == "sample").all()
    kw = table[table["test"] == "kruskal_wallis"].set_index("feature")
    assert kw.loc["planted", "q"] < 1e-3
    assert (kw.drop(index="planted")["q"] > 0.05).all()
    assert (kw["contrast"] == "sham / arm_a / arm_b").all()
    pairs = table[(table["test"] == "mann_whitney") & (table["feature"] == "planted")]
    pairs = pairs.set_index("contrast")
    assert set(pairs.index) == {"arm_a vs sham", "arm_b vs sham", "arm_b vs arm_a"}
    # shift 1.5 SD: AUC = Phi(1.5 / sqrt 2) = 0.86 for arm_b against either other arm
    for name in ("arm_b vs sham", "arm_b vs arm_a"):
        assert pairs.loc[name, "effect"] > 0.75 and pairs.loc[name, "q"] < 0.01
        assert pairs.loc[name, "ci_low"] > 0.5
        assert pairs.loc[name, "cliffs_delta"] == pytest.approx(2 * pairs.loc[name, "effect"] - 1)
    assert pairs.loc["arm_a vs sham", "ci_low"] < 0.5 < pairs.loc["arm_a vs sham", "ci_high"]
    # the pairwise effect is the AUC of the later group against the earlier, as scipy's U
    x = features["planted"].to_numpy()
    arm = clinical["arm"].to_numpy()
    u = stats.mannwhitneyu(x[arm == "arm_b"], x[arm == "sham"]).statistic
    assert pairs.loc["arm_b vs sham", "effect"] == pytest.approx(u / 25 ** 2)


def test_rank_tests_hold_their_size_over_null_cohorts():
    # 300 null features in one cohort = 300 independent null draws (same design)
    rng = np.random.default_rng(3)
    features, clinical = _arm_cohort(rng, per_arm=12, n_null=300)
    table = analyse_cohort(features.drop(columns="planted"), clinical, _config()).association
    for (test, contrast), rows in table.groupby(["test", "contrast"]):
        assert len(rows) == 300
        hits = int((rows["p"] < 0.05).sum())
        # false-positive rate at the nominal 5% within binomial error
        assert stats.binomtest(hits, 300, 0.05).pvalue > 0.001, (test, contrast, hits)
    assert set(table["test"]) == {"kruskal_wallis", "mann_whitney"}


def test_patient_effect_per_image_test_is_anticonservative_ours_holds_size():
    rng = np.random.default_rng(5)
    features, clinical = _arm_cohort(rng, per_arm=12, n_null=300, images=4, patient_sd=1.0,
                                     image_sd=0.5)
    features = features.drop(columns="planted")
    two = clinical["arm"] != "arm_b"
    features, clinical = features[two.to_numpy()], clinical[two]
    # the naive test: every image as an independent unit
    values = features.set_index("sample")
    label = pd.Series((clinical["arm"] == "arm_a").astype(float).to_numpy(), index=values.index)
    naive = mann_whitney_table(values, label)["p"].to_numpy()
    naive_rate = (naive < 0.05).mean()
    assert naive_rate > 0.15
    assert stats.binomtest(int((naive < 0.05).sum()), 300, 0.05,
                           alternative="greater").pvalue < 1e-10
    # ours: patient means (24 patients, not 96 images)
    result = analyse_cohort(features, clinical, _config())
    assert result.unit == "patient"
    rank = result.association[result.association["test"] == "mann_whitney"]
    assert (rank["unit"] == "patient").all() and (rank["n"] == 24).all()
    hits = int((rank["p"] < 0.05).sum())
    assert stats.binomtest(hits, 300, 0.05).pvalue > 0.001, hits
    mixed = result.association[result.association["test"] == "mixed_model"]
    assert (mixed["unit"] == MIXED_UNIT).all() and (mixed["n"] == 96).all()
    assert (mixed["df"] == 22).all()  # 24 patients - 2 fixed effects
    hits = int((mixed["p"] < 0.05).sum())
    assert stats.binomtest(hits, 300, 0.05).pvalue > 0.001, hits


def test_mixed_model_three_groups_recovers_planted_shifts():
    rng = np.random.default_rng(6)
    n_patients, images = 45, 4
    patient = np.repeat(np.arange(n_patients), images)
    arm = np.repeat(np.array(ARMS), n_patients // 3)[patient]
    x = (0.8 * (arm == "arm_a") + 1.6 * (arm == "arm_b")
         + rng.normal(0, 0.6, n_patients)[patient] + rng.normal(0, 0.4, len(patient)))
    x[::7] = np.nan  # missing in some images: fitted on the others
    index = pd.Index([f"i{i}" for i in range(len(x))])
    table = mixed_model_groups(pd.DataFrame({"x": x}, index=index),
                               pd.Series(arm, index=index), ARMS,
                               pd.Series(patient.astype(str), index=index)).set_index("contrast")
    sd = np.nanstd(x)
    assert table.loc["arm_a vs sham", "ci_low"] < 0.8 / sd < table.loc["arm_a vs sham",
                                                                         "ci_high"]
    assert table.loc["arm_b vs sham", "ci_low"] < 1.6 / sd < table.loc["arm_b vs sham",
                                                                        "ci_high"]
    omnibus = table.loc["sham / arm_a / arm_b"]
    assert omnibus["test"] == "mixed_model_omnibus" and omnibus["df"] == 2
    assert omnibus["p"] < 1e-6
    assert table["n"].iloc[0] == np.isfinite(x).sum()


def test_two_groups_not_spelt_responder_and_the_reference_label():
    rng = np.random.default_rng(7)
    site = np.repeat(["Primary", "metastasis"], 15)
    x = rng.normal(0, 1, 30) + 1.0 * (site == "metastasis")
    features = pd.DataFrame({"sample": [f"s{i}" for i in range(30)], "planted": x,
                             "noise": rng.normal(0, 1, 30)})
    clinical = pd.DataFrame({"sample": features["sample"], "site": site})
    config = Config(clinical=ClinicalColumns(condition="site"),
                    cohort=CohortParams(analyses=("response",)))
    table = analyse_cohort(features, clinical, config).association
    row = table[table["feature"] == "planted"].iloc[0]
    assert set(table["test"]) == {"mann_whitney"}  # two groups: no Kruskal-Wallis
    assert row["contrast"] == "Primary vs metastasis"  # sorted second against first
    flipped = Config(clinical=ClinicalColumns(condition="site", condition_reference="primary"),
                     cohort=CohortParams(analyses=("response",)))
    other = analyse_cohort(features, clinical, flipped).association
    other_row = other[other["feature"] == "planted"].iloc[0]
    assert other_row["contrast"] == "metastasis vs Primary"
    assert other_row["effect"] == pytest.approx(1 - row["effect"])
    assert other_row["p"] == pytest.approx(row["p"])


def test_condition_errors_and_skips_name_the_problem():
    features = pd.DataFrame({"sample": ["a", "b", "c", "d"], "x": [1.0, 2, 3, 4]})
    clinical = pd.DataFrame({"sample": ["a", "b", "c", "d"], "arm": ["x", "x", "x", "x"],
                             "os_time": [1.0, 2, 3, 4], "os_event": [1, 1, 1, 1]})
    with pytest.raises(InputError, match="'arms', which is not a column"):
        analyse_cohort(features, clinical, Config(clinical=ClinicalColumns(condition="arms")))
    with pytest.raises(InputError, match="no label 'sham'"):
        condition_groups(pd.Series(["a", "b"]), "arm", "sham")
    config = Config(clinical=ClinicalColumns(condition="arm"),
                    cohort=CohortParams(analyses=("survival",), min_events=1))
    result = analyse_cohort(features, clinical, config)
    assert "at least two groups" in result.skipped["condition"]


def test_fdr_families_q_within_family_equals_bh_on_that_family_alone():
    rng = np.random.default_rng(8)
    n = 40
    names = ["effector_density.core", "effector_density.border", "infiltration_depth_um.CD8_T",
             "nn_dist_um.CD8_T.Tumor", "tls.count", "tls.count.core"]
    names += [f"density.core.type{i}" for i in range(40)]
    x = rng.normal(0, 1, (n, len(names)))
    group = np.repeat([0.0, 1.0], n // 2)
    x[:, 0] += 0.9 * group  # a primary effect
    x[:, 10:14] += 0.9 * group[:, None]  # exploratory effects
    features = pd.DataFrame(x, columns=names).assign(sample=[f"s{i}" for i in range(n)])
    clinical = pd.DataFrame({"sample": features["sample"], "response": group.astype(int)})
    table = analyse_cohort(features, clinical,
                           Config(cohort=CohortParams(analyses=("response",)))).association
    assert list(table["family"].iloc[:6]) == ["primary"] * 6  # primary rows first
    assert set(table.loc[table["family"] == "primary", "feature"]) == set(names[:6])
    for _, rows in table.groupby("family"):
        expected = stats.false_discovery_control(rows["p"].to_numpy(), method="bh")
        np.testing.assert_allclose(rows["q"].to_numpy(), expected, rtol=1e-12)
    # one family for all would give other q-values: the split changes the answer
    joint = stats.false_discovery_control(table["p"].to_numpy(), method="bh")
    assert not np.allclose(joint, table["q"].to_numpy())


def test_default_primary_patterns_and_config_key():
    names = ["effector_density.core", "effector_density.border", "effector_density.all",
             "phenotype.inflamed", "infiltration_depth_um.CD8_T", "nn_dist_um.CD8_T.Tumor",
             "nn_dist_um.Tumor.CD8_T", "nn_dist_um.CD8+ T cells.tumour", "tls.count",
             "tls.count.border", "tls.density_per_mm2", "density.core.CD8_T"]
    families = feature_families(names, CohortParams().primary_features)
    assert [f == "primary" for f in families] == [True, True, False, True, True, True, False,
                                                   True, True, True, False, False]
    assert (feature_families(names, ()) == "exploratory").all()


def test_toml_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[clinical]\ncondition = "arm"\ncondition_reference = "sham"\n'
                    '[cohort]\nprimary_features = ["tls.*"]\n')
    config = load_config(path)
    assert config.clinical.condition == "arm" and config.clinical.condition_reference == "sham"
    assert config.cohort.primary_features == ("tls.*",)


def test_more_than_two_response_labels_compare_every_group_as_a_condition():
    rng = np.random.default_rng(9)
    features, clinical = _arm_cohort(rng, per_arm=10, n_null=3, shift=2.0)
    clinical = clinical.rename(columns={"arm": "response"})
    only_response = Config(cohort=CohortParams(analyses=("response",)))
    with pytest.raises(InputError, match='condition = "response"'):
        analyse_cohort(features, clinical, only_response)
    config = Config(clinical=ClinicalColumns(condition="response"),
                    cohort=CohortParams(analyses=("response",)))
    result = analyse_cohort(features, clinical, config)
    assert "3 labels" in result.skipped["response"]
    kw = result.association[result.association["test"] == "kruskal_wallis"]
    assert kw.set_index("feature").loc["planted", "q"] < 0.01


def test_feature_missing_in_some_samples_is_tested_where_present():
    rng = np.random.default_rng(10)
    n = 30
    group = np.repeat([0, 1], n // 2)
    gappy = rng.normal(0, 1, n) + 2.0 * group
    gappy[::5] = np.nan  # 24 of 30 finite (below min_non_missing = 0.8 would have dropped it)
    gappy[1::5] = np.nan  # now 18 of 30
    rare = np.full(n, np.nan)
    rare[[0, 1, 20, 21, 22]] = rng.normal(0, 1, 5)  # 2 in group 0: fewer than min_group
    features = pd.DataFrame({"sample": [f"s{i}" for i in range(n)], "gappy": gappy,
                             "rare": rare, "dense": rng.normal(0, 1, n) + group})
    clinical = pd.DataFrame({"sample": features["sample"], "response": group})
    config = Config(cohort=CohortParams(analyses=("response", "prediction"), n_repeats=1,
                                        n_bootstrap=20, n_folds=3))
    result = analyse_cohort(features, clinical, config)
    table = result.association.set_index("feature")
    assert table.loc["gappy", "n"] == 18
    finite = np.isfinite(gappy)
    expected = stats.mannwhitneyu(gappy[finite & (group == 1)], gappy[finite & (group == 0)])
    assert table.loc["gappy", "p"] == pytest.approx(expected.pvalue)
    assert table.loc["rare", "n"] == 5 and np.isnan(table.loc["rare", "p"])
    assert np.isnan(table.loc["rare", "q"])  # an untested feature does not dilute the others
    assert result.dropped_features.empty
    assert result.prediction["n_sparse_features"] == 2  # gappy and rare left out of the model
    assert result.prediction["spatial"]["n_features"] == 1


def test_hodges_lehmann_shift_brute_force_and_interval_coverage():
    rng = np.random.default_rng(11)
    pos, neg = rng.normal(3, 1, 9), rng.normal(0, 1, 7)
    shift, low, high = hodges_lehmann(pos, neg)
    diffs = sorted(p - q for p in pos for q in neg)
    assert shift == pytest.approx(np.median(diffs))
    # the interval is the set of shifts the Mann-Whitney test (normal approx.) keeps
    inside = [d for d in np.linspace(-2, 8, 2001)
              if stats.mannwhitneyu(pos - d, neg, use_continuity=False,
                                    method="asymptotic").pvalue > 0.05]
    assert low == pytest.approx(min(inside), abs=0.01)
    assert high == pytest.approx(max(inside), abs=0.01)
    # coverage over 400 independent features with a planted shift of 0.5
    group = np.repeat([0.0, 1.0], 20)
    x = rng.normal(0, 1, (40, 400)) + 0.5 * group[:, None]
    table = mann_whitney_table(pd.DataFrame(x), pd.Series(group))
    covered = int(((table["hl_low"] < 0.5) & (0.5 < table["hl_high"])).sum())
    assert stats.binomtest(covered, 400, 0.95).pvalue > 0.001, covered
    assert table["hl_shift"].median() == pytest.approx(0.5, abs=0.1)


def test_epsilon_squared_interval_equals_a_brute_force_stratified_bootstrap():
    """Each group's units resampled with replacement (the same resample for every feature,
    generator ``default_rng(seed)``), epsilon² = H / (N − 1) by scipy on every resample,
    percentile interval; features with missing values use their finite values only."""
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (24, 3))
    x[16:, 0] += 2.0
    x[3, 1] = np.nan
    labels = pd.Series(np.repeat(["a", "b", "c"], 8))
    table = kruskal_wallis_table(pd.DataFrame(x), labels, ("a", "b", "c"), min_group=3,
                                 confidence=0.9, n_bootstrap=200, seed=7)
    draw = np.random.default_rng(7)
    members = [np.arange(0, 8), np.arange(8, 16), np.arange(16, 24)]
    epsilons = np.empty((200, 3))
    for b in range(200):
        picks = [draw.choice(m, len(m)) for m in members]
        for j in range(3):
            groups = [x[p, j][np.isfinite(x[p, j])] for p in picks]
            h = stats.kruskal(*groups).statistic
            epsilons[b, j] = h / (sum(len(g) for g in groups) - 1)
    low, high = np.percentile(epsilons, [5, 95], axis=0)
    np.testing.assert_allclose(table["ci_low"], low, rtol=1e-10)
    np.testing.assert_allclose(table["ci_high"], high, rtol=1e-10)
    assert table["ci_low"][0] > 0.2 and (table["ci_low"] <= table["effect"]).all()
    assert (table["effect"] <= table["ci_high"]).all()


def test_mixed_model_of_a_feature_without_values_is_nan_without_warnings():
    """A feature no image has a value for (a contact pair absent from every sample) gives
    NaN rows and no NumPy warning (the state_changes step tests hundreds of such pairs)."""
    import warnings

    rng = np.random.default_rng(2)
    n = 24
    index = pd.Index([f"s{i}" for i in range(n)])
    values = pd.DataFrame({"empty": np.full(n, np.nan), "x": rng.normal(size=n)}, index=index)
    arm = pd.Series(np.repeat(["sham", "arm_a"], n // 2), index=index)
    patient = pd.Series([f"p{i // 2}" for i in range(n)], index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = mixed_model_groups(values, arm, ("sham", "arm_a"), patient).set_index("feature")
    assert table.loc["empty", "n"] == 0 and np.isnan(table.loc["empty", "p"])
    assert np.isfinite(table.loc["x", "p"])
