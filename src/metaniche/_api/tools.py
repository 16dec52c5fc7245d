"""``metaniche.tl``: analysis tools that write into an AnnData (or DataFrame), like squidpy.

Every tool takes ``data`` (an :class:`anndata.AnnData` with ``obsm["spatial"]`` in µm ×
``um_per_unit`` and ``obs[cluster_key]``; a :class:`pandas.DataFrame` with columns ``x``,
``y`` and ``cluster_key``; or a SpatialData object with ``table_key``), the cell-type column
``cluster_key`` and, for several samples in one object, ``library_key`` (each sample is
analysed on its own, never across samples). Keyword-only parameters are fields of the run
configuration with the same names and defaults (:mod:`metaniche.config`); ``config`` gives a
whole :class:`~metaniche.config.Config` and the keywords given override it. ``tumor`` and
``immune`` list the labels of those roles (``[cell_types]``; default: the label patterns of
:class:`~metaniche.config.CellTypeRoles`).

Results go where squidpy puts them: per-cell columns in ``obs``, per-cell matrices in
``obsm``, squidpy layouts under ``uns[f"{cluster_key}_…"]`` and metaniche's long tables (the
run's ``tables/<name>.parquet``, ``sample`` first) in ``uns["metaniche"][<name>]``; the
configuration sections used go to ``uns["metaniche"]["config"]``. For a DataFrame input,
per-cell columns are added to the frame and the rest goes to ``frame.attrs`` (dicts that
compare by identity, so the frame still concatenates and copies as usual). With
``copy=True`` a modified copy is returned, else ``None``.

Each tool builds the same per-sample context as ``metaniche run``
(:func:`metaniche.sample.build_context`: compartments included) and calls the pipeline's
stages and kernels, so the numbers are those of the run's tables for the same cells and
configuration. A sample's compartments are computed once per session for the same cells and
parameters and reused by the tools after it (:class:`metaniche._api._adapter.CompartmentMemo`,
keyed on a hash of every input they depend on, so never stale): after
``mn.tl.compartments``, ``mn.tl.nhood_enrichment`` and the others skip that step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche._api._adapter import (
    Target,
    configured,
    contexts,
    h5ad_safe,
    resolve,
    storable,
    store_cells,
    store_table,
)
from metaniche.analyses.compartments import COMPARTMENTS
from metaniche.analyses.composition import immune_phenotype as _phenotype_rule
from metaniche.analyses.relations import (
    Window,
    co_occurrence_table,
    nearest_type_distances,
    neighbour_graph,
    ripley_table,
)
from metaniche.analyses.relations import (
    co_occurrence as _co_occurrence,
)
from metaniche.analyses.relations.ripley_modes import ripley_sample
from metaniche.analyses.relations.sample_tables import (
    distances_table,
    enrichment_tables,
    mixing_table,
    ripley_envelopes,
)
from metaniche.cohort.neighbourhoods import cohort_neighbourhoods
from metaniche.cohort.state_thresholds import with_cohort_thresholds
from metaniche.config import (
    AggregateParams,
    CompartmentParams,
    Config,
    ContactParams,
    GradientParams,
    LigrecParams,
    NeighbourhoodParams,
    PhenotypeParams,
    RelationsParams,
    StateRule,
    StatesParams,
    ZonationParams,
)
from metaniche.context import SampleContext
from metaniche.errors import InputError
from metaniche.genes import with_gene_columns
from metaniche.sample import analyse_sample
from metaniche.stages import communities as communities_stage
from metaniche.stages import composition as composition_stage
from metaniche.stages import contact as contact_stage
from metaniche.stages import gradients as gradients_stage
from metaniche.stages import states as states_stage
from metaniche.stages import zonation as zonation_stage

__all__ = ["aggregates", "analyse", "co_occurrence", "compartments", "composition", "contact",
           "gradients", "immune_phenotype", "ligrec", "mixing_score", "nearest_distances",
           "neighbourhoods", "nhood_enrichment", "ripley", "states", "zonation"]

_C, _R = CompartmentParams, RelationsParams
_COMPARTMENT_FIELDS = ("border_um", "grid_um", "smoothing_um", "tumor_fraction",
                       "immune_weight", "min_lesion_area_um2", "min_hole_area_um2",
                       "tissue_radius_um", "tissue_closing_um")


def _finish(target: Target, copy: bool, config: Config, *sections: str) -> Any:
    used = target.results.setdefault("config", {})
    used["um_per_unit"] = config.um_per_unit
    for section in ("compartments", *sections):
        used[section] = storable(dataclasses.asdict(getattr(config, section)))
    return target.obj if copy else None


def _window(context: SampleContext) -> Window:
    grid = context.compartments.grid
    return Window(context.compartments.tissue, grid.x0, grid.y0, grid.pixel_um)


# --- compartments, composition, phenotype ---------------------------------------------------
@configured(compartments=_COMPARTMENT_FIELDS)
def compartments(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
                 tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
                 border_um: float = _C.border_um, grid_um: float = _C.grid_um,
                 smoothing_um: float = _C.smoothing_um, tumor_fraction: float = _C.tumor_fraction,
                 immune_weight: float = _C.immune_weight,
                 min_lesion_area_um2: float = _C.min_lesion_area_um2,
                 min_hole_area_um2: float = _C.min_hole_area_um2,
                 tissue_radius_um: float = _C.tissue_radius_um,
                 tissue_closing_um: float = _C.tissue_closing_um,
                 config: Config | None = None, copy: bool = False,
                 table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Detect tumour lesions and assign every cell to the core, border or adjacent compartment.

    Tumour regions come from the smoothed local tumour fraction on a raster of ``grid_um``
    pixels (:func:`metaniche.analyses.compartments.assign_compartments`); a cell's signed
    distance is its distance to the nearest lesion edge (µm, negative inside tumour); the
    border band is ``|d| <= border_um``.

    Parameters
    ----------
    data
        AnnData, contract DataFrame or SpatialData (with ``table_key``); see :mod:`metaniche.tl`.
    cluster_key
        ``obs`` column of the cell-type labels.
    library_key
        ``obs`` column of the sample ids; each sample is analysed separately.
    tumor, immune
        Labels of tumour and immune cells (default: label patterns, ``[cell_types]``).
    border_um, grid_um, smoothing_um, tumor_fraction, immune_weight, min_lesion_area_um2, \
min_hole_area_um2, tissue_radius_um, tissue_closing_um
        :class:`metaniche.config.CompartmentParams` (same meaning, units and defaults).
    config
        Base configuration; the keywords given override it.
    copy
        Return a modified copy instead of writing into ``data``.
    table_key, spatial_key
        Table of a SpatialData object; ``obsm`` key of the coordinates.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obs["signed_distance_um"]`` (float, µm),
        ``obs["compartment"]`` (categorical ``core``, ``border``, ``adjacent``),
        ``obs["lesion_id"]`` (Int64, missing when the sample has no tumour),
        ``uns["metaniche"]["compartments"]`` (``sample, lesion_id, compartment, n_cells,
        area_mm2``: tissue area per compartment and lesion; null lesion = whole sample),
        ``uns["metaniche"]["lesions"]`` and the parameters in
        ``uns["metaniche"]["config"]["compartments"]``.

    Examples
    --------
    >>> import metaniche as mn
    >>> mn.tl.compartments(adata, "cell_type", border_um=50)      # doctest: +SKIP
    >>> adata.obs["compartment"].value_counts()                   # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    sd, comp, lesion, areas, lesions = [], [], [], [], []
    for _, context in contexts(target, config):
        result = context.compartments
        sd.append(result.signed_distance_um)
        comp.append(np.asarray(result.compartment).astype(str))
        lesion.append(np.asarray(result.lesion_id, dtype=np.int64))
        areas.append(composition_stage.compartment_counts(result))
        lesions.append(result.lesions)
    store_cells(target, "signed_distance_um", sd)
    store_cells(target, "compartment", comp, categories=COMPARTMENTS)
    store_cells(target, "lesion_id", lesion, zero_is_na=True)
    store_table(target, T.COMPARTMENTS, areas)
    store_table(target, T.LESIONS, lesions)
    return _finish(target, copy, config)


@configured(compartments=("border_um",))
def composition(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
                tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
                border_um: float = _C.border_um, config: Config | None = None,
                table_key: str | None = None, spatial_key: str = "spatial") -> pd.DataFrame:
    """Cell densities (cells/mm²) and proportions of every type per compartment and lesion.

    The composition table of the run (:func:`metaniche.analyses.composition.composition_table`):
    per lesion × compartment × cell type, ``n_cells``, ``area_mm2`` (tissue area of the
    compartment), ``density_per_mm2`` = n_cells / area and ``proportion`` (of the
    compartment's cells); null ``lesion_id`` rows are whole-sample totals, compartment
    ``all`` the whole tissue.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, table_key, spatial_key
        As in :func:`compartments`.

    Returns
    -------
    pandas.DataFrame
        The table (``sample`` first), also written to ``uns["metaniche"]["composition"]``.

    Examples
    --------
    >>> table = mn.tl.composition(adata, "cell_type")            # doctest: +SKIP
    >>> table[table["lesion_id"].isna()].pivot(index="cell_type", columns="compartment",
    ...                                        values="density_per_mm2")  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key)
    parts = [composition_stage.run(context).tables[T.COMPOSITION]
             for _, context in contexts(target, config)]
    table = store_table(target, T.COMPOSITION, parts)
    _finish(target, False, config)
    return table


