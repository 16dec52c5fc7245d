"""The per-sample tissue map, drawn in the per-sample task while the rasters are in memory.

Cells are painted straight into an RGB raster with NumPy (one dot of a few pixels per cell,
rarest types painted last so they stay visible), so a million cells cost well under a second
and the figure is the same size at any cell count. On top: the tissue, the border band
(|signed distance| ≤ border half-width) shaded, the tumour boundary (signed distance 0), lesion
ids and the outline (convex hull of member cells) of every multicellular aggregate / TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon

from metaniche import roles
from metaniche.analyses.compartments import BORDER
from metaniche.report.colours import COMPARTMENT_COLOURS, mpl_text, type_colours
from metaniche.report.paint import paint_cells, save_quantized_png
from metaniche.report.zoom import save_thumbnail, save_zoom_map
from metaniche.tables import AGGREGATES

if TYPE_CHECKING:
    from metaniche.analyses.compartments import CompartmentResult
    from metaniche.config import Config
    from metaniche.sample import SampleAnalysis

__all__ = ["COMPARTMENT_COLOURS", "save_tissue_map"]

_MAP_WIDTH_PX = 1100
#: Resolution of the static map (≈ 1,000 px wide: the width of the sample page).
_MAP_DPI = 100
_BAND_COLOUR = "#f5b041"
_AGGREGATE_COLOURS = ("#000000", "#8e44ad", "#16a085", "#2c3e50")


def save_tissue_map(analysis: SampleAnalysis, title: str, path: str | Path,
                    config: Config | None = None) -> None:
    """Write the tissue map PNG of one sample, its zoomable raster and thumbnail beside it.

    The static map is a palette PNG (:func:`metaniche.report.paint.save_quantized_png`). The
    zoomable view (``<stem>.map.zoom.png`` and ``.json``) and the cohort page's thumbnail
    (``<stem>.map.thumb.png``) are written by :func:`metaniche.report.zoom.save_zoom_map` and
    :func:`metaniche.report.zoom.save_thumbnail` with the same colours, extent and band.

    Parameters
    ----------
    analysis
        The sample's analysis (cells with ``x, y, cell_type, compartment, signed_distance_um``
        and optional ``aggregate_id``; compartment rasters; optional ``aggregates`` table).
    title
        Figure title (the sample name; shown literally).
    path
        Target ``.png`` (written atomically).
    config
        The run's configuration: border half-width w of the shaded band
        (``[compartments] border_um``) and the tumour labels (``[cell_types] tumor``, drawn in
        a pale colour). Without it: w = the largest |signed distance| of a border cell, and
        tumour labels = those with more than 80 % of their cells inside tumour.
    """
    cells = analysis.cells
    result = analysis.compartments
    x = cells["x"].to_numpy(np.float64)
    y = cells["y"].to_numpy(np.float64)
    # Sorted labels and codes as np.unique would give, by hashing (no 1M-string sort).
    codes, labels = pd.factorize(cells["cell_type"].astype(str), sort=True)
    labels = [str(t) for t in labels]
    sd = cells["signed_distance_um"].to_numpy(np.float64)
    tumour_types = tuple(roles.tumour_types(labels, config) if config is not None
                         else roles.tumour_types_by_position(codes, labels, sd))
    counts = np.bincount(codes, minlength=len(labels))
    common = tuple(t for t, n in zip(labels, counts, strict=True)
                   if t not in tumour_types and n > 0.3 * len(x))
    colours = type_colours(labels, tumour_types, common)
    extent = _extent(x, y)
    width_um = extent[1] - extent[0]
    height_um = extent[3] - extent[2]
    spacing_px = np.sqrt(width_um * height_um / max(len(x), 1)) / (width_um / _MAP_WIDTH_PX)
    dot = int(np.clip(0.3 * spacing_px, 0, 3))
    image = paint_cells(x, y, codes.astype(np.intp),
                        np.array([to_rgb(colours[t]) for t in labels]), extent, _MAP_WIDTH_PX, dot)
    map_w = 7.5
    map_h = float(np.clip(map_w * height_um / max(width_um, 1e-9), 2.5, 11.0))
    fig = Figure(figsize=(map_w + 2.6, map_h + 0.8), dpi=_MAP_DPI)
    FigureCanvasAgg(fig)   # object-oriented Agg drawing: no pyplot, no global backend
    ax = fig.add_axes((0.08, 0.07, map_w / (map_w + 2.6) - 0.08, 0.85))
    ax.set_facecolor("white")
    width = config.compartments.border_um if config is not None else _border_width(cells)
    if result.tissue.any():
        _draw_rasters(ax, result, width)
    ax.imshow(image, origin="lower", extent=extent, interpolation="nearest", zorder=2)
    for lesion in result.lesions.itertuples(index=False):
        ax.annotate(str(lesion.lesion_id), (lesion.centroid_x, lesion.centroid_y), zorder=5,
                    ha="center", va="center", fontsize=9, weight="bold", color="white",
                    bbox={"boxstyle": "circle", "fc": "black", "alpha": 0.7})
    kinds = _draw_aggregates(ax, cells, analysis.tables.get(AGGREGATES))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[3], extent[2])
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title(mpl_text(f"{title} — {len(x):,} cells"), fontsize=10)
    handles = [Patch(color=colours[t], label=mpl_text(f"{t} ({n:,})"))
               for t, n in zip(labels, counts, strict=True)]
    handles += [Patch(fc=_BAND_COLOUR, alpha=0.35, ec=_BAND_COLOUR, ls="--",
                      label=mpl_text(f"border band (±{width:g} µm)")),
                Patch(fc="none", ec="black", label="tumour boundary")]
    handles += [Patch(fc="none", ec=c, ls="--", label=mpl_text(k)) for k, c in kinds.items()]
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(map_w / (map_w + 2.6), 0.93),
               fontsize=7.5, frameon=False, title="cell type (n)", title_fontsize=8)
    fig.canvas.draw()
    save_quantized_png(path, np.asarray(fig.canvas.buffer_rgba()))  # type: ignore[attr-defined]  # Agg
    save_zoom_map(path, x, y, codes.astype(np.intp), labels, colours, extent, result, width)
    save_thumbnail(path, x, y, codes.astype(np.intp), labels, colours, extent, result, width)


def _extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    if len(x) == 0:
        return (0.0, 1.0, 0.0, 1.0)
    pad = 0.01 * max(float(np.ptp(x)), float(np.ptp(y)), 1.0)
    return (float(x.min()) - pad, float(x.max()) + pad, float(y.min()) - pad,
            float(y.max()) + pad)


def _border_width(cells: pd.DataFrame) -> float:
    border = cells["compartment"].to_numpy() == BORDER
    sd = np.abs(cells["signed_distance_um"].to_numpy(np.float64)[border])
    sd = sd[np.isfinite(sd)]
    return float(sd.max()) if sd.size else 0.0


def _draw_rasters(ax, result: CompartmentResult, border_um: float) -> None:
    """Tissue in light grey, border band shaded, boundary contour; large rasters strided."""
    stride = max(1, int(np.ceil(max(result.tissue.shape) / 1200)))
    grid = result.grid
    tissue = result.tissue[::stride, ::stride]
    xs, ys = grid.pixel_centres()
    xs, ys = xs[::stride], ys[::stride]
    half = grid.pixel_um * stride / 2
    extent = (xs[0] - half, xs[-1] + half, ys[0] - half, ys[-1] + half)
    shade = np.zeros((*tissue.shape, 4), dtype=np.float32)
    shade[tissue] = (0.93, 0.93, 0.93, 1.0)
    if result.tumor.any():
        field = result.pixel_signed_distance_um[::stride, ::stride]
        band = tissue & (np.abs(field) <= border_um)
        shade[band] = (*to_rgb(_BAND_COLOUR), 0.35)
        masked = np.where(tissue, field, np.nan)
        ax.contour(xs, ys, masked, levels=[-border_um, border_um], colors=_BAND_COLOUR,
                   linewidths=0.9, linestyles="dashed", zorder=4)
        ax.contour(xs, ys, masked, levels=[0.0], colors="black", linewidths=1.1, zorder=4)
    ax.imshow(shade, origin="lower", extent=extent, interpolation="nearest", zorder=1)


def _draw_aggregates(ax, cells: pd.DataFrame, aggregates: pd.DataFrame | None) -> dict[str, str]:
    """Dashed convex hull of the member cells of each aggregate; returns kind → colour."""
    if aggregates is None or aggregates.empty or "aggregate_id" not in cells.columns:
        return {}
    from scipy.spatial import ConvexHull, QhullError

    ids = cells["aggregate_id"].to_numpy()
    member = np.flatnonzero(pd.notna(ids) & (ids != 0))
    if member.size == 0:
        return {}
    kind_of = dict(zip(aggregates["aggregate_id"], aggregates.get("kind", "aggregate"),
                       strict=True))
    kinds = {str(k): _AGGREGATE_COLOURS[i % len(_AGGREGATE_COLOURS)]
             for i, k in enumerate(sorted({str(v) for v in kind_of.values()}))}
    order = member[np.argsort(ids[member], kind="stable")]
    points = cells[["x", "y"]].to_numpy(np.float64)[order]
    uniq, starts = np.unique(ids[order], return_index=True)
    for agg, part in zip(uniq, np.split(points, starts[1:]), strict=True):
        kind = str(kind_of.get(agg, "aggregate"))
        if len(part) < 3:
            continue
        try:
            hull = part[ConvexHull(part).vertices]
        except QhullError:
            continue
        ax.add_patch(Polygon(hull, closed=True, fill=False, ls="--", lw=1.1,
                             ec=kinds.get(kind, "black"), zorder=6))
    return kinds
