"""The pipeline's cohort step writes the association outputs and never loses sample outputs."""

from __future__ import annotations

import json

import pandas as pd

from metaniche.config import load_config
from metaniche.pipeline import run
from metaniche.simulate import simulate_cohort, write_cohort


def test_run_with_clinical_writes_cohort_outputs(tmp_path):
    samples, clinical = simulate_cohort(n_samples=6, n_cells=2000, seed=3)
    # Three per response group: prediction needs [cohort] min_group units in each.
    clinical["response"] = ["responder", "non-responder"] * 3
    folder = write_cohort(tmp_path / "sim", samples, clinical)
    config = load_config(folder / "config.toml")
    out = tmp_path / "out"
    run([folder / "cells"], out, config, clinical=folder / "clinical.csv")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["cohort"]["status"] == "ok", manifest["cohort"]
    association = pd.read_parquet(out / "association.parquet")
    assert {"mann_whitney", "cox", "logrank"} <= set(association["test"])
    assert "density.core.CD8_T" in set(association["feature"])
    assert association["q"].between(0, 1).any()
    assert (out / "tables" / "km_curves.parquet").is_file()
    prediction = json.loads((out / "prediction.json").read_text())
    assert prediction["unit_count"] == 6

    bad = tmp_path / "bad.csv"
    clinical.assign(sample=clinical["sample"] + "x").to_csv(bad, index=False)
    out2 = tmp_path / "out2"
    run([folder / "cells"], out2, config, clinical=bad)
    manifest = json.loads((out2 / "run.json").read_text())
    assert manifest["cohort"]["status"] == "failed"
    assert "no row for 6 of 6 samples" in manifest["cohort"]["error"]
    assert (out2 / "features.parquet").is_file() and not (out2 / "association.parquet").exists()