@configured(compartments=("border_um",),
            phenotype=("effector_types", "desert_max_per_mm2", "inflamed_min_core_border_ratio"))
def immune_phenotype(data: Any, cluster_key: str = "cell_type", *,
                     library_key: str | None = None, tumor: Sequence[str] | None = None,
                     immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                     effector_types: Sequence[str] = PhenotypeParams.effector_types,
                     desert_max_per_mm2: float = PhenotypeParams.desert_max_per_mm2,
                     inflamed_min_core_border_ratio: float = (
                         PhenotypeParams.inflamed_min_core_border_ratio),
                     config: Config | None = None, table_key: str | None = None,
                     spatial_key: str = "spatial") -> pd.DataFrame:
    """Call each sample inflamed (hot), excluded or desert (cold) from effector densities.

    Desert when the effector density is below ``desert_max_per_mm2`` in both core and border;
    otherwise inflamed when core / border density ≥ ``inflamed_min_core_border_ratio``, else
    excluded (:func:`metaniche.analyses.composition.immune_phenotype`); ``undetermined``
    when the sample has no core or no border tissue.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, table_key, spatial_key
        As in :func:`compartments`.
    effector_types, desert_max_per_mm2, inflamed_min_core_border_ratio
        :class:`metaniche.config.PhenotypeParams` (default effectors: labels matching CD8).

    Returns
    -------
    pandas.DataFrame
        One row per sample: ``sample, phenotype, effector_types, core_density_per_mm2,
        border_density_per_mm2, core_border_ratio, reason`` (the rule that decided), also
        written to ``uns["metaniche"]["immune_phenotype"]``.

    Examples
    --------
    >>> mn.tl.immune_phenotype(adata, "cell_type")[["sample", "phenotype", "reason"]]
    ... # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key)
    rows = []
    for _, context in contexts(target, config):
        table = composition_stage.run(context).tables[T.COMPOSITION]
        call = _phenotype_rule(table, context.effector_types, config.phenotype)
        rows.append(pd.DataFrame([{
            "phenotype": call.phenotype, "effector_types": ", ".join(call.effector_types),
            "core_density_per_mm2": call.core_density_per_mm2,
            "border_density_per_mm2": call.border_density_per_mm2,
            "core_border_ratio": call.core_border_ratio,
            "reason": _reason(call.phenotype, call, config.phenotype)}]))
    result = store_table(target, "immune_phenotype", rows)
    _finish(target, False, config, "phenotype")
    return result


def _reason(label: str, call: Any, params: PhenotypeParams) -> str:
    core, border = call.core_density_per_mm2, call.border_density_per_mm2
    if label == "undetermined":
        return "no core or no border tissue to compare effector densities"
    if label == "desert":
        return (f"effector density below {params.desert_max_per_mm2:g} cells/mm² in core "
                f"({core:.1f}) and border ({border:.1f})")
    side = "≥" if label == "inflamed" else "<"
    return (f"core / border effector density {call.core_border_ratio:.2f} {side} "
            f"{params.inflamed_min_core_border_ratio:g} (core {core:.1f}, border "
            f"{border:.1f} cells/mm²)")


# --- gradients and zonation (the pipeline's border stage) ------------------------------------
_GRADIENT_FIELDS = ("bin_um", "min_um", "max_um", "window_um", "markers", "marker_columns",
                    "infiltration_types")


@configured(compartments=("border_um",), gradients=_GRADIENT_FIELDS)
def gradients(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
              tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
              border_um: float = _C.border_um, bin_um: float = GradientParams.bin_um,
              min_um: float = GradientParams.min_um, max_um: float = GradientParams.max_um,
              window_um: float = GradientParams.window_um,
              markers: bool = GradientParams.markers,
              marker_columns: Sequence[str] = GradientParams.marker_columns,
              infiltration_types: Sequence[str] = GradientParams.infiltration_types,
              config: Config | None = None, copy: bool = False,
              table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Density of every cell type against signed distance to the tumour edge, and its trend.

    Densities (cells/mm²) per ``bin_um`` band of signed distance from ``min_um`` to ``max_um``
    (band areas measured on the tissue raster), per lesion and whole sample
    (:func:`metaniche.analyses.gradients.gradient_profiles`); trend statistics within
    ``±window_um`` (:func:`metaniche.analyses.gradients.gradient_statistics`: slope of log
    density per 100 µm from a Poisson/NB2 GLM with Wald CI and p, peak, borderline index);
    mean marker expression per band when ``markers``; per-lesion metrics.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    bin_um, min_um, max_um, window_um, markers, marker_columns, infiltration_types
        :class:`metaniche.config.GradientParams` (µm; same defaults).

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns["metaniche"]`` tables ``gradients``,
        ``gradient_stats``, ``gradient_markers`` (when markers exist) and ``lesion_metrics``.

    Examples
    --------
    >>> mn.tl.gradients(adata, "cell_type")                      # doctest: +SKIP
    >>> adata.uns["metaniche"]["gradient_stats"].head()          # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    outputs = [gradients_stage.run(context) for _, context in contexts(target, config)]
    for name in (T.GRADIENTS, T.GRADIENT_STATS, T.GRADIENT_MARKERS, T.LESION_METRICS):
        if any(name in o.tables for o in outputs):
            store_table(target, name, [o.tables.get(name, pd.DataFrame()) for o in outputs])
    return _finish(target, copy, config, "gradients")


@configured(compartments=("border_um",), zonation=("portal_types", "central_types", "n_bins",
                                                  "beyond_um"))
def zonation(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
             tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
             border_um: float = _C.border_um,
             portal_types: Sequence[str] = ZonationParams.portal_types,
             central_types: Sequence[str] = ZonationParams.central_types,
             n_bins: int = ZonationParams.n_bins, beyond_um: float = ZonationParams.beyond_um,
             config: Config | None = None, copy: bool = False,
             table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Liver lobule zonation of the host tissue: portal–central coordinate η of every cell.

    η = d_portal / (d_portal + d_central) from the nearest portal and central landmark cells
    (:func:`metaniche.analyses.zonation.zonation`), density profiles of every type over η in
    ``n_bins`` bins and the periportal / pericentral enrichment, outside tumour and beyond the
    border band.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    portal_types, central_types, n_bins, beyond_um
        :class:`metaniche.config.ZonationParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obs["zonation_eta"]`` (NaN without landmarks or
        inside tumour) and ``uns["metaniche"]`` tables ``zonation`` and
        ``zonation_enrichment`` (when the sample has landmarks).

    Examples
    --------
    >>> mn.tl.zonation(adata, "cell_type", portal_types=["Portal_vein"])  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    outputs = [zonation_stage.run(context) for _, context in contexts(target, config)]
    store_cells(target, "zonation_eta", [o.cell_columns["zonation_eta"] for o in outputs])
    for name in (T.ZONATION, T.ZONATION_ENRICHMENT):
        if any(name in o.tables for o in outputs):
            store_table(target, name, [o.tables.get(name, pd.DataFrame()) for o in outputs])
    return _finish(target, copy, config, "zonation")


# --- relations ------------------------------------------------------------------------------
@configured(compartments=("border_um",))
def nearest_distances(data: Any, cluster_key: str = "cell_type", *,
                      library_key: str | None = None, tumor: Sequence[str] | None = None,
                      immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                      config: Config | None = None, copy: bool = False,
                      table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Distance from every cell to the nearest other cell of each type (µm).

    Exact nearest-neighbour search per type
    (:func:`metaniche.analyses.relations.nearest_type_distances`); NaN when the sample has no
    other cell of that type.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obsm["nn_dist_um"]``: a DataFrame indexed like
        ``obs``, one column per category of ``obs[cluster_key]`` (µm); and
        ``uns["metaniche"]["distances"]`` (summary per source × target type and compartment:
        mean, median, quartiles, min, max, µm). For a DataFrame input the matrix goes to
        ``attrs["metaniche"]["nn_dist_um"]``.

    Examples
    --------
    >>> mn.tl.nearest_distances(adata, "cell_type")              # doctest: +SKIP
    >>> adata.obsm["nn_dist_um"]["CD8_T"].median()                # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    categories = target.categories()
    matrix = np.full((target.n_obs, len(categories)), np.nan)
    tables = []
    for part, context in contexts(target, config):
        nearest = nearest_type_distances(context.coordinates, context.type_codes,
                                         len(context.cell_types))
        columns = np.array([categories.index(t) for t in context.cell_types], dtype=np.intp)
        matrix[np.ix_(part.rows, columns)] = nearest
        tables.append(distances_table(nearest, context.type_codes, context.cell_types,
                                      np.asarray(context.compartments.compartment).astype(str)))
    frame = pd.DataFrame(matrix, index=target.obs.index, columns=categories)
    if target.is_frame:
        target.results["nn_dist_um"] = frame
    else:
        target.obj.obsm["nn_dist_um"] = frame
    store_table(target, T.DISTANCES, tables)
    return _finish(target, copy, config)


def _square(table: pd.DataFrame, value: str, categories: list[str]) -> np.ndarray:
    """K×K matrix of ``value`` from a long ``type_a, type_b`` table (NaN for absent types)."""
    wide = table.pivot(index="type_a", columns="type_b", values=value)
    return wide.reindex(index=categories, columns=categories).to_numpy(np.float64)


@configured(compartments=("border_um",),
            relations=("graph", "contact_radius_um", "k", "n_permutations", "seed"))
def nhood_enrichment(data: Any, cluster_key: str = "cell_type", *,
                     library_key: str | None = None, tumor: Sequence[str] | None = None,
                     immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                     graph: str = _R.graph, contact_radius_um: float = _R.contact_radius_um,
                     k: int = _R.k, n_permutations: int = _R.n_permutations,
                     seed: int = _R.seed, config: Config | None = None, copy: bool = False,
                     table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Neighbourhood enrichment: are contacts between two types more frequent than by chance?

    Contacts are the edges of the neighbour graph (``graph``: ``radius`` within
    ``contact_radius_um``, ``knn`` with ``k``, or ``delaunay``). The z-score compares the
    observed count of a–b contacts with its exact mean and variance under random relabelling
    of the cells (join-count moments, :func:`metaniche.analyses.relations.
    neighbourhood_enrichment`), so no permutations are needed; ``n_permutations`` > 0 adds a
    permutation p. Two nulls: the whole sample, and labels permuted within compartments.

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    graph, contact_radius_um, k, n_permutations, seed
        :class:`metaniche.config.RelationsParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns[f"{cluster_key}_nhood_enrichment"]`` in
        squidpy's layout, rows and columns in the order of ``obs[cluster_key].cat.categories``:
        ``"zscore"`` (K×K, whole-sample null), ``"count"`` (K×K observed contacts) and ours:
        ``"p"`` (two-sided normal p), ``"zscore_within_compartment"``; with ``library_key``
        and several samples, one such dict per sample name instead. The long table (both
        nulls) goes to ``uns["metaniche"]["enrichment"]``.

    Examples
    --------
    >>> mn.tl.nhood_enrichment(adata, "cell_type")               # doctest: +SKIP
    >>> adata.uns["cell_type_nhood_enrichment"]["zscore"].shape   # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    params = config.relations
    categories = target.categories()
    tables, squares = [], {}
    for part, context in contexts(target, config):
        edges = neighbour_graph(context.coordinates, context.tree, params.graph,
                                params.contact_radius_um, params.k)
        table, _ = enrichment_tables(edges, context.type_codes, context.cell_types,
                                     np.asarray(context.compartments.compartment).astype(str),
                                     params.n_permutations, params.seed, params.graph)
        tables.append(table)
        whole, within = table[table["null"] == "sample"], table[table["null"] != "sample"]
        square = {"zscore": _square(whole, "z", categories),
                  "count": np.nan_to_num(_square(whole, "observed", categories)),
                  "p": _square(whole, "p", categories),
                  "zscore_within_compartment": _square(within, "z", categories)}
        if "p_permutation" in whole.columns:
            square["p_permutation"] = _square(whole, "p_permutation", categories)
        squares[part.name] = square
    key = f"{cluster_key}_nhood_enrichment"
    target.put(key, next(iter(squares.values())) if len(squares) == 1 else squares)
    store_table(target, T.ENRICHMENT, tables)
    return _finish(target, copy, config, "relations")


@configured(compartments=("border_um",),
            relations=("cooccurrence_max_um", "cooccurrence_bins"))
def co_occurrence(data: Any, cluster_key: str = "cell_type", *,
                  library_key: str | None = None, tumor: Sequence[str] | None = None,
                  immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                  cooccurrence_max_um: float = _R.cooccurrence_max_um,
                  cooccurrence_bins: int = _R.cooccurrence_bins,
                  config: Config | None = None, copy: bool = False,
                  table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Co-occurrence ratio p(b | a within d) / p(b) at distances up to ``cooccurrence_max_um``.

    squidpy's score (``sq.gr.co_occurrence``, cumulative discs, ≥ 1.6) on
    ``cooccurrence_bins`` equal steps of 0…``cooccurrence_max_um`` µm, counted exactly over all
    cell pairs (:func:`metaniche.analyses.relations.co_occurrence`).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    cooccurrence_max_um, cooccurrence_bins
        :class:`metaniche.config.RelationsParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns[f"{cluster_key}_co_occurrence"] =
        {"occ": K×K×B, "interval": B+1}`` (squidpy's layout, ``obs[cluster_key]``
        category order; per sample name with several samples) and
        ``uns["metaniche"]["cooccurrence"]``.

    Examples
    --------
    >>> mn.tl.co_occurrence(adata, "cell_type", cooccurrence_max_um=200)  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    params = config.relations
    interval = np.linspace(0.0, params.cooccurrence_max_um, params.cooccurrence_bins + 1)
    categories = target.categories()
    tables, results = [], {}
    for part, context in contexts(target, config):
        ratio, _ = _co_occurrence(context.coordinates, context.type_codes,
                                  len(context.cell_types), interval)
        occ = np.zeros((len(categories), len(categories), len(interval) - 1))
        index = np.array([categories.index(t) for t in context.cell_types], dtype=np.intp)
        occ[np.ix_(index, index)] = ratio
        results[part.name] = {"occ": occ, "interval": interval.copy()}
        tables.append(co_occurrence_table(ratio, interval, context.cell_types))
    key = f"{cluster_key}_co_occurrence"
    target.put(key, next(iter(results.values())) if len(results) == 1 else results)
    store_table(target, T.COOCCURRENCE, tables)
    return _finish(target, copy, config, "relations")


@configured(compartments=("border_um",),
            relations=("ripley_correction", "ripley_window", "ripley_max_um", "ripley_step_um",
                       "ripley_simulations", "seed"))
def ripley(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
           tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
           border_um: float = _C.border_um,
           ripley_correction: str = _R.ripley_correction,
           ripley_window: str = _R.ripley_window,
           ripley_max_um: float | str = _R.ripley_max_um,
           ripley_step_um: float = _R.ripley_step_um,
           ripley_simulations: int = _R.ripley_simulations, seed: int = _R.seed,
           config: Config | None = None, copy: bool = False,
           table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Cross-type Ripley K, Besag L and pair-correlation g, as the pipeline computes them.

    For every ordered type pair, K(r), L = sqrt(K/π) and g(r) under the configured edge
    correction and window (:func:`metaniche.analyses.relations.ripley_modes.ripley_sample`):
    by default the translation correction on the sample's tissue raster (the window is the
    tissue, not its bounding box) at r = ``ripley_step_um``, 2·step, …, ``ripley_max_um``;
    spicyR mode with ``ripley_correction="isotropic"``, ``ripley_window="rectangle"``,
    ``ripley_max_um="auto"``. CSR envelopes from ``ripley_simulations`` simulations (on a
    shared numeric grid only).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    ripley_correction, ripley_window, ripley_max_um, ripley_step_um, ripley_simulations, seed
        :class:`metaniche.config.RelationsParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns["metaniche"]["ripley"]``: ``sample, type_a,
        type_b, r_um, k_um2, l_um, l_minus_r_um, g`` (and envelope columns ``l_lo_um,
        l_hi_um, g_lo, g_hi`` with simulations).

    Examples
    --------
    >>> mn.tl.ripley(adata, "cell_type", ripley_max_um=200)      # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    params = config.relations
    tables = []
    for _, context in contexts(target, config):
        window = _window(context)
        n_types = len(context.cell_types)
        result = ripley_sample(context.coordinates, context.type_codes, n_types, window,
                               correction=params.ripley_correction,
                               window=params.ripley_window, max_um=params.ripley_max_um,
                               step_um=params.ripley_step_um)
        table = ripley_table(result, context.cell_types)
        if params.ripley_simulations > 0:
            counts = np.bincount(context.type_codes, minlength=n_types)
            table = ripley_envelopes(table, window, counts, context.cell_types, result.radii,
                                     params.ripley_simulations, params.seed)
        tables.append(table)
    store_table(target, T.RIPLEY, tables)
    return _finish(target, copy, config, "relations")


@configured(compartments=("border_um",), relations=("contact_radius_um",))
def mixing_score(data: Any, cluster_key: str = "cell_type", *,
                 library_key: str | None = None, tumor: Sequence[str] | None = None,
                 immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                 contact_radius_um: float = _R.contact_radius_um,
                 config: Config | None = None, copy: bool = False,
                 table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Keren's mixing score of each immune type (and all immune cells) with tumour cells.

    Immune–tumour contacts over immune–immune contacts within ``contact_radius_um``, and
    SPIAT's normalised score (:func:`metaniche.analyses.relations.mixing_score`).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    contact_radius_um
        :class:`metaniche.config.RelationsParams` (µm).

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns["metaniche"]["mixing"]`` (one row per
        reference type: pair counts, ``mixing_score``, ``normalised_mixing_score``).

    Examples
    --------
    >>> mn.tl.mixing_score(adata, "cell_type", tumor=["Tumor"])  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    tables = []
    for _, context in contexts(target, config):
        references = [(t, context.type_codes == context.cell_types.index(t))
                      for t in context.immune_types]
        if context.immune_types:
            references.append(("all_immune", context.is_immune))
        tables.append(mixing_table(context.coordinates, context.is_tumor, references,
                                   config.relations.contact_radius_um))
    store_table(target, T.MIXING, tables)
    return _finish(target, copy, config, "relations")


# --- communities ----------------------------------------------------------------------------
_AGGREGATE_FIELDS = ("radius_um", "min_neighbours", "min_cells", "b_types", "t_types",
                     "tls_min_cells", "tls_min_b_fraction")


@configured(compartments=("border_um",), aggregates=_AGGREGATE_FIELDS)
def aggregates(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
               tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
               border_um: float = _C.border_um, radius_um: float = AggregateParams.radius_um,
               min_neighbours: int = AggregateParams.min_neighbours,
               min_cells: int = AggregateParams.min_cells,
               b_types: Sequence[str] = AggregateParams.b_types,
               t_types: Sequence[str] = AggregateParams.t_types,
               tls_min_cells: int = AggregateParams.tls_min_cells,
               tls_min_b_fraction: float = AggregateParams.tls_min_b_fraction,
               config: Config | None = None, copy: bool = False,
               table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Lymphoid aggregates and tertiary lymphoid structures (TLS), with maturity grade, and the
    configured multicellular units (``config.units``).

    B/T cells with ≥ ``min_neighbours`` B/T neighbours within ``radius_um`` seed density
    clusters of ≥ ``min_cells`` cells; a cluster of ≥ ``tls_min_cells`` cells with B fraction
    ≥ ``tls_min_b_fraction`` is a TLS, graded by FDC and germinal-centre evidence
    (:mod:`metaniche.analyses.communities.aggregates`; other grading parameters in
    :class:`metaniche.config.AggregateParams` via ``config``).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    radius_um, min_neighbours, min_cells, b_types, t_types, tls_min_cells, tls_min_b_fraction
        :class:`metaniche.config.AggregateParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obs["aggregate_id"]`` (B/T cluster or TLS, 0 =
        none), ``obs["unit_id"]`` (custom unit, 0 = none) and ``uns["metaniche"]`` tables
        ``aggregates`` (one row per aggregate: kind, size, area, centroid, compartment,
        grade) and ``aggregate_composition``.

    Examples
    --------
    >>> mn.tl.aggregates(adata, "cell_type")                     # doctest: +SKIP
    >>> adata.uns["metaniche"]["aggregates"].query("kind == 'tls'")  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    quiet = dataclasses.replace(config, ligrec=dataclasses.replace(config.ligrec,
                                                                    n_permutations=0))
    outputs = [communities_stage.run(context) for _, context in contexts(target, quiet)]
    store_cells(target, "aggregate_id", [o.cell_columns["aggregate_id"] for o in outputs])
    store_cells(target, "unit_id", [o.cell_columns["unit_id"] for o in outputs])
    for name in (T.AGGREGATES, T.AGGREGATE_COMPOSITION):
        store_table(target, name, [o.tables[name] for o in outputs])
    return _finish(target, copy, config, "aggregates")


@configured(compartments=("border_um",),
            ligrec=("pairs", "radius_um", "n_permutations", "min_edges", "seed"))
def ligrec(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
           tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
           border_um: float = _C.border_um, pairs: str = LigrecParams.pairs,
           radius_um: float = LigrecParams.radius_um,
           n_permutations: int = LigrecParams.n_permutations,
           min_edges: int = LigrecParams.min_edges, seed: int = LigrecParams.seed,
           config: Config | None = None, copy: bool = False,
           table_key: str | None = None, spatial_key: str = "spatial") -> Any:
    """Spatial ligand–receptor scores between neighbouring sender and receiver types.

    For each ligand–receptor pair whose genes are markers, the mean product of ligand
    (sender) and receptor (receiver) expression over contacts within ``radius_um``, per type
    pair and compartment, against ``n_permutations`` label permutations (BH q)
    (:mod:`metaniche.analyses.communities.ligrec`).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    pairs, radius_um, n_permutations, min_edges, seed
        :class:`metaniche.config.LigrecParams` (``pairs``: CSV of pairs; default the
        packaged list).

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns["metaniche"]["ligrec"]``.

    Examples
    --------
    >>> mn.tl.ligrec(adata, "cell_type", n_permutations=199)     # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    if config.ligrec.n_permutations == 0:
        from metaniche.errors import ConfigError

        raise ConfigError("`n_permutations` must be at least 1 for mn.tl.ligrec; got 0.")
    outputs = [communities_stage.run(context) for _, context in contexts(target, config)]
    store_table(target, T.LIGREC, [o.tables[T.LIGREC] for o in outputs])
    return _finish(target, copy, config, "ligrec")


