"""Automatic scales, the export's tissue category and every reason a compartment result is NA.

Ground truth is planted (lesion discs and nests on jittered lattices), computed by hand
(Cohen's kappa from its definition, border counts by brute force) or read from inForm's own
tissue segmentation on the real phenoptr field.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import shapely
from _tissue import lattice

from metaniche._contract import TISSUE_CATEGORY
from metaniche.analyses.compartments import (
    BORDER,
    REFERENCE_SCALES,
    REFERENCE_SPACING_UM,
    assign_compartments,
    median_nn_distance,
    region_agreement,
    resolve_scales,
    sample_compartments,
)
from metaniche.config import CellTypeRoles, CompartmentParams, Config
from metaniche.errors import InputError
from metaniche.io import SampleInput
from metaniche.rundir import RunDir, config_hash
from metaniche.sample import SampleTask, analyse_sample, sample_task


def jittered_lattice(side_um: float, spacing_um: float, seed: int = 0):
    """Cells on a square lattice of the given spacing, jittered by ±35% of it."""
    rng = np.random.default_rng(seed)
    centres = np.arange(spacing_um / 2, side_um, spacing_um)
    grid_x, grid_y = np.meshgrid(centres, centres)
    jitter = rng.uniform(-0.35, 0.35, (2, grid_x.size)) * spacing_um
    return grid_x.ravel() + jitter[0], grid_y.ravel() + jitter[1]


def cell_table(x, y, labels, **extra) -> pd.DataFrame:
    return pd.DataFrame({"cell_id": np.arange(len(x)).astype(str), "x": x, "y": y,
                         "cell_type": labels, **extra})


def disc_sample(seed: int = 0, tumour_label: str = "Tumor", side: float = 1500.0,
                radius: float = 400.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A disc lesion (85% tumour cells inside) with CD8 T cells everywhere; true inside."""
    x, y = lattice(side, seed)
    rng = np.random.default_rng(seed + 1)
    inside = np.hypot(x - side / 2, y - side / 2) < radius
    labels = np.where(inside & (rng.random(x.size) < 0.85), tumour_label, "Stroma")
    labels = np.where((labels == "Stroma") & (rng.random(x.size) < 0.15), "CD8_T", labels)
    return cell_table(x, y, labels), inside


def phenotype_reason(analysis) -> str:
    """The reason of an undetermined phenotype, from the sample's warnings ("" if none)."""
    prefix = "immune phenotype undetermined: "
    found = [w[len(prefix):] for w in analysis.compartments.warnings if w.startswith(prefix)]
    assert len(found) <= 1
    return found[0] if found else ""


# --- automatic scales -------------------------------------------------------------------------

def test_reference_spacing_keeps_reference_scales_and_dense_tissue_scales_down():
    x, y = lattice(2000.0)                     # 3,000 cells/mm², the reference tissue
    params, scales = resolve_scales(CompartmentParams(), x, y)
    assert scales["scale_factor"] == 1.0
    for name, (reference, _) in REFERENCE_SCALES.items():
        assert getattr(params, name) == reference, name
    dense_x, dense_y = jittered_lattice(600.0, 6.0)
    spacing = median_nn_distance(dense_x, dense_y)
    params, scales = resolve_scales(CompartmentParams(), dense_x, dense_y)
    factor = spacing / REFERENCE_SPACING_UM
    assert scales["scale_factor"] == pytest.approx(factor)
    assert params.smoothing_um == pytest.approx(20.0 * factor)
    assert params.min_lesion_area_um2 == pytest.approx(20_000.0 * factor**2)
    # A value the user sets is kept.
    params, _ = resolve_scales(CompartmentParams(smoothing_um=12.0), dense_x, dense_y)
    assert params.smoothing_um == 12.0


