"""``metaniche.pl``: plots of the results the ``metaniche.tl`` tools wrote into an object.

Every function takes the AnnData (or DataFrame) the tool wrote into, or a run read back by
:func:`metaniche.read_run`, draws on ``ax`` (a new figure from
:func:`matplotlib.pyplot.subplots` only when ``ax`` is None) with matplotlib's object-oriented
API and returns the :class:`~matplotlib.axes.Axes`. Axis labels carry units. With several
samples in the object, ``sample=`` picks one.

The report draws the same figures with the same code (:mod:`metaniche.plotting`):

- :func:`tissue` calls :func:`metaniche.plotting.tissue.draw_tissue`, the report's tissue map;
- :func:`effector_density`, :func:`effector_gradient`, :func:`volcano` and
  :func:`kaplan_meier` call the drawers of :mod:`metaniche.plotting.cohort`, the report's
  cohort figures, on the tables of ``read_run(OUT).uns["metaniche"]``;
- :func:`composition`, :func:`gradients` and :func:`nhood_enrichment` show what the report's
  sample-page charts show (hand-written SVG there, for size and speed), prepared by the same
  functions of :mod:`metaniche.plotting.prepare`: whole-sample rows, types in sorted order,
  log density scales, gradient bins merged and masked below the minimum band area, the
  enrichment colour limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from metaniche import roles
from metaniche._api._adapter import UNS_KEY
from metaniche.analyses.compartments import COMPARTMENTS
from metaniche.config import CompartmentParams, Config
from metaniche.errors import InputError
from metaniche.plotting import prepare
from metaniche.plotting.cohort import (
    draw_effector_strip,
    draw_gradient_overlay,
    draw_kaplan_meier,
    draw_volcano,
    feature_values,
    km_features,
    logrank_p,
    volcano_panels,
)
from metaniche.plotting.style import (
    COMPARTMENT_COLOURS,
    floor_zeros,
    log_axis,
    log_range,
    mpl_text,
)
from metaniche.plotting.tissue import (
    draw_tissue,
    field_from_cells,
    map_colours,
    type_codes,
)

__all__ = ["aggregates", "co_occurrence", "composition", "effector_density", "effector_gradient",
           "gradients", "kaplan_meier", "nhood_enrichment", "ripley", "tissue", "volcano"]



def _axes(ax: Any, size: tuple[float, float] = (5.0, 4.0)) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=size, layout="constrained")
    return ax


def _obs(data: Any) -> pd.DataFrame:
    return data if isinstance(data, pd.DataFrame) else data.obs


def _uns(data: Any) -> dict:
    return data.attrs if isinstance(data, pd.DataFrame) else data.uns


def _results(data: Any) -> dict:
    """``uns["metaniche"]`` of ``data`` (empty when the tools never wrote into it)."""
    return _uns(data).get(UNS_KEY, {})


def _table(data: Any, name: str, tool: str, sample: str | None) -> pd.DataFrame:
    results = _results(data)
    if name not in results:
        raise InputError(f"no {name!r} results in this object; run mn.tl.{tool} on it first.")
    table = results[name]
    return table[table["sample"] == _sample(table["sample"].unique(), sample)]


def _sample(names: Sequence[Any], sample: str | None) -> str:
    names = [str(n) for n in names]
    if sample is None:
        if len(names) > 1:
            raise InputError(f"this object holds {len(names)} samples; pick one with sample= "
                             f"(one of {', '.join(names[:8])}).")
        return names[0]
    if str(sample) not in names:
        raise InputError(f"sample {sample!r} is not in the results (samples: "
                         f"{', '.join(names[:8])}).")
    return str(sample)


def _squidpy(data: Any, key: str, tool: str, sample: str | None) -> dict:
    uns = _uns(data)
    if key not in uns:
        raise InputError(f"no uns[{key!r}]; run mn.tl.{tool} with this cluster_key first.")
    result = uns[key]
    if "interval" in result or "zscore" in result:
        return result
    return result[_sample(list(result), sample)]


def _border_um(data: Any, given: float | None = None) -> float:
    if given is not None:
        return float(given)
    used = _run_config(data).get("compartments", {})
    return float(used.get("border_um", CompartmentParams.border_um))


def _categories(obs: pd.DataFrame, cluster_key: str) -> list[str]:
    values = obs[cluster_key]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories]
    return sorted({str(v) for v in values.dropna().unique()})


def _colours(n: int) -> np.ndarray:
    from matplotlib import colormaps

    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return np.asarray([cmap(i % cmap.N) for i in range(n)])


def _tumour_types(data: Any, labels: list[str]) -> list[str]:
    """Tumour labels under the configuration the tools recorded (``[cell_types] tumor``,
    else the default pattern), as the pipeline resolves them for the report's map."""
    recorded = (_run_config(data).get("cell_types")
                or {}).get("tumor") or ()
    config = Config()
    if len(recorded):
        config = dataclasses.replace(config, cell_types=dataclasses.replace(
            config.cell_types, tumor=tuple(str(t) for t in recorded)))
    return roles.tumour_types(labels, config)