@configured(compartments=("border_um",),
            neighbourhoods=("k", "n_neighbourhoods", "n_training", "seed"))
def neighbourhoods(data: Any, cluster_key: str = "cell_type", *,
                   library_key: str | None = None, tumor: Sequence[str] | None = None,
                   immune: Sequence[str] | None = None, border_um: float = _C.border_um,
                   k: int = NeighbourhoodParams.k,
                   n_neighbourhoods: int = NeighbourhoodParams.n_neighbourhoods,
                   n_training: int = NeighbourhoodParams.n_training,
                   seed: int = NeighbourhoodParams.seed, config: Config | None = None,
                   copy: bool = False, table_key: str | None = None,
                   spatial_key: str = "spatial") -> Any:
    """Cellular neighbourhoods (CNs) fitted across all samples of the object.

    Each cell's window is the type composition of its ``k`` nearest cells (itself included);
    one model is fitted on ``n_training`` seeded windows per sample pooled over the samples
    (``n_neighbourhoods`` clusters, 0 = chosen by silhouette) and labels every cell
    (:func:`metaniche.cohort.neighbourhoods.cohort_neighbourhoods`, the run-level step).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    k, n_neighbourhoods, n_training, seed
        :class:`metaniche.config.NeighbourhoodParams`.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obs["neighbourhood"]`` (CN 1…) and
        ``uns["metaniche"]["neighbourhoods"]`` (abundance per sample and compartment,
        composition of each CN, model selection).

    Examples
    --------
    >>> mn.tl.neighbourhoods(adata, "cell_type", library_key="sample")  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    quiet = dataclasses.replace(config, ligrec=dataclasses.replace(config.ligrec,
                                                                    n_permutations=0))
    training, windows = [], []
    for part, context in contexts(target, quiet):
        out = communities_stage.run(context)
        training.append(out.tables[T.CN_TRAINING].assign(sample=part.name))
        windows.append((part.name, out.tables[T.CN_WINDOWS],
                        np.asarray(context.compartments.compartment).astype(str)))
    pooled = pd.concat(training, ignore_index=True)
    pooled = pooled[["sample", *[c for c in pooled.columns if c != "sample"]]]
    labels, table, _ = cohort_neighbourhoods(pooled, iter(windows), config)
    store_cells(target, "neighbourhood", [labels[part.name] for part in target.parts])
    target.results[T.NEIGHBOURHOODS] = h5ad_safe(table)
    return _finish(target, copy, config, "neighbourhoods")


# --- cell states ----------------------------------------------------------------------------
def _state_rules(rules: Mapping[str, Any] | None) -> dict[str, StateRule] | None:
    """``{name: StateRule or dict of its fields}`` → validated rules (None: keep the config's)."""
    if rules is None:
        return None
    if not isinstance(rules, Mapping):
        raise InputError(f"`rules` must map state names to StateRule objects or dicts such as "
                         f"{{\"PDL1_pos\": {{\"marker\": \"PDL1\"}}}}; got "
                         f"{type(rules).__name__}.")
    out = {}
    for name, rule in rules.items():
        if isinstance(rule, StateRule):
            out[str(name)] = rule
        elif isinstance(rule, Mapping):
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                      for k, v in rule.items()}
            for key in ("positive", "all_of", "cell_types"):
                if isinstance(fields.get(key), str):
                    fields[key] = (fields[key],)
            try:
                out[str(name)] = StateRule(**fields)
            except TypeError:
                known = ", ".join(f.name for f in dataclasses.fields(StateRule))
                raise InputError(f"state '{name}' has an unknown field among "
                                 f"{sorted(fields)}; known fields: {known}.") from None
        else:
            raise InputError(f"state '{name}' must be a StateRule or a dict of its fields; got "
                             f"{type(rule).__name__}.")
    return out


