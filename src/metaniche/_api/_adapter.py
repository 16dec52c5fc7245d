"""Input adapter of the notebook API: objects → per-sample cell tables, configuration from
keyword arguments, results written back into the object.

Accepted inputs (``data``):

- :class:`anndata.AnnData`: coordinates in ``obsm[spatial_key]`` (first two columns, input
  units × ``Config.um_per_unit`` = µm), labels in ``obs[cluster_key]``, optional sample ids in
  ``obs[library_key]``; markers are the columns of ``X`` (dense or sparse, named by
  ``var_names``, values as stored: no per-cell normalisation) and the numeric ``obs``
  columns that are not metaniche outputs. An ``X`` of more than
  :data:`metaniche.genes.MAX_DENSE_VALUES` values is kept sparse
  (:class:`metaniche.genes.GeneMatrix`, :attr:`Part.genes`) and the tools take from it only
  the genes they name (:mod:`metaniche.genes`).
- :class:`pandas.DataFrame` with the contract columns ``x``, ``y`` and ``cluster_key`` (and
  ``library_key`` when given); every other column is kept (markers, metadata).
- a SpatialData object with ``table_key`` (its table is an AnnData as above; needs the
  ``spatialdata`` extra).

Every sample is analysed on its own (``library_key``): never across samples.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from metaniche._contract import TISSUE_CATEGORY
from metaniche.analyses.compartments import CompartmentResult
from metaniche.config import Config
from metaniche.context import SampleContext
from metaniche.errors import InputError
from metaniche.genes import GeneMatrix, expression_markers
from metaniche.io._spots import spot_type_columns
from metaniche.sample import CELL_COLUMNS, build_context

__all__ = [
    "COMPARTMENT_MEMO",
    "OUTPUT_COLUMNS",
    "CompartmentMemo",
    "Part",
    "Target",
    "configured",
    "contexts",
    "h5ad_safe",
    "resolve",
    "storable",
    "store_cells",
    "store_table",
]

#: Per-cell columns metaniche writes (``cells/<file>.parquet`` outputs and the tools' ``obs``
#: columns); never read back as markers. ``tests/tl`` checks it against
#: :func:`metaniche.sample.analyse_sample`.
OUTPUT_COLUMNS: tuple[str, ...] = (
    *CELL_COLUMNS, "zonation_eta", "neighbourhood_entropy", "hull_border_cluster",
    "aggregate_id", "unit_id", "neighbourhood", "sample")

#: ``uns`` (AnnData) or ``attrs`` (DataFrame) key of metaniche's own results.
UNS_KEY = "metaniche"


class Results(dict):
    """A dict of results held in :attr:`pandas.DataFrame.attrs`.

    pandas compares ``attrs`` when concatenating and deep-copies them when it propagates
    them; a plain dict of tables or arrays breaks the comparison (ambiguous truth value) and
    copies every table on every operation. A ``Results`` compares by identity and is shared,
    not copied, so frames carrying results still concatenate and slice as usual.
    """

    __hash__ = None

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __deepcopy__(self, memo: dict) -> Results:
        return self


@dataclass
class Part:
    """One sample of the input: its name, its rows in the object and its cell table (and
    its genes kept sparse, when ``X`` is too large for marker columns)."""

    name: str
    rows: np.ndarray
    cells: pd.DataFrame
    genes: GeneMatrix | None = None


@dataclass
class Target:
    """The object results are written into (an AnnData, or a DataFrame for frame input)."""

    obj: Any
    is_frame: bool
    cluster_key: str
    library_key: str | None
    parts: list[Part]

    @property
    def n_obs(self) -> int:
        """Number of cells of the object."""
        return len(self.obj) if self.is_frame else int(self.obj.n_obs)

    @property
    def obs(self) -> pd.DataFrame:
        """Where per-cell columns go (``obs`` or the frame itself)."""
        return self.obj if self.is_frame else self.obj.obs

    @property
    def uns(self) -> dict:
        """Where results go (``uns`` or the frame's ``attrs``)."""
        return self.obj.attrs if self.is_frame else self.obj.uns

    @property
    def results(self) -> dict:
        """``uns["metaniche"]`` (created when missing)."""
        if self.is_frame:
            return self.uns.setdefault(UNS_KEY, Results())
        return self.uns.setdefault(UNS_KEY, {})

    def put(self, key: str, value: Any) -> None:
        """``uns[key] = value`` (a :class:`Results` in a frame's ``attrs``)."""
        self.uns[key] = Results(value) if self.is_frame and isinstance(value, dict) else value

    def categories(self) -> list[str]:
        """Cell-type order of squidpy layouts: ``obs[cluster_key].cat.categories`` when
        categorical, else the sorted labels."""
        values = self.obs[self.cluster_key]
        if isinstance(values.dtype, pd.CategoricalDtype):
            return [str(c) for c in values.cat.categories]
        return sorted({str(v) for v in values.dropna().unique()})


def _is_spatialdata(data: Any) -> bool:
    return type(data).__name__ == "SpatialData" and type(data).__module__.startswith(
        "spatialdata")


def _is_anndata(data: Any) -> bool:
    return type(data).__name__ == "AnnData" and type(data).__module__.startswith("anndata")


def resolve(data: Any, cluster_key: str, library_key: str | None, config: Config,
            table_key: str | None = None, spatial_key: str = "spatial",
            copy: bool = False) -> Target:
    """Check ``data`` and split it into samples (cell tables in the pipeline's standard form).

    Raises
    ------
    InputError
        One sentence naming the object, key or column and the fix.
    """
    if table_key is not None and not _is_spatialdata(data):
        raise InputError(f"`table_key` applies to a SpatialData object; got {type(data).__name__}"
                         " (pass an AnnData or DataFrame without table_key).")
    if _is_spatialdata(data):
        if table_key is None:
            raise InputError("A SpatialData object needs `table_key`, the name of its table of "
                             f"cells (tables found: {', '.join(map(str, data.tables))}).")
        if table_key not in data.tables:
            raise InputError(f"`table_key` {table_key!r} is not a table of this SpatialData "
                             f"object (tables: {', '.join(map(str, data.tables))}).")
        data = data.tables[table_key]
    genes = None
    if _is_anndata(data):
        obj = data.copy() if copy else data
        frame, genes = _frame_of_anndata(obj, cluster_key, library_key, spatial_key,
                                         config.input.gene_normalisation)
        is_frame = False
    elif isinstance(data, pd.DataFrame):
        obj = data
        if copy:     # a copy shares the Results of data's attrs: give it its own
            obj = data.copy()
            obj.attrs = {k: Results(v) if isinstance(v, Results) else v
                         for k, v in data.attrs.items()}
        frame = _frame_of_frame(obj, cluster_key, library_key)
        is_frame = True
    else:
        raise InputError(
            "`data` must be an AnnData (obsm['spatial'] and obs[cluster_key]), a pandas "
            "DataFrame with columns x, y and cluster_key, or a SpatialData object with "
            f"table_key; got {type(data).__name__}.")
    where = "obs" if not is_frame else "the DataFrame"
    labels = frame["cell_type"]
    if labels.isna().any():
        n = int(labels.isna().sum())
        raise InputError(f"{where}[{cluster_key!r}] has {n} missing label(s); label or drop "
                         "those cells first.")
    if len(frame) == 0:
        raise InputError(f"{where} has no cells; give an object with cells.")
    xy = frame[["x", "y"]].to_numpy(np.float64)
    if not np.isfinite(xy).all():
        n = int((~np.isfinite(xy).all(axis=1)).sum())
        raise InputError(f"{n} cell(s) have missing or infinite coordinates; drop them first.")
    frame["x"] *= config.um_per_unit
    frame["y"] *= config.um_per_unit
    frame["cell_type"] = labels.astype(str).to_numpy()
    parts = []
    if library_key is None:
        source = obj if is_frame else obj.obs
        name = "sample"
        if "sample" in source.columns and source["sample"].nunique() == 1:
            name = str(source["sample"].iloc[0])
        frame.insert(0, "sample", name)
        parts.append(Part(name, np.arange(len(frame)), frame, genes))
    else:
        samples = frame.pop("sample")
        if samples.isna().any():
            raise InputError(f"{where}[{library_key!r}] has {int(samples.isna().sum())} missing "
                             "sample id(s); fill them first.")
        codes, names = pd.factorize(samples.astype(str), sort=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        for code, rows in enumerate(np.split(order, bounds)):
            cells = frame.iloc[rows].reset_index(drop=True)
            cells.insert(0, "sample", str(names[code]))
            parts.append(Part(str(names[code]), rows, cells,
                              None if genes is None else genes.take(rows)))
        parts.sort(key=lambda p: int(p.rows[0]))
    return Target(obj, is_frame, cluster_key, library_key, parts)


def _standard(columns: dict[str, Any], extra: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in extra.columns if str(c) not in OUTPUT_COLUMNS and str(c) not in columns]
    head = pd.DataFrame(columns, index=extra.index)
    return pd.concat([head, extra[keep]], axis=1).reset_index(drop=True)


def _frame_of_anndata(adata: Any, cluster_key: str, library_key: str | None,
                      spatial_key: str, normalisation: str = "none",
                      ) -> tuple[pd.DataFrame, GeneMatrix | None]:
    obs = adata.obs
    if cluster_key not in obs.columns:
        raise InputError(f"obs has no column {cluster_key!r} for the cell types (obs columns: "
                         f"{', '.join(map(str, obs.columns[:12]))}); pass cluster_key=.")
    _check_library(obs, library_key, "obs")
    if spatial_key not in adata.obsm:
        raise InputError(f"obsm has no {spatial_key!r} coordinates (obsm keys: "
                         f"{', '.join(map(str, adata.obsm.keys())) or 'none'}); store the cell "
                         f"centroids in obsm[{spatial_key!r}] or pass spatial_key=.")
    xy = np.asarray(adata.obsm[spatial_key])
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise InputError(f"obsm[{spatial_key!r}] must be an (n_cells, 2) array of coordinates; "
                         f"got shape {xy.shape}.")
    columns: dict[str, Any] = {"cell_id": np.asarray(adata.obs_names).astype(str),
                               "x": xy[:, 0].astype(np.float64),
                               "y": xy[:, 1].astype(np.float64),
                               "cell_type": obs[cluster_key].to_numpy()}
    if library_key is not None:
        columns["sample"] = obs[library_key].to_numpy()
    extra = obs.drop(columns=[c for c in (cluster_key, library_key) if c is not None])
    extra = extra[[c for c in extra.columns if pd.api.types.is_numeric_dtype(extra[c])
                   or not isinstance(extra[c].dtype, pd.CategoricalDtype)]]
    frame = _standard(columns, extra)
    if adata.X is None or adata.n_vars == 0:
        return frame, None
    markers, genes = expression_markers(adata.X, [str(v) for v in adata.var_names],
                                        [str(c) for c in frame.columns], normalisation)
    if genes is None:
        frame = pd.concat([frame, markers], axis=1)
    return frame, genes


def _frame_of_frame(frame: pd.DataFrame, cluster_key: str,
                    library_key: str | None) -> pd.DataFrame:
    missing = [c for c in ("x", "y", cluster_key) if c not in frame.columns]
    if missing:
        raise InputError(f"the DataFrame has no column(s) {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(map(str, frame.columns[:12]))}); give x, y (µm "
                         "× um_per_unit) and the cell-type column named by cluster_key.")
    _check_library(frame, library_key, "the DataFrame")
    ids = (frame["cell_id"].astype(str).to_numpy() if "cell_id" in frame.columns
           else np.arange(len(frame)).astype(str))
    columns: dict[str, Any] = {"cell_id": ids, "x": pd.to_numeric(frame["x"]).to_numpy(float),
                               "y": pd.to_numeric(frame["y"]).to_numpy(float),
                               "cell_type": frame[cluster_key].to_numpy()}
    if library_key is not None:
        columns["sample"] = frame[library_key].to_numpy()
    extra = frame.drop(columns=[c for c in ("x", "y", "cell_id", cluster_key, library_key)
                                if c is not None and c in frame.columns])
    return _standard(columns, extra)


def _check_library(obs: pd.DataFrame, library_key: str | None, where: str) -> None:
    if library_key is not None and library_key not in obs.columns:
        raise InputError(f"{where} has no column {library_key!r} for the sample ids; pass "
                         "library_key= naming the sample column, or None for one sample.")
    if library_key is None and "sample" in obs.columns and obs["sample"].nunique() > 1:
        raise InputError(f"{where} holds {obs['sample'].nunique()} samples in column 'sample' "
                         "but library_key is None; pass library_key='sample' so that each "
                         "sample is analysed on its own.")


def contexts(target: Target, config: Config) -> Iterator[tuple[Part, SampleContext]]:
    """The pipeline's :class:`~metaniche.context.SampleContext` of every sample, one at a time.

    The compartments of a sample (the costly part: 80 % of ``mn.tl.nhood_enrichment`` on
    300k cells) are computed once per session for the same inputs and reused by later tools
    (:class:`CompartmentMemo`), so ``mn.tl.compartments`` followed by other tools does not
    recompute them; a change of cells, labels, coordinates or parameters recomputes.
    """
    for part in target.parts:
        key = COMPARTMENT_MEMO.key(part.cells, config)
        context = build_context(part.name, part.cells, config, genes=part.genes,
                                compartments=COMPARTMENT_MEMO.get(key))
        COMPARTMENT_MEMO.put(key, context.compartments, len(part.cells))
        yield part, context


class CompartmentMemo:
    """Compartments already computed in this session, keyed on everything they depend on.

    The key is a BLAKE2b digest of the inputs of :func:`metaniche.analyses.compartments.
    sample_compartments` (and, for a spot sample, :func:`metaniche.analyses.spots.
    sample_spot_compartments`): the cells' µm coordinates, labels and tissue category, the
    spot proportion columns, and the ``[compartments]``, ``[cell_types]`` and ``[spots]``
    sections of the configuration. Equal keys therefore mean the same result, never a stale
    one. Hashing costs O(n) (≈0.2 s for 1M cells, against seconds for the compartments).

    Entries are held least-recently-used first up to ``max_cells`` cells in all; ``get``
    returns a copy whose arrays are read-only and whose warning list is its own, so a caller
    appending warnings (as :func:`metaniche.sample.analyse_sample` does) or writing into an
    array cannot change what the memo holds.
    """

    def __init__(self, max_cells: int = 4_000_000) -> None:
        self.max_cells = max_cells
        self._entries: OrderedDict[bytes, tuple[CompartmentResult, int]] = OrderedDict()

    @staticmethod
    def key(cells: pd.DataFrame, config: Config) -> bytes:
        """Digest of the inputs the compartments of ``cells`` depend on."""
        columns = [c for c in ("x", "y", "cell_type", TISSUE_CATEGORY) if c in cells.columns]
        if config.spots.proportions:
            columns += spot_type_columns(cells.columns)
        digest = hashlib.blake2b(digest_size=20)
        digest.update(repr((columns, len(cells), config.compartments, config.cell_types,
                            config.spots)).encode())
        digest.update(pd.util.hash_pandas_object(cells[columns], index=False).to_numpy()
                      .tobytes())
        return digest.digest()

    def get(self, key: bytes) -> CompartmentResult | None:
        """A protected copy of the stored result, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return _protected(entry[0])

    def put(self, key: bytes, result: CompartmentResult, n_cells: int) -> None:
        """Store ``result`` (a protected copy) unless larger than the whole memo."""
        if key in self._entries or n_cells > self.max_cells:
            return
        self._entries[key] = (_protected(result), n_cells)
        while sum(n for _, n in self._entries.values()) > self.max_cells:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every stored result."""
        self._entries.clear()


def _protected(result: CompartmentResult) -> CompartmentResult:
    changes: dict[str, Any] = {"warnings": list(result.warnings)}
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if isinstance(value, np.ndarray):
            value = value.view()
            value.flags.writeable = False
            changes[field.name] = value
    return dataclasses.replace(result, **changes)


#: The session's memo of compartments used by :func:`contexts`.
COMPARTMENT_MEMO = CompartmentMemo()


# --- configuration from keyword arguments -------------------------------------------------
def configured(**sections: Sequence[str]) -> Callable:
    """Decorate a tool whose keyword-only parameters are fields of Config sections.

    ``sections`` maps a :class:`~metaniche.config.Config` attribute (``"compartments"``,
    ``"relations"``, …) to the tool's parameters that are fields of it (same names; their
    defaults are the Params defaults). ``tumor`` and ``immune`` set ``Config.cell_types``.
    The wrapper replaces ``config`` by the merged configuration: ``config`` (default
    :class:`~metaniche.config.Config`) with every keyword the caller *gave* applied, validated
    by the Params classes (a bad value raises their :class:`~metaniche.errors.ConfigError`).
    """
    def wrap(func: Callable) -> Callable:
        signature = inspect.signature(func)
        for names in sections.values():
            for name in names:
                if name not in signature.parameters:
                    raise TypeError(f"{func.__name__} has no parameter {name!r}")

        @functools.wraps(func)
        def tool(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            given = bound.arguments
            config = given.get("config")
            if config is None:
                config = Config()
            elif not isinstance(config, Config):
                raise InputError(f"`config` must be a metaniche.config.Config (see "
                                 f"metaniche.config.load_config); got {type(config).__name__}.")
            changes: dict[str, Any] = {}
            for section, names in sections.items():
                values = {n: _plain(given[n]) for n in names if n in given}
                if values:
                    changes[section] = dataclasses.replace(getattr(config, section), **values)
            roles: dict[str, Any] = {r: tuple(given[r]) for r in ("tumor", "immune")
                     if given.get(r) is not None}
            if roles:
                changes["cell_types"] = dataclasses.replace(config.cell_types, **roles)
            given["config"] = dataclasses.replace(config, **changes) if changes else config
            return func(*bound.args, **bound.kwargs)

        tool.__metaniche_sections__ = dict(sections)  # type: ignore[attr-defined]
        return tool
    return wrap


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- writing results back ----------------------------------------------------------------
def storable(value: Any) -> Any:
    """Configuration data as ``.h5ad`` can store it in ``uns``: tuples and lists become
    arrays (strings or numbers), ``None`` becomes ``""``, dicts are converted recursively."""
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        items = [storable(v) for v in value]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return np.asarray(items, dtype=np.float64)
        return np.asarray([str(v) for v in items], dtype=object)
    if value is None:
        return ""
    return value


def store_cells(target: Target, column: str, values: Sequence[Any],
                categories: Sequence[str] | None = None, zero_is_na: bool = False) -> None:
    """Write one per-cell column (one array per sample, in ``target.parts`` order; every row
    of the object belongs to exactly one sample). ``categories`` makes it categorical in that
    order; ``zero_is_na`` makes an integer id column nullable ``Int64`` with 0 as missing."""
    arrays = [np.asarray(v) for v in values]
    out = np.empty(target.n_obs, dtype=np.result_type(*[a.dtype for a in arrays]))
    for part, array in zip(target.parts, arrays, strict=True):
        out[part.rows] = array
    if categories is not None:
        target.obs[column] = pd.Categorical(out, categories=list(categories))
    elif zero_is_na:
        ids = pd.array(out.astype(np.int64), dtype="Int64")
        target.obs[column] = pd.Series(ids, index=target.obs.index).mask(out == 0)
    else:
        target.obs[column] = out


def h5ad_safe(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every text column holding missing values made categorical (same values;
    ``.h5ad`` cannot store text columns with missing values otherwise)."""
    for column in table.columns:
        values = table[column]
        if values.dtype == object and values.isna().any():
            present = values.dropna()
            if len(present) == 0 or all(isinstance(v, str) for v in present):
                table[column] = pd.Categorical(values)
    return table


def store_table(target: Target, name: str, tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``uns["metaniche"][name]``: the samples' tables with ``sample`` first (as the run's
    ``tables/<name>.parquet``); empty parts are dropped unless all are empty. Text columns
    with missing values are categorical (:func:`h5ad_safe`)."""
    parts = []
    for part, table in zip(target.parts, tables, strict=True):
        table = table.copy()
        table.insert(0, "sample", part.name)
        parts.append(table)
    kept = [p for p in parts if not p.empty] or parts[:1]
    result = h5ad_safe(pd.concat(kept, ignore_index=True))
    target.results[name] = result
    return result
