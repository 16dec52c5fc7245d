"""Lesion size vs CD8 exclusion across lesions and patients (cohort step, issue 5 item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.lesion_metrics import lesion_metrics, lesion_perimeters_um
from metaniche.cohort.lesions import (
    LESION_EXCLUSION_COLUMNS,
    lesion_exclusion_table,
    pool_lesions,
)
from metaniche.cohort.steps import RUN_STEPS, RunState, run_step
from metaniche.config import CellTypeRoles, Config
from metaniche.errors import InputError
from metaniche.report.cohort_page import lesion_exclusion_section
from metaniche.report.rundata import RunData
from metaniche.rundir import Manifest, RunDir
from metaniche.sample import build_context
from metaniche.simulate import IMMUNE_TYPES, simulate_sample

CONFIG = Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES))
N_SAMPLES = 6  # one patient each (no clinical table: sample = patient), 4 lesions each


def _lesion_rows(seed: int, planted: bool) -> pd.DataFrame:
    """``lesion_metrics`` of one simulated sample, as the border stage computes it."""
    sample = simulate_sample(f"S{seed}", n_cells=20_000, seed=seed, phenotype="inflamed",
                             n_lesions=4, with_tls=False, necrosis=False,
                             cd8_size_exclusion=planted)
    context = build_context(sample.name, sample.cells, CONFIG)
    result = context.compartments
    perimeters = lesion_perimeters_um(result.lesion_labels, result.tissue, result.grid.pixel_um,
                                      len(result.lesions))
    table = lesion_metrics(result.lesions, perimeters, result.areas, result.signed_distance_um,
                           result.compartment, result.lesion_id, context.labels, ["CD8_T"])
    table.insert(0, "sample", sample.name)
    return table


@pytest.fixture(scope="module")
def cohorts():
    """Planted (CD8 penetration length ∝ 1 / radius) and null (uniform inside) cohorts."""
    clinical = pd.DataFrame({"sample": [f"S{i}" for i in range(N_SAMPLES)],
                             "patient": [f"P{i}" for i in range(N_SAMPLES)]})
    out = {}
    for planted in (True, False):
        rows = pd.concat([_lesion_rows(seed, planted) for seed in range(N_SAMPLES)],
                         ignore_index=True)
        out[planted] = (rows, lesion_exclusion_table(rows).set_index(
            ["outcome", "test"]))
    return clinical, out


def test_planted_size_dependent_exclusion_is_found(cohorts):
    _, out = cohorts
    rows, table = out[True]
    assert rows["sample"].nunique() == N_SAMPLES and len(rows) >= 12
    for outcome in ("relative_infiltration_depth", "core_border_ratio"):
        spearman = table.loc[(outcome, "spearman")]
        assert spearman["effect"] < -0.5 and spearman["p"] < 0.01, (outcome, spearman)
        mixed = table.loc[(outcome, "mixedlm")]
        assert mixed["ci_high"] < 0 and mixed["p"] < 0.05, (outcome, mixed)
        assert mixed["n_patients"] == N_SAMPLES and mixed["n_lesions"] == len(rows)


def test_null_uniform_infiltration_is_not_significant_but_raw_depth_is(cohorts):
    _, out = cohorts
    _, table = out[False]
    for outcome in ("relative_infiltration_depth", "core_border_ratio"):
        for test in ("spearman", "mixedlm"):
            assert table.loc[(outcome, test), "p"] > 0.05, (outcome, test)
    # The documented geometric confound: median depth ∝ radius without any exclusion.
    raw = table.loc[("infiltration_depth_um", "spearman")]
    assert raw["effect"] < -0.5 and raw["p"] < 0.01


def test_null_rejection_rate_is_near_nominal_on_the_uniform_disc_model():
    # Closed form: a point uniform in a disc of radius R lies at depth R (1 - sqrt(1 - u));
    # relative depth is then independent of size, so tests at 0.05 reject ~5 % of cohorts.
    rng = np.random.default_rng(7)

    def cohort(n_patients: int = 6, per_patient: int = 4) -> pd.DataFrame:
        patient = np.repeat(np.arange(n_patients), per_patient)
        radius = rng.uniform(120.0, 600.0, patient.size)
        density = 200.0 * rng.lognormal(0.0, 0.3, n_patients)[patient]  # CD8 per mm²
        depths = []
        for r, lam in zip(radius, density, strict=True):
            n = max(int(rng.poisson(lam * np.pi * (r / 1e3) ** 2)), 1)
            depths.append(-float(np.median(r * (1 - np.sqrt(1 - rng.random(n))))))
        return pd.DataFrame({"sample": patient.astype(str), "lesion_id": 1,
                             "cell_type": "CD8_T", "area_mm2": np.pi * (radius / 1e3) ** 2,
                             "equivalent_diameter_um": 2 * radius,
                             "core_border_ratio": 1.0, "infiltration_depth_um": depths})

    n_trials, rejections = 20, {"spearman": 0, "mixedlm": 0}
    for _ in range(n_trials):
        table = lesion_exclusion_table(
            cohort(), outcomes=("relative_infiltration_depth",)).set_index("test")
        for test in rejections:
            rejections[test] += bool(table.loc[test, "p"] < 0.05)
    # 1 expected of 20; P(X >= 4) = 0.016 at the nominal rate (binomial).
    assert rejections["spearman"] <= 3 and rejections["mixedlm"] <= 3, rejections


def test_pool_lesions_joins_patients_and_computes_relative_depth():
    table = pd.DataFrame({"sample": ["A", "A", "B", "C"], "lesion_id": [1, 2, 1, 1],
                          "cell_type": "CD8_T", "area_mm2": [1.0, 0.5, 0.2, 0.3],
                          "equivalent_diameter_um": [200.0, 100.0, 0.0, 80.0],
                          "core_border_ratio": [0.5, 1.0, 1.0, np.inf],
                          "infiltration_depth_um": [-50.0, -10.0, -5.0, np.nan]})
    clinical = pd.DataFrame({"sample": ["A", "B"], "patient": ["P1", "P1"]})
    pooled = pool_lesions(table, clinical)
    assert pooled["patient"].tolist() == ["P1", "P1", "P1", "C"]  # C: no clinical row
    np.testing.assert_allclose(pooled["relative_infiltration_depth"].to_numpy(),
                               [0.5, 0.2, np.nan, np.nan])
    assert pool_lesions(table)["patient"].tolist() == ["A", "A", "B", "C"]
    with pytest.raises(InputError, match="infiltration_depth_um"):
        pool_lesions(table.drop(columns="infiltration_depth_um"))
    empty = lesion_exclusion_table(table.iloc[:0])
    assert empty.empty and list(empty.columns) == LESION_EXCLUSION_COLUMNS


def test_cohort_step_writes_the_table_and_the_cohort_page_shows_it(tmp_path, cohorts):
    clinical, out = cohorts
    rows, table = out[True]
    (tmp_path / "tables").mkdir()
    rows.to_parquet(tmp_path / "tables" / "lesion_metrics.parquet")
    # The lesion step runs whatever the outcome analyses do (no features.parquet here).
    steps = {step.name: step for step in RUN_STEPS}
    state = RunState(RunDir(tmp_path), CONFIG, {}, clinical)
    assert run_step(steps["cohort"], state).record["status"] == "failed"
    record = run_step(steps["lesions"], state).record
    assert record["status"] == "ok" and record["rows"] == 6
    written = pd.read_parquet(tmp_path / "cohort" / "lesion_size_exclusion.parquet")
    pd.testing.assert_frame_equal(written.set_index(["outcome", "test"]), table)
    section = lesion_exclusion_section(RunData(tmp_path, Manifest()), tmp_path)
    assert section is not None and len(section.table.rows) == 6
    assert "core_border_ratio" in {row[1] for row in section.table.rows}