@configured(compartments=("border_um",), states=("ratios", "pseudocount"),
            gradients=("bin_um", "min_um", "max_um", "window_um"))
def states(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
           tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
           rules: Mapping[str, Any] | None = None,
           ratios: Sequence[Sequence[str]] = StatesParams.ratios,
           pseudocount: float = StatesParams.pseudocount,
           border_um: float = _C.border_um, bin_um: float = GradientParams.bin_um,
           min_um: float = GradientParams.min_um, max_um: float = GradientParams.max_um,
           window_um: float = GradientParams.window_um, config: Config | None = None,
           copy: bool = False, table_key: str | None = None,
           spatial_key: str = "spatial", structures: bool = True) -> Any:
    """Cell states beside the lineage: fractions and densities per compartment, along the
    border, and density ratios.

    Each state (``rules``, as the ``[states.<name>]`` tables of the config:
    :class:`metaniche.config.StateRule`) is a marker above a threshold (a number or
    ``"otsu"``/``"gmm"``/``"valley"`` per sample, or ``"cohort:otsu"`` … over the cells of
    every sample of the object together), a column holding calls, or a combination
    ``all_of``; a cell keeps its ``cluster_key`` label and carries any number of states
    (:mod:`metaniche.analyses.states`).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    rules
        State name → :class:`~metaniche.config.StateRule` or a dict of its fields, e.g.
        ``{"PDL1_pos": {"marker": "PDL1", "threshold": "otsu", "cell_types": ["Macrophage"]}}``;
        default: those of ``config`` (none).
    ratios, pseudocount
        :class:`metaniche.config.StatesParams`: ``[A, B]`` label pairs of the density ratios
        (default: CD8 effectors over Treg / FOXP3 labels) and the pseudocount (cells, 0.5).
    bin_um, min_um, max_um, window_um
        :class:`metaniche.config.GradientParams`: the signed-distance bands and trend window.
    structures
        Also count the states inside vs outside TLS, lymphoid clusters and units (table
        ``state_structures``; :mod:`metaniche.analyses.state_structures`), finding them as
        :func:`aggregates` does (the pipeline's communities stage, ligand–receptor off).
        Default True; False skips that work.

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``obs["state.<name>"]`` (bool) and
        ``uns["metaniche"]`` tables ``states``, ``state_gradients``, ``state_gradient_stats``,
        ``state_thresholds``, ``marker_gradients``, ``marker_gradient_stats``,
        ``state_structures`` (with ``structures``) and ``state_features`` (one row per
        sample: the ratio and state features of the run's ``features.parquet``).

    Examples
    --------
    >>> mn.tl.states(adata, "cell_type", rules={"PDL1_pos": {"marker": "PDL1"}})  # doctest: +SKIP
    >>> adata.uns["metaniche"]["states"].head()                  # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    chosen = _state_rules(rules)
    params = config.states
    if chosen is not None:
        params = dataclasses.replace(params, rules=chosen)
    pairs = tuple((str(a), str(b)) for a, b in params.ratios)
    params = dataclasses.replace(params, ratios=pairs)
    config = dataclasses.replace(config, states=params)
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    markers = [rule.marker for rule in config.states.rules.values() if rule.marker]
    config, _ = with_cohort_thresholds(
        config, ((p.name, with_gene_columns(p.cells, p.genes, markers)) for p in target.parts))
    parts = list(contexts(target, config))
    if structures:
        quiet = dataclasses.replace(config, ligrec=dataclasses.replace(config.ligrec,
                                                                        n_permutations=0))
        for _, context in parts:
            context.previous["communities"] = communities_stage.run(
                dataclasses.replace(context, config=quiet))
    outputs = [states_stage.run(context) for _, context in parts]
    for name in outputs[0].cell_columns:
        store_cells(target, name, [o.cell_columns[name] for o in outputs])
    for name in (T.STATES, T.STATE_GRADIENTS, T.STATE_GRADIENT_STATS, T.STATE_THRESHOLDS,
                 T.MARKER_GRADIENTS, T.MARKER_GRADIENT_STATS, T.STATE_STRUCTURES):
        if any(name in o.tables for o in outputs):
            store_table(target, name, [o.tables.get(name, pd.DataFrame()) for o in outputs])
    features = pd.DataFrame([{"sample": part.name, **o.features}
                             for (part, _), o in zip(parts, outputs, strict=True)])
    target.results["state_features"] = h5ad_safe(features)
    return _finish(target, copy, config, "states", "gradients")


# --- does contact change state? ---------------------------------------------------------------
_CONTACT_FIELDS = ("markers", "cell_types", "partner_types", "radius_um", "exposure",
                   "transform", "adjust", "spline_knots", "density_radius_um", "block_um",
                   "band_um", "min_cells", "min_exposed", "n_permutations", "seed",
                   "top_profiles")


@configured(compartments=("border_um",), contact=_CONTACT_FIELDS)
def contact(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
            tumor: Sequence[str] | None = None, immune: Sequence[str] | None = None,
            rules: Mapping[str, Any] | None = None,
            markers: Sequence[str] = ContactParams.markers,
            cell_types: Sequence[str] = ContactParams.cell_types,
            partner_types: Sequence[str] = ContactParams.partner_types,
            radius_um: float = ContactParams.radius_um,
            exposure: str = ContactParams.exposure, transform: str = ContactParams.transform,
            adjust: bool = ContactParams.adjust, spline_knots: int = ContactParams.spline_knots,
            density_radius_um: float = ContactParams.density_radius_um,
            block_um: float = ContactParams.block_um, band_um: float = ContactParams.band_um,
            min_cells: int = ContactParams.min_cells,
            min_exposed: int = ContactParams.min_exposed,
            n_permutations: int = ContactParams.n_permutations,
            seed: int = ContactParams.seed, top_profiles: int = ContactParams.top_profiles,
            border_um: float = _C.border_um, config: Config | None = None,
            copy: bool = False, table_key: str | None = None,
            spatial_key: str = "spatial") -> Any:
    """Does proximity change state? The place-adjusted effect of contact with each partner
    type on a marker or state of each cell type (:mod:`metaniche.analyses.contact`).

    For cells of type A, marker or state m and partner type B: m regressed on the number of B
    cells within ``radius_um`` (or the log distance to the nearest B), adjusted for
    compartment, a natural spline of the signed distance to the tumour border, lesion and
    local density; standard errors clustered on ``block_um`` spatial blocks; linear for
    intensities, logistic for states; two nulls (labels shuffled within compartment ×
    distance band, partners shifted on the torus).

    Parameters
    ----------
    data, cluster_key, library_key, tumor, immune, border_um, config, copy, table_key, \
