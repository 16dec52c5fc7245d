"""The tissue map: one drawer for the report's per-sample map and ``metaniche.pl.tissue``.

Cells are painted straight into an RGB raster with NumPy (:func:`metaniche.plotting.paint.
paint_cells`: one dot of a few pixels per cell, rarest types painted last so they stay
visible), so a million cells cost well under a second and the figure is the same size at any
cell count. Under them: the tissue in light grey and the border band (absolute signed distance ≤
border half-width w) shaded, from a :class:`TissueField`; over them: the band limits (±w,
dashed), the tumour boundary (signed distance 0, solid), the lesion ids at the lesion
centroids and the outline (dashed convex hull of the member cells) of every multicellular
aggregate / TLS. Axes in µm, y growing downwards as in the image the cells came from.

The field comes from the compartment rasters when they are in memory (the pipeline:
:func:`field_from_compartments`, the exact pixels the compartments were assigned on) or from
the cells' signed distances (an AnnData: :func:`field_from_cells`, nearest cell per pixel, so
the boundary follows the cells within about one cell spacing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from metaniche.plotting.paint import paint_cells
from metaniche.plotting.style import mpl_text, type_colours

if TYPE_CHECKING:
    from metaniche.analyses.compartments import CompartmentResult

__all__ = ["AGGREGATE_COLOURS", "BAND_ALPHA", "BAND_COLOUR", "MAP_WIDTH_PX", "LegendItem",
           "TissueField", "aggregate_hulls", "draw_tissue", "field_from_cells",
           "field_from_compartments", "legend_items", "map_colours", "map_extent", "type_codes"]

#: Width (px) of the painted cell raster (≈ the width of the report's sample page).
MAP_WIDTH_PX = 1100
#: Colour of the border band and its limits.
BAND_COLOUR = "#f5b041"
#: Opacity of the border band's shading over the tissue grey.
BAND_ALPHA = 0.35
#: Outline colours of the aggregate kinds (in sorted kind order, repeating).
AGGREGATE_COLOURS = ("#000000", "#8e44ad", "#16a085", "#2c3e50")
#: Largest side (px) of the field drawn under the cells (larger rasters are strided).
_FIELD_MAX_PX = 1200


@dataclass(frozen=True)
class TissueField:
    """Signed distance to the tumour boundary on a pixel grid, with the tissue mask.

    Attributes
    ----------
    xs, ys
        Pixel centres (µm), shapes (nx,) and (ny,).
    signed_distance_um
        (ny, nx) signed distance (µm, negative inside tumour); NaN where undefined.
    tissue
        (ny, nx) True where there is tissue.
    pixel_um
        Pixel side (µm).
    """

    xs: np.ndarray
    ys: np.ndarray
    signed_distance_um: np.ndarray
    tissue: np.ndarray
    pixel_um: float

    @property
    def has_tumour(self) -> bool:
        """True when some tissue pixel lies inside tumour (a boundary can be drawn)."""
        inside = self.tissue & (np.nan_to_num(self.signed_distance_um, nan=1.0) < 0)
        return bool(inside.any())


def field_from_compartments(result: CompartmentResult) -> TissueField | None:
    """The field of the compartment rasters (strided to at most 1,200 px a side); None when
    the sample has no tissue pixel."""
    if not result.tissue.any():
        return None
    stride = max(1, int(np.ceil(max(result.tissue.shape) / _FIELD_MAX_PX)))
    xs, ys = result.grid.pixel_centres()
    tissue = result.tissue[::stride, ::stride]
    if result.tumor.any():
        field = np.asarray(result.pixel_signed_distance_um[::stride, ::stride], dtype=np.float64)
    else:
        field = np.full(tissue.shape, np.nan)
    return TissueField(xs[::stride], ys[::stride], field, tissue,
                       float(result.grid.pixel_um * stride))


def field_from_cells(x: np.ndarray, y: np.ndarray, signed_distance_um: np.ndarray,
                     width_px: int = 400) -> TissueField | None:
    """A field from the cells' signed distances: each pixel takes the value of its nearest
    cell; pixels farther than two mean cell spacings (√(area / n)) from every cell are not
    tissue. O(n log n + pixels · log n). None with fewer than three cells."""
    from scipy.spatial import cKDTree

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sd = np.asarray(signed_distance_um, dtype=np.float64)
    if len(x) < 3:
        return None
    x0, x1, y0, y1 = map_extent(x, y)
    pixel = (x1 - x0) / width_px
    xs = x0 + (np.arange(width_px) + 0.5) * pixel
    ys = y0 + (np.arange(max(1, int(np.ceil((y1 - y0) / pixel)))) + 0.5) * pixel
    spacing = np.sqrt((x1 - x0) * (y1 - y0) / len(x))
    gx, gy = np.meshgrid(xs, ys)
    distance, nearest = cKDTree(np.column_stack([x, y])).query(
        np.column_stack([gx.ravel(), gy.ravel()]), k=1,
        distance_upper_bound=max(2 * spacing, 1.5 * pixel))
    tissue = np.isfinite(distance)
    field = np.full(tissue.shape, np.nan)
    field[tissue] = sd[nearest[tissue]]
    return TissueField(xs, ys, field.reshape(gx.shape), tissue.reshape(gx.shape), float(pixel))


def type_codes(cell_types: Any) -> tuple[np.ndarray, list[str]]:
    """Integer code per cell and the sorted labels (as :func:`numpy.unique` would give them,
    by hashing: no sort of a million strings)."""
    codes, labels = pd.factorize(pd.Series(np.asarray(cell_types)).astype(str), sort=True)
    return codes.astype(np.intp), [str(t) for t in labels]


def map_colours(labels: Sequence[str], codes: np.ndarray,
                tumour_types: Sequence[str]) -> dict[str, str]:
    """Colour of every label on the map: tumour types pale, host types holding more than 30 %
    of the cells (hepatocytes, …) in the background colour, the rest categorical
    (:func:`metaniche.plotting.style.type_colours`)."""
    counts = np.bincount(codes, minlength=len(labels))
    common = tuple(t for t, n in zip(labels, counts, strict=True)
                   if t not in tumour_types and n > 0.3 * len(codes))
    return type_colours(labels, tuple(tumour_types), common)


def map_extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)`` of the cells (µm) padded by 1 % of the larger side."""
    if len(x) == 0:
        return (0.0, 1.0, 0.0, 1.0)
    pad = 0.01 * max(float(np.ptp(x)), float(np.ptp(y)), 1.0)
    return (float(x.min()) - pad, float(x.max()) + pad, float(y.min()) - pad,
            float(y.max()) + pad)


