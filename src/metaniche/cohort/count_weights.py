"""spicyR's image weights: a smooth of the squared residuals of the pair statistics on the two
cell counts, turned into precision weights for the mixed model.

spicyR (``spicy``, [1]_) pools every pair statistic x_{image, pair} with the counts of its two
cell types, ``resSq = (x − mean over images of that pair)²``, fits
``weightFunction <- mgcv::gam(resSq ~ ti(count1, count2))`` and, for each pair, weights the
images by ``w = 1 / sqrt(ẑ − min ẑ + 1)``, normalised to sum 1, ẑ the fitted smooth at the
images' counts (min over the images that have the pair). An image whose counts predict a
noisy statistic (few cells) gets a smaller weight.

The smooth here is :func:`fit_count_smooth`: a tensor-product interaction spline of the two
counts with the structure of mgcv's ``ti`` (each margin's basis constrained to sum to zero
over the data, so the main effects are excluded, as ``ti`` excludes them; intercept
unpenalised), fitted by penalised least squares with the smoothing parameter chosen by
generalised cross-validation. Differences from mgcv, stated: margins are cubic B-splines
(5 per margin, knots at count quantiles) with a second-order difference penalty (P-splines,
Eilers & Marx [2]_) instead of mgcv's cubic regression splines with their integrated
squared-second-derivative penalty, and one smoothing parameter shared by both margins (chosen
on a log grid) instead of two optimised by Newton's method. The weights therefore differ
from spicyR's in detail; they agree in what matters for the test (images with few cells of
either type are down-weighted smoothly), and ``make test-r`` compares against mgcv's where
R is installed.

References
----------
.. [1] Canete N.P. et al. (2022) spicyR: spatial analysis of in situ cytometry data in R.
   Bioinformatics 38:3099–3105.
.. [2] Eilers P.H.C., Marx B.D. (1996) Flexible smoothing with B-splines and penalties.
   Stat Sci 11:89–121.
.. [3] Wood S.N. (2017) Generalized Additive Models, 2nd ed. CRC Press (§5.6 ``ti``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import BSpline

from metaniche.errors import InputError

__all__ = ["WEIGHTED_FAMILY", "CountSmooth", "count_weights", "fit_count_smooth",
           "pair_count_weights", "spicyr_weights"]

#: The pair-feature family weighted by ``[cohort] mixed_model_weights = "counts"``.
WEIGHTED_FAMILY = "ripley_l_mean"

#: Basis functions per margin (mgcv's ``ti`` default k = 5).
N_BASIS = 5
#: log10 grid of the smoothing parameter searched by GCV.
_LAMBDAS = 10.0 ** np.arange(-6, 6.01, 0.25)


@dataclass(frozen=True)
class CountSmooth:
    """A fitted :func:`fit_count_smooth`; call :meth:`predict` on new counts."""

    knots: tuple[np.ndarray, np.ndarray]
    constraints: tuple[np.ndarray, np.ndarray]
    coef: np.ndarray
    smoothing: float
    edf: float

    def predict(self, count_a: np.ndarray, count_b: np.ndarray) -> np.ndarray:
        """Fitted squared residual at the counts (counts outside the data range are clamped)."""
        return _design(np.asarray(count_a, np.float64), np.asarray(count_b, np.float64),
                       self.knots, self.constraints) @ self.coef


def _margin(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Cubic B-spline basis (n, N_BASIS) at ``values`` clamped to the knot range."""
    inner = np.clip(values, knots[3], knots[-4])
    return BSpline.design_matrix(inner, knots, 3).toarray()


