"""The composition stage: an infinite core/border ratio is an NA feature with its reason."""

from __future__ import annotations

import math

import pandas as pd

from metaniche.analyses.compartments import BORDER, COMPARTMENTS, WHOLE
from metaniche.config import Config
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import composition


def test_no_effector_in_the_border_gives_an_na_ratio_with_its_reason():
    cells = simulate_sample("s", n_cells=6000, seed=4, phenotype="inflamed").cells
    config = Config()
    first = build_context("s", cells, config)
    in_border = first.compartments.compartment == BORDER
    cells.loc[in_border & (cells["cell_type"] == "CD8_T").to_numpy(), "cell_type"] = "Macrophage"
    context = build_context("s", cells, config)
    output = composition.run(context)

    table = output.tables["composition"]
    whole = table[table["lesion_id"].isna() & (table["cell_type"] == "CD8_T")]
    by = whole.set_index("compartment")["n_cells"]
    assert by.get(BORDER, 0) == 0 and by["core"] > 0  # the planted situation
    assert output.features["phenotype"] == "inflamed"  # the rule still reads x/0 as inf
    assert math.isnan(output.features["effector_core_border_ratio"])
    assert any("effector_core_border_ratio is NA: no effector cell in the border" in w
               for w in output.warnings)
    # a finite ratio is the feature itself, without the warning
    normal = composition.run(build_context("s", simulate_sample(
        "s", n_cells=6000, seed=4, phenotype="inflamed").cells, config))
    assert math.isfinite(normal.features["effector_core_border_ratio"])
    assert not any("effector_core_border_ratio" in w for w in normal.warnings)


def test_a_sample_without_tumour_has_one_compartments_row_per_key():
    # every cell relabelled non-tumour: no lesion, every cell has lesion 0
    cells = simulate_sample("s", n_cells=3_000, seed=2).cells
    cells["cell_type"] = cells["cell_type"].replace({"Tumor": "Stroma"})
    ctx = build_context("s", cells, Config())
    assert int(ctx.compartments.lesion_id.max()) == 0
    table = composition.compartment_counts(ctx.compartments)
    keys = table[["lesion_id", "compartment"]].astype(str).agg("/".join, axis=1)
    assert not keys.duplicated().any(), table
    known = table[table["compartment"] != WHOLE]
    counted = int(pd.Series(ctx.compartments.compartment).isin(COMPARTMENTS).sum())
    assert known["n_cells"].sum() == counted
    assert int(table.loc[table["compartment"] == WHOLE, "n_cells"].iloc[0]) == len(cells)
