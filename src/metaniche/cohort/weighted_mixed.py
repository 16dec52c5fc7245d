"""Linear mixed model with a subject random intercept and known residual weights (REML), with
Satterthwaite degrees of freedom: ``lmerTest::lmer(y ~ x + (1 | subject), weights = w)``.

Model: y = Xβ + b_subject + ε, b ~ N(0, σ_b²), ε_i ~ N(0, σ² / w_i) (lme4's prior weights
scale the residual variance only). With γ = σ_b² / σ² the covariance is σ² H(γ),
H = W⁻¹ + γ ZZ', block-diagonal by subject; each block is inverted in closed form
(Sherman–Morrison): H_s⁻¹ = W_s − γ w_s w_s' / (1 + γ Σ w_s), log|H_s| = −Σ log w +
log(1 + γ Σ w_s). The REML criterion profiled over σ²,

    −2 ℓ_R(γ) = (n − p) log σ̂² + log|H| + log|X'H⁻¹X| + const,  σ̂² = r'H⁻¹r / (n − p),

is minimised over θ = sqrt(γ) ≥ 0 (lme4's relative standard deviation; the boundary θ = 0 is
allowed, a "singular fit") by bounded Brent search. β̂ is the GLS estimate, cov(β̂) =
σ̂² (X'H⁻¹X)⁻¹.

Tests of a contrast c'β use lmerTest's Satterthwaite approximation [2]_:
df = 2 (c'Cc)² / (g' A g), C = cov(β̂) as a function of the variance parameters
φ = (σ_b², σ²), g its gradient in φ and A = 2 · (Hessian of the REML deviance in φ)⁻¹ the
asymptotic covariance of φ̂ (both by central differences; the df is invariant to the
parametrisation). p = 2 · t_df.sf(|c'β̂| / sqrt(c'Cc)).

Cost: O(n p² + subjects) per criterion evaluation; about 60 evaluations per fit.

References
----------
.. [1] Bates D., Mächler M., Bolker B., Walker S. (2015) Fitting linear mixed-effects models
   using lme4. J Stat Softw 67(1).
.. [2] Kuznetsova A., Brockhoff P.B., Christensen R.H.B. (2017) lmerTest package: tests in
   linear mixed effects models. J Stat Softw 82(13).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

__all__ = ["WeightedMixedFit", "fit_weighted_mixed"]

#: Upper end of the search for θ = σ_b / σ.
_THETA_MAX = 1e3


@dataclass(frozen=True)
class WeightedMixedFit:
    """A REML fit of :func:`fit_weighted_mixed`.

    Attributes
    ----------
    coef, se, df, t, p
        (p,) fixed effects, their standard errors, Satterthwaite degrees of freedom, t values
        and two-sided p-values (NaN df/p where the variance is degenerate).
    cov
        (p, p) covariance of the fixed effects.
    sigma2, subject_var
        Residual variance σ² (for weight 1) and random-intercept variance σ_b².
    singular
        Whether σ_b² is on the boundary 0.
    """

    coef: np.ndarray
    se: np.ndarray
    df: np.ndarray
    t: np.ndarray
    p: np.ndarray
    cov: np.ndarray
    sigma2: float
    subject_var: float
    singular: bool


class _Blocks:
    """Per-subject sums that make H(γ)⁻¹ products O(n p²) (module docstring)."""

    def __init__(self, y: np.ndarray, x: np.ndarray, w: np.ndarray, subject: np.ndarray):
        _, index = np.unique(subject, return_inverse=True)
        self.n, self.p = x.shape
        n_s = index.max() + 1
        wx = w[:, None] * x
        self.xwx = x.T @ wx
        self.xwy = wx.T @ y
        self.ywy = float(y @ (w * y))
        self.sum_w = np.bincount(index, weights=w, minlength=n_s)
        self.sw_x = np.zeros((n_s, self.p))
        np.add.at(self.sw_x, index, wx)
        self.sw_y = np.bincount(index, weights=w * y, minlength=n_s)
        self.log_w = float(np.sum(np.log(w)))

    def products(self, gamma: float) -> tuple[np.ndarray, np.ndarray, float, float]:
        """X'H⁻¹X, X'H⁻¹y, y'H⁻¹y and log|H| at γ."""
        shrink = gamma / (1.0 + gamma * self.sum_w)
        xhx = self.xwx - (self.sw_x * shrink[:, None]).T @ self.sw_x
        xhy = self.xwy - (self.sw_x * shrink[:, None]).T @ self.sw_y
        yhy = self.ywy - float(np.sum(shrink * self.sw_y**2))
        log_det = -self.log_w + float(np.sum(np.log1p(gamma * self.sum_w)))
        return xhx, xhy, yhy, log_det

    def profile(self, gamma: float) -> tuple[float, np.ndarray, np.ndarray, float]:
        """Profiled −2 REML (no constant), β̂, X'H⁻¹X and RSS r'H⁻¹r at γ."""
        xhx, xhy, yhy, log_det = self.products(gamma)
        beta = np.linalg.solve(xhx, xhy)
        rss = max(yhy - float(beta @ xhy), 1e-300)
        dof = self.n - self.p
        _, log_xhx = np.linalg.slogdet(xhx)
        return dof * np.log(rss / dof) + log_det + log_xhx, beta, xhx, rss

    def deviance(self, subject_var: float, sigma2: float) -> float:
        """Full REML deviance in φ = (σ_b², σ²) (no constant)."""
        gamma = subject_var / sigma2
        xhx, xhy, yhy, log_det = self.products(gamma)
        beta = np.linalg.solve(xhx, xhy)
        rss = yhy - float(beta @ xhy)
        _, log_xhx = np.linalg.slogdet(xhx)
        return ((self.n - self.p) * np.log(sigma2) + log_det + log_xhx + rss / sigma2)

    def beta_cov(self, subject_var: float, sigma2: float) -> np.ndarray:
        """cov(β̂) = σ² (X'H⁻¹X)⁻¹ at φ."""
        xhx, _, _, _ = self.products(subject_var / sigma2)
        return sigma2 * np.linalg.inv(xhx)


