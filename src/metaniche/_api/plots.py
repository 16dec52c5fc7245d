"""``metaniche.pl``: plots of the results the ``metaniche.tl`` tools wrote into an object.

Every function takes the AnnData (or DataFrame) the tool wrote into, draws on ``ax`` (a new
figure from :func:`matplotlib.pyplot.subplots` only when ``ax`` is None) with matplotlib's
object-oriented API and returns the :class:`~matplotlib.axes.Axes`. Axis labels carry units.
With several samples in the object, ``sample=`` picks one.
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
from metaniche.plotting.tissue import (
    draw_tissue,
    field_from_cells,
    map_colours,
    type_codes,
)

__all__ = ["aggregates", "co_occurrence", "composition", "gradients", "nhood_enrichment",
           "ripley", "tissue"]

#: Compartment colours (core, border, adjacent) used for bars and bands.
COMPARTMENT_COLOURS = {"core": "#b2182b", "border": "#ef8a62", "adjacent": "#67a9cf"}


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


def _table(data: Any, name: str, tool: str, sample: str | None) -> pd.DataFrame:
    results = _uns(data).get(UNS_KEY, {})
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
    used = _uns(data).get(UNS_KEY, {}).get("config", {}).get("compartments", {})
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
    recorded = ((_uns(data).get(UNS_KEY, {}).get("config", {}) or {}).get("cell_types")
                or {}).get("tumor") or ()
    config = Config()
    if len(recorded):
        config = dataclasses.replace(config, cell_types=dataclasses.replace(
            config.cell_types, tumor=tuple(str(t) for t in recorded)))
    return roles.tumour_types(labels, config)


def _sample_rows(data: Any, name: str | None, table_name: str) -> pd.DataFrame | None:
    """Rows of ``uns["metaniche"][table_name]`` for one sample (all rows when ``name`` is
    None; None when absent)."""
    table = _uns(data).get(UNS_KEY, {}).get(table_name)
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
    top), the tissue in grey with the border band (|signed distance| ≤ ``border_um``)
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
    xy = xy[keep] * float(_uns(data).get(UNS_KEY, {}).get("config", {}).get("um_per_unit", 1.0))
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
    """Density of every cell type (cells/mm²) in the core, border and adjacent compartments.

    Whole-sample rows of :func:`metaniche.tl.composition` as grouped bars.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.composition` wrote into.
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
    whole = table[table["lesion_id"].isna() & table["compartment"].isin(COMPARTMENTS)]
    wide = whole.pivot(index="cell_type", columns="compartment", values="density_per_mm2")
    wide = wide.reindex(columns=list(COMPARTMENTS))
    types = list(cell_types) if cell_types is not None else [
        t for t in wide.index if np.nansum(wide.loc[t].to_numpy()) > 0]
    wide = wide.reindex(index=types)
    ax = _axes(ax, (max(5.0, 0.45 * len(types) + 2), 4.0))
    positions = np.arange(len(types))
    width = 0.8 / len(COMPARTMENTS)
    for i, name in enumerate(COMPARTMENTS):
        ax.bar(positions + (i - 1) * width, wide[name].to_numpy(np.float64), width,
               label=name, color=COMPARTMENT_COLOURS[name])
    ax.set_xticks(positions, types, rotation=60, ha="right")
    ax.set_ylabel("density (cells/mm²)")
    ax.set_xlabel("cell type")
    ax.legend(title="compartment", frameon=False)
    return ax


def nhood_enrichment(data: Any, cluster_key: str = "cell_type", *, sample: str | None = None,
                     vmax: float | None = None, ax: Any = None) -> Any:
    """Heat map of the neighbourhood-enrichment z-scores (squidpy layout).

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.nhood_enrichment` wrote into.
    cluster_key
        The ``cluster_key`` it was run with.
    sample
        Sample to draw (needed when the object holds several).
    vmax
        Colour limit (symmetric); default the largest finite absolute z-score.
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
    result = _squidpy(data, f"{cluster_key}_nhood_enrichment", "nhood_enrichment", sample)
    z = np.asarray(result["zscore"], dtype=np.float64)
    labels = _categories(_obs(data), cluster_key)
    limit = vmax if vmax is not None else float(np.nanmax(np.abs(z[np.isfinite(z)]),
                                                          initial=1.0))
    ax = _axes(ax, (0.35 * len(labels) + 3, 0.35 * len(labels) + 2.5))
    image = ax.imshow(np.ma.masked_invalid(z), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(np.arange(len(labels)), labels, rotation=90)
    ax.set_yticks(np.arange(len(labels)), labels)
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
              sample: str | None = None, border_um: float | None = None,
              ax: Any = None) -> Any:
    """Density of cell types against signed distance to the tumour edge (whole sample).

    The border band (±``border_um``) is shaded and the edge (0) drawn; negative distances are
    inside tumour.

    Parameters
    ----------
    data
        The object :func:`metaniche.tl.gradients` wrote into.
    cell_types
        Types to draw (default: every type with cells).
    sample
        Sample to draw (needed when the object holds several).
    border_um
        Half-width of the shaded border band (µm); default the one the last tool used.
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
    whole = table[table["lesion_id"].isna()]
    present = whole.groupby("cell_type", sort=True)["n_cells"].sum()
    types = list(cell_types) if cell_types is not None else list(present[present > 0].index)
    border = _border_um(data, border_um)
    ax = _axes(ax)
    ax.axvspan(-border, border, color=COMPARTMENT_COLOURS["border"], alpha=0.15,
               label="border band")
    ax.axvline(0.0, color="black", linewidth=0.8)
    for name in types:
        rows = whole[whole["cell_type"] == name]
        if rows.empty:
            raise InputError(f"no gradient rows for {name!r}; pick a type of this sample.")
        centre = (rows["bin_start_um"] + rows["bin_end_um"]) / 2
        ax.plot(centre, rows["density_per_mm2"], label=name)
    ax.set_xlabel("signed distance to tumour edge (µm; < 0 inside)")
    ax.set_ylabel("density (cells/mm²)")
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
    scale = float(_uns(data).get(UNS_KEY, {}).get("config", {}).get("um_per_unit", 1.0))
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