def draw_tissue(ax: Any, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                labels: Sequence[str], *, colours: Mapping[str, str],
                field: TissueField | None = None, border_um: float = 0.0,
                lesions: pd.DataFrame | None = None, aggregate_id: np.ndarray | None = None,
                aggregates: pd.DataFrame | None = None, width_px: int = MAP_WIDTH_PX,
                dot_px: int | None = None, legend: bool = True,
                title: str | None = None) -> Any:
    """Draw the tissue map of one sample on ``ax``.

    Parameters
    ----------
    ax
        Matplotlib Axes.
    x, y
        Cell centroids (µm), shape (n,).
    codes, labels
        Integer type code per cell (indexing ``labels``; :func:`type_codes`).
    colours
        Label → colour (:func:`map_colours`).
    field
        Tissue and signed distance under the cells (:func:`field_from_compartments`,
        :func:`field_from_cells`); None draws the cells only.
    border_um
        Half-width w of the border band (µm): shaded where the absolute signed distance is
        at most w, its limits dashed.
    lesions
        ``lesion_id, centroid_x, centroid_y`` (µm): the lesion ids drawn at the centroids.
    aggregate_id, aggregates
        Per-cell aggregate id (0 or missing: none) and the aggregate table (``aggregate_id``,
        ``kind``): the dashed convex hull of each aggregate's cells, coloured by kind.
    width_px
        Width of the painted cell raster.
    dot_px
        Half-size of each cell's dot in raster pixels; default 0.3 × the mean cell spacing in
        pixels, clipped to [0, 3].
    legend
        Legend of the types (with their numbers of cells), the band, the boundary and the
        aggregate kinds, right of the Axes.
    title
        Title; the number of cells is appended.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``: images (the field shading, then the cells), the band and boundary contours,
        the lesion labels and aggregate outlines; x and y labelled in µm.

    Examples
    --------
    >>> import numpy as np
    >>> from matplotlib.figure import Figure
    >>> from metaniche.plotting.tissue import draw_tissue, map_colours, type_codes
    >>> x, y = np.random.default_rng(0).uniform(0, 500, (2, 200))
    >>> codes, labels = type_codes(np.where(x < 250, "Tumor", "CD8_T"))
    >>> ax = draw_tissue(Figure().add_subplot(), x, y, codes, labels,
    ...                  colours=map_colours(labels, codes, ["Tumor"]))
    >>> ax.get_xlabel()
    'x (µm)'
    """
    from matplotlib.patches import Patch

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.intp)
    extent = map_extent(x, y)
    width_um, height_um = extent[1] - extent[0], extent[3] - extent[2]
    if dot_px is None:
        spacing_px = np.sqrt(width_um * height_um / max(len(x), 1)) / (width_um / width_px)
        dot_px = int(np.clip(0.3 * spacing_px, 0, 3))
    image = paint_cells(x, y, codes, np.array([to_rgb(colours[t]) for t in labels]).reshape(
        -1, 3), extent, width_px, dot_px)
    ax.set_facecolor("white")
    band = field is not None and field.has_tumour
    if field is not None:
        _draw_field(ax, field, border_um)
    ax.imshow(image, origin="lower", extent=extent, interpolation="nearest", zorder=2)
    if lesions is not None:
        for lesion in lesions.itertuples(index=False):
            ax.annotate(str(lesion.lesion_id), (lesion.centroid_x, lesion.centroid_y),
                        zorder=5, ha="center", va="center", fontsize=9, weight="bold",
                        color="white", bbox={"boxstyle": "circle", "fc": "black", "alpha": 0.7})
    kinds, hulls = aggregate_hulls(x, y, aggregate_id, aggregates)
    if hulls:
        from matplotlib.patches import Polygon

        for kind, hull in hulls:
            ax.add_patch(Polygon(hull, closed=True, fill=False, ls="--", lw=1.1,
                                 ec=kinds[kind], zorder=6))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[3], extent[2])
    ax.set_aspect("equal")
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    if title is not None:
        ax.set_title(mpl_text(f"{title} — {len(x):,} cells"), fontsize=10)
    if legend:
        handles = []
        for item in legend_items(labels, codes, colours, border_um if band else None, kinds):
            if item.kind == "type":
                handles.append(Patch(color=item.colour, label=mpl_text(item.label)))
            elif item.kind == "band":
                handles.append(Patch(fc=item.colour, alpha=BAND_ALPHA, ec=item.colour, ls="--",
                                     label=mpl_text(item.label)))
            else:   # boundary (solid), aggregate kinds (dashed)
                handles.append(Patch(fc="none", ec=item.colour,
                                     ls="-" if item.kind == "boundary" else "--",
                                     label=mpl_text(item.label)))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5,
                  frameon=False, title="cell type (n)", title_fontsize=8)
    return ax