@pytest.mark.parametrize("spacing_um, side_um, nest_radius_um", [
    (18.0, 2400.0, 150.0),      # ≈ 3,000 cells/mm²: whole-slide-like tissue
    (6.0, 800.0, 50.0),         # ≈ 28,000 cells/mm²: a small dense mIF field, small nests
])
def test_planted_nests_recovered_with_default_settings(spacing_um, side_um, nest_radius_um):
    x, y = jittered_lattice(side_um, spacing_um, seed=2)
    rng = np.random.default_rng(5)
    centres = np.array([[0.3, 0.3], [0.7, 0.35], [0.5, 0.72]]) * side_um
    distance = (np.hypot(x[:, None] - centres[:, 0], y[:, None] - centres[:, 1])
                - nest_radius_um).min(axis=1)
    is_tumor = (distance < 0) & (rng.random(x.size) < 0.85)
    is_immune = ~is_tumor & (rng.random(x.size) < 0.15)
    result = assign_compartments(x, y, is_tumor, is_immune)
    assert len(result.lesions) == 3
    clear = np.abs(distance) > 2 * spacing_um
    inside = result.signed_distance_um < 0
    assert np.mean(inside[clear] == (distance[clear] < 0)) > 0.97
    lesion_area = np.pi * nest_radius_um**2 / 1e6
    assert result.lesions["area_mm2"].to_numpy() == pytest.approx(lesion_area, rel=0.2)
    if spacing_um < 10:
        # The reference scales (the former fixed defaults) lose these nests: the rule matters.
        fixed = CompartmentParams(**{name: value for name, (value, _) in
                                     REFERENCE_SCALES.items()})
        assert len(assign_compartments(x, y, is_tumor, is_immune, fixed).lesions) < 3


def test_phenoptr_defaults_agree_with_inform_tissue_category(data_dir, capsys):
    """Only the tumour label set: inside/outside against inForm's Tumor/Stroma categories."""
    cells = pd.read_csv(data_dir / "cells" / "phenoptr_akoya_sample.cells.csv.gz")
    config = Config(cell_types=CellTypeRoles(tumor=("CK+",)))
    analysis = analyse_sample(cells, config)
    kappa = analysis.features["region_agreement.kappa"]
    truth = (cells[TISSUE_CATEGORY] == "Tumor").to_numpy()
    inside = analysis.compartments.signed_distance_um < 0
    with capsys.disabled():
        print(f"\nphenoptr, defaults: kappa {kappa:.3f} against inForm tissue_category "
              f"(scale factor {analysis.compartments.scales['scale_factor']:.2f})")
    table = analysis.tables["compartments"]
    assert (table["smoothing_um"] == analysis.compartments.scales["smoothing_um"]).all()
    assert kappa == pytest.approx(_kappa_by_hand(inside, truth))
    # 0.57 with the former fixed scales; the spacing rule gives 0.74 (hand-tuned: 0.83).
    assert kappa >= 0.70
    by_category = analyse_sample(cells, dataclasses.replace(
        config, compartments=CompartmentParams(region="tissue_category")))
    assert by_category.features["region_agreement.kappa"] >= 0.75


# --- the export's tissue category -------------------------------------------------------------

def _kappa_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    observed = np.mean(a == b)
    expected = np.mean(a) * np.mean(b) + np.mean(~a) * np.mean(~b)
    return float((observed - expected) / (1 - expected))


def test_region_from_tissue_category_follows_the_category_not_the_labels():
    cells, inside = disc_sample()
    # Cell labels say nothing about tumour; the export's category carries the disc.
    cells["cell_type"] = np.where(cells["cell_type"] == "Tumor", "CK+", cells["cell_type"])
    cells[TISSUE_CATEGORY] = np.where(inside, "tumour", "Stroma")   # any case matches
    config = Config(compartments=CompartmentParams(region="tissue_category"))
    result = sample_compartments(cells, cells["x"], cells["y"], np.zeros(len(cells), bool),
                                 np.zeros(len(cells), bool), config)
    detected = result.signed_distance_um < 0
    assert np.mean(detected == inside) > 0.98
    assert result.region_agreement_kappa == pytest.approx(_kappa_by_hand(detected, inside))
    assert result.region_agreement_kappa > 0.95
    with pytest.raises(InputError, match=r"region = 'tissue_category'.*no 'tissue_category'"):
        sample_compartments(cells.drop(columns=TISSUE_CATEGORY), cells["x"], cells["y"],
                            np.zeros(len(cells), bool), np.zeros(len(cells), bool), config)


def test_poor_agreement_with_the_tissue_category_is_warned():
    cells, _ = disc_sample()
    rng = np.random.default_rng(9)
    cells[TISSUE_CATEGORY] = np.where(rng.random(len(cells)) < 0.5, "Tumor", "Stroma")
    analysis = analyse_sample(cells, Config())
    kappa = analysis.features["region_agreement.kappa"]
    assert abs(kappa) < 0.1
    assert any("Cohen's kappa" in w for w in analysis.compartments.warnings)
    assert np.isnan(region_agreement(np.ones(5, bool), np.array([1, 0, 1, 0, 1], bool)))
    cells[TISSUE_CATEGORY] = "Stroma"                 # one class: kappa undefined, said so
    analysis = analyse_sample(cells, Config())
    assert np.isnan(analysis.features["region_agreement.kappa"])
    assert any("region_agreement.kappa is undefined (NaN): every cell's tissue category is a "
               "non-tumour category" in w for w in analysis.compartments.warnings)