def _knots(values: np.ndarray) -> np.ndarray:
    """Clamped cubic knots: boundary at the range, interior at quantiles (N_BASIS functions)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        hi = lo + 1.0
    inner = np.quantile(values, np.linspace(0, 1, N_BASIS - 2)[1:-1])
    inner = np.clip(inner, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
    return np.concatenate([[lo] * 4, np.sort(inner), [hi] * 4])


def _null_space(basis: np.ndarray) -> np.ndarray:
    """Z (k, k−1) with 1'B Z = 0: the sum-to-zero constraint, by QR (mgcv's approach)."""
    constraint = basis.sum(axis=0)[:, None]
    q, _ = np.linalg.qr(constraint, mode="complete")
    return q[:, 1:]


def _design(count_a: np.ndarray, count_b: np.ndarray, knots, constraints) -> np.ndarray:
    first = _margin(count_a, knots[0]) @ constraints[0]
    second = _margin(count_b, knots[1]) @ constraints[1]
    tensor = (first[:, :, None] * second[:, None, :]).reshape(len(count_a), -1)
    return np.column_stack([np.ones(len(count_a)), tensor])


def fit_count_smooth(count_a: np.ndarray, count_b: np.ndarray,
                     response: np.ndarray) -> CountSmooth:
    """Penalised tensor-product interaction smooth ``response ~ ti(count_a, count_b)``.

    See the module docstring for the basis, constraint, penalty and GCV (score
    n · RSS / (n − edf)², edf = trace of the hat matrix). Rows with a non-finite value are
    left out.
    """
    a, b, z = (np.asarray(v, np.float64) for v in (count_a, count_b, response))
    keep = np.isfinite(a) & np.isfinite(b) & np.isfinite(z)
    a, b, z = a[keep], b[keep], z[keep]
    knots = (_knots(a), _knots(b))
    constraints = (_null_space(_margin(a, knots[0])), _null_space(_margin(b, knots[1])))
    x = _design(a, b, knots, constraints)
    difference = np.diff(np.eye(N_BASIS), n=2, axis=0)
    penalties = [c.T @ difference.T @ difference @ c for c in constraints]
    k = N_BASIS - 1
    tensor_penalty = np.kron(penalties[0], np.eye(k)) + np.kron(np.eye(k), penalties[1])
    penalty = np.zeros((x.shape[1], x.shape[1]))
    penalty[1:, 1:] = tensor_penalty
    xtx, xtz, n = x.T @ x, x.T @ z, len(z)
    best = None
    for smoothing in _LAMBDAS:
        system = xtx + smoothing * penalty
        try:
            coef = np.linalg.solve(system, xtz)
            edf = float(np.trace(np.linalg.solve(system, xtx)))
        except np.linalg.LinAlgError:
            continue
        rss = float(np.sum((z - x @ coef) ** 2))
        score = n * rss / max(n - edf, 1e-9) ** 2
        if best is None or score < best[0]:
            best = (score, coef, smoothing, edf)
    if best is None:
        raise ValueError("the count smooth could not be fitted (singular design).")
    _, coef, smoothing, edf = best
    return CountSmooth(knots, constraints, coef, float(smoothing), edf)


def spicyr_weights(fitted: np.ndarray) -> np.ndarray:
    """spicyR's weights from the fitted squared residuals of one pair's images:
    ``w = 1 / sqrt(ẑ − min ẑ + 1)``, normalised to sum 1."""
    fitted = np.asarray(fitted, np.float64)
    w = 1.0 / np.sqrt(fitted - fitted.min() + 1.0)
    return w / w.sum()


def count_weights(values: np.ndarray, count_a: np.ndarray,
                  count_b: np.ndarray) -> tuple[np.ndarray, CountSmooth]:
    """spicyR's image weights of every pair statistic (module docstring).

    Parameters
    ----------
    values
        (images, pairs) statistics, NaN where an image lacks the pair.
    count_a, count_b
        (images, pairs) cell counts of each pair's first and second type.

    Returns
    -------
    weights : numpy.ndarray
        (images, pairs): the normalised weights over each pair's finite images, NaN elsewhere.
    smooth : CountSmooth
        The pooled smooth of the squared residuals on the counts.
    """
    x = np.asarray(values, np.float64)
    residual_sq = (x - np.nanmean(x, axis=0)) ** 2
    smooth = fit_count_smooth(np.ravel(count_a), np.ravel(count_b), np.ravel(residual_sq))
    fitted = smooth.predict(np.ravel(count_a), np.ravel(count_b)).reshape(x.shape)
    weights = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        finite = np.isfinite(x[:, j])
        if finite.any():
            weights[finite, j] = spicyr_weights(fitted[finite, j])
    return weights, smooth


def pair_count_weights(images: pd.DataFrame,
                       family: str = WEIGHTED_FAMILY) -> pd.DataFrame:
    """spicyR's count weights of every ``<family>.<A>.<B>`` feature of an image table.

    The counts of type T in an image are ``n_cells × proportion.all.<T>`` (rounded; the
    composition features), so the table must hold ``n_cells`` and the ``proportion.all``
    column of every type of a weighted pair. One smooth is fitted on all the family's pairs
    together, as spicyR pools its pairs (:func:`count_weights`).

    Returns
    -------
    pandas.DataFrame
        Images × weighted features (the family's columns), NaN where the feature is missing;
        empty (no columns) when the table has no feature of the family.

    Raises
    ------
    InputError
        When a pair's cell counts cannot be derived (``n_cells`` or a ``proportion.all``
        column missing), naming the feature.
    """
    prefix = f"{family}."
    names = [c for c in images.columns if str(c).startswith(prefix)]
    if not names:
        return pd.DataFrame(index=images.index)
    known = {str(c)[len("proportion.all."):] for c in images.columns
             if str(c).startswith("proportion.all.")}
    pairs = []
    for name in names:
        rest = str(name)[len(prefix):]
        splits = [(rest[:i], rest[i + 1:]) for i, ch in enumerate(rest) if ch == "."
                  and rest[:i] in known and rest[i + 1:] in known]
        if "n_cells" not in images.columns or len(splits) != 1:
            raise InputError(f"[cohort] mixed_model_weights = \"counts\" needs the cell counts "
                             f"of both types of '{name}' (features n_cells and "
                             "proportion.all.<type>); keep the composition features or set "
                             "mixed_model_weights = \"none\".")
        pairs.append(splits[0])
    total = images["n_cells"].to_numpy(np.float64)[:, None]

    def counts(types: list[str]) -> np.ndarray:
        share = images[[f"proportion.all.{t}" for t in types]].to_numpy(np.float64)
        return np.round(total * np.nan_to_num(share))

    weights, _ = count_weights(images[names].to_numpy(np.float64),
                               counts([a for a, _ in pairs]), counts([b for _, b in pairs]))
    return pd.DataFrame(weights, index=images.index, columns=names)
