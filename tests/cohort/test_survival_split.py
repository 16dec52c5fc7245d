"""The two groups of the Kaplan–Meier / log-rank table: binary features by their two values,
continuous ones at the median without an empty group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.cohort.survival import (
    SPLIT_BINARY,
    SPLIT_MEDIAN,
    SPLIT_MEDIAN_TIES_HIGH,
    kaplan_meier_table,
    logrank,
    two_group_split,
)


def test_binary_feature_is_split_by_its_two_values_even_when_the_median_is_the_high_one():
    # 7 of 10 units are 1: the median is 1, so "> median" would leave the high group empty.
    x = np.array([1.0, 1, 0, 1, 1, 0, 1, 1, 0, 1])
    threshold, split, high = two_group_split(x)
    assert split == SPLIT_BINARY
    assert threshold == 0.0
    np.testing.assert_array_equal(high, x == 1)


def test_continuous_feature_splits_at_the_median_ties_low():
    x = np.array([5.0, 1, 3, 3, 9, 2, 7])
    threshold, split, high = two_group_split(x)
    assert (threshold, split) == (3.0, SPLIT_MEDIAN)
    np.testing.assert_array_equal(high, x > 3)


def test_ties_at_the_maximum_go_high_instead_of_leaving_the_high_group_empty():
    # median 4 = maximum: ties low would put every unit low.
    x = np.array([4.0, 4, 4, 4, 4, 1, 2])
    threshold, split, high = two_group_split(x, min_group=2)
    assert (threshold, split) == (4.0, SPLIT_MEDIAN_TIES_HIGH)
    np.testing.assert_array_equal(high, x >= 4)
    assert high.sum() == 5 and (~high).sum() == 2


def test_a_constant_feature_has_nothing_to_compare():
    _, split, high = two_group_split(np.full(6, 2.5))
    assert split == SPLIT_MEDIAN and not high.any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_groups_of_a_binary_feature_match_the_log_rank_by_hand(seed):
    rng = np.random.default_rng(seed)
    n = 40
    flag = (rng.random(n) < 0.7).astype(float)      # mostly 1: median 1
    time = rng.exponential(np.where(flag == 1, 1.0, 3.0))
    event = (rng.random(n) < 0.8).astype(float)
    index = pd.RangeIndex(n)
    tests, curves = kaplan_meier_table(pd.DataFrame({"flag": flag}, index=index),
                                       pd.Series(time, index=index),
                                       pd.Series(event, index=index))
    row = tests.iloc[0]
    assert row["split"] == SPLIT_BINARY and row["threshold"] == 0.0
    statistic, p = logrank(time, event, flag == 1)
    assert row["p"] == pytest.approx(p) and row["statistic"] == pytest.approx(statistic)
    # numbers at risk at time 0 are the group sizes
    first = curves.sort_values("time").groupby("group")["n_at_risk"].first()
    assert first["high"] == int(flag.sum()) and first["low"] == int(n - flag.sum())
    assert set(curves["split"]) == {SPLIT_BINARY}
