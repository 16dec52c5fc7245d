"""Multiple-testing adjustment: the one Benjamini–Hochberg used across metaniche.

References
----------
1. Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and powerful
   approach to multiple testing. J R Stat Soc B. 1995;57:289-300.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (step-up FDR adjustment) of a set of p-values.

    q_(i) = min_{k >= i} min(1, m p_(k) / k) over the p-values sorted ascending, computed by
    :func:`scipy.stats.false_discovery_control` (``method='bh'``).

    Parameters
    ----------
    p
        P-values in [0, 1], any shape. NaN (or ±inf) marks a test that was not run.

    Returns
    -------
    numpy.ndarray
        Float array of the shape of ``p``: the q-value of each finite p; non-finite p-values
        stay NaN and are not counted in the number of tests m (so a feature that could not
        be tested does not dilute the others). All-NaN or empty input gives all NaN.

    Notes
    -----
    O(m log m).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = stats.false_discovery_control(p[finite], method="bh")
    return q
