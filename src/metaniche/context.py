"""What every per-sample analysis stage receives and returns.

A :class:`SampleContext` holds one sample's standardised cells, the configuration, integer
type codes, cell-type roles, the compartment result and one lazily built KD-tree shared by
every analysis (never rebuilt per statistic). A stage is a function ``SampleContext ->
StageOutput``; the pipeline runs the registered stages in order (see
:data:`metaniche.stages.SAMPLE_STAGES`) and writes their tables, features and per-cell columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from metaniche import roles
from metaniche.analyses.compartments import CompartmentResult
from metaniche.analyses.spots import SpotData
from metaniche.config import Config
from metaniche.genes import GeneMatrix, with_gene_columns

__all__ = ["SampleContext", "StageOutput"]


@dataclass
class StageOutput:
    """A stage's results.

    Attributes
    ----------
    tables
        Long tables by name (written to ``tables/<name>.parquet`` with ``sample`` prepended).
    features
        Named per-sample features (names registered in the stage's feature registry).
    cell_columns
        Per-cell arrays (length n_cells) added to ``cells/<sample>.parquet``.
    warnings
        Sentences for the sample's warnings (run.json, report): why a result is NA or
        doubtful, and the fix.
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    features: dict[str, Any] = field(default_factory=dict)
    cell_columns: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class SampleContext:
    """One sample's inputs for the analysis stages (read-only by convention).

    Attributes
    ----------
    name
        Sample id.
    cells
        Standardised cell table (µm coordinates, ``cell_type``, marker columns).
    config
        Run configuration.
    x_um, y_um
        Coordinates in µm, float64.
    cell_types
        Sorted distinct labels; ``type_codes`` index into it.
    type_codes
        Integer code per cell (``cell_types[type_codes[i]]`` is cell i's label).
    tumor_types, immune_types
        Labels with those roles (config ``[cell_types]``).
    compartments
        Output of :func:`metaniche.analyses.compartments.assign_compartments` (for a spot
        sample, :func:`metaniche.analyses.spots.sample_spot_compartments`).
    spots
        For a spot sample (``[spots] proportions``), its deconvolution
        (:class:`~metaniche.analyses.spots.SpotData`); None for a cell sample.
    genes
        The sample's expression matrix kept sparse (:class:`metaniche.genes.GeneMatrix`, rows
        aligned with ``cells``) when it was too large for marker columns; None otherwise.
        Stages pull the genes they name with :meth:`marker_frame` / :meth:`with_genes`,
        never the whole matrix densified.
    previous
        Stage name → :class:`StageOutput` of the stages already run on this sample (filled by
        :func:`metaniche.sample.analyse_sample`; empty when a stage is called alone), so a
        later stage can read an earlier one's cell columns and tables (the states stage reads
        the communities stage's ``aggregate_id``, ``unit_id`` and ``aggregates``).

    Role masks (``is_tumor``, ``is_immune``, ``is_effector``, ``is_infiltration``, ``is_b``,
    ``is_t``) and the role label lists behind them are cached properties resolved once per
    sample by the rules of :mod:`metaniche.roles`.
    """

    name: str
    cells: pd.DataFrame
    config: Config
    x_um: np.ndarray
    y_um: np.ndarray
    cell_types: list[str]
    type_codes: np.ndarray
    tumor_types: list[str]
    immune_types: list[str]
    compartments: CompartmentResult
    previous: dict[str, StageOutput] = field(default_factory=dict)
    #: The deconvolution of a spot sample (one row of ``cells`` per spot); None for cells.
    spots: SpotData | None = None
    #: Genes kept sparse (see the class docstring); None when genes are marker columns.
    genes: GeneMatrix | None = None

    @cached_property
    def coordinates(self) -> np.ndarray:
        """(n, 2) array of µm coordinates."""
        return np.column_stack([self.x_um, self.y_um])

    @cached_property
    def tree(self) -> cKDTree:
        """KD-tree of all cells, built once per sample and shared by every analysis."""
        return cKDTree(self.coordinates)

    @cached_property
    def labels(self) -> np.ndarray:
        """Per-cell label (object array of str), built once per sample."""
        return np.asarray(self.cell_types, dtype=object)[self.type_codes]

    def marker_columns(self) -> list[str]:
        """Numeric input columns other than the contract columns (markers / genes)."""
        reserved = {"sample", "cell_id", "x", "y", "cell_type"}
        return [c for c in self.cells.columns
                if c not in reserved and pd.api.types.is_numeric_dtype(self.cells[c])
                and not pd.api.types.is_bool_dtype(self.cells[c])]

    @property
    def gene_names(self) -> list[str]:
        """Names of the genes of the sparse matrix (empty without one)."""
        return list(self.genes.names) if self.genes is not None else []

    def has_marker(self, name: str) -> bool:
        """Whether ``name`` is a column of the cell table or a gene of the sparse matrix."""
        return name in self.cells.columns or (self.genes is not None and name in self.genes)

    def marker_frame(self, names: list[str]) -> pd.DataFrame:
        """The named columns (cell-table columns or sparse genes, in that order of lookup),
        as a frame with a ``RangeIndex``; genes densified to float64, only those named."""
        own = [n for n in names if n in self.cells.columns]
        genes = [n for n in names if n not in self.cells.columns]
        frame = self.cells[own].reset_index(drop=True)
        if genes:
            assert self.genes is not None
            frame = pd.concat([frame, self.genes.columns(genes)], axis=1)
        return frame[list(names)]

    def with_genes(self, markers: list[str],
                   explicit: dict[str, str] | None = None) -> pd.DataFrame:
        """The cell table plus the sparse genes that ``markers`` resolve to
        (:func:`metaniche.genes.with_gene_columns`); the table itself without such genes."""
        return with_gene_columns(self.cells, self.genes, markers, explicit)

    def _mask(self, selected: list[str]) -> np.ndarray:
        return roles.mask_of(self.type_codes, self.cell_types, selected)

    @cached_property
    def is_tumor(self) -> np.ndarray:
        """Per cell: label in ``tumor_types``."""
        return self._mask(self.tumor_types)

    @cached_property
    def is_immune(self) -> np.ndarray:
        """Per cell: label in ``immune_types``."""
        return self._mask(self.immune_types)

    @cached_property
    def effector_types(self) -> list[str]:
        """Effector labels of the immune phenotype (:func:`metaniche.roles.effector_types`)."""
        return roles.effector_types(self.cell_types, self.config)

    @cached_property
    def is_effector(self) -> np.ndarray:
        """Per cell: label in ``effector_types``."""
        return self._mask(self.effector_types)

    @cached_property
    def infiltration_types(self) -> list[str]:
        """Labels whose infiltration depth is measured (:func:`metaniche.roles.
        infiltration_types`)."""
        return roles.infiltration_types(self.cell_types, self.config)

    @cached_property
    def is_infiltration(self) -> np.ndarray:
        """Per cell: label in ``infiltration_types``."""
        return self._mask(self.infiltration_types)

    @cached_property
    def b_and_t_types(self) -> tuple[list[str], list[str]]:
        """B and T labels (:func:`metaniche.roles.b_and_t_types`)."""
        return roles.b_and_t_types(self.cell_types, self.config)

    @cached_property
    def is_b(self) -> np.ndarray:
        """Per cell: a B label."""
        return self._mask(self.b_and_t_types[0])

    @cached_property
    def is_t(self) -> np.ndarray:
        """Per cell: a T label."""
        return self._mask(self.b_and_t_types[1])
