"""Cell roles: the one set of rules, and the context's masks computed from them."""

from __future__ import annotations

import numpy as np
import pytest

from metaniche import roles
from metaniche.config import AggregateParams, CellTypeRoles, Config, GradientParams
from metaniche.features import FEATURE_FAMILIES, feature_name, feature_namer
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample

TYPES = ["B", "BC1", "CD20_B", "CD4_T", "CD8_T", "Endothelial", "T", "Th2", "Tc_CD8", "Tumor",
         "Treg", "tumour_cells"]


def test_default_rules_by_label():
    config = Config()
    assert roles.tumour_types(TYPES, config) == ["Tumor", "tumour_cells"]
    assert roles.effector_types(TYPES, config) == ["CD8_T", "Tc_CD8"]
    assert roles.infiltration_types(TYPES, config) == ["CD8_T", "Tc_CD8"]
    b, t = roles.b_and_t_types(TYPES, config)
    assert b == ["B", "BC1", "CD20_B"]
    assert t == ["CD4_T", "CD8_T", "T", "Th2", "Tc_CD8", "Treg"]
    immune = roles.immune_types(TYPES, config)
    assert "Tumor" not in immune and "Endothelial" not in immune and "CD8_T" in immune


def test_configured_lists_win_over_the_patterns():
    config = Config(cell_types=CellTypeRoles(tumor=("Endothelial",), lineage={"B": ("T",)}),
                    gradients=GradientParams(infiltration_types=("CD4_T", "absent")),
                    aggregates=AggregateParams(t_types=("Treg",)))
    assert roles.tumour_types(TYPES, config) == ["Endothelial"]
    assert roles.infiltration_types(TYPES, config) == ["CD4_T"]     # present ones only
    assert roles.b_and_t_types(TYPES, config) == (["T"], ["Treg"])


def test_tumour_guess_by_position():
    codes = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])
    sd = np.array([-5, -4, -3, -2, 1, -1, 2, 3, 4], float)     # type 0: 4/5 inside = 0.8
    assert roles.tumour_types_by_position(codes, ["a", "b"], sd, fraction=0.79) == ["a"]
    assert roles.tumour_types_by_position(codes, ["a", "b"], sd) == []   # needs > 0.8
    assert roles.tumour_types_by_position(codes, ["a", "b"], np.full(9, np.nan)) == []


def test_context_masks_equal_label_membership():
    sample = simulate_sample("r", n_cells=2500, seed=1, with_tls=True)
    context = build_context("r", sample.cells, Config())
    labels = context.labels
    b, t = context.b_and_t_types
    for mask, types in ((context.is_tumor, context.tumor_types),
                        (context.is_immune, context.immune_types),
                        (context.is_effector, context.effector_types),
                        (context.is_infiltration, context.infiltration_types),
                        (context.is_b, b), (context.is_t, t)):
        assert mask.dtype == bool
        np.testing.assert_array_equal(mask, np.isin(labels, types))
    assert context.is_effector.any() and context.is_b.any() and context.is_tumor.any()
    assert context.is_tumor is context.is_tumor     # computed once


def test_feature_name_joins_and_refuses_unregistered_families():
    assert feature_name("density", "core", "CD8_T") == "density.core.CD8_T"
    assert feature_name("n_cells") == "n_cells"
    assert feature_namer({"tls": ("", "")})("tls", "count", 3) == "tls.count.3"
    with pytest.raises(KeyError, match="unregistered"):
        feature_name("tls", "count", families=FEATURE_FAMILIES)