def fit_weighted_mixed(y: np.ndarray, x: np.ndarray, subject: np.ndarray,
                       weights: np.ndarray | None = None) -> WeightedMixedFit:
    """REML fit of ``y ~ x + (1 | subject)`` with residual weights (module docstring).

    Parameters
    ----------
    y
        (n,) responses.
    x
        (n, p) fixed-effects design (include the intercept column), full column rank.
    subject
        (n,) subject labels of the random intercept.
    weights
        (n,) positive prior weights (residual variance σ² / w); default 1. Their scale does
        not change β̂, its covariance or the tests.

    Returns
    -------
    WeightedMixedFit
    """
    y = np.asarray(y, np.float64)
    x = np.asarray(x, np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)
    if np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be positive and finite.")
    blocks = _Blocks(y, x, w, np.asarray(subject))

    def criterion(theta: float) -> float:
        return blocks.profile(theta * theta)[0]

    search = optimize.minimize_scalar(criterion, bounds=(0.0, _THETA_MAX), method="bounded",
                                      options={"xatol": 1e-10, "maxiter": 500})
    theta = float(search.x)
    if criterion(0.0) <= criterion(theta):
        theta = 0.0
    _, beta, xhx, rss = blocks.profile(theta * theta)
    sigma2 = rss / (blocks.n - blocks.p)
    subject_var = theta * theta * sigma2
    cov = sigma2 * np.linalg.inv(xhx)
    se = np.sqrt(np.diag(cov))
    df = _satterthwaite(blocks, subject_var, sigma2, singular=theta == 0.0)
    t = beta / se
    with np.errstate(invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(t), df)
    return WeightedMixedFit(beta, se, df, t, p, cov, float(sigma2), float(subject_var),
                            theta == 0.0)


def _satterthwaite(blocks: _Blocks, subject_var: float, sigma2: float,
                   singular: bool) -> np.ndarray:
    """Satterthwaite df of every coefficient (lmerTest; module docstring).

    On the boundary σ_b² = 0 the variance parameters reduce to σ² alone (as lmerTest drops
    a zero variance from the derivatives).
    """
    phi = np.array([subject_var, sigma2])
    free = [1] if singular else [0, 1]
    steps = 1e-4 * np.maximum(phi, 1e-8 * sigma2)

    def shifted(*moves: tuple[int, float]) -> np.ndarray:
        point = phi.copy()
        for index, sign in moves:
            point[index] += sign * steps[index]
        return point

    hessian = np.zeros((len(free), len(free)))
    for a, i in enumerate(free):
        for b, j in enumerate(free):
            if i == j:
                hessian[a, b] = (blocks.deviance(*shifted((i, 1)))
                                 - 2 * blocks.deviance(*phi)
                                 + blocks.deviance(*shifted((i, -1)))) / steps[i] ** 2
            else:
                hessian[a, b] = (blocks.deviance(*shifted((i, 1), (j, 1)))
                                 - blocks.deviance(*shifted((i, 1), (j, -1)))
                                 - blocks.deviance(*shifted((i, -1), (j, 1)))
                                 + blocks.deviance(*shifted((i, -1), (j, -1)))) / (
                    4 * steps[i] * steps[j])
    try:
        a_cov = 2 * np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return np.full(blocks.p, np.nan)
    gradient = np.zeros((len(free), blocks.p))
    for a, i in enumerate(free):
        upper = np.diag(blocks.beta_cov(*shifted((i, 1))))
        lower = np.diag(blocks.beta_cov(*shifted((i, -1))))
        gradient[a] = (upper - lower) / (2 * steps[i])
    variance = np.diag(blocks.beta_cov(*phi))
    spread = np.einsum("ak,ab,bk->k", gradient, a_cov, gradient)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = 2 * variance**2 / spread
    return np.where(np.isfinite(df) & (df > 0), df, np.nan)
