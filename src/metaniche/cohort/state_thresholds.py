"""Per-cohort state thresholds: one threshold of a marker over every sample of a run.

A state with ``threshold = "cohort:otsu"`` (or ``cohort:gmm``, ``cohort:valley``;
:class:`metaniche.config.StateRule`) is called in every sample with the same threshold,
chosen by :func:`metaniche.phenotype.auto_threshold` (the rule's ``transform``) over the
pooled finite values of the marker in every sample's cells, so each sample weighs by its
number of cells. Per-sample thresholds adapt to each sample's mix of positive and negative
cells; a per-cohort threshold keeps one meaning of "positive" across samples, so state
fractions compare between samples (at the price of batch effects between slides moving the
calls).

The pipeline runs :func:`with_cohort_thresholds` once, after reading the samples and before
analysing them (the threshold depends on every sample, so it is part of each sample's
configuration: changing the cohort recomputes the samples). Thresholds already given in
``[states] cohort_thresholds`` are kept (e.g. a training cohort's, applied to a validation
cohort). A sample without the marker's column is left out of the pool (its own analysis then
fails naming the column).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from metaniche.config import COHORT_THRESHOLD_PREFIX, Config
from metaniche.errors import InputError
from metaniche.phenotype import auto_threshold, resolve_marker

__all__ = ["COHORT_THRESHOLD_COLUMNS", "MAX_POOLED_VALUES", "cohort_state_thresholds",
           "with_cohort_thresholds"]

#: At most this many pooled values are thresholded: above it every sample's values are
#: thinned at one even stride, ``ceil(total / MAX_POOLED_VALUES)``, so each sample keeps its
#: weight (and a 100-sample cohort of 1M-cell slides costs what a 2M-cell one does).
MAX_POOLED_VALUES = 2_000_000

#: Columns of :func:`cohort_state_thresholds` (``cohort/state_thresholds.parquet``).
COHORT_THRESHOLD_COLUMNS = ["state", "marker", "method", "transform", "threshold", "source",
                            "n_samples", "n_values"]


def cohort_state_thresholds(samples: Iterable[tuple[str, pd.DataFrame]], config: Config
                            ) -> pd.DataFrame:
    """The threshold of every per-cohort state over the pooled cells of ``samples``.

    Parameters
    ----------
    samples
        (name, standardised cell table) of every sample of the run.
    config
        Run configuration (``[states]`` rules and ``cohort_thresholds``).

    Returns
    -------
    pandas.DataFrame
        :data:`COHORT_THRESHOLD_COLUMNS`, one row per state with a ``cohort:`` threshold:
        ``method`` (``otsu`` / ``gmm`` / ``valley``), ``threshold`` (column units; the given
        one when ``[states] cohort_thresholds`` names the state, with ``source`` ``given``,
        else ``cohort``), ``n_samples`` and ``n_values`` pooled (finite values before any
        thinning, :data:`MAX_POOLED_VALUES`; 0 for a given one). NaN threshold when no
        sample has a finite value.
    """
    params = config.states
    wanted = {name: rule for name, rule in params.rules.items()
              if isinstance(rule.threshold, str)
              and rule.threshold.startswith(COHORT_THRESHOLD_PREFIX)}
    if not wanted:
        return pd.DataFrame(columns=COHORT_THRESHOLD_COLUMNS)
    pooled: dict[str, list[np.ndarray]] = {name: [] for name in wanted}
    for _, cells in samples:
        columns = [str(c) for c in cells.columns]
        for name, rule in wanted.items():
            if name in params.cohort_thresholds:
                continue
            try:
                column = resolve_marker(columns, rule.marker)
            except InputError:
                continue
            values = pd.to_numeric(cells[column], errors="coerce").to_numpy(np.float64)
            pooled[name].append(values[np.isfinite(values)])
    rows = []
    for name, rule in wanted.items():
        method = str(rule.threshold)[len(COHORT_THRESHOLD_PREFIX):]
        base = {"state": name, "marker": rule.marker, "method": method,
                "transform": rule.transform}
        if name in params.cohort_thresholds:
            rows.append(base | {"threshold": float(params.cohort_thresholds[name]),
                                "source": "given", "n_samples": 0, "n_values": 0})
            continue
        parts = pooled[name]
        total = sum(p.size for p in parts)
        stride = max(1, -(-total // MAX_POOLED_VALUES))
        values = np.concatenate([p[::stride] for p in parts]) if parts else np.zeros(0)
        threshold = (auto_threshold(values, method, rule.transform) if values.size
                     else math.nan)
        rows.append(base | {"threshold": float(threshold), "source": "cohort",
                            "n_samples": sum(1 for p in parts if p.size),
                            "n_values": int(total)})
    return pd.DataFrame(rows, columns=COHORT_THRESHOLD_COLUMNS)


def with_cohort_thresholds(config: Config, samples: Iterable[tuple[str, pd.DataFrame]]
                           ) -> tuple[Config, pd.DataFrame]:
    """``config`` with ``[states] cohort_thresholds`` filled in over ``samples``.

    Returns
    -------
    (Config, pandas.DataFrame)
        The configuration (unchanged when no state has a ``cohort:`` threshold) and the
        :func:`cohort_state_thresholds` table. States whose pooled threshold is NaN (no
        sample has the marker) stay missing, so their samples fail naming the marker.
    """
    table = cohort_state_thresholds(samples, config)
    if table.empty:
        return config, table
    found = {row.state: float(row.threshold) for row in table.itertuples(index=False)
             if not math.isnan(row.threshold)}
    states = dataclasses.replace(config.states, cohort_thresholds=found)
    return dataclasses.replace(config, states=states), table
