"""Cohort analyses on real cohorts: melanoma anti-PD-1 response and NSCLC overall survival.

The per-sample features here are per-image cell-type proportions computed with pandas (the
full pipeline over ~1.2 million cells is too heavy for a unit test); the cohort step is the
same one the pipeline runs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from metaniche.cohort import analyse_cohort
from metaniche.config import ClinicalColumns, CohortParams, Config


def _proportions(path) -> pd.DataFrame:
    cells = pd.read_csv(path, usecols=["sample_id", "patient_id", "cell_type"],
                        dtype={"sample_id": str, "patient_id": str})
    table = pd.crosstab(cells["sample_id"], cells["cell_type"], normalize="index")
    table.columns = [f"proportion.all.{c}" for c in table.columns]
    patient = cells.groupby("sample_id")["patient_id"].first()
    return table.assign(patient_id=patient).reset_index(names="sample")


def test_melanoma_response_with_patient_mixed_model(data_dir):
    features = _proportions(data_dir / "cells" / "melanoma_responders_spicyR.cells.csv.gz")
    clinical = pd.read_csv(data_dir / "cells" / "melanoma_responders_spicyR.patients.csv",
                           dtype={"patient_id": str})
    config = Config(clinical=ClinicalColumns(patient="patient_id", response="condition"),
                    cohort=CohortParams(n_repeats=1, n_bootstrap=200))
    result = analyse_cohort(features, clinical, config)
    assert result.unit == "patient" and len(result.matrix) == 27
    table = result.association
    assert {"mann_whitney", "mixed_model"} <= set(table["test"])
    mw = table[table["test"] == "mann_whitney"]
    assert (mw["n"] == 27).all() and (mw["n_responder"] == 18).all()
    mixed = table[table["test"] == "mixed_model"]
    assert (mixed["n_patients"] == 27).all() and mixed["p"].notna().all()
    assert table["q"].between(0, 1).all()
    assert result.prediction["unit_count"] == 27
    assert 0 <= result.prediction["spatial"]["auc"] <= 1


def test_nsclc_overall_survival(data_dir):
    features = _proportions(data_dir / "cells" / "vectra_nsclc_lung_mxfda.cells.csv.gz")
    clinical = pd.read_csv(data_dir / "cells" / "vectra_nsclc_lung_mxfda.patients.csv",
                           dtype={"patient_id": str})
    config = Config(clinical=ClinicalColumns(patient="patient_id", os_time="survival_days",
                                             os_event="survival_status",
                                             covariates=("age", "stage")),
                    cohort=CohortParams(analyses=("survival",)))
    result = analyse_cohort(features, clinical, config)
    assert result.unit == "patient" and len(result.matrix) == 153
    cox = result.association[result.association["test"] == "cox"]
    assert cox["p"].notna().all() and (cox["effect"] > 0).all()
    assert cox["n_events"].max() <= 89
    curves = result.km_curves
    assert set(curves["group"]) == {"low", "high"}
    assert curves.groupby(["feature", "group"])["survival"].apply(
        lambda s: bool(np.all(np.diff(s.to_numpy()) <= 0))).all()
    unadjusted = analyse_cohort(features, clinical, replace(
        config, clinical=replace(config.clinical, covariates=())))
    first = unadjusted.association.query("test == 'cox'")["n_events"].max()
    assert first == 89  # every death counted once per patient
