"""Benjamini–Hochberg q-values within groups of rows of a results table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def add_q_values(table: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Set ``q``: BH-adjusted ``p`` (scipy ``false_discovery_control``) within each group.

    Rows with a non-finite ``p`` get NaN and do not count towards the number of tests.
    Modifies and returns ``table``.
    """
    table["q"] = np.nan
    for _, index in table.groupby(by).groups.items():
        p = table.loc[index, "p"].to_numpy(np.float64)
        finite = np.isfinite(p)
        if finite.any():
            q = np.full(len(p), np.nan)
            q[finite] = stats.false_discovery_control(p[finite], method="bh")
            table.loc[index, "q"] = q
    return table