def _sample_rows(data: Any, name: str | None, table_name: str) -> pd.DataFrame | None:
    """Rows of ``uns["metaniche"][table_name]`` for one sample (all rows when ``name`` is
    None; None when absent)."""
    table = _results(data).get(table_name)
    if table is None or name is None or "sample" not in table.columns:
        return table
    return table[table["sample"].astype(str) == str(name)]


def tissue(data: Any, cluster_key: str = "cell_type", *, library_key: str | None = None,
           sample: str | None = None, compartments: bool = True, size: int | None = None,
           legend: bool = True, border_um: float | None = None, spatial_key: str = "spatial",
           ax: Any = None) -> Any:
    """The tissue map of one sample, drawn as the report draws it.

    Calls :func:`metaniche.plotting.tissue.draw_tissue`, the drawer of the report's tissue
    map: cells painted into a raster in their type's colour (tumour types pale, rare types on
    top), the tissue in grey with the border band (absolute signed distance ≤ ``border_um``)
    shaded and its limits dashed, the tumour boundary (signed distance 0), the lesion ids and
    the aggregate outlines; y grows downwards as in the image. The band and boundary come
    from ``obs["signed_distance_um"]`` (:func:`metaniche.tl.compartments`) by
    :func:`metaniche.plotting.tissue.field_from_cells` (nearest cell per pixel), so they
    follow the cells within about one cell spacing, where the report draws the compartment
    rasters themselves.

    Parameters
    ----------
    data
        AnnData (``obsm[spatial_key]``) or contract DataFrame (``x``, ``y``); coordinates are
        scaled by the ``um_per_unit`` the tools recorded (``uns["metaniche"]["config"]``, else
        1) so the axes are in µm.
    cluster_key
        Column of the cell-type labels.
    library_key, sample
        Sample column and the sample to draw (needed when the object holds several).
    compartments
        Draw the tissue, band, boundary and lesion ids when available.
    size
        Half-size of each cell's dot in raster pixels (default from the cell spacing, 0–3).
    legend
        Add the legend (cell types with their numbers of cells, band, boundary, aggregates).
    border_um
        Half-width of the border band drawn (µm); default the one the last tool used
        (``uns["metaniche"]["config"]["compartments"]``).
    spatial_key
        ``obsm`` key of the coordinates (AnnData).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.compartments(adata, "cell_type")                  # doctest: +SKIP
    >>> ax = mn.pl.tissue(adata, "cell_type")                    # doctest: +SKIP
    """
    obs = _obs(data)
    if cluster_key not in obs.columns:
        raise InputError(f"no column {cluster_key!r} for the cell types; pass cluster_key=.")
    if isinstance(data, pd.DataFrame):
        xy = data[["x", "y"]].to_numpy(np.float64)
    else:
        xy = np.asarray(data.obsm[spatial_key], dtype=np.float64)[:, :2]
    keep = np.ones(len(obs), dtype=bool)
    name = None
    if library_key is not None:
        names = obs[library_key].astype(str).to_numpy()
        name = _sample(list(dict.fromkeys(names)), sample)
        keep = names == name
    xy = xy[keep] * float(_run_config(data).get("um_per_unit", 1.0))
    codes, labels = type_codes(obs[cluster_key].astype(str).to_numpy()[keep])
    colours = map_colours(labels, codes, _tumour_types(data, labels))
    field, lesions = None, None
    if compartments and "signed_distance_um" in obs.columns:
        sd = pd.to_numeric(obs["signed_distance_um"], errors="coerce").to_numpy(np.float64)
        field = field_from_cells(xy[:, 0], xy[:, 1], sd[keep])
        lesions = _lesion_centroids(data, name)
    aggregate_id = (obs["aggregate_id"].to_numpy()[keep] if "aggregate_id" in obs.columns
                    else None)
    ax = _axes(ax, (7.5, 5.5))
    return draw_tissue(ax, xy[:, 0], xy[:, 1], codes, labels, colours=colours, field=field,
                       border_um=_border_um(data, border_um), lesions=lesions,
                       aggregate_id=aggregate_id,
                       aggregates=_sample_rows(data, name, "aggregates"), dot_px=size,
                       legend=legend)


