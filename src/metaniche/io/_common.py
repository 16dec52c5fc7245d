"""Pieces shared by the export mappers and the reader registry.

:class:`Reader` is one entry of the registry (:data:`metaniche.io.readers.READERS`);
:class:`MappedTable` is what a mapper returns; the helpers build the one-sentence messages
that name the format a file was read as. This module imports no other reader module, so the
mappers (:mod:`metaniche.io.formats`, :mod:`metaniche.io._spatialdata`) and the registry
import it without a cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from metaniche.config import ColumnNames, Config
from metaniche.io._tables import RawTable, TableError, find_column

__all__ = ["ABSENT", "LABEL_COLUMNS", "PLACEHOLDER_LABEL", "H5adKeys", "MappedTable", "Reader",
           "label_or_placeholder", "need_columns", "short", "unique_name", "with_columns"]

#: ``cell_type`` of cells read from an export without phenotypes when a gating panel will
#: label them.
PLACEHOLDER_LABEL = "unassigned"

#: Column name that no table has: marks a contract column the export lacks.
ABSENT = "\x00absent"

#: Label columns looked for, in order, in AnnData ``obs`` (squidpy, SpatialData tables).
LABEL_COLUMNS: tuple[str, ...] = ("cell_type", "cell type", "celltype", "cell_types",
                                  "phenotype", "cluster", "clusters", "leiden", "louvain")


@dataclass
class MappedTable:
    """A raw export with the column names that map it to the contract.

    Attributes
    ----------
    raw
        The table as read, plus any derived columns (centroid, label, sample).
    columns
        Column names of ``raw`` holding sample, cell id, x, y and cell type.
    sources
        For a derived column (e.g. HALO's box centre), the raw columns it was computed from,
        so that messages show the values as they are in the file.
    """

    raw: RawTable
    columns: ColumnNames
    sources: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class H5adKeys:
    """The ``obs`` column names and ``obsm`` keys of an ``.h5ad`` file (read without ``X``)."""

    obs: list[str]
    obsm: list[str]

    def names(self) -> list[str]:
        """``obs`` names plus ``obsm['<key>']`` for each ``obsm`` key (signature matching)."""
        return [*self.obs, *(f"obsm['{key}']" for key in self.obsm)]


@dataclass(frozen=True)
class Reader:
    """One input reader: how a format is named, recognised and mapped to the contract.

    Attributes
    ----------
    name
        The ``format`` / ``--format`` value.
    label
        What the format is called in messages (``"inForm cell_seg_data export"``).
    article
        ``"a"`` or ``"an"``, as said before ``label``.
    kinds
        Containers the reader accepts: ``"text"`` (CSV/TSV, optionally gzipped),
        ``"parquet"``, ``"h5ad"`` (AnnData), ``"zarr"`` (a directory store).
    signature
        Column names that identify the export for ``format = "auto"``: the file is this
        format when any of them is in its header (text: as a substring of the raw header
        line, so a file with the wrong delimiter is still recognised; Parquet: a column;
        h5ad: an ``obs`` column or ``obsm['<key>']``; folder: file names, see
        :data:`metaniche.io._tables.VENDOR_FILES`). Empty: recognised by container alone.
    mapper
        ``mapper(path, source, config, reader) -> MappedTable``; ``source`` is the
        :class:`~metaniche.io._tables.RawTable` for text and Parquet, :class:`H5adKeys` for
        h5ad and ``None`` for zarr. ``None`` for the generic contract (``[columns]``).
    text_columns
        Columns read as text so ids keep leading zeros (the generic reader uses the configured
        sample, cell id and cell type columns).
    pixel_hint
        When the export's positions are pixels: the typical µm per pixel, named in the
        warning given when ``um_per_unit`` is left at 1.
    companion
        ``companion(path, config)`` returns a side file read with the table (the CODEX
        phenotype map), which a folder listing must not read as a cell table.
    """

    name: str
    label: str
    article: str
    kinds: tuple[str, ...]
    signature: tuple[str, ...] = ()
    mapper: Callable[[Path, Any, Config, Reader], MappedTable] | None = None
    text_columns: tuple[str, ...] = ()
    pixel_hint: str = ""
    companion: Callable[[Path, Config], Path | None] | None = None

    @property
    def described(self) -> str:
        """``"an inForm cell_seg_data export"``: the label with its article."""
        return f"{self.article} {self.label}"


def with_columns(config: Config, columns: ColumnNames) -> Config:
    """A copy of ``config`` whose ``[columns]`` are ``columns``."""
    return dataclasses.replace(config, columns=columns)


def short(name: str, limit: int = 40) -> str:
    """A column name cut to ``limit`` characters for messages."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def unique_name(frame: pd.DataFrame, name: str) -> str:
    """``name``, prefixed with underscores until no column of ``frame`` has it."""
    while name in frame.columns:
        name = "_" + name
    return name


def need_columns(path: Path, reader: Reader, frame: pd.DataFrame,
                 wanted: dict[str, str]) -> dict[str, str]:
    """Find required columns (role -> name) or raise naming the format and what is missing."""
    found, missing = {}, []
    for role, name in wanted.items():
        hit = find_column(frame.columns, name)
        if hit is None:
            missing.append(f"'{name}' ({role})")
        else:
            found[role] = hit
    if missing:
        shown = ", ".join(short(str(c)) for c in list(frame.columns)[:8])
        more = "…" if frame.shape[1] > 8 else ""
        names = [str(c) for c in frame.columns]
        buried = any(want in c and want != c for want in wanted.values() for c in names)
        if frame.shape[1] == 1 or buried:
            hint = ("the header does not split into those columns, so the delimiter is "
                    "probably wrong (expected tab, comma or semicolon); export the table again")
        else:
            hint = "export the table again with these columns, or use --format table"
        raise TableError(f"{path}: read as {reader.described} but it has no "
                         f"{' and no '.join(missing)} (columns found: {shown}{more}); {hint}.")
    return found


def label_or_placeholder(path: Path, reader: Reader, frame: pd.DataFrame, config: Config,
                         what: str) -> str:
    """Add a placeholder label column when a gating panel or a cell-type table will label.

    Raises
    ------
    TableError
        When there is neither a ``[gating]`` panel nor an ``[input] cell_types`` table (which
        replaces the placeholder): the export has no phenotypes (``what``).
    """
    if not (config.gating or config.input.cell_types):
        raise TableError(f"{path}: {reader.described} has no cell phenotypes ({what}); set "
                         "[input] cell_types to a table of cell_id and cell_type, or add a "
                         "[gating] panel to the config to phenotype the cells from their "
                         "marker columns.")
    frame["cell_type"] = PLACEHOLDER_LABEL
    return "cell_type"
