"""The spine recovers the simulator's planted truth (the acceptance test of issue 2)."""

from __future__ import annotations

import numpy as np
import pytest

from metaniche.config import Config, load_config
from metaniche.sample import analyse_sample
from metaniche.simulate import analytic_compartment_areas, simulate_cohort, write_cohort

BORDER_UM = 100.0


@pytest.fixture(scope="module")
def demo_cohort(tmp_path_factory):
    """The demo cohort (same call as `metaniche demo`), analysed in memory."""
    samples, clinical = simulate_cohort(n_samples=6, n_cells=20_000, seed=0)
    folder = write_cohort(tmp_path_factory.mktemp("sim"), samples, clinical)
    config = load_config(folder / "config.toml")
    return [(sample, analyse_sample(sample.cells, config)) for sample in samples]


def test_compartments_match_truth(demo_cohort):
    for sample, analysis in demo_cohort:
        truth = sample.truth
        true_sd = truth["signed_distance_um"].to_numpy()
        clear = np.abs(np.abs(true_sd) - BORDER_UM) > 10
        correct = analysis.cells["compartment"].to_numpy() == truth["compartment"].to_numpy()
        assert correct[clear].mean() >= 0.98, sample.name
        error = analysis.cells["signed_distance_um"].to_numpy() - true_sd
        assert np.median(np.abs(error)) < 10, sample.name


def test_every_planted_phenotype_is_recovered(demo_cohort):
    planted = [sample.phenotype for sample, _ in demo_cohort]
    found = [analysis.features["phenotype"] for _, analysis in demo_cohort]
    assert set(planted) == {"inflamed", "excluded", "desert"}
    assert found == planted


def test_lesion_count_matches_truth(demo_cohort):
    for sample, analysis in demo_cohort:
        assert analysis.features["n_lesions"] == len(sample.lesions), sample.name


def test_compartment_areas_match_analytic_areas(demo_cohort):
    for sample, analysis in demo_cohort:
        analytic = analytic_compartment_areas(sample, BORDER_UM)
        areas = analysis.tables["compartments"]
        whole = areas[areas["lesion_id"].isna()].set_index("compartment")["area_mm2"]
        for name in ("core", "border", "adjacent"):
            assert whole[name] == pytest.approx(analytic[name], rel=0.03), (sample.name, name)
        assert whole["all"] == pytest.approx(analytic["tissue"], rel=0.03)


def test_defaults_without_the_simulators_config_also_work(demo_cohort):
    # Default roles: "Tumor" matches ^tumou?r, immune labels match the lineage pattern.
    sample, expected = demo_cohort[0]
    analysis = analyse_sample(sample.cells, Config())
    agree = np.mean(analysis.cells["compartment"] == expected.cells["compartment"])
    assert agree > 0.99
