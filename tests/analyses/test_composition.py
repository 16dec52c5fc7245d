"""Composition and immune phenotype against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.composition import composition_table, immune_phenotype
from metaniche.config import PhenotypeParams

AREAS = pd.DataFrame({
    "lesion_id": [1, 1, 1, 2, 2, 2, 0, 0, 0, 0],
    "compartment": ["core", "border", "adjacent"] * 3 + ["all"],
    "area_mm2": [0.5, 0.4, 1.0, 0.1, 0.2, 0.3, 0.6, 0.6, 1.3, 2.5],
})


def toy_cells():
    # lesion 1: core 10 Tumor + 5 CD8_T; border 4 Tumor + 4 CD8_T; adjacent 10 Hep
    # lesion 2: core 3 Tumor; border 2 CD8_T; adjacent none
    spec = [
        (1, "core", "Tumor", 10), (1, "core", "CD8_T", 5), (1, "border", "Tumor", 4),
        (1, "border", "CD8_T", 4), (1, "adjacent", "Hep", 10), (2, "core", "Tumor", 3),
        (2, "border", "CD8_T", 2),
    ]
    lesion, compartment, cell_type = [], [], []
    for lesion_id, comp, label, count in spec:
        lesion += [lesion_id] * count
        compartment += [comp] * count
        cell_type += [label] * count
    order = np.random.default_rng(0).permutation(len(lesion))
    return (np.array(cell_type)[order], np.array(compartment, dtype=object)[order],
            np.array(lesion)[order])


def test_composition_counts_densities_and_proportions():
    cell_type, compartment, lesion = toy_cells()
    table = composition_table(cell_type, compartment, lesion, AREAS)
    row = table.set_index(["lesion_id", "compartment", "cell_type"])
    assert row.loc[(1, "core", "CD8_T"), "n_cells"] == 5
    assert row.loc[(1, "core", "CD8_T"), "density_per_mm2"] == pytest.approx(5 / 0.5)
    assert row.loc[(1, "core", "CD8_T"), "proportion"] == pytest.approx(5 / 15)
    assert row.loc[(2, "adjacent", "Hep"), "n_cells"] == 0
    assert np.isnan(row.loc[(2, "adjacent", "Hep"), "proportion"])
    whole = table[table["lesion_id"].isna()].set_index(["compartment", "cell_type"])
    assert whole.loc[("core", "Tumor"), "n_cells"] == 13
    assert whole.loc[("core", "Tumor"), "density_per_mm2"] == pytest.approx(13 / 0.6)
    assert whole.loc[("border", "CD8_T"), "proportion"] == pytest.approx(6 / 10)
    assert whole.loc[("all", "CD8_T"), "density_per_mm2"] == pytest.approx(11 / 2.5)
    assert whole.loc[("all", "Hep"), "proportion"] == pytest.approx(10 / 38)
    # Every type in every compartment, zeros included: 3 types × (3 + 3 + 4) rows.
    assert len(table) == 3 * 10


def test_composition_is_invariant_to_cell_order():
    cell_type, compartment, lesion = toy_cells()
    base = composition_table(cell_type, compartment, lesion, AREAS)
    order = np.random.default_rng(5).permutation(len(cell_type))
    shuffled = composition_table(cell_type[order], compartment[order], lesion[order], AREAS)
    pd.testing.assert_frame_equal(base, shuffled)


def phenotype_of(core_cd8, border_cd8, params=None):
    areas = AREAS[AREAS["lesion_id"] == 0].assign(area_mm2=[1.0, 1.0, 1.0, 3.0])
    cell_type = np.array(["CD8_T"] * (core_cd8 + border_cd8))
    compartment = np.array(["core"] * core_cd8 + ["border"] * border_cd8, dtype=object)
    table = composition_table(cell_type, compartment, np.zeros(len(cell_type), int), areas)
    return immune_phenotype(table, ["CD8_T"], params)


@pytest.mark.parametrize(("core", "border", "expected"), [
    (200, 300, "inflamed"), (10, 300, "excluded"), (89, 300, "excluded"),
    (90, 300, "inflamed"), (20, 40, "desert"), (49, 49, "desert"), (60, 0, "inflamed"),
])
def test_phenotype_rules(core, border, expected):
    result = phenotype_of(core, border)
    assert result.phenotype == expected
    assert result.core_density_per_mm2 == pytest.approx(core)


def test_phenotype_thresholds_come_from_params():
    strict = PhenotypeParams(desert_max_per_mm2=500.0)
    assert phenotype_of(200, 300, strict).phenotype == "desert"


def test_composition_matches_brute_force_counts():
    """Every row against a direct count over the cells (random labels, lesions 0/1/3/7,
    a compartment outside the list and a type outside ``cell_types``, neither counted)."""
    rng = np.random.default_rng(11)
    n = 300
    cell_type = rng.choice(["A", "B", "C", "Other"], n).astype(object)
    compartment = rng.choice(["core", "border", "adjacent", "odd"], n).astype(object)
    lesion = rng.choice([0, 1, 3, 7], n)
    areas = AREAS.assign(lesion_id=[1, 1, 1, 3, 3, 3, 0, 0, 0, 0])
    table = composition_table(cell_type, compartment, lesion, areas, cell_types=["B", "A", "C"])
    assert len(table) == 3 * (3 * 3 + 3 + 1)       # lesions 1, 3, 7; whole; all
    listed = np.isin(cell_type, ["A", "B", "C"])
    for row in table.itertuples(index=False):
        whole = pd.isna(row.lesion_id)
        in_group = (np.ones(n, bool) if whole else lesion == row.lesion_id) & listed
        if row.compartment != "all":
            in_group &= compartment == row.compartment
        count = int(np.sum(in_group & (cell_type == row.cell_type)))
        assert row.n_cells == count
        key = (0 if whole else row.lesion_id, row.compartment)
        area = dict(zip(zip(areas["lesion_id"], areas["compartment"], strict=True),
                        areas["area_mm2"], strict=True)).get(key, 0.0)
        assert row.area_mm2 == area
        if area > 0:
            assert row.density_per_mm2 == pytest.approx(count / area)
        else:
            assert np.isnan(row.density_per_mm2)
        total = int(in_group.sum())
        if total:
            assert row.proportion == pytest.approx(count / total)
        else:
            assert np.isnan(row.proportion)
