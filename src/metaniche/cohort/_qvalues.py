"""Benjamini–Hochberg q-values within groups of rows of a results table."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from metaniche._multitest import benjamini_hochberg


def add_q_values(table: pd.DataFrame, by: str | Sequence[str]) -> pd.DataFrame:
    """Set ``q``: Benjamini–Hochberg adjusted ``p`` within each group of rows.

    Uses :func:`metaniche._multitest.benjamini_hochberg` (scipy ``false_discovery_control``).
    Rows with a non-finite ``p`` get NaN and do not count towards the number of tests.
    Modifies and returns ``table``.
    """
    table["q"] = np.nan
    for _, index in table.groupby(by).groups.items():
        table.loc[index, "q"] = benjamini_hochberg(table.loc[index, "p"].to_numpy(np.float64))
    return table
