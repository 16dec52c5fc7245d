"""Ordered time points: Page's trend test and Jonckheere–Terpstra against scipy, exact
permutation moments and brute force; size over null cohorts; the cohort wiring."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metaniche.cohort.timepoints import jonckheere_terpstra, page_trend_table


def _long(x):
    """Patients × time points matrix → samples table."""
    n, k = x.shape
    index = [f"p{i}_t{j}" for i in range(n) for j in range(k)]
    values = pd.DataFrame({"f": x.ravel()}, index=index)
    patient = pd.Series([f"p{i}" for i in range(n) for _ in range(k)], index=index)
    order = pd.Series([float(j) for _ in range(n) for j in range(k)], index=index)
    return values, patient, order


def test_page_equals_scipy_without_ties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 4)) + np.arange(4) * 0.3
    row = page_trend_table(*_long(x)).iloc[0]
    reference = stats.page_trend_test(x, method="asymptotic")
    assert row["statistic"] == pytest.approx(reference.statistic)
    # scipy's p is one-sided (increasing); ours is two-sided
    assert row["p"] == pytest.approx(2 * min(reference.pvalue, 1 - reference.pvalue), rel=1e-9)


def test_page_variance_with_ties_is_the_exact_permutation_variance():
    x = np.array([[1.0, 1.0, 2.0], [3.0, 1.0, 1.0], [0.0, 5.0, 5.0]])
    row = page_trend_table(*_long(x)).iloc[0]
    ranks = stats.rankdata(x, axis=1)
    values = [sum(np.arange(1, 4) @ r[list(p)] for r, p in zip(ranks, perms, strict=True))
              for perms in itertools.product(itertools.permutations(range(3)), repeat=3)]
    exact_z = (row["statistic"] - np.mean(values)) / np.std(values)
    assert row["z"] == pytest.approx(exact_z, rel=1e-12)


def test_page_size_and_power():
    rejected = [page_trend_table(*_long(np.random.default_rng(s).normal(size=(15, 3))))
                .iloc[0]["p"] < 0.05 for s in range(300)]
    assert 0.025 <= np.mean(rejected) <= 0.08
    rng = np.random.default_rng(1)
    x = rng.normal(size=(15, 3)) + rng.normal(size=(15, 1)) * 3 + np.arange(3) * 0.8
    row = page_trend_table(*_long(x)).iloc[0]
    assert row["p"] < 0.01 and row["effect"] > 0.5


def test_jonckheere_exact_moments_with_ties():
    x = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 5.0, 1.0])
    level = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    statistic, z, _ = jonckheere_terpstra(x, level)
    brute = sum(float(a < b) + 0.5 * float(a == b)
                for i, a in enumerate(x) for j, b in enumerate(x) if level[i] < level[j])
    assert statistic == brute
    # every distinct assignment of the labels: the exact permutation mean and variance
    values = []
    for labels in set(itertools.permutations(level)):
        labels = np.array(labels)
        values.append(jonckheere_terpstra(x, labels)[0])
    assert z == pytest.approx((statistic - np.mean(values)) / np.std(values), rel=1e-10)


def test_analyse_cohort_timepoint_trend():
    from metaniche.cohort import analyse_cohort
    from metaniche.config import ClinicalColumns, CohortParams, Config
    from metaniche.errors import InputError

    rng = np.random.default_rng(3)
    order = ["pre", "on", "post"]
    rows, clinical = [], []
    for p in range(12):
        level = rng.normal() * 3
        for j, t in enumerate(order):
            rows.append({"sample": f"p{p}_{t}", "patient": f"p{p}",
                         "density.all.T": level + j + rng.normal(0, 0.5),
                         "density.all.N": rng.normal()})
            clinical.append({"sample": f"p{p}_{t}", "patient": f"p{p}", "timepoint": t})
    config = Config(clinical=ClinicalColumns(timepoint_order=tuple(order)),
                    cohort=CohortParams(analyses=("treatment",)))
    table = analyse_cohort(pd.DataFrame(rows), pd.DataFrame(clinical), config).association
    trend = table[table["outcome"] == "timepoint_trend"].set_index("feature")
    assert trend.loc["density.all.T", "p"] < 1e-4 and trend.loc["density.all.T", "n"] == 12
    assert trend.loc["density.all.N", "p"] > 0.001
    bad = Config(clinical=ClinicalColumns(timepoint_order=("a", "b", "c")),
                 cohort=CohortParams(analyses=("treatment",)))
    with pytest.raises(InputError, match=r"timepoint_order \['a', 'b', 'c'\]"):
        analyse_cohort(pd.DataFrame(rows), pd.DataFrame(clinical), bad)
