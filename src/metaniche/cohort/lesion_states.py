"""Lesion size against cell states, pooled across the lesions and patients of a cohort.

The review's observation for liver metastases: small lesions are PD-L1-negative with CD8 T
cells in the core, large ones PD-L1-high with CD8 excluded. The exclusion half is
:mod:`metaniche.cohort.lesions`; this module is the state half, with the same statistic.
Each sample's ``states`` table (:func:`metaniche.analyses.states.state_table`) gives, per
lesion, the fraction of a type's cells carrying a state (compartment ``all`` of the lesion:
the lesion and the outside tissue nearest to it, as the per-lesion compartments); its
``lesions`` table gives the lesion's area. The rows of all samples are pooled, each sample's
patient attached (:func:`metaniche.cohort.matrix.sample_patients`), and for every cell type ×
state the fraction is tested against log10(area) by
:func:`metaniche.cohort.lesion_size.lesion_size_exclusion`: Spearman across lesions, and a
linear mixed model ``fraction ~ log10(area) + (1 | patient)`` (REML, t reference with
n_patients - 2 df) when at least three patients and one patient with several lesions.
Lesions without a cell of the type (fraction NaN) are left out of that row.
"""

from __future__ import annotations

import pandas as pd

from metaniche.cohort._qvalues import add_q_values
from metaniche.cohort.lesion_size import lesion_size_exclusion
from metaniche.cohort.matrix import sample_patients
from metaniche.config import ClinicalColumns
from metaniche.errors import InputError

__all__ = ["LESION_STATE_COLUMNS", "lesion_state_table", "pool_lesion_states"]

#: Columns of :func:`lesion_state_table`.
LESION_STATE_COLUMNS = ["cell_type", "state", "feature", "outcome", "test", "statistic",
                        "effect", "ci_low", "ci_high", "p", "q", "n_lesions", "n_patients",
                        "note"]
_STATE_COLUMNS = ("sample", "lesion_id", "compartment", "cell_type", "state", "n_cells",
                  "fraction")
_LESION_COLUMNS = ("sample", "lesion_id", "area_mm2")


def pool_lesion_states(states: pd.DataFrame, lesions: pd.DataFrame,
                       clinical: pd.DataFrame | None = None,
                       columns: ClinicalColumns | None = None,
                       patients: pd.Series | None = None,
                       compartment: str = "all") -> pd.DataFrame:
    """Per-lesion state rows of all samples with the lesion's area and the patient.

    Parameters
    ----------
    states
        The gathered ``tables/states.parquet``.
    lesions
        The gathered ``tables/lesions.parquet`` (``sample, lesion_id, area_mm2``).
    clinical, columns, patients
        As :func:`metaniche.cohort.lesions.pool_lesions`.
    compartment
        Compartment of the per-lesion rows to use (default ``all``).

    Returns
    -------
    pandas.DataFrame
        ``sample, lesion_id, cell_type, state, n_cells, fraction, area_mm2, patient``.

    Raises
    ------
    InputError
        When a required column is missing (naming the table and the fix).
    """
    for name, table, required in (("states", states, _STATE_COLUMNS),
                                  ("lesions", lesions, _LESION_COLUMNS)):
        missing = [c for c in required if c not in table.columns]
        if missing:
            raise InputError(f"tables/{name}.parquet lacks column(s) {missing}; re-run the "
                             "samples with this version.")
    columns = columns or ClinicalColumns()
    rows = states[states["lesion_id"].notna() & (states["compartment"] == compartment)]
    rows = rows[list(_STATE_COLUMNS)].copy()
    rows["sample"] = rows["sample"].astype(str)
    rows["lesion_id"] = rows["lesion_id"].astype("int64")
    sizes = lesions[list(_LESION_COLUMNS)].copy()
    sizes["sample"] = sizes["sample"].astype(str)
    sizes["lesion_id"] = sizes["lesion_id"].astype("int64")
    pooled = rows.merge(sizes, on=["sample", "lesion_id"], how="inner")
    of_sample, _ = sample_patients(pd.Index(pd.unique(pooled["sample"])), clinical, columns,
                                   patients)
    pooled["patient"] = pooled["sample"].map(of_sample).astype(str)
    return pooled.drop(columns="compartment")


def lesion_state_table(states: pd.DataFrame, lesions: pd.DataFrame,
                       clinical: pd.DataFrame | None = None,
                       columns: ClinicalColumns | None = None,
                       patients: pd.Series | None = None,
                       compartment: str = "all") -> pd.DataFrame:
    """Association of lesion size with every state fraction, per cell type × state.

    Parameters
    ----------
    states, lesions, clinical, columns, patients, compartment
        As :func:`pool_lesion_states`.

    Returns
    -------
    pandas.DataFrame
        :data:`LESION_STATE_COLUMNS`: per ``cell_type`` × ``state`` a ``spearman`` and a
        ``mixedlm`` row of :func:`metaniche.cohort.lesion_size.lesion_size_exclusion`
        (``feature`` = ``log10_area_mm2``, ``outcome`` = ``state_fraction.<compartment>``;
        effect = Spearman rho, or the mixed-model change of the fraction per tenfold
        area with its 95 % CI); ``q``: Benjamini–Hochberg over the finite p of each test.
        Empty (with these columns) without lesion rows.
    """
    pooled = pool_lesion_states(states, lesions, clinical, columns, patients, compartment)
    parts = []
    for (cell_type, state), group in pooled.groupby(["cell_type", "state"], sort=True):
        part = lesion_size_exclusion(group, size_column="area_mm2", exclusion_column="fraction",
                                     patient_column="patient")
        parts.append(part.assign(cell_type=str(cell_type), state=str(state),
                                 outcome=f"state_fraction.{compartment}"))
    if not parts:
        return pd.DataFrame(columns=LESION_STATE_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    return add_q_values(table, "test")[LESION_STATE_COLUMNS]
