"""The one Benjamini–Hochberg against statsmodels, an independent implementation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from metaniche._multitest import benjamini_hochberg
from metaniche.analyses.communities import ligrec
from metaniche.cohort import _qvalues


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bh_equals_statsmodels_with_nan_left_out_of_m(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=300) ** 3  # many small p-values: the step-up matters
    p[rng.random(300) < 0.2] = np.nan
    p[:5] = p[5]  # tied p-values
    q = benjamini_hochberg(p)
    finite = np.isfinite(p)
    reference = multipletests(p[finite], method="fdr_bh")[1]
    np.testing.assert_allclose(q[finite], reference, rtol=1e-12)
    assert np.isnan(q[~finite]).all()
    # m counts the finite p-values only: the NaNs do not dilute the others.
    assert not np.allclose(q[finite], multipletests(np.nan_to_num(p, nan=1.0),
                                                    method="fdr_bh")[1][finite])


def test_bh_shape_and_degenerate_inputs():
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    q = benjamini_hochberg(p)
    assert q.shape == p.shape and np.isnan(q[0, 1])
    # m = 3: 0.01 * 3 / 1, then min(0.03 * 3 / 2, 0.04 * 3 / 3) for both others
    np.testing.assert_allclose(q[np.isfinite(p)], [0.03, 0.04, 0.04])
    assert np.isnan(benjamini_hochberg(np.full(4, np.nan))).all()
    assert benjamini_hochberg(np.array([])).shape == (0,)


def test_both_callers_use_the_one_implementation():
    assert ligrec.benjamini_hochberg is benjamini_hochberg
    assert _qvalues.benjamini_hochberg is benjamini_hochberg
