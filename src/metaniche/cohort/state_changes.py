"""Contact effects across a cohort: does proximity change state in patients, not one image?

Input: the per-sample ``tables/state_changes`` of :mod:`metaniche.analyses.contact` (one place-
adjusted contact effect per sample and (cell type, marker, partner type, exposure)). Output:
``cohort/state_changes.parquet``, per pair

- term ``contact``: the cohort's mean contact effect, a linear mixed model of the per-sample
  effects ``β_s = μ + u_patient + e_s`` (REML; ``u`` a patient random intercept, ``e`` the
  sample's own deviation, i.e. the sample random intercept of a two-stage model, which also
  absorbs the sample's estimation error) with statsmodels ``MixedLM``. ``effect`` = μ̂ (units of
  the per-sample effect), Wald t on patients − 1 degrees of freedom (nlme's rule for an
  intercept, as :func:`metaniche.cohort.mixed.mixed_model_groups` uses for between-patient
  terms; Pinheiro & Bates 2000 §2.4.2). When no patient has two samples the two variance
  components cannot be told apart and the model is the one-sample t-test of the effects
  (``model`` = ``t_test``, df = samples − 1). Samples are weighted equally (a random-effects
  summary; precision weights would let one large image dominate).
- term ``contact:response`` (when the clinical table has a usable response column): the
  difference of the contact effect between response groups, ``z ~ group + (1 | patient)``
  with :func:`metaniche.cohort.mixed.mixed_model_groups` (the effects z-scored over samples,
  so ``effect`` is in SDs of the per-sample effects, ``effect_name`` = ``difference_sd``).
  When no patient has two samples with an effect, the patient intercept cannot be told
  apart from the residual and the model is the fixed-effect one, ``z ~ group`` by least
  squares: Student's two-sample t-test for two groups (``model`` = ``t_test``, df =
  samples − groups), as for the ``contact`` term.

``q``: Benjamini–Hochberg over the rows of each term (:func:`metaniche.cohort._qvalues.
add_q_values`). Pairs need ``min_samples`` samples with a finite effect (``[cohort]
min_group``, default 3).

References
----------
1. Pinheiro JC, Bates DM. Mixed-Effects Models in S and S-PLUS. Springer; 2000.
2. DerSimonian R, Laird N. Meta-analysis in clinical trials. Control Clin Trials.
   1986;7:177-88 (two-stage random-effects summary of per-study estimates).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from metaniche import tables as T
from metaniche.cohort._qvalues import add_q_values
from metaniche.cohort.matrix import feature_patients, join_clinical, sample_patients
from metaniche.cohort.mixed import group_design, level_codes, mixed_model_groups
from metaniche.config import Config
from metaniche.errors import InputError
from metaniche.io.clinical import ContrastUnavailable, Groups, response_contrast
from metaniche.rundir import OK, SKIPPED

__all__ = ["COHORT_COLUMNS", "PAIR_COLUMNS", "cohort_state_changes", "state_change_record"]

#: The columns that name one tested pair.
PAIR_COLUMNS = ["cell_type", "marker", "partner_type", "exposure"]
#: Columns of ``cohort/state_changes.parquet``.
COHORT_COLUMNS = [*PAIR_COLUMNS, "term", "contrast", "model", "effect", "ci_low", "ci_high",
                  "effect_name", "statistic", "df", "p", "q", "n_samples", "n_patients"]
CONTACT_TERM = "contact"
RESPONSE_TERM = "contact:response"


def cohort_state_changes(table: pd.DataFrame, patient: pd.Series,
                         groups: Groups | None = None, min_samples: int = 3,
                         confidence: float = 0.95) -> pd.DataFrame:
    """Per pair: the cohort contact effect and, given ``groups``, its difference by group.

    Parameters
    ----------
    table
        Per-sample contact effects: ``sample`` and :data:`PAIR_COLUMNS`, ``effect``.
    patient
        Patient id per sample (index ``sample``); a sample missing here is its own patient.
    groups
        Response (or any two-level) group per sample and the levels, reference first.
    min_samples
        Fewest samples with a finite effect for the ``contact`` term (and patients per group
        for the interaction).
    confidence
        Level of the intervals.

    Returns
    -------
    pandas.DataFrame
        :data:`COHORT_COLUMNS`, one ``contact`` row per pair (NaN statistics below
        ``min_samples``) and one ``contact:response`` row per pair when ``groups`` is given.
    """
    if table.empty:
        return pd.DataFrame(columns=COHORT_COLUMNS)
    # The pairs some sample measured, sorted (a pivot on the four columns with dropna=False
    # would add every combination of their values, pairs no sample has).
    measured = pd.MultiIndex.from_frame(
        table[PAIR_COLUMNS].drop_duplicates().sort_values(PAIR_COLUMNS))
    keyed = table.assign(sample=table["sample"].astype(str),
                         pair=measured.get_indexer(pd.MultiIndex.from_frame(table[PAIR_COLUMNS])))
    wide = keyed.pivot_table(index="sample", columns="pair", values="effect", aggfunc="first",
                             dropna=False).reindex(columns=range(len(measured)))
    pairs = list(measured)
    wide.columns = pd.RangeIndex(len(pairs))
    samples = wide.index.astype(str)
    ids = patient.reindex(samples)
    ids = pd.Series(np.where(ids.isna(), samples, ids.astype(str)), index=samples)
    rows = []
    for j, pair in enumerate(pairs):
        values = wide[j].to_numpy(np.float64)
        rows.append(dict(zip(PAIR_COLUMNS, pair, strict=True))
                    | {"term": CONTACT_TERM, "contrast": ""}
                    | _mean_effect(values, ids.to_numpy(), min_samples, confidence))
    out = pd.DataFrame(rows)
    if groups is not None:
        labels = groups.labels.reindex(samples)
        known = level_codes(labels, groups.levels) >= 0
        patient_ids = ids.to_numpy()
        repeats = []
        for j in range(len(pairs)):
            keep = np.isfinite(wide[j].to_numpy(np.float64)) & known
            repeats.append(len(np.unique(patient_ids[keep])) < keep.sum())
        repeat = np.asarray(repeats, dtype=bool)
        parts = []
        if repeat.any():
            mixed = mixed_model_groups(wide.loc[:, repeat], labels, groups.levels, ids,
                                       min_samples, confidence)
            parts.append(mixed[mixed["test"] == "mixed_model"].assign(model="mixed_model"))
        if not repeat.all():
            parts.append(_t_test_groups(wide.loc[:, ~repeat], labels, groups.levels,
                                        min_samples, confidence).assign(model="t_test"))
        fits = pd.concat(parts, ignore_index=True).sort_values("feature", kind="stable",
                                                               ignore_index=True)
        named = pd.DataFrame([dict(zip(PAIR_COLUMNS, pairs[int(f)], strict=True))
                              for f in fits["feature"]], index=fits.index)
        interaction = pd.concat([named, fits], axis=1).assign(term=RESPONSE_TERM,
                                                              n_samples=fits["n"])
        out = pd.concat([out, interaction.reindex(columns=[c for c in COHORT_COLUMNS
                                                           if c != "q"])], ignore_index=True)
    out = add_q_values(out, "term")
    return out[COHORT_COLUMNS]


def _t_test_groups(values: pd.DataFrame, labels: pd.Series, levels: tuple[str, ...],
                   min_group: int, confidence: float) -> pd.DataFrame:
    """Per column and non-reference level, the least-squares ``z ~ group`` of the z-scored
    values (one sample per patient): the rows :func:`~metaniche.cohort.mixed.
    mixed_model_groups` gives (``feature``, ``contrast``, ``statistic``, ``df`` = n − k,
    ``effect``, ``ci_low``, ``ci_high``, ``effect_name``, ``n``, ``n_patients``, ``p``), NaN
    below ``min_group`` samples in a group. For two groups it is Student's two-sample
    t-test of the z-scores."""
    code = level_codes(labels, levels)
    k = len(levels)
    rows: list[dict[str, Any]] = []
    for name in values.columns:
        x = values[name].to_numpy(np.float64)
        keep = np.isfinite(x) & (code >= 0)
        n = int(keep.sum())
        level_rows = [{"feature": name, "contrast": f"{level} vs {levels[0]}", "n": n,
                       "n_patients": n, "effect_name": "difference_sd"} for level in levels[1:]]
        rows.extend(level_rows)
        df = n - k
        sd = float(x[keep].std()) if n else 0.0
        counts = np.bincount(code[keep], minlength=k)
        if not (counts.min() >= max(min_group, 1) and df > 0 and sd > 0):
            continue
        z = (x[keep] - x[keep].mean()) / sd
        design = group_design(code[keep], k)
        beta, *_ = np.linalg.lstsq(design, z, rcond=None)
        residual = z - design @ beta
        cov = (residual @ residual / df) * np.linalg.inv(design.T @ design)
        se = np.sqrt(np.diag(cov))[1:]
        if not np.all(se > 0):
            continue
        t_crit = stats.t.ppf(0.5 + confidence / 2, df)
        for j, row in enumerate(level_rows):
            coef = float(beta[j + 1])
            row |= {"statistic": coef / se[j], "df": df, "effect": coef,
                    "ci_low": coef - t_crit * se[j], "ci_high": coef + t_crit * se[j],
                    "p": float(2 * stats.t.sf(abs(coef / se[j]), df))}
    return pd.DataFrame(rows)


def _mean_effect(values: np.ndarray, patient: np.ndarray, min_samples: int,
                 confidence: float) -> dict[str, Any]:
    """μ of ``β_s = μ + u_patient + e_s`` (REML), or the one-sample t when no patient repeats."""
    keep = np.isfinite(values)
    x, ids = values[keep], patient[keep]
    n = int(keep.sum())
    n_patients = len(np.unique(ids))
    row: dict[str, Any] = {"model": "", "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                           "effect_name": "mean_contact_effect", "statistic": np.nan,
                           "df": np.nan, "p": np.nan, "n_samples": n, "n_patients": n_patients}
    if n < max(min_samples, 2) or n_patients < 2:
        return row
    if n_patients == n:
        df = n - 1
        mean, se = float(x.mean()), float(x.std(ddof=1) / np.sqrt(n))
        model = "t_test"
    else:
        import statsmodels.api as sm

        df = n_patients - 1
        model = "mixed_model"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = sm.MixedLM(x, np.ones((n, 1)), groups=ids).fit(reml=True)
            mean, se = float(fit.fe_params[0]), float(fit.bse_fe[0])
        except (np.linalg.LinAlgError, ValueError):
            return row | {"model": model}
    if not (np.isfinite(se) and se > 0):
        return row | {"model": model}
    t = mean / se
    crit = stats.t.ppf(0.5 + confidence / 2, df)
    return row | {"model": model, "effect": mean, "ci_low": mean - crit * se,
                  "ci_high": mean + crit * se, "statistic": t, "df": df,
                  "p": float(2 * stats.t.sf(abs(t), df))}


def state_change_record(run: Any, config: Config, clinical: pd.DataFrame | None,
                        features: pd.DataFrame) -> dict[str, Any]:
    """The run-level step: ``tables/state_changes`` → ``cohort/state_changes.parquet``.

    Patients from :func:`metaniche.cohort.matrix.sample_patients` (the clinical table, else
    the cell table's ``[columns] patient``, else each sample its own patient); the response
    groups from the clinical table's response column (:func:`metaniche.io.clinical.
    response_contrast`) when it has one. Returns the step's run.json record.
    """
    table = run.read_table(T.STATE_CHANGES)
    if table is None or table.empty:
        run.remove_cohort_table(T.STATE_CHANGES)
        return {"status": SKIPPED, "reason": "no tables/state_changes.parquet rows"}
    columns = config.clinical
    samples = pd.Index(pd.unique(table["sample"].astype(str)))
    patients = feature_patients(features) if not features.empty else None
    record: dict[str, Any] = {"status": OK}
    groups = None
    patient, notes = sample_patients(samples, clinical, columns, patients)
    if clinical is not None:
        try:
            data = join_clinical(pd.DataFrame(index=pd.Index(samples, name="sample")),
                                 clinical, columns, patients)
            patient = data.clinical["patient"]
            if columns.response in data.clinical.columns:
                groups = response_contrast(data.clinical[columns.response], columns).groups()
            else:
                record["response"] = f"the clinical table has no '{columns.response}' column."
        except (ContrastUnavailable, InputError) as err:
            record["response"] = str(err)
    result = cohort_state_changes(table, patient, groups, config.cohort.min_group,
                                  config.cohort.confidence)
    run.write_cohort_table(T.STATE_CHANGES, result)
    record |= {"rows": len(result), "n_samples": len(samples),
               "n_patients": int(patient.nunique()), "warnings": notes}
    return record
