"""Flatten an AnnData ``.h5ad`` file into a cell table (obs + coordinates + markers)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import Config
from metaniche.genes import MAX_DENSE_VALUES, expression_markers
from metaniche.io._tables import RawTable, TableError, find_column, list_columns, reason

__all__ = ["MAX_DENSE_VALUES", "read_h5ad_table"]


def read_h5ad_table(path: Path, config: Config) -> RawTable:
    """Read an ``.h5ad`` file into one flat table.

    Coordinates come from the ``obs`` columns named by ``config.columns.x``/``y`` when
    both exist, else from the first two columns of ``obsm["spatial"]`` (stored under the
    configured x/y names). ``cell_id`` comes from the configured ``obs`` column when present,
    else from ``obs_names``. Markers come from ``X`` (dense or sparse) with ``var_names``
    as names, values as stored (no per-cell normalisation): as float64 columns after the
    ``obs`` columns when ``n_obs × n_vars`` is at most :data:`MAX_DENSE_VALUES`, else kept
    sparse in ``RawTable.genes`` (:mod:`metaniche.genes`). A gene named like an ``obs``
    column is dropped with a warning.

    Raises
    ------
    TableError
        When the file is empty, corrupt, not AnnData, has no cells or no coordinates.
    """
    cols = config.columns
    try:
        if path.stat().st_size == 0:
            raise TableError(f"{path}: file is empty; export the AnnData object again.")
        import anndata

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = anndata.read_h5ad(path)
        obs = adata.obs
        n_obs = int(adata.n_obs)
    except TableError:
        raise
    except Exception as err:
        raise TableError(f"{path}: cannot be read as AnnData .h5ad ({reason(err)}); check "
                         "that the file is a complete .h5ad file written by anndata.") from None
    if n_obs == 0:
        raise TableError(f"{path}: AnnData object has no cells (n_obs = 0); export it with "
                         "its cells.")
    frame = obs.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    out_warnings: list[str] = []

    xcol, ycol = find_column(frame.columns, cols.x), find_column(frame.columns, cols.y)
    if xcol is None or ycol is None:
        spatial = adata.obsm["spatial"] if "spatial" in adata.obsm else None
        arr = None if spatial is None else np.asarray(spatial)
        if arr is None or arr.ndim != 2 or arr.shape[1] < 2:
            raise TableError(
                f"{path}: no obs columns '{cols.x}'/'{cols.y}' and no obsm['spatial'] for the "
                f"coordinates (obs columns found: {list_columns(frame.columns)}); set "
                f"[columns] x = \"…\" and y = \"…\" to the obs coordinate columns or store "
                "them in obsm['spatial'].")
        frame = frame.drop(columns=[c for c in (xcol, ycol) if c is not None])
        frame[cols.x] = arr[:, 0]
        frame[cols.y] = arr[:, 1]
    if find_column(frame.columns, cols.cell_id) is None:
        frame.insert(0, cols.cell_id, np.asarray(adata.obs_names, dtype=object).astype(str))

    n_vars = int(adata.n_vars)
    genes = None
    if adata.X is not None and n_vars > 0:
        names = [str(v) for v in adata.var_names]
        taken = set(frame.columns)
        clash = [n for n in names if n in taken]
        if clash:
            out_warnings.append(
                f"{path}: marker(s) {', '.join(clash[:5])} in var_names share a name "
                "with an obs column; the obs column was kept and the marker dropped "
                "(rename it in var_names to keep both).")
        markers, genes = expression_markers(adata.X, names, taken,
                                            config.input.gene_normalisation)
        if genes is None:
            frame = pd.concat([frame, markers], axis=1)
    return RawTable(frame, row_base=1, warnings=out_warnings, genes=genes)