spatial_key
        As in :func:`compartments`.
    rules
        States usable as ``markers`` (as in :func:`states`); default those of ``config``.
    markers, cell_types, partner_types, radius_um, exposure, transform, adjust, \
spline_knots, density_radius_um, block_um, band_um, min_cells, min_exposed, n_permutations, \
seed, top_profiles
        :class:`metaniche.config.ContactParams` (``[contact]``); ``radius_um`` 0 = the
        contact radius of ``[relations]`` (30 µm).

    Returns
    -------
    AnnData or DataFrame or None
        The copy when ``copy=True``. Writes ``uns["metaniche"]`` tables ``state_changes``,
        ``state_change_profiles`` and ``contact_features`` (one row per sample: the
        ``contact_effect.*`` features of the run's ``features.parquet``).

    Examples
    --------
    >>> mn.tl.contact(adata, "cell_type", markers=["GZMB"], cell_types=["CD8_T"],
    ...               partner_types=["Macrophage"], radius_um=20)       # doctest: +SKIP
    >>> adata.uns["metaniche"]["state_changes"].head()                 # doctest: +SKIP
    """
    assert config is not None  # @configured fills it in
    chosen = _state_rules(rules)
    if chosen is not None:
        config = dataclasses.replace(config, states=dataclasses.replace(config.states,
                                                                        rules=chosen))
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    parts = list(contexts(target, config))
    outputs = [contact_stage.run(context) for _, context in parts]
    for name in (T.STATE_CHANGES, T.STATE_CHANGE_PROFILES):
        store_table(target, name, [o.tables.get(name, pd.DataFrame()) for o in outputs])
    features = pd.DataFrame([{"sample": part.name, **o.features}
                             for (part, _), o in zip(parts, outputs, strict=True)])
    target.results["contact_features"] = h5ad_safe(features)
    return _finish(target, copy, config, "contact", "states")


# --- everything -----------------------------------------------------------------------------
def analyse(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
            config: Config | None = None, copy: bool = False, table_key: str | None = None,
            spatial_key: str = "spatial") -> pd.DataFrame | tuple[Any, pd.DataFrame]:
    """Everything ``metaniche run`` computes for each sample, written into the object.

    Runs :func:`metaniche.sample.analyse_sample` (every registered stage, with ``config``)
    on each sample.

    Parameters
    ----------
    data, cluster_key, library_key, table_key, spatial_key
        As in :func:`compartments`.
    config
        Run configuration (default: :class:`~metaniche.config.Config`).
    copy
        Work on a copy and return ``(copy, features)``.

    Returns
    -------
    pandas.DataFrame
        The per-sample feature table (``sample`` first, as ``features.parquet``). Every
        per-cell output is written to ``obs`` (``compartment`` categorical), every table to
        ``uns["metaniche"][<name>]`` (``sample`` first, as ``tables/<name>.parquet``) and the
        configuration to ``uns["metaniche"]["config"]``.

    Examples
    --------
    >>> features = mn.tl.analyse(adata, "cell_type", library_key="sample")  # doctest: +SKIP
    >>> features.set_index("sample")["phenotype"]                # doctest: +SKIP
    """
    config = config or Config()
    if not isinstance(config, Config):
        raise InputError(f"`config` must be a metaniche.config.Config; got "
                         f"{type(config).__name__}.")
    target = resolve(data, cluster_key, library_key, config, table_key, spatial_key, copy)
    analyses = [analyse_sample(part.cells, config, name=part.name, genes=part.genes)
                for part in target.parts]
    skip = {"cell_id", "x", "y", "cell_type"}
    for column in analyses[0].cells.columns:
        if column in skip:
            continue
        if column == "lesion_id":
            store_cells(target, column, [a.cells[column].fillna(0).to_numpy(np.int64)
                                         for a in analyses], zero_is_na=True)
            continue
        values = [a.cells[column].to_numpy() for a in analyses]
        if column == "compartment":
            store_cells(target, column, values, categories=COMPARTMENTS)
        else:
            store_cells(target, column, values)
    names = [n for n in T.SAMPLE_TABLES if n not in T.PRIVATE_TABLES
             and any(n in a.tables for a in analyses)]
    for name in names:
        store_table(target, name, [a.tables.get(name, pd.DataFrame()) for a in analyses])
    features = pd.DataFrame([{"sample": part.name, **a.features}
                             for part, a in zip(target.parts, analyses, strict=True)])
    target.results["features"] = h5ad_safe(features.copy())
    target.results["config"] = storable(config.to_dict())
    return (target.obj, features) if copy else features
