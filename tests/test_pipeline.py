"""End-to-end runs: the run directory contract, failure isolation, resumability, safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaniche.config import CompartmentParams, Config, load_config
from metaniche.pipeline import run
from metaniche.rundir import safe_name
from metaniche.simulate import simulate_cohort, write_cohort

REQUIRED = {
    "cells": ["cell_id", "x", "y", "cell_type", "lesion_id", "signed_distance_um", "compartment"],
    "composition": ["sample", "compartment", "cell_type", "n_cells", "area_mm2",
                    "density_per_mm2", "proportion"],
    "compartments": ["sample", "lesion_id", "compartment", "n_cells", "area_mm2"],
}


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    samples, clinical = simulate_cohort(n_samples=3, n_cells=4_000, seed=7)
    return write_cohort(tmp_path_factory.mktemp("cohort"), samples, clinical)


@pytest.fixture(scope="module")
def finished_run(cohort_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = load_config(cohort_dir / "config.toml")
    result = run([cohort_dir / "cells"], out, config, clinical=cohort_dir / "clinical.csv")
    return out, result, config


def test_run_directory_holds_the_contract(finished_run, cohort_dir):
    out, result, _ = finished_run
    assert result.failed == []
    manifest = json.loads((out / "run.json").read_text())
    assert set(manifest["samples"]) == {"S01", "S02", "S03"}
    assert all(rec["status"] == "ok" for rec in manifest["samples"].values())
    assert manifest["config"]["compartments"]["border_um"] == 100.0
    for name in ("S01", "S02", "S03"):
        cells = pd.read_parquet(out / "cells" / f"{name}.parquet")
        assert list(cells.columns[:7]) == REQUIRED["cells"]
        source = pd.read_parquet(cohort_dir / "cells" / f"{name}.parquet")
        np.testing.assert_allclose(cells["x"], source["x"])
        assert "CD8" in cells.columns  # markers are kept
    for table in ("composition", "compartments"):
        frame = pd.read_parquet(out / "tables" / f"{table}.parquet")
        assert set(REQUIRED[table]) <= set(frame.columns)
        assert frame.columns[0] == "sample"
    features = pd.read_parquet(out / "features.parquet")
    assert list(features["sample"]) == ["S01", "S02", "S03"]
    assert {"density.border.CD8_T", "phenotype", "proportion.core.Tumor"} <= set(features)
    csv = pd.read_csv(out / "features.csv")
    np.testing.assert_allclose(csv["density.border.CD8_T"], features["density.border.CD8_T"])
    dictionary = pd.read_csv(out / "features_dictionary.csv")
    unit = dictionary.set_index("name").loc["density.border.CD8_T", "unit"]
    assert unit == "cells/mm²"
    html = (out / "report" / "index.html").read_text()
    assert "S02" in html and "figures/S02.map.png" in html
    assert (out / "report" / "figures" / "S02.map.png").stat().st_size > 10_000


def test_densities_are_counts_over_compartment_area(finished_run):
    out, _, _ = finished_run
    composition = pd.read_parquet(out / "tables" / "composition.parquet")
    cells = pd.read_parquet(out / "cells" / "S01.parquet")
    areas = pd.read_parquet(out / "tables" / "compartments.parquet")
    area = areas[(areas["sample"] == "S01") & areas["lesion_id"].isna()
                 & (areas["compartment"] == "border")]["area_mm2"].item()
    n_cd8 = int(((cells["compartment"] == "border") & (cells["cell_type"] == "CD8_T")).sum())
    row = composition[(composition["sample"] == "S01") & composition["lesion_id"].isna()
                      & (composition["compartment"] == "border")
                      & (composition["cell_type"] == "CD8_T")]
    assert row["n_cells"].item() == n_cd8
    assert row["density_per_mm2"].item() == pytest.approx(n_cd8 / area)


def test_rerun_skips_unchanged_samples_and_gives_identical_outputs(finished_run, cohort_dir):
    out, _, config = finished_run
    before = {p: p.read_bytes() for p in (out / "cells").glob("*.parquet")}
    features_before = pd.read_parquet(out / "features.parquet")
    again = run([cohort_dir / "cells"], out, config)
    assert {rec.status for rec in again.samples.values()} == {"skipped"}
    assert {p: p.read_bytes() for p in (out / "cells").glob("*.parquet")} == before
    # Same cohort fit, same labels: no cells file is rewritten.
    assert again.manifest.steps["neighbourhoods"] == {"status": "ok", "n_neighbourhoods": int(
        pd.read_parquet(out / "tables" / "neighbourhoods.parquet")["neighbourhood"].max()),
        "cells_files_rewritten": 0}
    assert again.failed_steps == []
    pd.testing.assert_frame_equal(pd.read_parquet(out / "features.parquet"), features_before)
    forced = run([cohort_dir / "cells"], out, config, force=True)
    assert {rec.status for rec in forced.samples.values()} == {"ok"}


def test_changed_config_recomputes(cohort_dir, tmp_path):
    config = load_config(cohort_dir / "config.toml")
    run([cohort_dir / "cells" / "S01.parquet"], tmp_path, config)
    wider = Config(cell_types=config.cell_types, compartments=CompartmentParams(border_um=200))
    second = run([cohort_dir / "cells" / "S01.parquet"], tmp_path, wider)
    assert second.samples["S01"].status == "ok"
    areas = pd.read_parquet(tmp_path / "tables" / "compartments.parquet")
    assert areas.loc[areas["compartment"] == "border", "area_mm2"].max() > 0
    # Without a clinical table each sample is its own patient; the lesion step still runs.
    record = json.loads((tmp_path / "run.json").read_text())["lesion_size_exclusion"]
    assert record["status"] == "ok"
    lesions = pd.read_parquet(tmp_path / "cohort" / "lesion_size_exclusion.parquet")
    assert (lesions["n_patients"] == 1).all()


def test_bad_sample_fails_alone(cohort_dir, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    good = pd.read_parquet(cohort_dir / "cells" / "S01.parquet")
    good.to_csv(inputs / "good.csv", index=False)
    (inputs / "corrupt.parquet").write_bytes(b"not a parquet file at all")
    dup = good.head(50).copy()
    dup["sample"] = "dup"
    dup.loc[1, "cell_id"] = dup.loc[0, "cell_id"]
    dup.to_csv(inputs / "dup.csv", index=False)
    result = run([inputs], tmp_path / "out", Config())
    assert result.samples["S01"].status == "ok"
    assert sorted(result.failed) == ["corrupt", "dup"]
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "corrupt.parquet" in manifest["samples"]["corrupt"]["error"]
    assert "repeat" in manifest["samples"]["dup"]["error"]
    assert (tmp_path / "out" / "cells" / "S01.parquet").is_file()
    html = (tmp_path / "out" / "report" / "index.html").read_text()
    assert "corrupt.parquet" in html


def test_no_temporary_files_are_left(finished_run):
    out, _, _ = finished_run
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_hostile_names_stay_inside_the_run_directory_and_are_escaped(cohort_dir, tmp_path):
    cells = pd.read_parquet(cohort_dir / "cells" / "S02.parquet")
    cells["sample"] = "../../etc/x"
    cells["cell_type"] = cells["cell_type"].replace("B", "<script>alert(1)</script>")
    cells.to_parquet(tmp_path / "hostile.parquet")
    out = tmp_path / "run"
    result = run([tmp_path / "hostile.parquet"], out, Config())
    assert result.samples["../../etc/x"].status == "ok"
    written = [p.resolve() for p in tmp_path.rglob("*") if p.is_file()]
    assert all(out.resolve() in p.parents or p.parent == tmp_path.resolve() for p in written)
    assert (out / "cells" / f"{safe_name('../../etc/x')}.parquet").is_file()
    html = (out / "report" / "index.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "../../etc/x" in html


def test_safe_names_are_distinct_and_plain():
    names = ["S01", "../../etc/x", "a/b", "a_b", ".hidden", "x y"]
    safe = [safe_name(n) for n in names]
    assert len(set(safe)) == len(safe)
    assert safe[0] == "S01"
    assert all("/" not in s and not s.startswith(".") for s in safe)


def test_geojson_annotation_overrides_detection(cohort_dir, tmp_path):
    base = load_config(cohort_dir / "config.toml")
    annotated = Config(cell_types=base.cell_types, compartments=CompartmentParams(
        annotations=str(cohort_dir / "truth" / "S03.lesions.geojson")))
    run([cohort_dir / "cells" / "S03.parquet"], tmp_path, annotated)
    cells = pd.read_parquet(tmp_path / "cells" / "S03.parquet")
    truth = pd.read_parquet(cohort_dir / "truth" / "S03.cells.parquet")
    error = cells["signed_distance_um"].to_numpy() - truth["signed_distance_um"].to_numpy()
    # The annotation is the true outline: only rasterisation error remains.
    assert np.median(np.abs(error)) < 2.0
