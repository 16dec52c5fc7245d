"""Gene expression kept sparse: a cells × genes CSR matrix carried beside the cell table.

Imaging-ST panels (Xenium 5K, CosMx 6K) and Visium HD bins hold thousands of genes per cell
or bin, almost all zero. A reader turns an expression matrix into **dense marker columns**
of the cell table (float64, one column per gene, as for any marker) when it holds at most
:data:`MAX_DENSE_VALUES` values (``n_obs × n_vars``), so small panels keep the contract
unchanged; a larger matrix is kept whole as a :class:`GeneMatrix` (``scipy.sparse`` CSR,
same rows as the cell table, gene names as column names) that travels with the sample
(:attr:`metaniche.io.cells.SampleInput.genes`, :attr:`metaniche.context.SampleContext.
genes`). No gene is dropped; memory is that of the non-zero values (data + column index,
~8–12 bytes each), not ``n_obs × n_vars``.

Consumers pull only the genes they name: gating panels, ``[states]`` markers,
``[states] gradient_markers``, ``[gradients] marker_columns``, ``[contact] markers``, TLS
evidence markers and ligand–receptor pairs resolve names over the cell table's columns and
the genes (:func:`with_gene_columns`, :meth:`GeneMatrix.columns`), and densify just those
(n_cells float64 values per gene). Defaults that mean "every marker column" (gradient
markers, contact outcomes) cover the dense columns only; a sparse matrix's genes are then
profiled when listed, and the run says so in one warning.

Per-cell normalisation
----------------------
``[input] gene_normalisation`` (:class:`metaniche.config.InputParams`). By default
(``"none"``) values are used as stored in the input (Xenium / CosMx / MERSCOPE / Visium
counts as in the files; an AnnData's ``X`` as it is, so an ``X`` that already holds
normalised values is used normalised). With ``"log1p_cp10k"`` the matrix is normalised once
when it is read (:func:`normalise_expression`, called by :func:`expression_markers`):
``log1p(count / total × 10,000)``, the total over **all** genes of the matrix for that cell
(the reader's gene features: negative-control probes and codewords are not genes and are
not counted), as scanpy's ``normalize_total(target_sum=1e4)`` + ``log1p``; sparse stays
sparse (zeros stay zero). Every later use (gating, ``[states]``, gradients, the contact
test, ligand–receptor) then sees normalised values. Gating and ``[states]`` thresholds found
automatically are computed on ``log1p`` of the values they get (``transform = "log1p"``,
:func:`metaniche.phenotype.auto_threshold`; on already-logged values set ``transform =
"none"``); a given threshold is in the units of those values. :meth:`GeneMatrix.normalised`
gives the same normalisation of a few genes of a matrix kept as stored.

Outputs: genes of a sparse matrix are not copied into ``cells/<sample>.parquet`` (one
column per gene would make the file as large as the dense matrix); the run records one
warning saying so, and they stay in the input (join on ``cell_id``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from metaniche.config import GENE_NORMALISATIONS
from metaniche.errors import InputError

__all__ = ["MAX_DENSE_VALUES", "NORMALISATION_TARGET", "GeneMatrix", "expression_markers",
           "normalise_expression", "resolved_genes", "with_gene_columns"]

#: Largest ``n_obs * n_vars`` expression matrix turned into dense float64 marker columns
#: (2.5e8 values ≈ 2 GB); a larger matrix is kept sparse as a :class:`GeneMatrix`.
MAX_DENSE_VALUES = 250_000_000

#: Counts per cell after :meth:`GeneMatrix.normalised` (before ``log1p``): 10,000, as
#: scanpy's ``normalize_total(target_sum=1e4)`` and Seurat's ``LogNormalize``.
NORMALISATION_TARGET = 10_000.0


@dataclass(eq=False)
class GeneMatrix:
    """A cells × genes expression matrix kept sparse, rows aligned with a cell table.

    Attributes
    ----------
    matrix
        ``scipy.sparse.csr_matrix`` of shape (n_cells, n_genes), float32 or float64, values
        as stored in the input (no normalisation, see the module docstring).
    names
        Gene names, one per column, unique.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> genes = GeneMatrix(sp.csr_matrix(np.array([[0, 2.0], [1.0, 0]])), ("CD8A", "PDCD1"))
    >>> genes.columns(["PDCD1"])["PDCD1"].tolist()
    [2.0, 0.0]
    >>> genes.take(np.array([1])).n_cells
    1
    """

    matrix: sp.csr_matrix
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not sp.isspmatrix_csr(self.matrix):
            self.matrix = sp.csr_matrix(self.matrix)
        self.names = tuple(str(n) for n in self.names)
        if self.matrix.shape[1] != len(self.names):
            raise ValueError(f"`names` must name the {self.matrix.shape[1]:,} columns of the "
                             f"matrix; got {len(self.names):,} names.")

    @property
    def n_cells(self) -> int:
        """Number of rows (cells or spots)."""
        return int(self.matrix.shape[0])

    @property
    def n_genes(self) -> int:
        """Number of genes (columns)."""
        return int(self.matrix.shape[1])

    @cached_property
    def index(self) -> pd.Index:
        """Gene names as an index (position lookup)."""
        return pd.Index(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    def take(self, rows: np.ndarray) -> GeneMatrix:
        """The matrix of the cells at positions ``rows`` (the same object for all rows in
        order, so a one-sample file is not copied)."""
        rows = np.asarray(rows)
        if rows.size == self.n_cells and np.array_equal(rows, np.arange(self.n_cells)):
            return self
        return GeneMatrix(self.matrix[rows], self.names)

    def columns(self, names: Sequence[str]) -> pd.DataFrame:
        """The named genes as dense float64 columns (one pass over the matrix).

        Raises
        ------
        KeyError
            When a name is not a gene of the matrix.
        """
        where = self.index.get_indexer(list(names))
        if (where < 0).any():
            missing = [n for n, w in zip(names, where, strict=True) if w < 0]
            raise KeyError(f"not genes of the matrix: {missing}")
        dense = self.matrix[:, where].toarray().astype(np.float64, copy=False)
        return pd.DataFrame(dense, columns=list(names))

    def totals(self) -> np.ndarray:
        """Per-cell sum over all genes (library size), float64."""
        return np.asarray(self.matrix.sum(axis=1, dtype=np.float64)).ravel()

    def normalised(self, names: Sequence[str], target: float = NORMALISATION_TARGET,
                   log: bool = True) -> pd.DataFrame:
        """The named genes normalised per cell: ``log1p(value / total × target)``.

        ``total`` is the cell's sum over all genes of the matrix (:meth:`totals`); a cell
        with total 0 gets 0. Without ``log`` the values are ``value / total × target``.

        Examples
        --------
        >>> import numpy as np, scipy.sparse as sp
        >>> genes = GeneMatrix(sp.csr_matrix(np.array([[1.0, 3.0]])), ("A", "B"))
        >>> float(genes.normalised(["B"], target=4.0, log=False)["B"][0])
        3.0
        """
        frame = self.columns(names).mul(_scale(self.totals(), target), axis=0)
        return np.log1p(frame) if log else frame

    def update_digest(self, digest: hashlib._Hash) -> None:
        """Feed the names, shape and CSR arrays into ``digest`` (the sample checksum)."""
        matrix = self.matrix
        if not matrix.has_canonical_format:
            matrix = matrix.copy()
            matrix.sum_duplicates()
        digest.update("\x1f".join(self.names).encode())
        digest.update(np.asarray(matrix.shape, dtype=np.int64).tobytes())
        digest.update(np.asarray(matrix.indptr, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(matrix.indices).tobytes())
        digest.update(np.ascontiguousarray(matrix.data).tobytes())


def normalise_expression(matrix: sp.spmatrix | np.ndarray, method: str,
                         target: float = NORMALISATION_TARGET) -> sp.csr_matrix | np.ndarray:
    """Per-cell library-size normalisation of a cells × genes matrix.

    ``"log1p_cp10k"``: ``log1p(x / total × target)`` with ``total`` the cell's sum over all
    columns (a cell with total 0 keeps its zeros), float64; a sparse matrix stays sparse
    (CSR; only its stored values change, O(nnz)). ``"none"``: ``matrix`` unchanged. As
    scanpy's ``normalize_total(target_sum=1e4)`` followed by ``log1p``.

    Parameters
    ----------
    matrix
        Cells × genes counts, dense or sparse.
    method
        One of :data:`metaniche.config.GENE_NORMALISATIONS`.
    target
        Counts per cell after scaling (default 10,000).

    Returns
    -------
    scipy.sparse.csr_matrix or numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> out = normalise_expression(np.array([[1.0, 3.0], [0.0, 0.0]]), "log1p_cp10k", 4.0)
    >>> np.round(np.expm1(out), 6).tolist()
    [[1.0, 3.0], [0.0, 0.0]]
    """
    if method == "none":
        return matrix
    if method not in GENE_NORMALISATIONS:
        raise ValueError(f"`method` must be one of {', '.join(GENE_NORMALISATIONS)}; "
                         f"got {method!r}.")
    if isinstance(matrix, np.ndarray):
        dense = np.asarray(matrix, dtype=np.float64)
        return np.log1p(dense * _scale(dense.sum(axis=1), target)[:, None])
    csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.sum_duplicates()
    scale = _scale(np.asarray(csr.sum(axis=1)).ravel(), target)
    csr.data = np.log1p(csr.data * np.repeat(scale, np.diff(csr.indptr)))
    return csr


def _scale(totals: np.ndarray, target: float) -> np.ndarray:
    """``target / total`` per cell, 0 where the total is 0."""
    return np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)


def expression_markers(matrix: sp.spmatrix | np.ndarray, names: Sequence[str],
                       taken: Iterable[str], normalisation: str = "none",
                       ) -> tuple[pd.DataFrame, GeneMatrix | None]:
    """An expression matrix as dense marker columns (small) or a :class:`GeneMatrix` (large).

    Parameters
    ----------
    matrix
        Cells × genes, dense or sparse, values as stored.
    names
        Gene name of each column.
    taken
        Column names of the cell table; genes of the same name are left out (the caller
        warns when it wants to).
    normalisation
        ``[input] gene_normalisation``: applied to the whole matrix (totals over all its
        genes, those left out included) before anything else (:func:`normalise_expression`).

    Returns
    -------
    markers, genes
        When ``n_obs × n_vars <= MAX_DENSE_VALUES``: the genes as float64 columns and
        ``None``. Otherwise an empty frame (n_obs rows) and the genes as a CSR matrix
        (float32 for integer or float32 input, float64 kept as float64).

    Examples
    --------
    >>> import numpy as np
    >>> markers, genes = expression_markers(np.eye(2), ["A", "B"], ["x", "y"])
    >>> list(markers.columns), genes is None
    (['A', 'B'], True)
    """
    matrix = normalise_expression(matrix, normalisation)
    n_obs, n_vars = matrix.shape
    used = set(taken)
    keep = [i for i, g in enumerate(names) if str(g) not in used]
    kept = [str(names[i]) for i in keep]
    if n_obs * n_vars <= MAX_DENSE_VALUES:
        dense = np.asarray(matrix) if isinstance(matrix, np.ndarray) else matrix.toarray()
        return (pd.DataFrame(np.asarray(dense, dtype=np.float64)[:, keep], columns=kept),
                None)
    csr = sp.csr_matrix(matrix)
    if len(keep) < n_vars:
        csr = csr[:, keep]
    if csr.dtype not in (np.float32, np.float64):
        csr = csr.astype(np.float32)
    csr.sum_duplicates()
    return pd.DataFrame(index=pd.RangeIndex(n_obs)), GeneMatrix(csr, tuple(kept))


def resolved_genes(columns: Sequence[str], genes: GeneMatrix | None, markers: Iterable[str],
                   explicit: Mapping[str, str] | None = None) -> list[str]:
    """Genes of ``genes`` that ``markers`` resolve to over the table's columns and the genes.

    Resolution is :func:`metaniche.phenotype.resolve_marker` over ``columns`` + the gene
    names; a marker that resolves to a column of the table, or to nothing, adds no gene
    (the consumer then reports it with its own message).
    """
    if genes is None:
        return []
    from metaniche.phenotype import resolve_marker

    names = [str(c) for c in columns]
    table = set(names)
    every = names + [g for g in genes.names if g not in table]
    found: list[str] = []
    for marker in markers:
        try:
            hit = resolve_marker(every, marker, explicit)
        except InputError:
            continue
        if hit not in table and hit in genes and hit not in found:
            found.append(hit)
    return found


def with_gene_columns(cells: pd.DataFrame, genes: GeneMatrix | None, markers: Iterable[str],
                      explicit: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``cells`` plus, as dense float64 columns, the genes that ``markers`` name.

    The cell table is returned unchanged (not copied) when no marker names a gene of the
    sparse matrix; otherwise a new frame with the cell table's columns then those genes.
    Marker names are resolved as by :func:`metaniche.phenotype.resolve_marker` (exact,
    case-insensitive, vendor patterns) over the columns and the genes.

    Examples
    --------
    >>> import numpy as np, pandas as pd, scipy.sparse as sp
    >>> cells = pd.DataFrame({"x": [0.0, 1.0]})
    >>> genes = GeneMatrix(sp.csr_matrix(np.array([[0, 5.0], [1.0, 0]])), ("CD8A", "GZMB"))
    >>> list(with_gene_columns(cells, genes, ["gzmb"]).columns)
    ['x', 'GZMB']
    """
    wanted = resolved_genes(list(cells.columns), genes, markers, explicit)
    if not wanted:
        return cells
    assert genes is not None
    extra = genes.columns(wanted)
    extra.index = cells.index
    return pd.concat([cells, extra], axis=1)