def _lesion_centroids(data: Any, name: str | None) -> pd.DataFrame | None:
    """The lesions' ids and centroids (µm) that mn.tl.compartments / read_run stored."""
    table = _sample_rows(data, name, "lesions")
    if table is None or not {"lesion_id", "centroid_x", "centroid_y"} <= set(table.columns):
        return None
    if name is None and "sample" in table.columns and table["sample"].nunique() > 1:
        return None
    return table[["lesion_id", "centroid_x", "centroid_y"]]


def composition(data: Any, *, sample: str | None = None,
                cell_types: Sequence[str] | None = None, ax: Any = None) -> Any:
    """Density of every cell type (cells/mm², log scale) in the core, border and adjacent
    compartments.

    Whole-sample rows of :func:`metaniche.tl.composition` as grouped bars, prepared as the
    report's density chart prepares them (:func:`metaniche.plotting.prepare.composition_grid`:
    types in sorted order, compartments core, border, adjacent) and on the same log scale
    with every decade labelled, so 4 CD8 T cells/mm² stay visible beside 2,500 hepatocytes.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.composition` wrote into (or :func:`metaniche.read_run`
        gave).
    sample
        Sample to draw (needed when the object holds several).
    cell_types
        Types to show (default: all with cells).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.composition(adata, "cell_type")                   # doctest: +SKIP
    >>> ax = mn.pl.composition(adata)                            # doctest: +SKIP
    """
    table = _table(data, "composition", "composition", sample)
    wide = prepare.composition_grid(table)["density_per_mm2"]
    groups = [c for c in COMPARTMENTS if c in wide.columns]
    wide = wide.reindex(columns=groups)
    types = list(cell_types) if cell_types is not None else [
        t for t in wide.index if np.nansum(wide.loc[t].to_numpy()) > 0]
    wide = wide.reindex(index=types)
    ax = _axes(ax, (max(5.0, 0.45 * len(types) + 2), 4.0))
    positions = np.arange(len(types))
    width = 0.8 / max(len(groups), 1)
    low, high, _ = log_range(wide.to_numpy(np.float64))
    for i, name in enumerate(groups):
        ax.bar(positions + (i - (len(groups) - 1) / 2) * width,
               wide[name].to_numpy(np.float64), width, label=name,
               color=COMPARTMENT_COLOURS[name])
    log_axis(ax, low, high)
    ax.set_xticks(positions, [mpl_text(t) for t in types], rotation=60, ha="right")
    ax.set_ylabel("density (cells/mm², log scale)")
    ax.set_xlabel("cell type")
    ax.legend(title="compartment", frameon=False)
    return ax


