"""Cohort statistics against brute force, closed forms, lifelines/scipy and planted effects."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort import analyse_cohort
from metaniche.cohort.matrix import (
    ContrastUnavailable,
    feature_matrix,
    join_clinical,
    response_contrast,
)
from metaniche.cohort.response import auc_delong, mann_whitney_table, mixed_model_table
from metaniche.cohort.survival import cox_table, kaplan_meier, kaplan_meier_table, logrank
from metaniche.cohort.treatment import feature_region, treatment_table
from metaniche.config import ClinicalColumns, CohortParams, Config, load_config
from metaniche.errors import ConfigError, InputError


def _psi(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    return (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])


def test_auc_and_delong_variance_match_brute_force():
    rng = np.random.default_rng(0)
    pos = np.round(rng.normal(1, 1, 17), 1)  # rounding creates ties
    neg = np.round(rng.normal(0, 1, 11), 1)
    psi = _psi(pos, neg)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    auc, low, high = auc_delong(pos, neg, 0.95)
    assert auc == pytest.approx(psi.mean())
    assert high - auc == pytest.approx(min(1.96 * se, 1 - auc), rel=1e-3)
    assert auc - low == pytest.approx(1.959964 * se, rel=1e-5)


def test_mann_whitney_table_values_and_min_group_boundary():
    values = pd.DataFrame({"a": [1.0, 2, 3, 4, 5, 6], "b": [1.0, 1, 1, 2, np.nan, np.nan]},
                          index=list("uvwxyz"))
    label = pd.Series([0.0, 0, 0, 1, 1, 1], index=values.index)
    table = mann_whitney_table(values, label, min_group=3).set_index("feature")
    assert table.loc["a", "effect"] == 1.0  # every responder above every non-responder
    assert table.loc["a", "cliffs_delta"] == 1.0
    assert table.loc["a", "fold_change"] == pytest.approx(5 / 2)
    assert table.loc["a", "p"] == pytest.approx(
        stats.mannwhitneyu([4, 5, 6], [1, 2, 3]).pvalue)
    # b has one finite responder: fewer than min_group = 3 -> no test
    assert np.isnan(table.loc["b", "p"]) and table.loc["b", "n_responder"] == 1
    # exactly min_group per group is enough
    assert np.isfinite(mann_whitney_table(values[["a"]], label, min_group=3)["p"]).all()


def _product_limit(time: np.ndarray, event: np.ndarray, z: float) -> dict[str, list]:
    """Kaplan–Meier with Greenwood log(-log) bands, one distinct time at a time (brute force)."""
    rows: dict[str, list] = {"time": [0.0], "survival": [1.0], "ci_low": [1.0],
                             "ci_high": [1.0], "n_at_risk": [len(time)]}
    s, v = 1.0, 0.0
    for t in sorted(set(time)):
        n = int((time >= t).sum())
        d = float(event[time == t].sum())
        s *= 1 - d / n
        v += d / (n * (n - d)) if n > d else 0.0
        if 0 < s < 1:
            spread = z * np.sqrt(v) / np.log(s)
            low = np.exp(-np.exp(np.log(-np.log(s)) - spread))
            high = np.exp(-np.exp(np.log(-np.log(s)) + spread))
        else:
            low = high = s
        for key, value in zip(rows, (t, s, low, high, n), strict=True):
            rows[key].append(value)
    return rows


def _logrank_brute_force(time, event, group):
    observed_minus_expected, variance = 0.0, 0.0
    for t in sorted(set(time[event == 1])):
        at_risk = time >= t
        n, n1 = at_risk.sum(), (at_risk & group).sum()
        d, d1 = event[time == t].sum(), event[(time == t) & group].sum()
        observed_minus_expected += d1 - d * n1 / n
        if n > 1:
            variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    return observed_minus_expected ** 2 / variance


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_kaplan_meier_and_logrank_equal_the_product_limit_by_brute_force(confidence):
    rng = np.random.default_rng(1)
    time = np.round(rng.exponential(10, 60)) + 1  # ties
    event = (rng.random(60) < 0.7).astype(float)
    event[np.argmax(time)] = 1  # the curve reaches 0
    group = rng.random(60) < 0.5
    curve = kaplan_meier(time, event, confidence)
    expected = _product_limit(time, event, stats.norm.ppf(0.5 + confidence / 2))
    for key, values in expected.items():
        np.testing.assert_allclose(curve[key], values, rtol=1e-10, atol=1e-12, err_msg=key)
    statistic, p = logrank(time, event, group)
    assert statistic == pytest.approx(_logrank_brute_force(time, event, group), rel=1e-10)
    assert p == pytest.approx(stats.chi2.sf(statistic, 1), rel=1e-10)
    assert np.isnan(logrank(time, np.zeros(60), group)).all()  # no event: no test
    # V = 0 (every event where everyone at risk dies at once): no test, not an error
    assert np.isnan(logrank(np.ones(4), np.ones(4), np.array([True, True, False, False]))).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kaplan_meier_and_logrank_equal_lifelines(seed):
    """An independent implementation: lifelines' KaplanMeierFitter (exponential Greenwood
    band) and logrank_test, with ties, censoring and a time 0."""
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    rng = np.random.default_rng(seed)
    time = np.round(rng.exponential(8, 45))  # ties, and some times are 0
    event = (rng.random(45) < 0.6).astype(float)
    group = rng.random(45) < 0.4
    curve = kaplan_meier(time, event, 0.9)
    fit = KaplanMeierFitter(alpha=0.1).fit(time, event)
    np.testing.assert_allclose(curve["time"], fit.survival_function_.index, rtol=0)
    np.testing.assert_allclose(curve["survival"], fit.survival_function_.iloc[:, 0],
                               rtol=1e-12)
    band = fit.confidence_interval_survival_function_.to_numpy()
    inside = (curve["survival"] > 0) & (curve["survival"] < 1)
    np.testing.assert_allclose(curve["ci_low"][inside], band[inside, 0], rtol=1e-9)
    np.testing.assert_allclose(curve["ci_high"][inside], band[inside, 1], rtol=1e-9)
    np.testing.assert_array_equal(curve["n_at_risk"], fit.event_table["at_risk"])
    statistic, p = logrank(time, event, group)
    reference = logrank_test(time[group], time[~group], event[group], event[~group])
    assert statistic == pytest.approx(reference.test_statistic, rel=1e-9)
    assert p == pytest.approx(reference.p_value, rel=1e-9)


def test_kaplan_meier_table_median_ratio_when_a_curve_touches_one_half():
    # high group (values 7-12): 6 deaths at 1, …, 6 -> S(3) = 0.5 exactly (lifelines:
    # 0.5 + 1 ulp), median 3; low group (values 0-6, the median 6 goes low): 7 deaths at
    # 2, 4, …, 14 -> S(8) = 3/7, median 8; ratio 3/8.
    values = pd.DataFrame({"f": np.r_[np.arange(7.0, 13), np.arange(0.0, 7)]})
    time = pd.Series(np.r_[np.arange(1.0, 7), np.arange(2.0, 15, 2)])
    tests, curves = kaplan_meier_table(values, time, pd.Series(np.ones(13)))
    assert tests.loc[0, "threshold"] == 6
    assert tests.loc[0, "effect"] == pytest.approx(3 / 8)
    assert set(curves["group"]) == {"low", "high"}


def test_cox_recovers_planted_hazard_ratio_per_sd():
    rng = np.random.default_rng(2)
    n, beta = 1500, 0.5
    x = rng.normal(3.0, 2.0, n)  # HR per SD of x is exp(beta) when hazard = exp(beta * z)
    z = (x - x.mean()) / x.std(ddof=1)
    time = rng.exponential(1 / np.exp(beta * z))
    censor = rng.exponential(2.0, n)
    event = (time <= censor).astype(float)
    index = pd.RangeIndex(n)
    table = cox_table(pd.DataFrame({"x": x}, index=index), pd.Series(np.minimum(time, censor)),
                      pd.Series(event))
    row = table.iloc[0]
    assert row["ci_low"] < np.exp(beta) < row["ci_high"]
    assert row["effect"] == pytest.approx(np.exp(beta), rel=0.1)
    assert row["ph_p"] > 0.001  # proportional hazards hold by construction


def test_treatment_rank_biserial_and_wilcoxon_match_brute_force():
    rng = np.random.default_rng(3)
    before = pd.DataFrame({"density.core.CD8_T": rng.normal(10, 2, 12)})
    change = rng.normal(1.0, 1.5, 12)
    after = before + change[:, None]
    table = treatment_table(before, after).iloc[0]
    ranks = stats.rankdata(np.abs(change))
    expected = (ranks[change > 0].sum() - ranks[change < 0].sum()) / ranks.sum()
    assert table["effect"] == pytest.approx(expected)
    assert table["p"] == pytest.approx(stats.wilcoxon(change).pvalue)
    assert table["region"] == "core"
    assert feature_region("nn_dist_um.CD8_T.Tumor") == ""


def test_mixed_model_recovers_planted_group_difference():
    rng = np.random.default_rng(4)
    patients = np.repeat(np.arange(30), 5)
    responder = (patients < 15).astype(float)
    x = 1.0 * responder + rng.normal(0, 0.7, 30)[patients] + rng.normal(0, 0.5, 150)
    index = pd.Index([f"img{i}" for i in range(150)])
    table = mixed_model_table(pd.DataFrame({"x": x}, index=index),
                              pd.Series(responder, index=index),
                              pd.Series(patients.astype(str), index=index)).iloc[0]
    sd = x.std()
    assert table["ci_low"] < 1.0 / sd < table["ci_high"]
    assert table["n_patients"] == 30
    narrow = mixed_model_table(pd.DataFrame({"x": x}, index=index),
                               pd.Series(responder, index=index),
                               pd.Series(patients.astype(str), index=index),
                               confidence=0.9).iloc[0]
    se = narrow["effect"] / narrow["statistic"]
    # Wald t on the between-patient degrees of freedom: 30 patients - 2 fixed effects
    assert narrow["df"] == 28
    assert narrow["ci_high"] - narrow["effect"] == pytest.approx(stats.t.ppf(0.95, 28) * se)
    assert narrow["p"] == pytest.approx(2 * stats.t.sf(abs(narrow["statistic"]), 28))
    assert narrow["effect"] == table["effect"]


def test_feature_matrix_filters_and_indicators():
    features = pd.DataFrame({
        "sample": ["a", "b", "c", "d", "e"],
        "density.core.CD8_T": [1.0, 2, 3, 4, 5],
        "effector_density.core": [1.0, 2, 3, 4, 5],  # exact copy
        "constant": [7.0] * 5,
        "ratio": [1.0, np.inf, 2, 3, 4],  # inf is missing
        "sparse": [1.0, np.nan, np.nan, 2, 3],  # kept: each test uses the finite samples
        "empty": [np.nan] * 5,  # no finite value -> dropped
        "phenotype": ["inflamed", "desert", "inflamed", "excluded", "desert"],
    })
    matrix = feature_matrix(features, CohortParams())
    assert list(matrix.values.columns) == ["density.core.CD8_T", "ratio", "sparse",
                                           "phenotype.desert", "phenotype.excluded",
                                           "phenotype.inflamed"]
    assert np.isnan(matrix.values["ratio"].iloc[1])
    reasons = dict(zip(matrix.dropped["feature"], matrix.dropped["reason"], strict=True))
    assert reasons == {"effector_density.core": "duplicate of density.core.CD8_T",
                       "constant": "constant", "empty": "missing"}
    assert matrix.values["phenotype.inflamed"].tolist() == [1.0, 0, 1, 0, 0]


def test_response_contrast_levels_and_direction():
    columns = ClinicalColumns()
    contrast = response_contrast(pd.Series(["Responders", "Non-Responders"]), columns)
    assert contrast.labels.tolist() == [1.0, 0.0]
    assert contrast.name == "Responders vs Non-Responders"
    assert response_contrast(pd.Series([0, 1, 1]), columns).labels.tolist() == [0.0, 1.0, 1.0]
    # Two labels, neither a responder label: the sorted second against the first.
    other = response_contrast(pd.Series(["mixed", "compartmentalized", None, "mixed"]),
                              columns)
    assert other.name == "mixed vs compartmentalized"
    assert other.labels.tolist()[:2] == [1.0, 0.0] and np.isnan(other.labels.iloc[2])
    picked = response_contrast(pd.Series(["good", "bad", None]),
                               replace(columns, responder_values=("Good",)))
    assert picked.labels.tolist()[:2] == [1.0, 0.0] and np.isnan(picked.labels.iloc[2])
    several = response_contrast(pd.Series(["CR", "PR", "SD", "PD"]),
                                replace(columns, responder_values=("cr", "pr")))
    assert several.name == "CR/PR vs PD/SD"
    assert several.labels.tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(ContrastUnavailable, match="3 labels"):
        response_contrast(pd.Series(["a", "b", "c"]), columns)
    with pytest.raises(ContrastUnavailable, match="1 labels"):
        response_contrast(pd.Series(["a", "a"]), columns)
    with pytest.raises(ContrastUnavailable, match="no reference"):
        response_contrast(pd.Series(["CR", "PR"]), replace(columns, responder_values=("CR", "PR")))
    with pytest.raises(InputError, match="responder_values"):
        response_contrast(pd.Series(["a", "b"]), replace(columns, responder_values=("yes",)))


def _two_level_cohort(labels: list[str], shift: float, n: int = 200, seed: int = 8):
    """Features with ``shift`` SDs higher values where the label is ``labels[0]``."""
    rng = np.random.default_rng(seed)
    group = np.arange(n) % len(labels)
    features = pd.DataFrame({"sample": [f"S{i}" for i in range(n)],
                             "planted": rng.normal(size=n) + shift * (group == 0),
                             "noise": rng.normal(size=n)})
    clinical = pd.DataFrame({"sample": features["sample"],
                             "response": np.array(labels, dtype=object)[group]})
    return features, clinical


@pytest.mark.parametrize(("labels", "level"), [(["mixed", "compartmentalized"], "mixed"),
                                               (["compartmentalized", "mixed"], "mixed"),
                                               (["sham", "arm_a"], "sham"),
                                               (["primary", "metastasis"], "primary")])
def test_any_two_level_condition_is_a_contrast_with_a_named_direction(labels, level):
    features, clinical = _two_level_cohort(labels, shift=1.5)
    config = Config(cohort=CohortParams(analyses=("response",)))
    table = analyse_cohort(features, clinical, config).association.set_index("feature")
    reference = sorted(labels)[0]
    assert (table["contrast"] == f"{level} vs {reference}").all()
    # AUC = P(a value of the compared level exceeds one of the reference).
    planted, noise = table.loc["planted"], table.loc["noise"]
    is_level = clinical["response"].to_numpy() == level
    x = features["planted"].to_numpy()
    expected = stats.mannwhitneyu(x[is_level], x[~is_level]).statistic / (100 * 100)
    assert planted["effect"] == pytest.approx(expected)
    # Shift 1.5 SD: AUC = Phi(1.5 / sqrt 2) = 0.86 when the compared level carries it.
    if level == labels[0]:
        assert planted["effect"] > 0.75 and planted["p"] < 1e-6
    else:
        assert planted["effect"] < 0.25 and planted["p"] < 1e-6
    assert noise["p"] > 0.001


def test_more_than_two_levels_skips_response_with_a_reason():
    features, clinical = _two_level_cohort(["a", "b", "c"], shift=1.0)
    clinical["os_time"] = np.linspace(1, 30, 200)
    clinical["os_event"] = 1
    config = Config(cohort=CohortParams(analyses=("response", "survival", "prediction")))
    result = analyse_cohort(features, clinical, config)
    assert "3 labels" in result.skipped["response"]
    assert "responder_values" in result.skipped["response"]
    assert result.skipped["prediction"] == result.skipped["response"]
    assert set(result.association["outcome"]) == {"os"}
    # with only the response analysis there is nothing left: one error naming the reason
    with pytest.raises(InputError, match="3 labels"):
        analyse_cohort(features, clinical, Config(cohort=CohortParams(analyses=("response",))))


def test_join_errors_name_the_ids():
    values = pd.DataFrame({"f": [1.0, 2.0]}, index=pd.Index(["S1", "S2"], name="sample"))
    with pytest.raises(InputError, match="'S2'"):
        join_clinical(values, pd.DataFrame({"sample": ["S1", "S3"]}), ClinicalColumns())
    by_patient = join_clinical(values, pd.DataFrame({"patient": ["P1"], "response": ["R"]}),
                               ClinicalColumns(), pd.Series(["P1", "P1"], index=["S1", "S2"]))
    assert by_patient.clinical["patient"].tolist() == ["P1", "P1"]
    assert by_patient.clinical["response"].tolist() == ["R", "R"]


def _cohort(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    features = pd.DataFrame({"sample": [f"S{i}" for i in range(n)],
                             "density.core.CD8_T": rng.normal(size=n),
                             "proportion.all.Tumor": rng.random(n)})
    clinical = pd.DataFrame({"sample": features["sample"],
                             "response": np.where(rng.random(n) < 0.5, "responder", "non"),
                             "os_time": rng.exponential(10, n) + 0.1,
                             "os_event": np.r_[np.ones(3), np.zeros(n - 3)].astype(int)})
    return features, clinical


def test_too_few_events_skips_survival_with_a_reason():
    features, clinical = _cohort(30)
    config = Config(cohort=CohortParams(analyses=("response", "survival"), min_events=4))
    result = analyse_cohort(features, clinical, config)
    assert "only 3 events" in result.skipped["survival"]
    assert set(result.association["outcome"]) == {"response"}
    with pytest.raises(InputError, match="no cohort analysis could run"):
        analyse_cohort(features, clinical.drop(columns="response"),
                       replace(config, cohort=replace(config.cohort, analyses=("survival",))))
    with pytest.raises(InputError, match="os_event"):
        analyse_cohort(features, clinical.drop(columns="os_event"), config)


def test_q_values_are_benjamini_hochberg_within_each_test():
    features, clinical = _cohort(40, seed=5)
    config = Config(cohort=CohortParams(analyses=("response",)))
    table = analyse_cohort(features, clinical, config).association
    q = stats.false_discovery_control(table["p"].to_numpy(), method="bh")
    np.testing.assert_allclose(table["q"], q)
    assert list(table.columns[:9]) == ["feature", "outcome", "test", "statistic", "effect",
                                       "ci_low", "ci_high", "p", "q"]


def test_cohort_config_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[cohort]\nn_folds = 4\nanalyses = ["response"]\n'
                    '[clinical]\nresponder_values = ["CR", "PR"]\n')
    config = load_config(path)
    assert config.cohort.n_folds == 4 and config.clinical.responder_values == ("CR", "PR")
    path.write_text("[cohort]\nmin_non_missing = 1.5\n")
    with pytest.raises(ConfigError, match="min_non_missing"):
        load_config(path)
    with pytest.raises(ConfigError, match="unknown"):
        analyse_cohort(*_cohort(10), Config(cohort=CohortParams(analyses=("magic",))))


def test_configured_confidence_sets_every_interval_to_the_closed_form():
    rng = np.random.default_rng(9)
    n = 80
    features = pd.DataFrame({"sample": [f"S{i}" for i in range(n)],
                             "x": rng.normal(size=n), "y": rng.normal(size=n)})
    time = rng.exponential(10, n) + 0.1
    clinical = pd.DataFrame({"sample": features["sample"],
                             "response": np.where(features["x"] + rng.normal(size=n) > 0,
                                                  "responder", "non"),
                             "os_time": time, "os_event": (rng.random(n) < 0.7).astype(int)})
    results = {}
    for level in (0.95, 0.9):
        config = Config(cohort=CohortParams(analyses=("response", "survival"),
                                            confidence=level))
        results[level] = analyse_cohort(features, clinical, config)
    z90 = stats.norm.ppf(0.95)
    table = results[0.9].association.set_index(["test", "feature"])
    wide = results[0.95].association.set_index(["test", "feature"])
    # Mann–Whitney AUC: auc ± z se with DeLong's se by brute force.
    is_responder = clinical["response"].to_numpy() == "responder"
    x = features["x"].to_numpy()
    psi = _psi(x[is_responder], x[~is_responder])
    se = np.sqrt(psi.mean(axis=1).var(ddof=1) / is_responder.sum()
                 + psi.mean(axis=0).var(ddof=1) / (~is_responder).sum())
    row = table.loc[("mann_whitney", "x")]
    assert row["ci_low"] == pytest.approx(psi.mean() - z90 * se, rel=1e-10)
    assert row["ci_high"] == pytest.approx(min(1.0, psi.mean() + z90 * se), rel=1e-10)
    # Cox: exp(log HR ± z se), se = log HR / Wald z.
    for feature in ("x", "y"):
        cox = table.loc[("cox", feature)]
        log_hr = np.log(cox["effect"])
        se = log_hr / cox["statistic"]
        assert np.log(cox["ci_high"]) - log_hr == pytest.approx(z90 * abs(se), rel=1e-8)
        assert log_hr - np.log(cox["ci_low"]) == pytest.approx(z90 * abs(se), rel=1e-8)
        assert wide.loc[("cox", feature), "ci_low"] < cox["ci_low"]
        assert cox["ci_high"] < wide.loc[("cox", feature), "ci_high"]
    # Kaplan–Meier bands: log(-log S) ± z sqrt(V) / log S, so the spread scales with z.
    curves = {level: result.km_curves for level, result in results.items()}
    inside = (curves[0.9]["survival"] > 0) & (curves[0.9]["survival"] < 1)
    spread = {level: np.log(-np.log(c.loc[inside, "ci_low"])) - np.log(-np.log(c.loc[inside,
                                                                                   "survival"]))
              for level, c in curves.items()}
    np.testing.assert_allclose(spread[0.9], spread[0.95] * z90 / stats.norm.ppf(0.975),
                               rtol=1e-8)
