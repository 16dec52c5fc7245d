"""Patient ids: from the cell table's ``[columns] patient`` into the features, the clinical
join by patient, the lesion-size step's patients and the features' ``patient`` column."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from metaniche.cohort.lesions import pool_lesions
from metaniche.cohort.matrix import (
    PATIENT,
    feature_matrix,
    feature_patients,
    join_clinical,
    sample_patients,
)
from metaniche.cohort.steps import feature_dictionary, with_patients
from metaniche.config import ClinicalColumns, CohortParams, ColumnNames, load_config
from metaniche.errors import InputError
from metaniche.pipeline import run
from metaniche.simulate import simulate_cohort, write_cohort

COLUMNS = ClinicalColumns(patient="patient_id")


def _features(patients: list[str | None]) -> pd.DataFrame:
    n = len(patients)
    return pd.DataFrame({"sample": [f"S{i}" for i in range(n)], PATIENT: patients,
                         "f": np.arange(n, dtype=float), "g": np.arange(n) ** 2.0})


def test_sample_patients_clinical_wins_cells_fill_in_and_disagreement_warns():
    samples = pd.Index(["S1", "S2", "S3", "S4"])
    cells = pd.Series(["P1", "P9", None, None], index=samples)
    clinical = pd.DataFrame({"sample": ["S1", "S2", "S3"], "patient_id": ["P1", "P2", np.nan]})
    of_sample, warnings = sample_patients(samples, clinical, COLUMNS, cells)
    # clinical id (S1, S2), else the cells' (none for S3, S4), else the sample itself
    assert of_sample.tolist() == ["P1", "P2", "S3", "S4"]
    assert len(warnings) == 1
    assert "different patients for 1 samples" in warnings[0]
    assert "'S2': 'P2' in the clinical table, 'P9' in the cells" in warnings[0]
    # a per-patient clinical table maps nothing: the cells' ids are used
    per_patient = pd.DataFrame({"patient_id": ["P1", "P9"]})
    assert sample_patients(samples, per_patient, COLUMNS, cells)[0].tolist() == \
        ["P1", "P9", "S3", "S4"]
    assert sample_patients(samples, None, COLUMNS, None)[0].tolist() == list(samples)


def test_join_by_patient_through_the_features_patient_column():
    features = _features(["7", "7", "8", "9", "9", "9"])
    clinical = pd.DataFrame({"patient_id": ["9", "7", "8", "10"],
                             "response": ["R", "N", "R", "N"]})
    matrix = feature_matrix(features, CohortParams())
    assert list(matrix.values.columns) == ["f", "g"]  # the patient column is not a feature
    data = join_clinical(matrix.values, clinical, COLUMNS, feature_patients(features))
    assert data.clinical["patient"].tolist() == ["7", "7", "8", "9", "9", "9"]
    assert data.clinical["response"].tolist() == ["N", "N", "R", "R", "R", "R"]
    assert list(data.features.index) == list(features["sample"])


def test_join_by_patient_without_patient_ids_names_the_setting():
    clinical = pd.DataFrame({"patient_id": ["7"], "response": ["R"]})
    values = feature_matrix(_features(["7", "7", "8"]), CohortParams()).values
    with pytest.raises(InputError, match=r"set \[columns\] patient .*patient = \"patient_id\""):
        join_clinical(values, clinical, COLUMNS, None)
    with pytest.raises(InputError, match=r"1 of 3 samples have no patient id \('S2'\)"):
        join_clinical(values, clinical, COLUMNS,
                      feature_patients(_features(["7", "7", None])))


def test_pool_lesions_uses_the_cell_tables_patients():
    lesions = pd.DataFrame({"sample": ["S0", "S0", "S1", "S2"], "lesion_id": [1, 2, 1, 1],
                            "cell_type": "CD8_T", "area_mm2": [1.0, 0.5, 0.2, 0.3],
                            "equivalent_diameter_um": [200.0, 100.0, 50.0, 80.0],
                            "core_border_ratio": 1.0, "infiltration_depth_um": -5.0})
    patients = feature_patients(_features(["A", "A", "B"]))
    assert pool_lesions(lesions, None, COLUMNS, patients)["patient"].tolist() == \
        ["A", "A", "A", "B"]


def test_with_patients_and_dictionary():
    features = pd.DataFrame({"sample": ["S0", "S1"], "f": [1.0, 2.0]})
    assert with_patients(features, {"S0": None, "S1": None}) is features
    out = with_patients(features, {"S0": "P", "S1": None})
    assert list(out.columns) == ["sample", PATIENT, "f"]
    assert out[PATIENT].tolist() == ["P", None]
    row = feature_dictionary(out).set_index("name").loc[PATIENT]
    assert row["analysis"] == "input" and "[columns] patient" in row["description"]


@pytest.fixture(scope="module")
def cohort_by_patient(tmp_path_factory):
    """Six simulated images of three patients (two each) and a clinical table per patient."""
    root = tmp_path_factory.mktemp("by_patient")
    samples, clinical = simulate_cohort(n_samples=6, n_cells=2000, seed=5)
    folder = write_cohort(root / "sim", samples, clinical)
    truth = {s.name: f"P{i // 2 + 1}" for i, s in enumerate(samples)}
    for name, patient in truth.items():
        path = folder / "cells" / f"{name}.parquet"
        pd.read_parquet(path).assign(patient_id=patient).to_parquet(path)
    per_patient = pd.DataFrame({"patient_id": ["P3", "P1", "P2"],
                                "response": ["responder", "responder", "non-responder"]})
    per_patient.to_csv(root / "patients.csv", index=False)
    config = dataclasses.replace(
        load_config(folder / "config.toml"), columns=ColumnNames(patient="patient_id"),
        clinical=COLUMNS, cohort=CohortParams(analyses=("response",), min_group=1,
                                              n_bootstrap=50))
    return folder, root / "patients.csv", config, truth


@pytest.mark.slow
def test_run_carries_patients_into_features_cohort_and_lesions(cohort_by_patient, tmp_path):
    folder, patients_csv, config, truth = cohort_by_patient
    out = tmp_path / "out"
    result = run([folder / "cells"], out, config, clinical=patients_csv)
    assert not result.failed and not result.failed_steps
    features = pd.read_parquet(out / "features.parquet")
    assert list(features.columns[:2]) == ["sample", PATIENT]
    assert dict(zip(features["sample"], features[PATIENT], strict=True)) == truth
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["cohort"]["status"] == "ok", manifest["cohort"]
    assert manifest["cohort"]["unit"] == "patient"
    lesion = manifest["lesion_size_exclusion"]
    assert lesion["status"] == "ok" and lesion["patients_from"] == "cells"
    assert lesion["n_patients"] == 3 and lesion["n_samples"] == 6
    association = pd.read_parquet(out / "association.parquet")
    assert not association.empty
    rank = association[association["test"] == "mann_whitney"]
    # three patients, not six images (fewer where a feature is missing in a patient)
    assert len(rank) and (rank["n"] <= 3).all() and rank["n"].max() == 3
    assert (rank["contrast"] == "responder vs non-responder").all()


def test_join_by_sample_prefers_the_clinical_patients_and_warns_on_disagreement():
    features = _features(["A", "A", "B", None])
    clinical = pd.DataFrame({"sample": ["S0", "S1", "S2", "S3"],
                             "patient_id": ["A", "C", np.nan, np.nan]})
    values = feature_matrix(features, CohortParams()).values
    data = join_clinical(values, clinical, COLUMNS, feature_patients(features))
    assert data.clinical["patient"].tolist() == ["A", "C", "B", "S3"]
    assert len(data.warnings) == 1 and "'S1': 'C' in the clinical table, 'A' in the cells" \
        in data.warnings[0]
