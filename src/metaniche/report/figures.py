"""The per-sample tissue map, drawn in the per-sample task while the rasters are in memory.

The figure is drawn by :func:`metaniche.plotting.tissue.draw_tissue`, the drawer
``metaniche.pl.tissue`` calls too (painted cell raster, border band, boundary, lesion ids,
aggregate outlines, µm axes); here it gets the compartment rasters themselves
(:func:`metaniche.plotting.tissue.field_from_compartments`) and is saved as a palette PNG
carrying its Axes box (the cohort page shows the map cropped to it as the sample's
thumbnail), with the zoomable raster beside it when that adds detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metaniche import roles
from metaniche.analyses.compartments import BORDER
from metaniche.plotting.paint import save_quantized_png
from metaniche.plotting.tissue import (
    MAP_WIDTH_PX,
    draw_tissue,
    field_from_compartments,
    map_colours,
    map_extent,
    type_codes,
)
from metaniche.report.colours import COMPARTMENT_COLOURS
from metaniche.report.zoom import (
    MAP_AXES_KEY,
    map_axes_text,
    save_zoom_map,
    zoom_adds_detail,
    zoom_paths,
)
from metaniche.tables import AGGREGATES

if TYPE_CHECKING:
    from metaniche.config import Config
    from metaniche.sample import SampleAnalysis

__all__ = ["COMPARTMENT_COLOURS", "MAP_COLOURS", "MAP_UM_PER_PX", "MAP_WIDTH_IN", "map_width_in",
           "save_tissue_map", "tissue_figure"]

#: Resolution of the static map.
_MAP_DPI = 100
#: Bounds (inches) of the width of the static map's map part (Axes and y tick labels; the
#: legend is beside it): at 100 dpi 400 to 750 px.
MAP_WIDTH_IN = (4.0, 7.5)
#: µm per pixel (at 100 dpi) the map part's width is sized for, within :data:`MAP_WIDTH_IN`:
#: a small sample gets a smaller map (the same cells in fewer pixels), a large one the widest
#: (its zoomable view holds the detail, :mod:`metaniche.report.zoom`).
MAP_UM_PER_PX = 2.0
#: Colours of the static map's palette PNG: the cell types, tissue, band and lines keep
#: theirs; anti-aliased text and line edges snap to a near one (about 5 % smaller than 96,
#: hardly any further from the rendering; 32 would merge colours).
MAP_COLOURS = 48
#: Height (inches) of one legend row (7.5 pt text and its spacing), a lower bound of the map's
#: height so the legend is never cut.
_LEGEND_ROW_IN = 0.17


def save_tissue_map(analysis: SampleAnalysis, title: str, path: str | Path,
                    config: Config | None = None) -> None:
    """Write the tissue map PNG of one sample and, for a large sample, its zoomable raster.

    The static map is a palette PNG (:func:`metaniche.report.paint.save_quantized_png`) whose
    text chunk :data:`~metaniche.report.zoom.MAP_AXES_KEY` holds the Axes box in pixels: the
    cohort page shows the map cropped to that box as the sample's thumbnail (no second
    raster). The zoomable view (``<stem>.map.zoom.png`` and ``.json``) is written by
    :func:`metaniche.report.zoom.save_zoom_map` with the same colours, extent and band when
    it adds detail (:func:`metaniche.report.zoom.zoom_adds_detail`).

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
    fig, colours, codes, labels, width = tissue_figure(analysis, title, config)
    cells = analysis.cells
    x = cells["x"].to_numpy(np.float64)
    y = cells["y"].to_numpy(np.float64)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]  # Agg
    # the Axes box in image pixels (row 0 at the top): the cohort page crops the map to it
    box = fig.axes[0].get_window_extent()
    height = rgba.shape[0]
    axes = map_axes_text((box.x0, height - box.y1, box.x1, height - box.y0),
                         (rgba.shape[1], height))
    save_quantized_png(path, rgba, colours=MAP_COLOURS, text={MAP_AXES_KEY: axes})
    extent = map_extent(x, y)
    if zoom_adds_detail(extent, MAP_WIDTH_PX):
        save_zoom_map(path, x, y, codes, labels, colours, extent, analysis.compartments, width)
    else:  # the static map already shows every µm the raster would: no zoomable copy
        for stale in zoom_paths(path):
            stale.unlink(missing_ok=True)


def tissue_figure(analysis: SampleAnalysis, title: str, config: Config | None = None,
                  ) -> tuple[Figure, dict[str, str], np.ndarray, list[str], float]:
    """The tissue map figure of one sample (on its own Agg canvas, no pyplot).

    Builds the figure and calls :func:`metaniche.plotting.tissue.draw_tissue` on its Axes;
    see :func:`save_tissue_map` for the parameters. Returns the figure, the type colours,
    the per-cell type codes, the labels and the border half-width drawn (µm).
    """
    cells = analysis.cells
    result = analysis.compartments
    x = cells["x"].to_numpy(np.float64)
    y = cells["y"].to_numpy(np.float64)
    codes, labels = type_codes(cells["cell_type"])
    sd = cells["signed_distance_um"].to_numpy(np.float64)
    tumour_types = tuple(roles.tumour_types(labels, config) if config is not None
                         else roles.tumour_types_by_position(codes, labels, sd))
    colours = map_colours(labels, codes, tumour_types)
    x0, x1, y0, y1 = map_extent(x, y)
    map_w = map_width_in(x1 - x0)
    # tall enough for the legend beside the map (types, band, boundary, aggregate kinds, title)
    legend_h = _LEGEND_ROW_IN * (len(labels) + 5)
    map_h = float(np.clip(max(map_w * (y1 - y0) / max(x1 - x0, 1e-9), legend_h), 2.5, 11.0))
    fig = Figure(figsize=(map_w + 2.6, map_h + 0.8), dpi=_MAP_DPI)
    FigureCanvasAgg(fig)   # object-oriented Agg drawing: no pyplot, no global backend
    ax = fig.add_axes((0.08, 0.07, map_w / (map_w + 2.6) - 0.08, 0.85))
    ax.set_anchor("N")   # the map at the top, the legend (anchored to its top) below it
    width = config.compartments.border_um if config is not None else _border_width(cells)
    aggregate_id = (cells["aggregate_id"].to_numpy() if "aggregate_id" in cells.columns
                    else None)
    draw_tissue(ax, x, y, codes, labels, colours=colours, field=field_from_compartments(result),
                border_um=width, lesions=result.lesions, aggregate_id=aggregate_id,
                aggregates=analysis.tables.get(AGGREGATES), width_px=MAP_WIDTH_PX, title=title)
    return fig, colours, codes, labels, width


def map_width_in(width_um: float) -> float:
    """Width (inches) of the static map's map part for a sample ``width_um`` wide:
    ``width_um`` / :data:`MAP_UM_PER_PX` pixels at 100 dpi, clipped to :data:`MAP_WIDTH_IN`
    (so an 820 µm sample gets 4.1 in, one of 1.5 mm or more 7.5 in)."""
    return float(np.clip(width_um / MAP_UM_PER_PX / _MAP_DPI, *MAP_WIDTH_IN))


def _border_width(cells: pd.DataFrame) -> float:
    border = cells["compartment"].to_numpy() == BORDER
    sd = np.abs(cells["signed_distance_um"].to_numpy(np.float64)[border])
    sd = sd[np.isfinite(sd)]
    return float(sd.max()) if sd.size else 0.0
