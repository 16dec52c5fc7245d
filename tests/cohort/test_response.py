"""The vectorised Mann–Whitney table equals scipy and the DeLong AUC, feature by feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort.response import auc_delong, mann_whitney_table


@pytest.mark.parametrize("n", [9, 60])
def test_mann_whitney_table_equals_scipy_and_delong_per_feature(n):
    rng = np.random.default_rng(n)
    label = (np.arange(n) % 3 == 0).astype(float)  # ~1/3 responders; few at n = 9
    label[1] = np.nan  # unknown response: left out
    x = rng.normal(size=(n, 6)) + label[:, None]
    x[:, 1] = np.round(x[:, 1])  # ties -> asymptotic with tie correction
    x[:, 2] = rng.random(n) < 0.4  # a 0/1 indicator: massive ties
    x[:, 3] = 1.0  # all tied
    x[rng.random((n, 6)) < 0.1] = np.nan
    values = pd.DataFrame(x, columns=[f"f{j}" for j in range(6)])
    table = mann_whitney_table(values, pd.Series(label), min_group=2)
    for j, row in table.iterrows():
        pos = x[(label == 1) & np.isfinite(x[:, j]), j]
        neg = x[(label == 0) & np.isfinite(x[:, j]), j]
        assert row["n"] == len(pos) + len(neg) and row["n_responder"] == len(pos)
        result = stats.mannwhitneyu(pos, neg, alternative="two-sided")
        auc, low, high = auc_delong(pos, neg, 0.95)
        assert row["statistic"] == pytest.approx(result.statistic, rel=1e-12)
        assert row["p"] == pytest.approx(result.pvalue, rel=1e-10)
        assert [row["effect"], row["ci_low"], row["ci_high"]] == pytest.approx(
            [auc, low, high], rel=1e-10)
        assert row["cliffs_delta"] == pytest.approx(2 * auc - 1, abs=1e-12)
        assert row["mean_responder"] == pytest.approx(pos.mean())
        if neg.mean() == 0:
            assert np.isnan(row["fold_change"])  # documented: NaN when the mean is 0
        else:
            assert row["fold_change"] == pytest.approx(pos.mean() / neg.mean())


def test_mann_whitney_table_uses_exact_p_for_small_untied_groups():
    values = pd.DataFrame({"a": [0.3, 1.2, 2.5, 3.1, 4.7, 5.2, 6.6]})
    label = pd.Series([0.0, 0, 1, 0, 1, 1, 1])
    row = mann_whitney_table(values, label).iloc[0]
    # U = 11 of 12 pairs; exact two-sided p = 2 · P(U >= 11) = 2 · 2/35 (brute force)
    assert row["statistic"] == 11 and row["p"] == pytest.approx(4 / 35)


def test_exact_p_values_shared_across_features_equal_scipy_per_feature():
    """Exact p-values are looked up by (n_responder, n_non_responder, U): every feature
    still gets exactly scipy's own exact p, whatever its split after missing values."""
    rng = np.random.default_rng(7)
    label = np.array([1.0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 1])
    x = rng.normal(size=(12, 300)) + 0.8 * label[:, None]
    x[rng.random(x.shape) < 0.15] = np.nan       # splits such as 5/6, 6/5, 4/6, …
    table = mann_whitney_table(pd.DataFrame(x), pd.Series(label))
    checked = set()
    for j, row in table.iterrows():
        pos = x[(label == 1) & np.isfinite(x[:, j]), j]
        neg = x[(label == 0) & np.isfinite(x[:, j]), j]
        if min(len(pos), len(neg)) < 3:
            continue
        exact = stats.mannwhitneyu(pos, neg, alternative="two-sided", method="exact")
        assert row["p"] == exact.pvalue
        checked.add((len(pos), len(neg), row["statistic"]))
    assert len(checked) > 40                     # many distinct (n1, n2, U) keys
