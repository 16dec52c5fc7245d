"""Many small log-link count GLMs (Poisson, NB2 with known alpha) fitted together by IRLS.

The gradient statistics fit one small model per lesion × cell type (about a dozen bins, two
or three parameters), 20 to 30 per sample. statsmodels' ``GLM(...).fit()`` costs about 2.3 ms
per fit (model set-up and the results object; 50 ms of the ≈ 250 ms a small NSCLC image takes
end to end). Here the fits of a sample are stacked into arrays and solved together: each
iteratively reweighted least-squares step is a batched weighted normal-equation solve, so a
sample's fits cost about as much as one. The algorithm is statsmodels' (same start, same
working weights and response, same convergence rule on the deviance, pseudo-inverse solves,
covariance from the last weighted least-squares step), so the estimates agree with
``statsmodels.genmod.GLM`` to rounding (tested against it in ``tests/analyses/test_glm.py``).

Model, for fit g and observation k (``mask[g, k]`` True)::

    log mu_gk = offset_gk + X_gk · beta_g
    Var(y_gk) = mu_gk + alpha_g · mu_gk²          (alpha_g = 0: Poisson)

Complexity O(iterations · G · K · P²) for G fits of K observations and P parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LogGLMFit", "fit_log_glm"]


@dataclass(frozen=True)
class LogGLMFit:
    """Estimates of :func:`fit_log_glm`, one row per fit.

    Attributes
    ----------
    params
        (G, P) coefficients.
    normalized_cov
        (G, P, P) ``(X' W X)⁺`` at the weights of the last iteration (statsmodels'
        ``normalized_cov_params``); times the scale it is the covariance.
    mu
        (G, K) fitted means (1 where masked out).
    pearson_chi2
        (G,) sum over the observations of ``(y − mu)² / Var(mu)``.
    df_resid
        (G,) observations minus parameters.
    converged
        (G,) whether the deviance changed by at most ``tol`` within ``max_iter`` iterations
        (a fit whose means overflow stops with NaN estimates, not converged).
    """

    params: np.ndarray
    normalized_cov: np.ndarray
    mu: np.ndarray
    pearson_chi2: np.ndarray
    df_resid: np.ndarray
    converged: np.ndarray

    def bse(self, scale: np.ndarray | float = 1.0) -> np.ndarray:
        """(G, P) standard errors ``sqrt(diag(normalized_cov) · scale)``."""
        diagonal = np.diagonal(self.normalized_cov, axis1=1, axis2=2)
        return np.sqrt(diagonal * np.reshape(scale, (-1, 1)))


def _deviance(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-fit deviance of Poisson (alpha 0) or NB2 (statsmodels' ``family.deviance``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
        a = alpha[:, None]
        safe_a = np.where(a > 0, a, 1.0)
        nb = ylogy - (y + 1 / safe_a) * np.log((1 + safe_a * y) / (1 + safe_a * mu))
        unit = np.where(a > 0, nb, ylogy - (y - mu))
    return 2 * np.sum(np.where(mask, unit, 0.0), axis=1)


def fit_log_glm(y: np.ndarray, design: np.ndarray, offset: np.ndarray, mask: np.ndarray,
                alpha: np.ndarray | None = None, *, tol: float = 1e-8,
                max_iter: int = 100) -> LogGLMFit:
    """Fit G log-link count GLMs of K observations and P parameters at once.

    Parameters
    ----------
    y
        (G, K) counts (non-negative).
    design
        (G, K, P) design matrices.
    offset
        (G, K) offsets (e.g. log area).
    mask
        (G, K) True for the observations of each fit (padding is False).
    alpha
        (G,) NB2 dispersion per fit (variance ``mu + alpha mu²``); None or 0: Poisson.
    tol, max_iter
        IRLS stops for a fit once its deviance changes by at most ``tol`` (absolute, as
        statsmodels' default ``atol=1e-8, rtol=0``) or after ``max_iter`` iterations.

    Returns
    -------
    LogGLMFit

    Notes
    -----
    Start ``mu = (y + mean(y)) / 2`` (statsmodels' ``starting_mu``), then per iteration the
    working weights ``w = mu / (1 + alpha mu)`` and response ``z = eta − offset + (y − mu) /
    mu`` (log link), ``beta = (X'WX)⁺ X'Wz`` (pseudo-inverse, statsmodels' WLS ``pinv``),
    ``mu = exp(X beta + offset)``. A fit that has converged keeps its estimates while the
    others iterate.

    Examples
    --------
    >>> import numpy as np
    >>> from metaniche.analyses._glm import fit_log_glm
    >>> x = np.arange(6.0)
    >>> y = np.array([[2.0, 3, 6, 7, 14, 20]])
    >>> design = np.stack([np.ones(6), x], axis=1)[None]
    >>> fit = fit_log_glm(y, design, np.zeros((1, 6)), np.ones((1, 6), bool))
    >>> round(float(fit.params[0, 1]), 4)     # log rate ratio per unit of x
    0.4476
    """
    y = np.asarray(y, dtype=np.float64)
    design = np.asarray(design, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    n_fits, _, n_params = design.shape
    alpha = (np.zeros(n_fits) if alpha is None
             else np.broadcast_to(np.asarray(alpha, dtype=np.float64), (n_fits,)).copy())
    y = np.where(mask, y, 0.0)
    design = np.where(mask[..., None], design, 0.0)
    offset = np.where(mask, offset, 0.0)
    n_obs = mask.sum(axis=1)
    mean = y.sum(axis=1) / np.maximum(n_obs, 1)
    mu = np.where(mask, (y + mean[:, None]) / 2, 1.0)
    eta = np.log(mu)
    params = np.zeros((n_fits, n_params))
    cov = np.zeros((n_fits, n_params, n_params))
    deviance = _deviance(y, mu, alpha, mask)   # at the start: the first step is compared to it
    active = np.ones(n_fits, dtype=bool)
    converged = np.zeros(n_fits, dtype=bool)
    for _ in range(max_iter):
        g = np.flatnonzero(active)
        if g.size == 0:
            break
        m = mu[g]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            weight = np.where(mask[g], m / (1 + alpha[g, None] * m), 0.0)
            z = eta[g] - offset[g] + (y[g] - m) / m
        xtw = np.swapaxes(design[g], 1, 2) * weight[:, None, :]
        normal = xtw @ design[g]
        finite = np.isfinite(normal).all(axis=(1, 2)) & np.isfinite(z).all(axis=1)
        if not finite.all():   # diverged (means overflowed): NaN estimates, stop that fit
            lost = g[~finite]
            params[lost], cov[lost], active[lost] = np.nan, np.nan, False
            g, xtw, normal, z = g[finite], xtw[finite], normal[finite], z[finite]
            if g.size == 0:
                break
        inverse = np.linalg.pinv(normal)
        beta = (inverse @ (xtw @ z[..., None]))[..., 0]
        params[g], cov[g] = beta, inverse
        eta_g = np.einsum("gkp,gp->gk", design[g], beta) + offset[g]
        with np.errstate(over="ignore"):
            mu_g = np.where(mask[g], np.exp(eta_g), 1.0)
        eta[g], mu[g] = eta_g, mu_g
        new = _deviance(y[g], mu_g, alpha[g], mask[g])
        done = np.abs(new - deviance[g]) <= tol
        deviance[g] = new
        converged[g[done]] = True
        active[g[done]] = False
    variance = mu * (1 + alpha[:, None] * mu)
    pearson = np.sum(np.where(mask, (y - mu) ** 2 / variance, 0.0), axis=1)
    return LogGLMFit(params, cov, mu, pearson, (n_obs - n_params).astype(np.float64),
                     converged)
