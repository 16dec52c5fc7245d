"""The run-level step of the cellular neighbourhoods: one model fitted on every sample's
training windows, every cell labelled from the window counts its sample's stage saved.

Method (windows, k-means with silhouette-selected k): :mod:`metaniche.analyses.communities.
neighbourhoods`; the step that reads and writes the run directory:
:mod:`metaniche.cohort.steps`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.communities import (
    abundance_counts,
    abundance_table,
    assign_neighbourhoods,
    fit_neighbourhoods,
    neighbourhood_tables,
    window_fractions,
)
from metaniche.config import Config

__all__ = ["cohort_neighbourhoods"]


def cohort_neighbourhoods(training: pd.DataFrame,
                          windows: Iterable[tuple[str, pd.DataFrame, np.ndarray]],
                          config: Config) -> tuple[dict[str, np.ndarray], pd.DataFrame,
                                                   dict[str, dict[str, float]]]:
    """The cohort step of the cellular neighbourhoods (no I/O).

    Fits one model on the pooled ``cn_training`` windows of every sample and labels every
    cell of every sample with its CN from the window counts the stage saved
    (:func:`~metaniche.analyses.communities.window_counts`; no KD-tree is rebuilt, no
    window recomputed).

    Parameters
    ----------
    training
        ``tables/cn_training`` (every sample's training windows, ``sample`` first).
    windows
        ``(sample, counts, compartment)`` per sample: its ``cn_windows`` table and the
        per-cell compartment labels (same cell order), consumed one at a time.
    config
        Run configuration (``[neighbourhoods]``).

    Returns
    -------
    labels
        Sample → per-cell CN (1…), int32.
    table
        ``tables/neighbourhoods``: ``sample, table`` (``abundance``, ``composition`` or
        ``selection``), ``compartment, neighbourhood, cell_type, n_cells, fraction,
        n_neighbourhoods, silhouette`` (columns a row kind does not use are null).
    features
        Sample → ``cn_fraction.CN<i>`` (fraction of the sample's cells in CN i).
    """
    params = config.neighbourhoods
    model = fit_neighbourhoods(training, params.n_neighbourhoods, params.seed)
    n_cn = model.n_neighbourhoods
    labels, features = {}, {}
    # per sample only counts; the abundance rows of all samples are built as one table
    names: list[str] = []
    groups: list[str] = []
    counts: list[np.ndarray] = []
    for name, window, compartment in windows:
        labels[name] = assign_neighbourhoods(model, window_fractions(window),
                                             [str(t) for t in window.columns])
        sample_groups, sample_counts = abundance_counts(labels[name], compartment, n_cn)
        names += [name] * len(sample_groups)
        groups += sample_groups
        counts.append(sample_counts)
        whole = sample_counts[0]            # the first group is the whole sample
        fractions = whole / whole.sum() if whole.sum() else np.full(n_cn, np.nan)
        features[name] = {f"cn_fraction.CN{cn}": float(f)
                          for cn, f in enumerate(fractions, start=1)}
    abundance = abundance_table(groups, np.concatenate(counts) if counts
                                else np.zeros((0, n_cn), dtype=np.int64))
    abundance["table"] = T.NEIGHBOURHOOD_ABUNDANCE
    abundance["sample"] = np.repeat(np.asarray(names, dtype=object), n_cn)
    parts = [abundance]
    composition = neighbourhood_tables(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object),
                                       model)[T.NEIGHBOURHOOD_COMPOSITION]
    parts.append(composition.assign(table=T.NEIGHBOURHOOD_COMPOSITION, sample=None))
    parts.append(model.selection.assign(table=T.NEIGHBOURHOOD_SELECTION, sample=None))
    columns = ["sample", "table", "compartment", "neighbourhood", "cell_type", "n_cells",
               "fraction", "n_neighbourhoods", "silhouette"]
    result = pd.concat(parts, ignore_index=True).reindex(columns=columns)
    return labels, result, features