def _draw_field(ax: Any, field: TissueField, border_um: float) -> None:
    """Tissue in light grey, border band shaded, band limits and boundary contours."""
    xs, ys = field.xs, field.ys
    half = field.pixel_um / 2
    extent = (xs[0] - half, xs[-1] + half, ys[0] - half, ys[-1] + half)
    shade = np.zeros((*field.tissue.shape, 4), dtype=np.float32)
    shade[field.tissue] = (0.93, 0.93, 0.93, 1.0)
    if field.has_tumour:
        values = field.signed_distance_um
        band = field.tissue & (np.abs(np.nan_to_num(values, nan=np.inf)) <= border_um)
        shade[band] = (*to_rgb(BAND_COLOUR), BAND_ALPHA)
        masked = np.where(field.tissue, values, np.nan)
        if border_um > 0:
            ax.contour(xs, ys, masked, levels=[-border_um, border_um], colors=BAND_COLOUR,
                       linewidths=0.9, linestyles="dashed", zorder=4)
        ax.contour(xs, ys, masked, levels=[0.0], colors="black", linewidths=1.1, zorder=4)
    ax.imshow(shade, origin="lower", extent=extent, interpolation="nearest", zorder=1)


@dataclass(frozen=True)
class LegendItem:
    """One entry of the tissue map's legend.

    Attributes
    ----------
    label
        Text as shown (raw: the report escapes it, matplotlib gets :func:`mpl_text`).
    colour
        ``#rrggbb``.
    kind
        ``"type"`` (filled square), ``"band"`` (shaded, dashed edge), ``"boundary"`` (solid
        line) or ``"aggregate"`` (dashed outline).
    """

    label: str
    colour: str
    kind: str


