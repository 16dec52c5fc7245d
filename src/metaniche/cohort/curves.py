"""Whole-curve group comparison: does a K/L/g curve differ between groups over all radii?

A per-image scalar (``ripley_l_mean``, spicyR's integrated L) can hide a difference that
changes sign with the radius, and a test at one radius hinges on that radius. This test uses
the whole curve: the pointwise one-way ANOVA F(r) of the curves across the groups,
integrated over the radius range (the "FP" statistic of Górecki & Smaga [1]_; Cuevas et al.
[2]_ for the unstudentised form),

    T = ∫ F(r) dr / (r_max − r_min)   (trapezoid rule on the common grid),

F(r) = [Σ_g n_g (m_g(r) − m(r))² / (k − 1)] / [Σ_g Σ_{i∈g} (x_i(r) − m_g(r))² / (n − k)],
each radius studentised by its own within-group variance (radii with no within-group
variance are left out). The p-value is a permutation test of the group labels over the
independent units: p = (1 + #{T_perm ≥ T}) / (1 + B), B permutations drawn from
``numpy.random.default_rng(seed)``. With several images per patient the curves are averaged
per patient first (the unit is the patient; the labels are constant within a patient).

Curves on different grids (spatstat's per-image radius grid) are linearly interpolated onto
``n_grid`` radii spanning the range that every unit covers.

References
----------
.. [1] Górecki T., Smaga Ł. (2015) A comparison of tests for the one-way ANOVA problem for
   functional data. Comput Stat 30:987–1010.
.. [2] Cuevas A., Febrero M., Fraiman R. (2004) An anova test for functional data. Comput
   Stat Data Anal 47:111–122.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["common_grid_curves", "curve_anova_permutation", "curve_group_table"]


def common_grid_curves(curves: pd.DataFrame, value: str = "l_minus_r_um",
                       n_grid: int = 64) -> pd.DataFrame:
    """Units × radii matrix of one pair's curves on a common grid.

    Parameters
    ----------
    curves
        Long table ``sample``, ``r_um``, ``value`` (one pair).
    value
        The curve column.
    n_grid
        Radii of the common grid, evenly spaced over the range every sample covers.

    Returns
    -------
    pandas.DataFrame
        Samples × radii (columns: the radii, µm); rows of samples without finite values are
        dropped.
    """
    finite = curves[np.isfinite(curves[value].to_numpy(np.float64))]
    if finite.empty:
        return pd.DataFrame()
    spans = finite.groupby("sample")["r_um"].agg(["min", "max"])
    lo, hi = float(spans["min"].max()), float(spans["max"].min())
    if not hi > lo:
        return pd.DataFrame()
    grid = np.linspace(lo, hi, n_grid)
    rows = {}
    for sample, part in finite.groupby("sample", sort=False):
        part = part.sort_values("r_um")
        rows[sample] = np.interp(grid, part["r_um"].to_numpy(np.float64),
                                 part[value].to_numpy(np.float64))
    return pd.DataFrame.from_dict(rows, orient="index", columns=grid)


def _integrated_f(x: np.ndarray, onehot: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """T for every labelling: ``x`` (n, R), ``onehot`` (B, k, n) → (B,)."""
    n, k = x.shape[0], onehot.shape[1]
    sizes = onehot.sum(axis=2)                                  # (B, k)
    sums = onehot @ x                                           # (B, k, R)
    total = x.sum(axis=0)
    between = (sums**2 / sizes[:, :, None]).sum(axis=1) - total**2 / n
    within = (x**2).sum(axis=0) - (sums**2 / sizes[:, :, None]).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (between / (k - 1)) / (within / (n - k))
    f = np.where(within > 1e-12 * np.maximum((x**2).sum(axis=0), 1e-300), f, np.nan)
    usable = np.all(np.isfinite(f), axis=0)
    if not usable.any():
        return np.full(onehot.shape[0], np.nan)
    r, values = radii[usable], f[:, usable]
    if len(r) == 1:
        return values[:, 0]
    return np.trapezoid(values, r, axis=1) / (r[-1] - r[0])


def curve_anova_permutation(curves: np.ndarray, labels: np.ndarray, radii: np.ndarray,
                            n_permutations: int = 999, seed: int = 0) -> tuple[float, float]:
    """Integrated pointwise F of curves across groups and its permutation p (module docstring).

    Parameters
    ----------
    curves
        (n, R) one curve per independent unit.
    labels
        (n,) group codes (any hashable); at least two groups with two units each.
    radii
        (R,) the common radius grid, µm.
    n_permutations, seed
        Permutations of the labels and the seed of their generator.

    Returns
    -------
    statistic, p
        T and its permutation p-value (NaN when it cannot be computed).
    """
    x = np.asarray(curves, np.float64)
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    k = codes.max() + 1 if len(codes) else 0
    counts = np.bincount(codes, minlength=k)
    if k < 2 or counts.min() < 2 or len(codes) <= k:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    labellings = np.vstack([codes[None, :],
                            np.array([rng.permutation(codes) for _ in range(n_permutations)])
                            .reshape(n_permutations, len(codes))])
    onehot = (labellings[:, None, :] == np.arange(k)[None, :, None]).astype(np.float64)
    statistic = _integrated_f(x, onehot, np.asarray(radii, np.float64))
    observed = statistic[0]
    if not np.isfinite(observed):
        return float("nan"), float("nan")
    exceed = np.sum(statistic[1:] >= observed - 1e-12 * abs(observed))
    return float(observed), float((exceed + 1) / (n_permutations + 1))


def curve_group_table(curves: pd.DataFrame, labels: pd.Series, patient: pd.Series | None = None,
                      value: str = "l_minus_r_um", n_permutations: int = 999, seed: int = 0,
                      min_group: int = 3, n_grid: int = 64) -> pd.DataFrame:
    """Whole-curve test of every type pair of a ripley table across groups.

    Parameters
    ----------
    curves
        Long ripley table of all samples: ``sample``, ``type_a``, ``type_b``, ``r_um`` and
        ``value``.
    labels
        Group per sample (index: sample), NaN unknown.
    patient
        Patient per sample; when a patient has several samples the curves are averaged per
        patient first (on the common grid).
    value, n_permutations, seed, n_grid
        See :func:`common_grid_curves` and :func:`curve_anova_permutation`.
    min_group
        Fewest units per group for a test (else NaN).

    Returns
    -------
    pandas.DataFrame
        Per pair: ``feature`` = ``ripley_l_curve.<a>.<b>``, ``test`` =
        ``curve_permutation``, ``statistic`` (T), ``p``, ``effect`` NaN, ``effect_name`` =
        ``integrated_f``, ``n`` (units), ``r_min_um``, ``r_max_um``, ``unit`` (``patient``
        or ``sample``).
    """
    rows = []
    for (a, b), part in curves.groupby(["type_a", "type_b"], sort=True):
        matrix = common_grid_curves(part, value, n_grid)
        base = {"feature": f"ripley_l_curve.{a}.{b}", "test": "curve_permutation",
                "effect": np.nan, "effect_name": "integrated_f", "statistic": np.nan,
                "p": np.nan, "n": 0, "r_min_um": np.nan, "r_max_um": np.nan,
                "unit": "sample"}
        if matrix.empty:
            rows.append(base)
            continue
        group = labels.reindex(matrix.index)
        if patient is not None and patient.reindex(matrix.index).duplicated().any():
            owner = patient.reindex(matrix.index).to_numpy()
            matrix = matrix.groupby(owner).mean()
            group = group.groupby(owner).first().reindex(matrix.index)
            base["unit"] = "patient"
        known = group.notna().to_numpy()
        counts = group[known].value_counts()
        base |= {"n": int(known.sum()), "r_min_um": float(matrix.columns[0]),
                 "r_max_um": float(matrix.columns[-1])}
        if len(counts) >= 2 and counts.min() >= min_group:
            statistic, p = curve_anova_permutation(
                matrix.to_numpy()[known], group[known].astype(str).to_numpy(),
                matrix.columns.to_numpy(np.float64), n_permutations, seed)
            base |= {"statistic": statistic, "p": p}
        rows.append(base)
    return pd.DataFrame(rows)
