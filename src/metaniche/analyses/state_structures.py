"""Cell states inside and outside multicellular structures (TLS, lymphoid clusters, units).

The communities stage finds B/T aggregates (kind ``tls`` or ``lymphoid_cluster``; per-cell
``aggregate_id``) and the user-defined units (``[units.<name>]``, e.g. ``angiogenic_unit``;
per-cell ``unit_id``) of a sample (:mod:`metaniche.analyses.communities`). For every
structure kind, cell type and state (:mod:`metaniche.analyses.states`) this module counts the
cells of the type inside a structure of that kind and outside every structure of that kind
(all the sample's other cells, whatever their compartment), and how many of each carry the
state: e.g. the GZMB+ fraction of CD8 T cells inside vs outside TLS, or the PD-L1+ fraction
of macrophages inside angiogenic units.

``fraction_inside = n_positive_inside / n_inside`` and likewise outside (NaN without cells);
``log_odds_ratio = log[(a + c)(d + c) / ((b + c)(e + c))]`` with a, b the positive and
negative cells inside, e, d those outside and c the ``[states] pseudocount`` (0.5, the
Haldane–Anscombe correction [1]_; NaN when either side has no cell of the type). The cells
of a structure are not independent of each other, so no per-sample p-value is given: the
sample is the unit of inference, and the features go to the cohort step.

References
----------
.. [1] Haldane J.B.S. (1956) The estimation and significance of the logarithm of a ratio of
   frequencies. Ann Hum Genet 20:309–311.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from metaniche.analyses.states import StateCalls

__all__ = ["LYMPHOID_KINDS", "STRUCTURE_STATE_COLUMNS", "structure_members",
           "structure_states"]

#: Aggregate kinds of the per-cell ``aggregate_id`` (the communities stage's B/T clusters).
LYMPHOID_KINDS = ("tls", "lymphoid_cluster")
#: Columns of :func:`structure_states`.
STRUCTURE_STATE_COLUMNS = ["kind", "cell_type", "state", "n_structures", "n_inside",
                           "n_positive_inside", "fraction_inside", "n_outside",
                           "n_positive_outside", "fraction_outside", "log_odds_ratio"]


def structure_members(aggregate_id: np.ndarray, unit_id: np.ndarray,
                      aggregates: pd.DataFrame, unit_kinds: Sequence[str]
                      ) -> dict[str, tuple[np.ndarray, int]]:
    """Per structure kind, which cells lie in a structure of that kind, and how many there are.

    Parameters
    ----------
    aggregate_id
        Per-cell B/T cluster or TLS id (0 = none).
    unit_id
        Per-cell unit id (0 = none; a cell in several units keeps the first declared).
    aggregates
        The communities stage's ``aggregates`` table (``aggregate_id``, ``kind``); ids are
        unique within the sample across kinds.
    unit_kinds
        The declared unit names (``[units]``), so every kind gets rows even in a sample
        without such a structure.

    Returns
    -------
    dict
        Kind (:data:`LYMPHOID_KINDS`, then ``unit_kinds``) → (per-cell bool, number of
        structures of the kind).
    """
    ids = (aggregates["aggregate_id"].to_numpy(np.int64) if len(aggregates)
           else np.zeros(0, np.int64))
    kinds = (aggregates["kind"].astype(str).to_numpy() if len(aggregates)
             else np.zeros(0, dtype=object))
    kind_of = np.full(int(ids.max(initial=0)) + 1, "", dtype=object)
    kind_of[ids] = kinds
    members: dict[str, tuple[np.ndarray, int]] = {}
    for kind in (*LYMPHOID_KINDS, *unit_kinds):
        source = np.asarray(aggregate_id if kind in LYMPHOID_KINDS else unit_id, np.int64)
        wanted = np.flatnonzero(kind_of == kind)
        inside = np.isin(source, wanted[wanted > 0])
        members[kind] = (inside, len(wanted))
    return members


def structure_states(calls: StateCalls, type_codes: np.ndarray, cell_types: Sequence[str],
                     members: Mapping[str, tuple[np.ndarray, int]],
                     pseudocount: float = 0.5) -> pd.DataFrame:
    """State counts and fractions inside vs outside each structure kind (module docstring).

    Parameters
    ----------
    calls
        :func:`metaniche.analyses.states.call_states` output.
    type_codes, cell_types
        Per-cell integer code into the labels.
    members
        :func:`structure_members` output.
    pseudocount
        c of the log odds ratio.

    Returns
    -------
    pandas.DataFrame
        :data:`STRUCTURE_STATE_COLUMNS`, one row per kind × label that may carry the state
        × state (zeros included, so features are stable across samples).
    """
    codes = np.asarray(type_codes, dtype=np.int64)
    n_types = len(cell_types)
    labels = np.asarray(cell_types, dtype=object)
    total = np.bincount(codes, minlength=n_types)
    frames = []
    for kind, (inside, n_structures) in members.items():
        n_in = np.bincount(codes[inside], minlength=n_types)
        for j, name in enumerate(calls.names):
            keep = calls.row_types(name, cell_types)
            if not keep.any():
                continue
            hit = calls.positive[:, j]
            pos_all = np.bincount(codes[hit], minlength=n_types)
            pos_in = np.bincount(codes[hit & inside], minlength=n_types)
            frames.append(pd.DataFrame({
                "kind": kind, "cell_type": labels[keep], "state": name,
                "n_structures": n_structures,
                "n_inside": n_in[keep], "n_positive_inside": pos_in[keep],
                "n_outside": (total - n_in)[keep], "n_positive_outside": (pos_all - pos_in)[keep],
            }))
    if not frames:
        return pd.DataFrame(columns=STRUCTURE_STATE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    a = table["n_positive_inside"].to_numpy(np.float64)
    n_in = table["n_inside"].to_numpy(np.float64)
    e = table["n_positive_outside"].to_numpy(np.float64)
    n_out = table["n_outside"].to_numpy(np.float64)
    c = float(pseudocount)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["fraction_inside"] = np.where(n_in > 0, a / np.maximum(n_in, 1), np.nan)
        table["fraction_outside"] = np.where(n_out > 0, e / np.maximum(n_out, 1), np.nan)
        lor = np.log((a + c) * (n_out - e + c) / ((n_in - a + c) * (e + c)))
    table["log_odds_ratio"] = np.where((n_in > 0) & (n_out > 0), lor, np.nan)
    return table[STRUCTURE_STATE_COLUMNS]