# --- NA always with a reason ------------------------------------------------------------------

def test_configured_tumour_label_matching_no_cell_is_named_with_the_labels_present():
    cells, _ = disc_sample(tumour_label="CK+")
    analysis = analyse_sample(cells, Config(cell_types=CellTypeRoles(tumor=("Tumor",))))
    counts = cells["cell_type"].value_counts()
    first = analysis.compartments.warnings[0]
    assert first.startswith("no cell matched the tumour labels ['Tumor']")
    assert f"CK+ ({counts['CK+']:,})" in first and "set [cell_types] tumor" in first
    assert analysis.features["phenotype"] == "undetermined"
    assert "no tumour region" in phenotype_reason(analysis)


def test_default_pattern_matching_no_cell_names_the_pattern_and_the_category_option():
    cells, inside = disc_sample(tumour_label="CK+")
    cells[TISSUE_CATEGORY] = np.where(inside, "Tumor", "Stroma")
    warnings = analyse_sample(cells, Config()).compartments.warnings
    assert "default tumour pattern '^tumou?r'" in warnings[0]
    assert "region = 'tissue_category'" in warnings[0]


def test_all_tumour_and_no_effector_cells_carry_reasons():
    x, y = lattice(800.0)
    cells = cell_table(x, y, np.full(x.size, "Tumor"))
    analysis = analyse_sample(cells, Config())
    assert any("covers all of the tissue" in w for w in analysis.compartments.warnings)
    assert analysis.features["phenotype"] == "undetermined"
    reason = phenotype_reason(analysis)
    assert "no border tissue" in reason and "effector" in reason

    cells, _ = disc_sample()
    cells["cell_type"] = cells["cell_type"].replace("CD8_T", "Stroma")   # no immune cells
    analysis = analyse_sample(cells, Config())
    assert analysis.features["phenotype"] == "undetermined"
    reason = phenotype_reason(analysis)
    assert reason.startswith("no cell matched an effector label")
    assert "set [phenotype] effector_types" in reason
    determined = analyse_sample(disc_sample()[0], Config())
    assert determined.features["phenotype"] != "undetermined"
    assert phenotype_reason(determined) == ""


def test_annotation_outside_the_tissue_is_warned():
    cells, _ = disc_sample()
    far_away = [shapely.box(50_000, 50_000, 51_000, 51_000)]
    analysis = analyse_sample(cells, Config(), annotation=far_away)
    assert any("annotation" in w and "contains no tissue" in w
               for w in analysis.compartments.warnings)
    assert "no tumour region" in phenotype_reason(analysis)


def test_a_border_holding_most_cells_is_warned_with_the_brute_force_count():
    cells, _ = disc_sample(side=700.0, radius=200.0)
    result = analyse_sample(cells, Config()).compartments
    n_border = int(np.sum(np.abs(result.signed_distance_um) <= 100.0))
    assert n_border > 0.5 * len(cells)
    warning = next(w for w in result.warnings if w.startswith("border_um = 100 puts"))
    assert f"{n_border:,} of {len(cells):,} cells" in warning
    narrow = analyse_sample(cells, Config(compartments=CompartmentParams(border_um=20)))
    assert not any(w.startswith("border_um") for w in narrow.compartments.warnings)
    assert result.compartment.tolist().count(BORDER) == n_border


def test_reasons_reach_the_sample_record(tmp_path):
    cells, _ = disc_sample(tumour_label="CK+")
    config = Config(cell_types=CellTypeRoles(tumor=("Tumor",)))
    sample = SampleInput("S1", tmp_path / "S1.csv", cells.assign(sample="S1"),
                         checksum="x")
    record = sample_task(SampleTask(sample, config, str(tmp_path / "run"),
                                    config_hash(config)))
    assert record.status == "ok", record.error
    assert any("no cell matched the tumour labels ['Tumor']" in w for w in record.warnings)
    assert any(w.startswith("immune phenotype undetermined") for w in record.warnings)
    json.dumps(record.warnings)       # plain strings, ready for run.json
    assert RunDir(tmp_path / "run").root.is_dir()
