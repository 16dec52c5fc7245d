"""Nested cross-validated prediction of response, spatial features vs a composition baseline.

Both models are the same penalised logistic regression (median imputation, standardisation,
elastic-net penalty with ``l1_ratio``; the penalty strength C is chosen by an inner stratified
cross-validation on the training fold only, maximising AUC). Every fitted step — imputation
medians, scaling, C — sees only the training fold, so nothing about a test fold leaks into the
model that scores it. The spatial model uses every feature; the baseline only the overall
composition ``proportion.all.*``; both are scored on the same outer folds.

References
----------
1. Varma S, Simon R. Bias in error estimation when using cross-validation for model
   selection. BMC Bioinformatics. 2006;7:91.
2. Efron B, Tibshirani RJ. An Introduction to the Bootstrap. Chapman & Hall; 1993
   (percentile intervals).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from metaniche.config import CohortParams

__all__ = ["BASELINE_PREFIX", "C_GRID", "nested_cv_prediction"]

#: Feature-name prefix of the non-spatial baseline (overall composition).
BASELINE_PREFIX = "proportion.all."
#: Inverse penalty strengths searched by the inner cross-validation.
C_GRID = tuple(float(c) for c in np.logspace(-3, 1, 9))
#: C used when a training fold is too small for an inner split (one unit of a class).
DEFAULT_C = 1.0


def nested_cv_prediction(values: pd.DataFrame, responder: pd.Series,
                         params: CohortParams) -> dict:
    """Nested cross-validated AUC of the spatial model and the composition baseline.

    Parameters
    ----------
    values
        Units (patients, or samples with one per patient) × features; NaN allowed.
    responder
        1.0 / 0.0 per unit; NaN units are left out.
    params
        ``n_folds`` outer stratified folds (capped at the smaller class size),
        ``n_inner_folds``, ``n_repeats`` (independent outer splits), ``l1_ratio``,
        ``n_bootstrap``, ``confidence`` and ``seed``.

    Returns
    -------
    dict
        ``unit_count``, ``n_responders``, ``n_folds``, ``n_repeats``, ``seed``, ``model``
        (description), ``spatial`` and ``baseline`` (each ``auc`` — the AUC of the
        out-of-fold score averaged over repeats; a unit's score is its linear predictor
        standardised by the training fold's mean and SD —, ``ci_low``/``ci_high`` (percentile
        bootstrap over units), ``auc_per_repeat``, ``n_features``, ``features``,
        ``chosen_c`` per fold; ``baseline`` is None when no ``proportion.all.*`` feature
        exists), ``difference`` (spatial − baseline AUC with a paired bootstrap interval)
        and ``predictions`` (per unit: ``unit``, ``responder``, ``spatial``, ``baseline``
        scores; higher = more likely responder).

    Raises
    ------
    ValueError
        Fewer than two units in a class.

    Notes
    -----
    Seeds: ``SeedSequence(seed).spawn(n_repeats + 1)`` gives one stream per repeat (outer and
    inner splits) and one for the bootstrap, so results are deterministic.
    Cost: repeats × folds × (|C grid| × inner folds + 1) logistic fits per model.
    """
    known = responder.reindex(values.index).notna().to_numpy()
    x_all = values[known]
    y = responder.reindex(values.index).to_numpy()[known].astype(int)
    smallest = int(min((y == 1).sum(), (y == 0).sum()))
    if smallest < 2:
        raise ValueError(f"prediction needs at least 2 responders and 2 non-responders; got "
                         f"{int((y == 1).sum())} and {int((y == 0).sum())}.")
    n_folds = min(params.n_folds, smallest)
    streams = np.random.SeedSequence(params.seed).spawn(params.n_repeats + 1)
    feature_sets = {"spatial": list(x_all.columns),
                    "baseline": [c for c in x_all.columns if c.startswith(BASELINE_PREFIX)]}
    scores = {name: np.zeros((params.n_repeats, len(y))) for name in feature_sets}
    chosen: dict[str, list[float]] = {name: [] for name in feature_sets}
    for repeat, stream in enumerate(streams[:-1]):
        outer_seed, inner_seed = (int(s) for s in stream.generate_state(2))
        for train, test in _outer_folds(y, n_folds, outer_seed):
            for name, columns in feature_sets.items():
                if not columns:
                    continue
                model = _fit(x_all[columns].to_numpy()[train], y[train], params, inner_seed)
                scores[name][repeat, test] = model.score(x_all[columns].to_numpy()[test])
                chosen[name].append(model.c)
    rng = np.random.default_rng(streams[-1])
    boot = rng.integers(0, len(y), size=(params.n_bootstrap, len(y)))
    result: dict[str, object] = {
              "unit_count": len(y), "n_responders": int(y.sum()), "n_folds": n_folds,
              "n_repeats": params.n_repeats, "seed": params.seed,
              "model": (f"logistic regression, elastic net l1_ratio={params.l1_ratio}, C by "
                        f"{params.n_inner_folds}-fold inner CV (AUC) over {len(C_GRID)} values "
                        "from 1e-3 to 1e1; median imputation and standardisation per fold")}
    boot_auc: dict[str, np.ndarray] = {}
    mean_score: dict[str, np.ndarray] = {}
    auc: dict[str, float] = {}
    for name, columns in feature_sets.items():
        if not columns:
            result[name] = None
            continue
        mean_score[name] = scores[name].mean(axis=0)
        boot_auc[name] = _bootstrap_auc(mean_score[name], y, boot)
        low, high = _percentiles(boot_auc[name], params.confidence)
        auc[name] = _auc(mean_score[name], y)
        result[name] = {
            "auc": auc[name], "ci_low": low, "ci_high": high,
            "auc_per_repeat": [_auc(row, y) for row in scores[name]],
            "n_features": len(columns), "features": columns, "chosen_c": chosen[name]}
    if "baseline" in auc:
        diff = boot_auc["spatial"] - boot_auc["baseline"]
        low, high = _percentiles(diff, params.confidence)
        result["difference"] = {"auc": auc["spatial"] - auc["baseline"],
                                "ci_low": low, "ci_high": high}
    else:
        result["difference"] = None
    result["predictions"] = [
        {"unit": str(unit), "responder": int(label), "spatial": float(mean_score["spatial"][i]),
         "baseline": float(mean_score["baseline"][i]) if "baseline" in mean_score else None}
        for i, (unit, label) in enumerate(zip(x_all.index, y, strict=True))]
    return result


def _outer_folds(y: np.ndarray, n_folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def _fit(x: np.ndarray, y: np.ndarray, params: CohortParams, seed: int) -> _FoldModel:
    """Model fitted on one training fold; C chosen by inner stratified CV (mean fold AUC).

    The first C of the grid with the highest mean inner AUC wins; :data:`DEFAULT_C` when a
    class has a single training unit.

    Imputation medians and scaling are re-estimated inside every inner training split, so
    the inner validation data never shape the model that scores them either.
    """
    from sklearn.model_selection import StratifiedKFold

    inner = min(params.n_inner_folds, int(min((y == 1).sum(), (y == 0).sum())))
    if inner < 2:  # a class with one training unit: no inner split possible
        return _FoldModel(DEFAULT_C, params.l1_ratio).fit(x, y)
    splits = list(StratifiedKFold(inner, shuffle=True, random_state=seed).split(x, y))
    mean_auc = np.zeros(len(C_GRID))
    for train, valid in splits:
        for k, c in enumerate(C_GRID):
            model = _FoldModel(c, params.l1_ratio).fit(x[train], y[train])
            mean_auc[k] += _auc(model.predict(x[valid]), y[valid]) / len(splits)
    best = C_GRID[int(np.argmax(mean_auc))]
    return _FoldModel(best, params.l1_ratio).fit(x, y)


class _FoldModel:
    """Median imputation, standardisation and penalised logistic regression of one fit."""

    def __init__(self, c: float, l1_ratio: float) -> None:
        self.c = c
        self.l1_ratio = l1_ratio

    def fit(self, x: np.ndarray, y: np.ndarray) -> _FoldModel:
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.median = np.nanmedian(x, axis=0)
        self.median[~np.isfinite(self.median)] = 0.0
        filled = np.where(np.isfinite(x), x, self.median)
        self.mean = filled.mean(axis=0)
        self.sd = filled.std(axis=0)
        self.sd[self.sd == 0] = 1.0
        # lbfgs is fast for the usual wide cohort matrix (features >> units) under a ridge
        # penalty; newton-cholesky would factorise a features × features Hessian.
        solver = {0.0: "lbfgs", 1.0: "liblinear"}.get(self.l1_ratio, "saga")
        self.model = LogisticRegression(C=self.c, l1_ratio=self.l1_ratio, solver=solver,
                                        max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit((filled - self.mean) / self.sd, y)
        train = self.predict(x)
        self.centre = float(train.mean())
        self.spread = float(train.std()) or 1.0
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Linear predictor (log-odds of response)."""
        filled = np.where(np.isfinite(x), x, self.median)
        return self.model.decision_function((filled - self.mean) / self.sd)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Linear predictor standardised by its mean and SD over the training fold.

        Puts every fold on one scale whatever penalty it chose (a strong penalty shrinks
        the log-odds toward the training prevalence), using training data only, so that
        out-of-fold scores from different folds can be pooled into one AUC.
        """
        return (self.predict(x) - self.centre) / self.spread


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """AUC by the Mann–Whitney identity (ties ½)."""
    ranks = stats.rankdata(score)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bootstrap_auc(score: np.ndarray, y: np.ndarray, boot: np.ndarray) -> np.ndarray:
    """AUC of every bootstrap resample (rows of ``boot``); NaN when a class is absent."""
    labels = y[boot]
    ranks = stats.rankdata(score[boot], axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    rank_sum = (ranks * labels).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
