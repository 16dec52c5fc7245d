"""Power of a planned study: exact binomial intervals, the CLI contract, worker invariance,
resumability, the false-positive rate at effect 1.0 and monotone power."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from metaniche.cli import main
from metaniche.studies.design import DesignParams
from metaniche.studies.power import clopper_pearson, run_power
from metaniche.studies.remodel import RemodelParams

CONTRACT = ["program", "effect", "n_patients", "cores_per_patient", "feature", "power",
            "ci_low", "ci_high", "n_studies"]
ALL_RESPOND = dict(response_inflamed=1.0, response_excluded=1.0, response_desert=1.0)


def test_clopper_pearson_matches_statsmodels():
    for k, n in [(0, 10), (3, 10), (10, 10), (5, 100), (50, 100)]:
        expected = proportion_confint(k, n, alpha=0.05, method="beta")
        assert clopper_pearson(k, n) == pytest.approx(expected, abs=1e-12)


TINY = """[design]
program = "spp1_macrophage_loss"
effects = [0.5]
n_patients = [6]
cores_per_patient = [0, 2]
core_diameter_um = 400.0
core_length_um = 2000.0
n_studies = 2
seed = 3

[design.remodel]
n_cells = 2000
"""


def test_cli_power_contract_workers_and_resume(tmp_path, capsys):
    design = tmp_path / "design.toml"
    design.write_text(TINY)
    out1, out2 = tmp_path / "one", tmp_path / "two"
    with pytest.raises(SystemExit) as done:
        main(["power", "--config", str(design), "--out", str(out1), "--quiet"])
    assert done.value.code == 0
    table = pd.read_parquet(out1 / "power.parquet")
    assert list(table.columns[:9]) == CONTRACT
    assert len(table) == 2 * 2          # cores x features of the program
    assert set(table["n_studies"]) == {2}
    assert ((table["ci_low"] <= table["power"]) & (table["power"] <= table["ci_high"])).all()
    assert (out1 / "power.svg").read_text().lstrip().startswith("<?xml")
    assert "power.svg" in (out1 / "index.html").read_text()
    # two workers give the same studies, p-values and power
    with pytest.raises(SystemExit):
        main(["power", "--config", str(design), "--out", str(out2), "--workers", "2",
              "--quiet"])
    pd.testing.assert_frame_equal(table.drop(columns="seconds_per_study"),
                                  pd.read_parquet(out2 / "power.parquet").drop(
                                      columns="seconds_per_study"))
    for path in sorted((out1 / "studies").iterdir()):
        pd.testing.assert_frame_equal(
            pd.read_parquet(path).drop(columns="seconds"),
            pd.read_parquet(out2 / "studies" / path.name).drop(columns="seconds"))
    # a rerun reuses every finished cell; a lost cell alone is recomputed
    lost = sorted((out1 / "studies").iterdir())[0]
    kept = {p.name: p.stat().st_mtime_ns for p in (out1 / "studies").iterdir()}
    lost.unlink()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["power", "--config", str(design), "--out", str(out1)])
    log = capsys.readouterr().err
    assert log.count("reused") == 1 and log.count("done") == 1
    for path in (out1 / "studies").iterdir():
        if path.name != lost.name:
            assert path.stat().st_mtime_ns == kept[path.name]
    pd.testing.assert_frame_equal(table.drop(columns="seconds_per_study"),
                                  pd.read_parquet(out1 / "power.parquet").drop(
                                      columns="seconds_per_study"))


def test_cli_power_bad_design_exits_2(tmp_path, capsys):
    design = tmp_path / "design.toml"
    design.write_text("[design]\nn_patients = [4]\nn_studies = 0\nprogram = 'x'\n")
    with pytest.raises(SystemExit) as done:
        main(["power", "--config", str(design), "--out", str(tmp_path / "out")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "`[design] n_studies` must be a positive integer; got 0." in err
    assert "`[design] n_patients` must be a non-empty list of integers >= 6; got 4." in err
    assert "`[design] program` must be one of cd8_core_infiltration" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_false_positive_rate_at_effect_one_is_nominal(tmp_path):
    """At effect 1.0 pre and post are identically distributed: the share of studies with
    p < 0.05 must match the exact size of the signed-rank test (at most 0.05) within the
    binomial interval, and 0.05 itself must lie in that interval."""
    design = DesignParams(program="spp1_macrophage_loss", effects=(1.0,), n_patients=(8,),
                          cores_per_patient=(0,), n_studies=60, seed=11,
                          remodel=RemodelParams(n_cells=2000))
    row = run_power(design, tmp_path).set_index("feature").loc[
        "density.border.GPNMB_macrophage"]
    assert row["n_tested"] == 60
    assert row["ci_low"] <= 0.05 <= row["ci_high"]
    # exact size of the two-sided signed-rank test with 8 untied pairs at p < 0.05: every
    # sign pattern of the ranks 1..8 is equally likely under the null
    signs = ((np.arange(256)[:, None] >> np.arange(8)) & 1) * 2 - 1
    size = np.mean([stats.wilcoxon(np.arange(1, 9) * s).pvalue < 0.05 for s in signs])
    assert 0.03 < size <= 0.05
    assert row["ci_low"] <= size <= row["ci_high"]


@pytest.mark.slow
def test_power_increases_with_cohort_size_and_effect(tmp_path):
    """SPP1+ macrophage loss in every patient: a deeper loss (effect further below 1) and a
    larger cohort detect it more often (common random numbers across the grid)."""
    design = DesignParams(program="spp1_macrophage_loss", effects=(0.7, 0.5),
                          n_patients=(6, 12), cores_per_patient=(0,), n_studies=12, seed=5,
                          remodel=RemodelParams(n_cells=2000, **ALL_RESPOND))
    table = run_power(design, tmp_path)
    power = table[table["feature"] == "density.border.GPNMB_macrophage"].set_index(
        ["effect", "n_patients"])["power"]
    assert power[(0.5, 6)] > power[(0.7, 6)]
    assert power[(0.7, 12)] > power[(0.7, 6)]
    assert power[(0.5, 12)] >= power[(0.5, 6)] and power[(0.5, 12)] >= power[(0.7, 12)]


def test_core_size_grid_and_cache_keys():
    design = DesignParams(core_diameter_um=[300, 500.0], cores_per_patient=[0, 3])
    assert design.core_diameter_um == (300.0, 500.0)
    assert DesignParams(core_diameter_um=800).core_diameter_um == (800.0,)
    from metaniche.studies.power import cell_key

    assert cell_key(design, 1.5, 10, 3, 300.0) != cell_key(design, 1.5, 10, 3, 500.0)
    # the whole slide does not depend on the core settings; the studies do on the seed
    other = DesignParams(core_diameter_um=[900.0], core_length_um=5.0, cores_per_patient=[0])
    assert cell_key(design, 1.5, 10, 0, None) == cell_key(other, 1.5, 10, 0, None)
    assert cell_key(design, 1.5, 10, 0, None) != cell_key(
        DesignParams(seed=1), 1.5, 10, 0, None)
    with pytest.raises(ValueError, match="core_diameter_um` must be a non-empty list of "
                                         "positive numbers; got -1"):
        DesignParams(core_diameter_um=[-1.0])
