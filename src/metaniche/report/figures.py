"""The per-sample tissue map, painted in the per-sample task while the rasters are in memory.

The report's map is a raster of the cells and the compartments painted with NumPy
(:func:`metaniche.report.zoom.zoom_index`: tissue grey, border band shaded, each cell a dot
in its type's colour, the tumour boundary in black) and saved as an exact palette PNG
carrying its description (:func:`metaniche.report.zoom.save_static_map`: extent in µm,
legend, lesion ids, aggregate outlines). The sample page draws the axes (µm), lesion ids,
aggregate outlines and legend over it as SVG and HTML (:func:`metaniche.report.svg.
tissue_map`); the cohort page shows the PNG itself as the sample's thumbnail. The colours,
extent, legend and outlines are those of ``metaniche.pl.tissue``
(:mod:`metaniche.plotting.tissue`), which draws the same map with matplotlib.

Why not matplotlib here: laying out and saving the matplotlib map cost about 0.25 s per
sample (text, ticks and legend about 0.1 s, masked-array image resampling 0.04 s, PNG 0.03 s),
half the per-sample time of a cohort of small images (761 NSCLC images: 163 of 338
worker-seconds); the painted raster and its description take about 15 ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from metaniche import roles
from metaniche.analyses.compartments import BORDER
from metaniche.plotting.tissue import (
    aggregate_hulls,
    legend_items,
    map_colours,
    map_extent,
    type_codes,
)
from metaniche.report.colours import COMPARTMENT_COLOURS
from metaniche.report.zoom import (
    save_static_map,
    save_zoom_map,
    zoom_adds_detail,
    zoom_index,
    zoom_paths,
)
from metaniche.tables import AGGREGATES

if TYPE_CHECKING:
    from metaniche.config import Config
    from metaniche.sample import SampleAnalysis

__all__ = ["COMPARTMENT_COLOURS", "MAP_PX", "MAP_UM_PER_PX", "map_size_px", "save_tissue_map"]

#: Bounds (pixels) of the longer side of the static map.
MAP_PX = (400, 900)
#: µm per pixel the static map is sized for, within :data:`MAP_PX`: a 930 µm Vectra field
#: gets 744 px (cells of ~10 µm are dots of a few pixels; its zoomable raster at 1 µm per
#: pixel would not add the 1.5× detail it needs to be written,
#: :func:`~metaniche.report.zoom.zoom_adds_detail`), a sample of 1.1 mm or more 900 px and a
#: zoomable view. 1 µm per pixel put the 150-sample simulated report at 10.5 MB, over its
#: 10 MB budget.
MAP_UM_PER_PX = 1.25


def save_tissue_map(analysis: SampleAnalysis, title: str, path: str | Path,
                    config: Config | None = None) -> None:
    """Write the tissue map of one sample: the painted PNG, its description and, for a
    large sample, the zoomable raster.

    The PNG (``path``) is :func:`metaniche.report.zoom.zoom_index` at
    :func:`map_size_px` pixels along the longer side, saved as a palette PNG whose
    description (:func:`metaniche.report.zoom.save_static_map`) holds its extent, the
    legend (:func:`metaniche.plotting.tissue.legend_items`), the lesion ids at their
    centroids and the aggregate outlines (:func:`metaniche.plotting.tissue.aggregate_hulls`).
    The zoomable view (``<stem>.map.zoom.png`` and ``.json``,
    :func:`metaniche.report.zoom.save_zoom_map`) is written when it adds detail
    (:func:`metaniche.report.zoom.zoom_adds_detail`), else a stale one is removed.

    Parameters
    ----------
    analysis
        The sample's analysis (cells with ``x, y, cell_type, compartment, signed_distance_um``
        and optional ``aggregate_id``; compartment rasters; optional ``aggregates`` table).
    title
        Title (the sample name; shown literally).
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
    codes, labels = type_codes(cells["cell_type"])
    sd = cells["signed_distance_um"].to_numpy(np.float64)
    tumour_types = tuple(roles.tumour_types(labels, config) if config is not None
                         else roles.tumour_types_by_position(codes, labels, sd))
    colours = map_colours(labels, codes, tumour_types)
    width = config.compartments.border_um if config is not None else _border_width(cells)
    extent = map_extent(x, y)
    size = map_size_px(extent)
    rgb = np.array([to_rgb(colours[t]) for t in labels]).reshape(-1, 3)
    index, palette = zoom_index(x, y, codes, rgb, extent, result, width, size)
    aggregate_id = (cells["aggregate_id"].to_numpy() if "aggregate_id" in cells.columns
                    else None)
    kinds, hulls = aggregate_hulls(x, y, aggregate_id, analysis.tables.get(AGGREGATES))
    has_boundary = bool(result.tumor.any() and result.tissue.any())
    lesions = result.lesions
    save_static_map(path, index, palette, extent, width, title=title, n_cells=len(x),
                  legend=legend_items(labels, codes, colours, width if has_boundary else None,
                                      kinds),
                  lesions=[(str(r.lesion_id), float(r.centroid_x), float(r.centroid_y))
                           for r in lesions.itertuples(index=False)]
                  if lesions is not None else [],
                  outlines=[(kinds[k], hull) for k, hull in hulls])
    if zoom_adds_detail(extent, size):
        save_zoom_map(path, x, y, codes, labels, colours, extent, result, width)
    else:  # the static map already shows every µm the raster would: no zoomable copy
        for stale in zoom_paths(path):
            stale.unlink(missing_ok=True)


def map_size_px(extent: tuple[float, float, float, float]) -> int:
    """Longer side (pixels) of the static map of a sample covering ``extent`` (µm): its longer
    side / :data:`MAP_UM_PER_PX`, clipped to :data:`MAP_PX` (so a 930 µm sample gets
    744 px, one of 1,125 µm or more 900 px; :func:`~metaniche.report.zoom.zoom_index` keeps
    pixels of at least 1 µm, so a sample under 400 µm gets one pixel per µm)."""
    longest = max(extent[1] - extent[0], extent[3] - extent[2])
    return int(np.clip(round(longest / MAP_UM_PER_PX), *MAP_PX))


def _border_width(cells: pd.DataFrame) -> float:
    border = cells["compartment"].to_numpy() == BORDER
    sd = np.abs(cells["signed_distance_um"].to_numpy(np.float64)[border])
    sd = sd[np.isfinite(sd)]
    return float(sd.max()) if sd.size else 0.0
