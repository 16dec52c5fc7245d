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


def test_run_tests_whole_ripley_curves_across_response_groups(tmp_path):
    """The cohort step passes tables/ripley to the whole-curve test: one
    ``curve_permutation`` row per ordered type pair of the run's Ripley table, its p a
    permutation p-value (1 + count) / (1 + B); ``curve_permutations = 0`` turns it off."""
    import dataclasses

    samples, clinical = simulate_cohort(n_samples=6, n_cells=2000, seed=3)
    clinical["response"] = ["responder", "non-responder"] * 3
    folder = write_cohort(tmp_path / "sim", samples, clinical)
    config = load_config(folder / "config.toml")
    config = dataclasses.replace(config, cohort=dataclasses.replace(config.cohort,
                                                                    curve_permutations=99))
    out = tmp_path / "out"
    run([folder / "cells"], out, config, clinical=folder / "clinical.csv")
    association = pd.read_parquet(out / "association.parquet")
    curves = association[association["test"] == "curve_permutation"]
    ripley = pd.read_parquet(out / "tables" / "ripley.parquet")
    pairs = {f"ripley_l_curve.{a}.{b}" for a, b in
             ripley[["type_a", "type_b"]].drop_duplicates().itertuples(index=False)}
    assert set(curves["feature"]) == pairs
    tested = curves.dropna(subset=["p"])
    assert len(tested) > 0
    assert ((tested["p"] * 100).round(9) % 1 == 0).all()  # multiples of 1 / (1 + 99)
    assert tested["p"].between(0.01, 1).all()
    # the gradients: one shape test per cell type, and each response group's pooled gradient
    gradients = pd.read_parquet(out / "tables" / "gradients.parquet")
    shapes = association[association["test"] == "gradient_shape_permutation"]
    assert set(shapes["feature"]) == {f"gradient_shape.{t}"
                                      for t in gradients["cell_type"].astype(str).unique()}
    assert shapes["p"].dropna().between(0.01, 1).all() and shapes["p"].notna().any()
    pooled = pd.read_parquet(out / "tables" / "pooled_gradients.parquet")
    assert set(pooled["group"]) == {"responder", "non-responder"}
    assert set(pooled["outcome"]) == {"response"}
    whole = gradients[gradients["lesion_id"].isna()]
    cd8 = whole[(whole["cell_type"] == "CD8_T") & whole["sample"].isin(
        clinical.loc[clinical["response"] == "responder", "sample"])]
    expected = cd8.groupby("bin_start_um")["n_cells"].sum()
    got = pooled[(pooled["group"] == "responder") & (pooled["cell_type"] == "CD8_T")]
    pd.testing.assert_series_equal(got.set_index("bin_start_um")["n_cells"].astype(float),
                                   expected.astype(float), check_names=False)

    off = dataclasses.replace(config, cohort=dataclasses.replace(config.cohort,
                                                                 curve_permutations=0))
    out0 = tmp_path / "out0"
    run([folder / "cells"], out0, off, clinical=folder / "clinical.csv")
    association0 = pd.read_parquet(out0 / "association.parquet")
    assert "curve_permutation" not in set(association0["test"])
    assert "gradient_shape_permutation" not in set(association0["test"])
    assert (out0 / "tables" / "pooled_gradients.parquet").is_file()
