"""The cohort step: every outcome analysis of the per-sample features, as one pure function."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metaniche.cohort._qvalues import add_q_values
from metaniche.cohort.count_weights import pair_count_weights
from metaniche.cohort.curves import curve_group_table
from metaniche.cohort.families import FAMILIES, feature_families
from metaniche.cohort.gradient_shape import gradient_shape_table, pooled_group_gradients
from metaniche.cohort.groups import compare_groups
from metaniche.cohort.matrix import (
    PATIENT,
    CohortData,
    ContrastUnavailable,
    feature_matrix,
    feature_patients,
    join_clinical,
    patient_means,
    response_contrast,
)
from metaniche.cohort.prediction import nested_cv_prediction
from metaniche.cohort.survival import cox_table, kaplan_meier_table
from metaniche.cohort.timepoints import page_trend_table
from metaniche.cohort.treatment import feature_region, paired_changes, treatment_table
from metaniche.config import Config
from metaniche.errors import ConfigError, InputError
from metaniche.io.clinical import Groups, condition_groups

__all__ = ["ANALYSES", "ASSOCIATION_COLUMNS", "CohortResult", "analyse_cohort"]

#: Analyses that ``[cohort] analyses`` may name.
ANALYSES = ("response", "survival", "treatment", "prediction")
#: Leading columns of the association table (DESIGN.md), then the analysis-specific ones.
ASSOCIATION_COLUMNS = ["feature", "outcome", "test", "statistic", "effect", "ci_low", "ci_high",
                       "p", "q", "family", "effect_name", "region", "unit", "n"]
#: Outcome of the rows comparing the groups of ``[clinical] condition``.
CONDITION = "condition"
#: Every ``outcome`` of the association table, in report order.
OUTCOMES = ("response", CONDITION, "os", "treatment", "treatment_x_response",
            "timepoint_trend")


@dataclass
class CohortResult:
    """Everything the cohort step computes.

    Attributes
    ----------
    association : pandas.DataFrame
        One row per feature × outcome × test (see :func:`analyse_cohort`).
    prediction : dict
        Nested cross-validation result (see
        :func:`metaniche.cohort.prediction.nested_cv_prediction`) plus
        ``n_sparse_features``, the features left out for being finite in fewer than
        ``[cohort] min_non_missing`` of the units; empty when not run.
    km_curves : pandas.DataFrame
        Kaplan–Meier curves of the median splits (see
        :func:`metaniche.cohort.survival.kaplan_meier_table`).
    matrix : pandas.DataFrame
        The analysed unit × feature matrix (patients, or samples with one per patient).
    dropped_features : pandas.DataFrame
        ``feature``, ``reason`` of the columns the outcome-free filters removed.
    skipped : dict of str to str
        Analysis → the reason it was not run.
    warnings : list of str
        Non-fatal problems (clinical rows without features, …).
    unit : str
        ``patient`` when some patient has several images (features averaged), else
        ``sample``.
    pooled_gradients : pandas.DataFrame
        The pooled gradient of every response / condition group (``outcome``, then
        :func:`metaniche.cohort.gradient_shape.pooled_group_gradients`' columns); empty
        without gradients.
    """

    association: pd.DataFrame
    prediction: dict
    km_curves: pd.DataFrame
    matrix: pd.DataFrame
    dropped_features: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unit: str = "sample"
    pooled_gradients: pd.DataFrame = field(default_factory=pd.DataFrame)


def analyse_cohort(features: pd.DataFrame, clinical: pd.DataFrame,
                   config: Config, ripley_curves: pd.DataFrame | None = None,
                   gradients: pd.DataFrame | None = None) -> CohortResult:
    """Associate per-sample spatial features with response, condition, survival, treatment.

    Pure: no I/O. Steps: the outcome-free feature filters of
    :func:`metaniche.cohort.matrix.feature_matrix`; the clinical join (by sample, or by
    patient when the clinical table has no ``sample`` column: through the features'
    ``patient`` column, the cell table's ``[columns] patient``); the patient of each sample
    by :func:`metaniche.cohort.matrix.sample_patients`; when a time-point column exists,
    response, condition, survival and prediction use the ``pre`` samples only; when a
    patient has several images, features are averaged per patient (over the images where
    the feature is finite) for the rank tests, Cox models and prediction, and a mixed model
    with a patient random intercept is fitted on the images as well. Response and
    ``[clinical] condition`` groups go through the one group comparison,
    :func:`metaniche.cohort.groups.compare_groups` (the response as its two-group case);
    the condition analysis runs whenever ``[clinical] condition`` names a column. Each test
    uses the units where the feature is finite (``n``); the prediction model leaves out
    features finite in fewer than ``[cohort] min_non_missing`` of the units.

    Parameters
    ----------
    features
        One row per sample: ``sample``, optionally ``patient`` (not a feature), the named
        features (numeric; string columns with few levels become indicators).
    clinical
        Clinical table (:func:`metaniche.io.read_clinical`): ``sample`` or the patient column,
        and any of the response, survival, time-point and covariate columns named in
        ``config.clinical``.
    config
        ``config.clinical`` (column names, responder labels, pre/post labels, covariates) and
        ``config.cohort`` (analyses, filters, folds, bootstrap, seed).
    ripley_curves
        Optional long ripley table of all samples (``sample``, ``type_a``, ``type_b``,
        ``r_um``, ``l_minus_r_um``): each pair's whole L(r) − r curve is compared across the
        response and condition groups (test ``curve_permutation``, feature
        ``ripley_l_curve.<a>.<b>``; :func:`metaniche.cohort.curves.curve_group_table`, unit
        the patient when patients have several images).
    gradients
        Optional gradient table of all samples (``tables/gradients``): each cell type's
        gradient is pooled per response and condition group, and the shape of the gradients
        is compared across the groups (test ``gradient_shape_permutation``, feature
        ``gradient_shape.<type>``; :mod:`metaniche.cohort.gradient_shape`), with
        ``[cohort] curve_permutations`` permutations.

    Returns
    -------
    CohortResult
        ``association`` columns: ``feature``, ``outcome`` (``response``, ``condition``,
        ``os``, ``treatment``, ``treatment_x_response``), ``test`` (``mann_whitney``,
        ``kruskal_wallis``, ``mixed_model``, ``mixed_model_omnibus``, ``cox``, ``logrank``,
        ``wilcoxon_signed_rank``, ``change_mann_whitney``), ``statistic``, ``effect``,
        ``ci_low``, ``ci_high``, ``p``, ``q`` (Benjamini–Hochberg over the features within
        each outcome × test × family, via ``scipy.stats.false_discovery_control``),
        ``family`` (``primary`` for the features matching ``[cohort] primary_features``,
        else ``exploratory``; :func:`metaniche.cohort.families.feature_families`),
        ``effect_name``, ``region`` (compartment parsed from the feature name), ``unit``
        (``sample``, ``patient`` means, or ``image+patient random effect`` for the mixed
        models), ``n`` (units or images tested), then test-specific columns
        (``contrast``, ``cliffs_delta``, ``fold_change``, ``group_n``, ``df``, ``ph_p``,
        ``n_events``, ``threshold``, …). Rows are sorted by family (primary first), outcome,
        test and p. Condition rows carry ``contrast``: ``"<later> vs <earlier>"`` for a
        pair of groups (reference first, then sorted), the groups joined by `` / `` for the
        omnibus tests. Response rows (and
        ``treatment_x_response`` rows) carry ``contrast`` = ``"<level> vs <reference>"``
        (:func:`metaniche.cohort.matrix.response_contrast`: the ``[clinical]
        responder_values`` labels against the rest, else a recognised responder label
        against the other, else the sorted second label against the first); their effects
        are for ``level`` relative to ``reference`` (the columns named ``*_responder`` /
        ``*_non_responder`` hold ``level`` / ``reference``). ``prediction["contrast"]``
        names the predicted level the same way. A response column that is not two groups
        (one label, or more than two without ``responder_values``) skips the response and
        prediction analyses with the reason in ``skipped`` (a condition column with one
        label skips ``condition``).

    Raises
    ------
    InputError
        Unmatched sample or patient ids, unusable outcome columns, ``responder_values`` that
        match no label, a ``[clinical] condition`` column that is absent or differs between
        a patient's images, a ``condition_reference`` that is not one of its labels, or no
        analysis possible (the reasons of every skipped analysis are
        named).
    ConfigError
        ``[cohort] analyses`` names an unknown analysis.
    """
    params = config.cohort
    columns = config.clinical
    unknown = sorted(set(params.analyses) - set(ANALYSES))
    if unknown:
        raise ConfigError(f"[cohort] analyses: unknown {unknown}; choose from {list(ANALYSES)}.")
    if not 0 < params.confidence < 1:
        raise ConfigError(f"[cohort] confidence must lie strictly between 0 and 1; got "
                          f"{params.confidence}.")
    patients = feature_patients(features)
    exclude: tuple[str, ...] = ()
    if columns.patient in features.columns and columns.patient != PATIENT:
        # a features table that names its patient column like the clinical table
        exclude = (columns.patient,)
        if patients is None:
            patients = feature_patients(features.rename(columns={columns.patient: PATIENT}))
    matrix = feature_matrix(features, params, exclude=exclude)
    if matrix.values.shape[1] == 0:
        raise InputError("no usable numeric feature in the features table (all dropped as "
                         "missing, constant or non-numeric); check features.parquet.")
    data = join_clinical(matrix.values, clinical, columns, patients)
    skipped: dict[str, str] = {}
    warnings = list(data.warnings)
    baseline = _baseline_samples(data, columns.timepoint, columns.pre, skipped)
    images = data.features.loc[baseline]
    info = data.clinical.loc[baseline]
    several = bool(info["patient"].duplicated().any())
    unit = "patient" if several else "sample"
    table = patient_means(images, info["patient"]) if several else images
    parts: list[pd.DataFrame] = []
    curves = pd.DataFrame()
    prediction: dict = {}
    pooled_gradients: list[pd.DataFrame] = []

    responder = None
    contrast = None
    no_response = f"the clinical table has no '{columns.response}' column."
    if columns.response in info.columns:
        try:
            contrast = response_contrast(info[columns.response], columns)
        except ContrastUnavailable as err:
            no_response = str(err)
        else:
            labels = contrast.labels
            responder = _per_unit(labels, info["patient"], several, columns.response)
    wanted = params.analyses
    if "response" in wanted:
        if contrast is None:
            skipped["response"] = no_response
        else:
            parts.append(_compare(table, images, contrast.groups(), info["patient"], several,
                                  unit, columns.response, params).assign(outcome="response"))
            if ripley_curves is not None and params.curve_permutations:
                parts.append(_curve_rows(ripley_curves, contrast.labels, info["patient"], params,
                                         "response"))
            shape, pooled = _gradient_rows(gradients, contrast.groups().labels,
                                           info["patient"], params, "response")
            if not shape.empty:
                parts.append(shape)
            pooled_gradients.append(pooled)
    if columns.condition:
        if columns.condition not in info.columns:
            raise InputError(f"[clinical] condition names '{columns.condition}', which is not "
                             "a column of the clinical table; add it or fix the name.")
        try:
            groups = condition_groups(info[columns.condition], columns.condition,
                                      columns.condition_reference)
        except ContrastUnavailable as err:
            skipped[CONDITION] = str(err)
        else:
            parts.append(_compare(table, images, groups, info["patient"], several, unit,
                                  columns.condition, params).assign(outcome=CONDITION))
            if ripley_curves is not None and params.curve_permutations:
                parts.append(_curve_rows(ripley_curves, groups.labels, info["patient"], params,
                                         CONDITION))
            shape, pooled = _gradient_rows(gradients, groups.labels, info["patient"], params,
                                           CONDITION)
            if not shape.empty:
                parts.append(shape)
            pooled_gradients.append(pooled)
    if "survival" in wanted:
        reason = _survival_reason(info, columns, params.min_events, several)
        if reason:
            skipped["survival"] = reason
        else:
            time = _per_unit(pd.to_numeric(info[columns.os_time]), info["patient"], several,
                             columns.os_time)
            event = _per_unit(pd.to_numeric(info[columns.os_event]), info["patient"], several,
                              columns.os_event)
            covariates = _covariates(info, columns.covariates, several)
            parts.append(cox_table(table, time, event, covariates, params.min_events,
                                   params.confidence).assign(outcome="os", unit=unit))
            logrank, curves = kaplan_meier_table(table, time, event, params.confidence)
            parts.append(logrank.assign(outcome="os", unit=unit))
    if "treatment" in wanted:
        if columns.timepoint not in data.clinical.columns:
            skipped["treatment"] = f"the clinical table has no '{columns.timepoint}' column."
        else:
            before, after = paired_changes(data.features, data.clinical["patient"],
                                           data.clinical[columns.timepoint], columns.pre,
                                           columns.post)
            min_pairs = 2 * params.min_group
            if len(before) < min_pairs:
                skipped["treatment"] = (f"only {len(before)} patients have both a "
                                        f"'{columns.pre}' and a '{columns.post}' sample; need "
                                        f"{min_pairs}.")
            else:
                per_patient = None
                if responder is not None:
                    per_patient = (responder if several else
                                   pd.Series(responder.to_numpy(),
                                             index=info["patient"].to_numpy()))
                elif columns.response in info.columns:
                    warnings.append(f"treatment x response not tested: {no_response}")
                part = treatment_table(before, after, per_patient, min_pairs,
                                       params.min_group, params.confidence)
                if contrast is not None:
                    interaction = part["outcome"] == "treatment_x_response"
                    part["contrast"] = pd.Series(contrast.name, index=part.index).where(interaction)
                parts.append(part.assign(unit="patient"))
    if len(columns.timepoint_order) >= 3:
        parts.append(_trend_rows(data, columns, params.min_group))
    if "prediction" in wanted:
        if contrast is None:
            skipped["prediction"] = no_response
        elif (smallest := int(min((np.asarray(responder) == 1).sum(),
                                    (np.asarray(responder) == 0).sum()))) < max(
                params.min_group, 2):
            # Cross-validated AUC on a handful of units is noise; say so instead.
            skipped["prediction"] = (f"the smaller response group has {smallest} units, fewer "
                                     f"than [cohort] min_group = {params.min_group}.")
        else:
            try:
                finite = table.notna().mean() >= params.min_non_missing
                prediction = nested_cv_prediction(table.loc[:, finite], responder, params)
                prediction["n_sparse_features"] = int((~finite).sum())
                prediction["unit"] = unit
                prediction["contrast"] = contrast.name
            except ValueError as err:
                skipped["prediction"] = str(err)
    if not parts and not prediction:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise InputError(f"no cohort analysis could run ({reasons or 'none requested'}); "
                         "add the outcome columns to the clinical table or set [clinical] "
                         "column names.")
    association = _finish(parts, params.primary_features)
    pooled = [p for p in pooled_gradients if not p.empty]
    return CohortResult(association, prediction, curves, table, matrix.dropped, skipped,
                        warnings, unit,
                        pd.concat(pooled, ignore_index=True) if pooled else pd.DataFrame())


def _compare(table: pd.DataFrame, images: pd.DataFrame, groups: Groups, patient: pd.Series,
             several: bool, unit: str, column: str, params) -> pd.DataFrame:
    """:func:`compare_groups` on the analysed units (and images, when a patient has several)."""
    per_unit = Groups(_per_unit(groups.labels, patient, several, column), groups.levels)
    if not several:
        return compare_groups(table, per_unit, unit, min_group=params.min_group,
                              confidence=params.confidence, n_bootstrap=params.n_bootstrap,
                              seed=params.seed)
    weights = (pair_count_weights(images) if params.mixed_model_weights == "counts" else None)
    return compare_groups(table, per_unit, unit, images, groups, patient, params.min_group,
                          params.confidence, image_weights=weights,
                          n_bootstrap=params.n_bootstrap, seed=params.seed)


def _trend_rows(data: CohortData, columns, min_group: int) -> pd.DataFrame:
    """Page's trend test over ``[clinical] timepoint_order`` (:func:`page_trend_table`)."""
    if columns.timepoint not in data.clinical.columns:
        raise InputError(f"[clinical] timepoint_order is set but the clinical table has no "
                         f"'{columns.timepoint}' column; add it or set [clinical] timepoint.")
    labels = data.clinical[columns.timepoint].astype(str)
    rank = labels.map({label: float(i) for i, label in enumerate(columns.timepoint_order)})
    if rank.notna().sum() == 0:
        raise InputError(f"no value of clinical column '{columns.timepoint}' is in [clinical] "
                         f"timepoint_order {list(columns.timepoint_order)} (values: "
                         f"{sorted(labels.unique())[:6]}); list its labels in time order.")
    return page_trend_table(data.features, data.clinical["patient"], rank, min_group).assign(
        outcome="timepoint_trend", unit="patient")


def _curve_rows(curves: pd.DataFrame, labels: pd.Series, patient: pd.Series, params,
                outcome: str) -> pd.DataFrame:
    """Whole-curve tests of the analysed samples (:func:`curve_group_table`)."""
    used = curves[curves["sample"].isin(labels.index)]
    return curve_group_table(used, labels, patient, n_permutations=params.curve_permutations,
                             seed=params.seed, min_group=params.min_group).assign(
        outcome=outcome)


def _gradient_rows(gradients: pd.DataFrame | None, labels: pd.Series, patient: pd.Series,
                   params, outcome: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shape test and pooled gradients of the analysed samples' groups
    (:mod:`metaniche.cohort.gradient_shape`); empty without gradients."""
    if gradients is None or gradients.empty:
        return pd.DataFrame(), pd.DataFrame()
    used = gradients[gradients["sample"].astype(str).isin(labels.index.astype(str))]
    pooled = pooled_group_gradients(used, labels)
    if not pooled.empty:
        pooled.insert(0, "outcome", outcome)
    if not params.curve_permutations:
        return pd.DataFrame(), pooled
    shape = gradient_shape_table(used, labels, patient, n_permutations=params.curve_permutations,
                                 seed=params.seed, min_group=params.min_group)
    return (shape.assign(outcome=outcome) if not shape.empty else shape), pooled


def _baseline_samples(data: CohortData, timepoint: str, pre: str,
                      skipped: dict[str, str]) -> pd.Index:
    """Samples used for response/survival/prediction: the ``pre`` ones when time points exist."""
    if timepoint not in data.clinical.columns:
        return data.clinical.index
    is_pre = data.clinical[timepoint].astype(str) == pre
    if not is_pre.any():
        raise InputError(f"clinical column '{timepoint}' has no '{pre}' sample (values: "
                         f"{sorted(data.clinical[timepoint].astype(str).unique())[:6]}); set "
                         "[clinical] pre/post to its labels.")
    return data.clinical.index[is_pre.to_numpy()]


def _per_unit(values: pd.Series, patient: pd.Series, several: bool, name: str) -> pd.Series:
    """One value per analysed unit; with several images per patient they must agree."""
    if not several:
        return values
    grouped = values.groupby(patient.to_numpy(), sort=False)
    conflict = grouped.nunique(dropna=True) > 1
    if conflict.any():
        raise InputError(f"clinical column '{name}' differs between the samples of patient "
                         f"'{conflict[conflict].index[0]}'; give one value per patient.")
    first = grouped.first()
    first.index.name = "patient"
    return first


def _survival_reason(info: pd.DataFrame, columns, min_events: int, several: bool) -> str:
    """Why the survival analysis cannot run ('' when it can)."""
    if columns.os_time not in info.columns:
        return f"the clinical table has no '{columns.os_time}' column."
    if columns.os_event not in info.columns:
        raise InputError(f"clinical table has '{columns.os_time}' but no event column "
                         f"'{columns.os_event}'; add it (1 = event, 0 = censored) or set "
                         "[clinical] os_event.")
    time = pd.to_numeric(info[columns.os_time], errors="coerce")
    event = pd.to_numeric(info[columns.os_event], errors="coerce")
    bad_time = info[columns.os_time].notna() & (time.isna() | (time <= 0))
    if bad_time.any():
        raise InputError(f"clinical column '{columns.os_time}' must be a positive number; "
                         f"sample '{bad_time[bad_time].index[0]}' has "
                         f"{info.loc[bad_time, columns.os_time].iloc[0]!r}.")
    bad_event = info[columns.os_event].notna() & ~event.isin([0, 1])
    if bad_event.any():
        raise InputError(f"clinical column '{columns.os_event}' must be 1 (event) or 0 "
                         f"(censored); sample '{bad_event[bad_event].index[0]}' has "
                         f"{info.loc[bad_event, columns.os_event].iloc[0]!r}.")
    known = time.notna() & event.notna()
    events = event[known].groupby(info.loc[known, "patient"]).first() if several else event
    n_events = int(events[events.notna()].sum())
    if n_events < min_events:
        return (f"only {n_events} events in '{columns.os_event}'; the Cox models need at least "
                f"{min_events} ([cohort] min_events).")
    return ""


def _covariates(info: pd.DataFrame, names: tuple[str, ...], several: bool) -> pd.DataFrame:
    missing = [name for name in names if name not in info.columns]
    if missing:
        raise InputError(f"covariate column(s) {missing} not in the clinical table; add them "
                         "or fix [clinical] covariates.")
    table = info[list(names)].apply(pd.to_numeric, errors="coerce")
    for name in names:
        if table[name].isna().all() and info[name].notna().any():
            raise InputError(f"covariate '{name}' is not numeric; encode it as numbers.")
    if several:
        table = table.groupby(info["patient"].to_numpy()).mean()
    return table


def _finish(parts: list[pd.DataFrame], primary: tuple[str, ...]) -> pd.DataFrame:
    """Concatenate the per-test tables, add family, q-values and region, order rows/columns."""
    table = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    for name in ("statistic", "effect", "ci_low", "ci_high", "p"):
        if name not in table.columns:
            table[name] = np.nan
    table["family"] = feature_families(table["feature"], primary)
    add_q_values(table, ["outcome", "test", "family"])
    table["region"] = table["feature"].map(feature_region)
    rest = [c for c in table.columns if c not in ASSOCIATION_COLUMNS]
    table = table[ASSOCIATION_COLUMNS + rest]
    ranks = {"family": {name: i for i, name in enumerate(FAMILIES)},
             "outcome": {name: i for i, name in enumerate(OUTCOMES)}}
    table = table.sort_values(["family", "outcome", "test", "p"],
                              key=lambda s: s.map(ranks[s.name]) if s.name in ranks else s,
                              na_position="last", kind="stable")
    return table.reset_index(drop=True)