def nhood_enrichment(data: Any, cluster_key: str = "cell_type", *, sample: str | None = None,
                     vmax: float | None = None, ax: Any = None) -> Any:
    """Heat map of the neighbourhood-enrichment z-scores.

    Draws squidpy's layout ``uns[f"{cluster_key}_nhood_enrichment"]["zscore"]`` (in the
    order of the categories) when :func:`metaniche.tl.nhood_enrichment` wrote it, else the
    enrichment table of a run read back by :func:`metaniche.read_run`
    (``uns["metaniche"]["enrichment"]``, prepared as the report's heatmap by
    :func:`metaniche.plotting.prepare.enrichment_grid`: types sorted, null model ``sample``).
    The colour limit is the report's (:func:`metaniche.plotting.prepare.enrichment_limit`).

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.nhood_enrichment` wrote into, or a run read back.
    cluster_key
        The ``cluster_key`` it was run with.
    sample
        Sample to draw (needed when the object holds several).
    vmax
        Colour limit (symmetric); default the largest finite absolute z clipped to [3, 20].
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.nhood_enrichment(adata, "cell_type")              # doctest: +SKIP
    >>> ax = mn.pl.nhood_enrichment(adata, "cell_type")          # doctest: +SKIP
    """
    key = f"{cluster_key}_nhood_enrichment"
    if key not in _uns(data) and "enrichment" in _results(data):
        rows = _table(data, "enrichment", "nhood_enrichment", sample)
        labels, grid, _ = prepare.enrichment_grid(rows)
        z = grid["z"].to_numpy(np.float64)
    else:
        result = _squidpy(data, key, "nhood_enrichment", sample)
        z = np.asarray(result["zscore"], dtype=np.float64)
        labels = _categories(_obs(data), cluster_key)
    limit = vmax if vmax is not None else prepare.enrichment_limit(z)
    ax = _axes(ax, (0.35 * len(labels) + 3, 0.35 * len(labels) + 2.5))
    image = ax.imshow(np.ma.masked_invalid(z), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(np.arange(len(labels)), [mpl_text(t) for t in labels], rotation=90)
    ax.set_yticks(np.arange(len(labels)), [mpl_text(t) for t in labels])
    ax.set_xlabel("neighbour type")
    ax.set_ylabel("cell type")
    ax.figure.colorbar(image, ax=ax, label="enrichment z (contacts vs random labels)")
    return ax


def co_occurrence(data: Any, cluster_key: str = "cell_type", *, clusters: str,
                  sample: str | None = None, ax: Any = None) -> Any:
    """Co-occurrence ratio of every type around cells of type ``clusters`` against distance.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.co_occurrence` wrote into.
    cluster_key
        The ``cluster_key`` it was run with.
    clusters
        The conditioning type a (lines show p(b | a within d) / p(b) for every b).
    sample
        Sample to draw (needed when the object holds several).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.co_occurrence(adata, "cell_type")                 # doctest: +SKIP
    >>> ax = mn.pl.co_occurrence(adata, "cell_type", clusters="CD8_T")  # doctest: +SKIP
    """
    result = _squidpy(data, f"{cluster_key}_co_occurrence", "co_occurrence", sample)
    labels = _categories(_obs(data), cluster_key)
    if clusters not in labels:
        raise InputError(f"`clusters` {clusters!r} is not a category of {cluster_key!r} "
                         f"({', '.join(labels[:8])}).")
    occ, distance = np.asarray(result["occ"]), np.asarray(result["interval"])[1:]
    row = occ[labels.index(clusters)]
    colours = _colours(len(labels))
    ax = _axes(ax)
    for b, name in enumerate(labels):
        if np.any(row[b] > 0):
            ax.plot(distance, row[b], color=colours[b], label=name)
    ax.axhline(1.0, color="0.5", linewidth=0.8, linestyle="dotted")
    ax.set_xlabel("distance (µm)")
    ax.set_ylabel(f"co-occurrence ratio p(type | {clusters}) / p(type)")
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


_RIPLEY_STATS = {"l_minus_r_um": "L(r) − r (µm)", "l_um": "L(r) (µm)", "k_um2": "K(r) (µm²)",
                 "g": "g(r) (pair correlation, 1 = random)"}


def ripley(data: Any, *, pairs: Sequence[tuple[str, str]] | None = None,
           stat: str = "l_minus_r_um", sample: str | None = None, ax: Any = None) -> Any:
    """Ripley's cross-type statistic against the radius for chosen type pairs.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.ripley` wrote into.
    pairs
        ``(type_a, type_b)`` pairs (default: every type with itself).
    stat
        ``"l_minus_r_um"`` (default), ``"l_um"``, ``"k_um2"`` or ``"g"``; CSR envelopes are
        shaded when present.
    sample
        Sample to draw (needed when the object holds several).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.ripley(adata, "cell_type")                        # doctest: +SKIP
    >>> ax = mn.pl.ripley(adata, pairs=[("CD8_T", "Tumor")])     # doctest: +SKIP
    """
    if stat not in _RIPLEY_STATS:
        raise InputError(f"`stat` must be one of {', '.join(_RIPLEY_STATS)}; got {stat!r}.")
    table = _table(data, "ripley", "ripley", sample)
    if pairs is None:
        same = table[table["type_a"] == table["type_b"]]
        pairs = list(dict.fromkeys(zip(same["type_a"], same["type_b"], strict=True)))
    ax = _axes(ax)
    for a, b in pairs:
        rows = table[(table["type_a"] == a) & (table["type_b"] == b)].sort_values("r_um")
        if rows.empty:
            raise InputError(f"no Ripley rows for the pair ({a!r}, {b!r}); pick types with "
                             "cells in this sample.")
        line = ax.plot(rows["r_um"], rows[stat], label=f"{a} → {b}")[0]
        envelope = {"l_minus_r_um": ("l_lo_um", "l_hi_um"), "g": ("g_lo", "g_hi")}.get(stat)
        if envelope and envelope[0] in rows.columns:
            lo, hi = rows[envelope[0]], rows[envelope[1]]
            if stat == "l_minus_r_um":
                lo, hi = lo - rows["r_um"], hi - rows["r_um"]
            ax.fill_between(rows["r_um"], lo, hi, color=line.get_color(), alpha=0.2)
    baseline = {"l_minus_r_um": 0.0, "g": 1.0}.get(stat)
    if baseline is not None:
        ax.axhline(baseline, color="0.5", linewidth=0.8, linestyle="dotted")
    ax.set_xlabel("r (µm)")
    ax.set_ylabel(_RIPLEY_STATS[stat])
    ax.legend(fontsize="small", frameon=False)
    return ax


def gradients(data: Any, *, cell_types: Sequence[str] | None = None,
              sample: str | None = None, border_um: float | None = None, ci: bool = True,
              ax: Any = None) -> Any:
    """Density of cell types against signed distance to the tumour edge (whole sample).

    The profiles the report's gradient panels show
    (:func:`metaniche.plotting.prepare.gradient_panels`): whole-sample rows, bins merged to at
    most :data:`~metaniche.plotting.prepare.MAX_DISPLAY_BINS`, bins whose band area is below
    :data:`~metaniche.plotting.prepare.MIN_BAND_AREA_MM2` mm² masked (not drawn), on a log
    density scale (zero densities on the line labelled 0). The border band
    (±``border_um``) is shaded and the edge (0) drawn; negative distances are inside tumour.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.gradients` wrote into (or :func:`metaniche.read_run`
        gave).
    cell_types
        Types to draw (default: every type with cells).
    sample
        Sample to draw (needed when the object holds several).
    border_um
        Half-width of the shaded border band (µm); default the one the last tool used.
    ci
        Shade each line's 95% exact Poisson interval per bin
        (:func:`metaniche.plotting.prepare.gradient_intervals`: counting noise of the bin's
        cells in its area), as the report's gradient panels do.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.gradients(adata, "cell_type")                     # doctest: +SKIP
    >>> ax = mn.pl.gradients(adata, cell_types=["CD8_T"])        # doctest: +SKIP
    """
    table = _table(data, "gradients", "gradients", sample)
    panels = {name: (centre, density) for name, centre, density
              in prepare.gradient_panels(table)}
    if cell_types is not None:
        present = set(table["cell_type"].astype(str))
        for name in cell_types:
            if name not in present:
                raise InputError(f"no gradient rows for {name!r}; pick a type of this sample.")
    types = [t for t in (cell_types if cell_types is not None else panels) if t in panels]
    border = _border_um(data, border_um)
    ax = _axes(ax)
    ax.axvspan(-border, border, color=COMPARTMENT_COLOURS["border"], alpha=0.15,
               label="border band")
    ax.axvline(0.0, color="black", linewidth=0.8)
    values = np.concatenate([panels[t][1] for t in types]) if types else np.zeros(0)
    low, high, zero_at = log_range(values)
    log_axis(ax, low, high, zero_at)        # first: the 0 line under the curves
    intervals = prepare.gradient_intervals(table) if ci else {}
    for name in types:
        centre, density = panels[name]
        (line,) = ax.plot(centre, floor_zeros(density, zero_at), label=mpl_text(name))
        if name in intervals:
            band_low, band_high = intervals[name]
            ax.fill_between(centre, floor_zeros(band_low, zero_at),
                            floor_zeros(band_high, zero_at), color=line.get_color(),
                            alpha=0.15, linewidth=0)
    ax.set_xlabel("signed distance to tumour edge (µm; < 0 inside)")
    ax.set_ylabel("density (cells/mm², log scale)")
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


#: Colours of aggregate kinds (other kinds: custom units).
_KIND_COLOURS = {"tls": "#1b7837", "lymphoid_cluster": "#762a83"}


def aggregates(data: Any, *, library_key: str | None = None, sample: str | None = None,
               spatial_key: str = "spatial", ax: Any = None) -> Any:
    """Lymphoid aggregates, TLS and custom units over the tissue (cells in grey).

    Member cells of each aggregate are coloured by its kind (``tls``, ``lymphoid_cluster``
    or a unit name) and every aggregate is labelled with its id and, for a TLS, its grade at
    its centroid.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.aggregates` wrote into.
    library_key, sample
        Sample column and the sample to draw (needed when the object holds several).
    spatial_key
        ``obsm`` key of the coordinates (AnnData).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> mn.tl.aggregates(adata, "cell_type")                    # doctest: +SKIP
    >>> ax = mn.pl.aggregates(adata)                             # doctest: +SKIP
    """
    table = _table(data, "aggregates", "aggregates", sample)
    obs = _obs(data)
    if "aggregate_id" not in obs.columns:
        raise InputError("no obs['aggregate_id']; run mn.tl.aggregates on this object first.")
    if isinstance(data, pd.DataFrame):
        xy = data[["x", "y"]].to_numpy(np.float64)
    else:
        xy = np.asarray(data.obsm[spatial_key], dtype=np.float64)[:, :2]
    keep = np.ones(len(obs), dtype=bool)
    if library_key is not None:
        names = obs[library_key].astype(str).to_numpy()
        keep = names == _sample(list(dict.fromkeys(names)), sample)
    scale = float(_run_config(data).get("um_per_unit", 1.0))
    xy = xy[keep] * scale
    ids = np.zeros(int(keep.sum()), dtype=np.int64)
    for column in ("aggregate_id", "unit_id"):
        if column in obs.columns:
            values = obs[column].to_numpy()[keep].astype(np.int64)
            ids = np.where(ids == 0, values, ids)
    ax = _axes(ax, (6.0, 5.5))
    ax.scatter(xy[:, 0], xy[:, 1], c="0.85", s=1.0, linewidths=0, rasterized=True)
    kind_by_id = pd.Series(table["kind"].astype(str).to_numpy(),
                           index=table["aggregate_id"].astype(np.int64).to_numpy())
    cell_kind = kind_by_id.reindex(ids).to_numpy()          # NaN for cells in no aggregate
    for kind in kind_by_id.unique():
        cells = cell_kind == kind
        ax.scatter(xy[cells, 0], xy[cells, 1], s=3.0, linewidths=0,
                   color=_KIND_COLOURS.get(kind), label=kind)
    for row in table.itertuples(index=False):
        text = str(row.aggregate_id) if row.kind != "tls" else f"{row.aggregate_id} {row.grade}"
        ax.annotate(text, (row.centroid_x, row.centroid_y), fontsize="x-small")
    if len(kind_by_id):
        ax.legend(frameon=False, fontsize="small", markerscale=3)
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    return ax


# --- the report's cohort figures on a run read back --------------------------------------
def _run_table(data: Any, name: str) -> pd.DataFrame:
    table = _results(data).get(name)
    if table is None:
        raise InputError(f"no {name!r} table in uns['metaniche']; read a finished run with "
                         "mn.read_run(OUT) (the cohort step writes it).")
    return table


def _run_config(data: Any) -> dict:
    return dict(_results(data).get("config") or {})


def effector_density(data: Any, *, ax: Any = None) -> Any:
    """Effector density per compartment of every sample, as on the report's overview.

    The report's figure (``figures/cohort.effector_density``) drawn by the same function,
    :func:`metaniche.plotting.cohort.draw_effector_strip`, from the same data
    (:func:`metaniche.plotting.prepare.effector_densities` of the whole-sample composition
    rows, the effector types of the run's ``[phenotype]``; outcome groups from the clinical
    table's response column): one dot per sample and compartment (cells/mm², log scale),
    a sample's compartments joined, the desert threshold dashed.

    Parameters
    ----------
    data
        A run read back by :func:`metaniche.read_run` (or an object the tools wrote a
        composition table into).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        Without a composition table or effector cells.

    Examples
    --------
    >>> adata = mn.read_run("OUT")                               # doctest: +SKIP
    >>> ax = mn.pl.effector_density(adata)                       # doctest: +SKIP
    """
    config = _run_config(data)
    found = prepare.effector_densities(_run_table(data, "composition"), config)
    if found is None:
        raise InputError("no effector cells in the composition table; set [phenotype] "
                         "effector_types to the effector labels.")
    density, types = found
    grouping = prepare.outcome_groups(_results(data).get("clinical"), config)
    groups = (grouping[1].reindex(density.index).fillna("no outcome").astype(str)
              if grouping is not None else None)
    n_groups = len(set(groups)) if groups is not None else 1
    ax = _axes(ax, (6.4 + 0.6 * n_groups, 4.6))
    return draw_effector_strip(ax, density, groups,
                               prepare.phenotype_params(config).desert_max_per_mm2, types)


def effector_gradient(data: Any, *, ax: Any = None) -> Any:
    """Pooled effector gradient across the boundary per outcome group, as on the report's
    overview.

    The report's figure (``figures/cohort.effector_gradient``) drawn by the same function,
    :func:`metaniche.plotting.cohort.draw_gradient_overlay`, from the same data
    (:func:`metaniche.plotting.prepare.gradient_profiles`: Σ cells / Σ band area over each
    group's samples with a 95 % bootstrap interval over samples, bins below
    :data:`~metaniche.plotting.prepare.MIN_BAND_AREA_MM2` mm² masked, log scale).

    Parameters
    ----------
    data
        A run read back by :func:`metaniche.read_run`.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> adata = mn.read_run("OUT")                               # doctest: +SKIP
    >>> ax = mn.pl.effector_gradient(adata)                      # doctest: +SKIP
    """
    config = _run_config(data)
    gradients_table = _run_table(data, "gradients")
    labels = sorted(gradients_table["cell_type"].dropna().astype(str).unique())
    types = prepare.effector_labels(config, labels)
    grouping = prepare.outcome_groups(_results(data).get("clinical"), config)
    profiles = prepare.gradient_profiles(gradients_table, types,
                                         grouping[1] if grouping is not None else None)
    if profiles is None:
        raise InputError("no gradient rows of the effector types; set [phenotype] "
                         "effector_types to the effector labels.")
    border = float((config.get("compartments") or {}).get("border_um", np.nan))
    ax = _axes(ax, (7.6, 4.4))
    return draw_gradient_overlay(ax, profiles, border, " + ".join(types))


def volcano(data: Any, *, outcome: str | None = None, test: str | None = None,
            effect_name: str | None = None, q_level: float = 0.05, ax: Any = None) -> Any:
    """One panel of the report's volcano plot: effect against −log10 p of every feature.

    Drawn by :func:`metaniche.plotting.cohort.draw_volcano`, as each panel of the report's
    ``figures/cohort.volcano``; the panels are the association table's outcome × test ×
    effect type (:func:`metaniche.plotting.cohort.volcano_panels`).

    Parameters
    ----------
    data
        A run read back by :func:`metaniche.read_run` (``uns["metaniche"]["association"]``).
    outcome, test, effect_name
        The panel (default: the first panel matching the ones given, in the report's order).
    q_level
        Highlighted false-discovery level.
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> adata = mn.read_run("OUT")                               # doctest: +SKIP
    >>> ax = mn.pl.volcano(adata, outcome="response")            # doctest: +SKIP
    """
    panels = volcano_panels(_run_table(data, "association"))
    chosen = [(key, part) for key, part in panels
              if (outcome is None or key[0] == outcome) and (test is None or key[1] == test)
              and (effect_name is None or key[2] == effect_name)]
    if not chosen:
        names = "; ".join(" · ".join(key) for key, _ in panels[:8]) or "none"
        raise InputError(f"no volcano panel for outcome={outcome!r}, test={test!r}, "
                         f"effect_name={effect_name!r} (panels: {names}).")
    (panel_outcome, panel_test, panel_effect), part = chosen[0]
    ax = _axes(ax, (4.6, 3.9))
    return draw_volcano(ax, part, panel_outcome, panel_test, panel_effect, q_level)


def kaplan_meier(data: Any, *, feature: str | None = None, time_unit: str | None = None,
                 ax: Any = None) -> Any:
    """Kaplan–Meier curves of the two groups of one feature, as on the report.

    Drawn by :func:`metaniche.plotting.cohort.draw_kaplan_meier`, as each panel of the
    report's ``figures/cohort.km``: curves with pointwise confidence bands, the split stated,
    the log-rank p, time with its unit and the numbers at risk at the labelled times.

    Parameters
    ----------
    data
        A run read back by :func:`metaniche.read_run` (``uns["metaniche"]["km_curves"]``).
    feature
        The feature (default: the one with the smallest log-rank p).
    time_unit
        Unit of the time axis (default: the run's ``[clinical] time_unit``).
    ax
        Axes to draw on (default: a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> adata = mn.read_run("OUT")                               # doctest: +SKIP
    >>> ax = mn.pl.kaplan_meier(adata)                           # doctest: +SKIP
    """
    curves = _run_table(data, "km_curves")
    association = _results(data).get("association")
    available = km_features(curves, association)
    if not available:
        raise InputError("the km_curves table is empty; the run has no survival outcome.")
    feature = available[0] if feature is None else str(feature)
    if feature not in available:
        raise InputError(f"no Kaplan–Meier curves for {feature!r} (features: "
                         f"{', '.join(available[:8])}).")
    config = _run_config(data)
    unit = prepare.survival_time_unit(config) if time_unit is None else time_unit
    analysis_unit = str(_results(data).get("analysis_unit", "sample"))
    part = curves[curves["feature"].astype(str) == feature]
    ax = _axes(ax, (5.0, 4.3))
    return draw_kaplan_meier(ax, part, feature, p=logrank_p(association).get(feature, np.nan),
                             values=feature_values(_results(data).get("features"),
                                                   feature),
                             time_unit=unit,
                             unit_name="patients" if analysis_unit == "patient" else "samples")
