"""Pooled gradients per group and the band × group shape test, against planted truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.cohort.gradient_shape import (
    gradient_shape_table,
    pooled_group_gradients,
    unit_band_profiles,
)

STARTS = np.arange(-200.0, 200.0, 20.0)   # 20 bins of 20 µm, 10 inside tumour


def _cohort(seed: int, n_per_group: int = 8, shape_effect: float = 0.0,
            level_effect: float = 0.0, images_per_patient: int = 1,
            patient_sd: float = 0.3) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Gradient tables of two groups: density 40 · exp(slope · d / 100) cells/mm².

    Group B's slope differs by ``shape_effect`` (per 100 µm) and its level by ``level_effect``
    (log scale); every patient has its own level (SD ``patient_sd``) and band areas that vary
    between images (0.02–0.2 mm²). Counts are negative binomial (overdispersed).
    """
    rng = np.random.default_rng(seed)
    rows, labels, patients = [], {}, {}
    centre = STARTS + 10.0
    for group in ("A", "B"):
        for p in range(n_per_group):
            patient = f"{group}{p}"
            level = rng.normal(0.0, patient_sd) + (level_effect if group == "B" else 0.0)
            slope = -0.5 + (shape_effect if group == "B" else 0.0)
            for image in range(images_per_patient):
                sample = f"{patient}_{image}"
                labels[sample], patients[sample] = group, patient
                area = rng.uniform(0.02, 0.2, len(STARTS))
                mean = 40.0 * np.exp(level + slope * centre / 100.0) * area
                counts = rng.negative_binomial(5, 5 / (5 + mean))
                rows.extend(zip([sample] * len(STARTS), [None] * len(STARTS),
                                ["CD8_T"] * len(STARTS), STARTS, STARTS + 20.0, counts, area,
                                strict=True))
    table = pd.DataFrame(rows, columns=["sample", "lesion_id", "cell_type", "bin_start_um",
                                        "bin_end_um", "n_cells", "area_mm2"])
    return table, pd.Series(labels), pd.Series(patients)


def test_pooled_gradient_is_sum_of_cells_over_sum_of_area():
    table, labels, _ = _cohort(0)
    pooled = pooled_group_gradients(table, labels)
    for (group, start), row in pooled.set_index(["group", "bin_start_um"]).iterrows():
        members = table[(table["sample"].map(labels) == group)
                        & (table["bin_start_um"] == start)]
        assert row["n_cells"] == members["n_cells"].sum()
        assert row["density_per_mm2"] == pytest.approx(
            members["n_cells"].sum() / members["area_mm2"].sum(), rel=1e-12)
        assert row["n_samples"] == 8


def test_unit_profiles_sum_a_patients_images_and_merge_bins():
    table, _, patients = _cohort(1, images_per_patient=3)
    cells, area, start, end = unit_band_profiles(table, "CD8_T", patients, max_bands=5)
    assert cells.shape == (16, 5) and area.shape == (16, 5)
    np.testing.assert_array_equal(start, STARTS[::4])
    np.testing.assert_array_equal(end, STARTS[3::4] + 20.0)
    first = table[table["sample"].map(patients) == "A0"]
    first_band = first[first["bin_start_um"] < STARTS[4]]
    assert cells.loc["A0"].iloc[0] == first_band["n_cells"].sum()
    assert area[list(cells.index).index("A0"), 0] == pytest.approx(first_band["area_mm2"].sum())


def test_bands_with_too_little_area_in_some_unit_are_left_out():
    table, labels, _ = _cohort(2)
    thin = (table["sample"] == "A0_0") & (table["bin_start_um"] == STARTS[0])
    table.loc[thin, "area_mm2"] = 1e-4
    _, _, start, _ = unit_band_profiles(table, "CD8_T", pd.Series(labels.index, labels.index),
                                        max_bands=len(STARTS))
    assert STARTS[0] not in start and len(start) == len(STARTS) - 1


def test_planted_shape_difference_is_found():
    for seed in range(3):
        table, labels, patients = _cohort(seed, shape_effect=0.6)
        result = gradient_shape_table(table, labels, patients, n_permutations=499, seed=seed)
        row = result.iloc[0]
        assert row["feature"] == "gradient_shape.CD8_T" and row["unit"] == "sample"
        assert row["p"] < 0.01, (seed, row["p"])


def test_level_difference_alone_keeps_the_size():
    """Null: group B has 2.7× the density everywhere (a level, not a shape, difference) and
    patients differ in level; the shape test must reject at about its nominal rate."""
    p_values = []
    for seed in range(60):
        table, labels, patients = _cohort(100 + seed, n_per_group=6, level_effect=1.0)
        result = gradient_shape_table(table, labels, patients, n_permutations=199, seed=seed)
        p_values.append(float(result["p"].iloc[0]))
    rejected = np.mean(np.asarray(p_values) <= 0.05)
    print(f"false positives at alpha 0.05 over 60 null cohorts: {rejected:.3f}")
    assert rejected <= 0.10   # nominal 0.05; binomial(60, 0.05) exceeds 6 with p ≈ 0.04


def test_patients_with_several_images_are_the_unit():
    table, labels, patients = _cohort(5, n_per_group=5, shape_effect=0.6, images_per_patient=3)
    result = gradient_shape_table(table, labels, patients, n_permutations=199)
    assert result["unit"].iloc[0] == "patient" and result["n"].iloc[0] == 10
    assert result["p"].iloc[0] < 0.05


def test_too_few_units_per_group_gives_no_test():
    table, labels, patients = _cohort(6, n_per_group=2, shape_effect=1.0)
    result = gradient_shape_table(table, labels, patients, min_group=3)
    assert np.isnan(result["p"].iloc[0]) and result["n"].iloc[0] == 4