def legend_items(labels: Sequence[str], codes: np.ndarray, colours: Mapping[str, str],
                 border_um: float | None, aggregate_kinds: Mapping[str, str],
                 ) -> list[LegendItem]:
    """The legend of the tissue map, shared by the report and ``metaniche.pl.tissue``: each
    type with its number of cells (``"CD8_T (1,234)"``), then, when a boundary is drawn
    (``border_um`` not None), the band (``"border band (±w µm)"``) and the boundary, then
    the aggregate kinds (:func:`aggregate_hulls`)."""
    from matplotlib.colors import to_hex

    counts = np.bincount(np.asarray(codes, dtype=np.intp), minlength=len(labels))
    items = [LegendItem(f"{t} ({n:,})", to_hex(colours[t]), "type")
             for t, n in zip(labels, counts, strict=True)]
    if border_um is not None:
        items += [LegendItem(f"border band (±{border_um:g} µm)", BAND_COLOUR, "band"),
                  LegendItem("tumour boundary", "#000000", "boundary")]
    items += [LegendItem(k, c, "aggregate") for k, c in aggregate_kinds.items()]
    return items


def aggregate_hulls(x: np.ndarray, y: np.ndarray, aggregate_id: np.ndarray | None,
                    aggregates: pd.DataFrame | None,
                    ) -> tuple[dict[str, str], list[tuple[str, np.ndarray]]]:
    """Outline of each multicellular aggregate: the convex hull of its member cells
    (:class:`scipy.spatial.ConvexHull`; aggregates of fewer than three cells, or collinear,
    have none).

    Returns
    -------
    kinds : dict
        Aggregate kind → outline colour (:data:`AGGREGATE_COLOURS` in sorted kind order).
    hulls : list of (kind, numpy.ndarray)
        The hull vertices (µm, shape (k, 2), counter-clockwise) of each aggregate, in
        ascending aggregate id.
    """
    if aggregates is None or aggregates.empty or aggregate_id is None:
        return {}, []
    from scipy.spatial import ConvexHull, QhullError

    ids = pd.to_numeric(pd.Series(aggregate_id), errors="coerce").fillna(0).to_numpy(
        np.int64)
    member = np.flatnonzero(ids != 0)
    if member.size == 0:
        return {}, []
    kind_column = (aggregates["kind"] if "kind" in aggregates.columns
                   else pd.Series("aggregate", index=aggregates.index))
    kind_of = dict(zip(aggregates["aggregate_id"].astype(np.int64), kind_column.astype(str),
                       strict=True))
    kinds = {k: AGGREGATE_COLOURS[i % len(AGGREGATE_COLOURS)]
             for i, k in enumerate(sorted({*kind_of.values()}))}
    order = member[np.argsort(ids[member], kind="stable")]
    points = np.column_stack([x, y])[order]
    uniq, starts = np.unique(ids[order], return_index=True)
    hulls = []
    for agg, part in zip(uniq, np.split(points, starts[1:]), strict=True):
        kind = kind_of.get(int(agg), "aggregate")
        if len(part) < 3:
            continue
        try:
            hull = part[ConvexHull(part).vertices]
        except QhullError:
            continue
        kinds.setdefault(kind, AGGREGATE_COLOURS[len(kinds) % len(AGGREGATE_COLOURS)])
        hulls.append((kind, hull))
    return kinds, hulls
