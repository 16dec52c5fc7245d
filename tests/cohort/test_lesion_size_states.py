"""Lesion size vs cell states (:mod:`metaniche.cohort.lesion_states`): the planted rise of
PD-L1+ tumour with lesion size (``simulate_sample(pdl1_lesion_size=True)``) is recovered by
the mixed model through the compartments and states stages, and a flat control is not."""

from __future__ import annotations

import pandas as pd
import pytest

from metaniche import tables as T
from metaniche.cohort.lesion_states import LESION_STATE_COLUMNS, lesion_state_table
from metaniche.config import Config, StateRule, StatesParams
from metaniche.errors import InputError
from metaniche.sample import build_context
from metaniche.simulate import PDL1_LESION_SIZE, STATE_THRESHOLD, simulate_sample
from metaniche.stages import states as states_stage

CONFIG = Config(states=StatesParams(rules={
    "PDL1_pos": StateRule(marker="PDL1", threshold=STATE_THRESHOLD,
                          cell_types=("Macrophage", "Tumor"))}))


def _cohort(planted: bool) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Seven patients, one sample of 3–4 lesions each; states and lesions tables."""
    states, lesions, clinical = [], [], []
    for i in range(7):
        name = f"S{i}"
        sample = simulate_sample(name, n_cells=22_000, seed=100 + i, phenotype="desert",
                                 n_lesions=3 + i % 2, with_tls=False, necrosis=False,
                                 states=True, pdl1_lesion_size=planted)
        context = build_context(name, sample.cells, CONFIG)
        table = states_stage.run(context).tables[T.STATES]
        states.append(table.assign(sample=name))
        lesions.append(context.compartments.lesions.assign(sample=name))
        clinical.append({"sample": name, "patient": f"P{i}"})
    return pd.concat(states), pd.concat(lesions), pd.DataFrame(clinical)


def _row(table: pd.DataFrame, test: str) -> pd.Series:
    return table[(table["cell_type"] == "Tumor") & (table["state"] == "PDL1_pos")
                 & (table["test"] == test)].iloc[0]


@pytest.mark.parametrize("planted", [True, False])
def test_pdl1_tumour_fraction_against_log_lesion_area(planted):
    states, lesions, clinical = _cohort(planted)
    table = lesion_state_table(states, lesions, clinical)
    assert list(table.columns) == LESION_STATE_COLUMNS
    mixed = _row(table, "mixedlm")
    assert mixed["n_patients"] == 7 and mixed["n_lesions"] >= 20
    slope = PDL1_LESION_SIZE[1] if planted else 0.0
    assert mixed["ci_low"] <= slope <= mixed["ci_high"]
    if planted:
        assert mixed["p"] < 1e-3 and _row(table, "spearman")["effect"] > 0.7
    assert mixed["outcome"] == "state_fraction.all" and mixed["feature"] == "log10_area_mm2"


def test_missing_columns_are_one_sentence():
    states = pd.DataFrame({"sample": ["a"], "lesion_id": [1]})
    with pytest.raises(InputError, match=r"tables/states\.parquet lacks column"):
        lesion_state_table(states, pd.DataFrame({"sample": [], "lesion_id": [],
                                                 "area_mm2": []}))
    empty = lesion_state_table(
        pd.DataFrame({c: [] for c in ("sample", "lesion_id", "compartment", "cell_type",
                                      "state", "n_cells", "fraction")}),
        pd.DataFrame({"sample": [], "lesion_id": [], "area_mm2": []}))
    assert empty.empty and list(empty.columns) == LESION_STATE_COLUMNS
