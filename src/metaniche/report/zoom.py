"""The painted tissue map: a raster of cells and compartments plus a description beside it.

The static map of every sample (``<stem>.map.png``, :mod:`metaniche.report.figures`) is
:func:`zoom_index` at up to 900 pixels carrying its description (:func:`save_static_map`:
extent, legend, lesion ids, aggregate outlines, drawn over the image by
:func:`metaniche.report.svg.tissue_map`). For a large sample the per-sample task also
writes ``<stem>.map.zoom.png`` (longer side :data:`ZOOM_SIZE_PX` pixels) and
``<stem>.map.zoom.json`` (extent in µm, legend); the sample page shows the raster in a
viewer of its own (``templates/_zoom.js.html``: wheel zoom about the pointer, drag to pan, no
network). The raster is painted with NumPy only: tissue grey, the border band shaded, every
cell as a square dot in its type's colour (rare types on top), and the tumour boundary
(signed distance 0) in black. Row 0 of the image is the smallest y, as on the static map
(y grows downward).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import to_hex, to_rgb
from matplotlib.image import imsave

from metaniche._atomic import atomic_path, write_json
from metaniche.plotting.tissue import BAND_ALPHA, BAND_COLOUR
from metaniche.report.paint import paint_codes, save_indexed_png

if TYPE_CHECKING:
    from collections.abc import Sequence

    from metaniche.analyses.compartments import CompartmentResult
    from metaniche.plotting.tissue import LegendItem

__all__ = ["MAP_INFO_KEY", "ZOOM_MIN_GAIN", "ZOOM_SIZE_PX", "read_map_info", "read_zoom_info",
           "save_static_map", "save_zoom_map", "zoom_adds_detail", "zoom_index", "zoom_paths",
           "zoom_raster"]

#: Longer side of the zoomable raster (pixels).
ZOOM_SIZE_PX = 4096
#: The zoomable raster is written only when it has at least this many times the static map's
#: pixels along its longer side (:func:`zoom_adds_detail`).
ZOOM_MIN_GAIN = 1.5
#: Pixels of the zoomable raster are at least this size (µm), so small samples get a
#: smaller image.
_MIN_PIXEL_UM = 1.0
#: Cell dots are at most this radius (µm) however far the raster is zoomed.
_DOT_RADIUS_UM = 5.0
_TISSUE_RGB = np.array([237, 237, 237], dtype=np.float64)
_BAND_RGB = np.array(to_rgb(BAND_COLOUR), dtype=np.float64) * 255
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def zoom_adds_detail(extent: tuple[float, float, float, float], static_px: int,
                     size_px: int = ZOOM_SIZE_PX) -> bool:
    """Whether the zoomable raster would hold at least :data:`ZOOM_MIN_GAIN` times the static
    map's ``static_px`` pixels along the longer side (it is at most ``size_px`` pixels of at
    least 1 µm, :func:`zoom_index`); a small sample's static map already shows every cell at
    full detail, and a zoomable copy would only add to the report's size."""
    longest = max(extent[1] - extent[0], extent[3] - extent[2])
    raster_px = min(size_px, int(np.ceil(longest / _MIN_PIXEL_UM)))
    return raster_px >= ZOOM_MIN_GAIN * static_px


def zoom_paths(map_png: str | Path) -> tuple[Path, Path]:
    """``(<stem>.map.zoom.png, <stem>.map.zoom.json)`` beside the static ``<stem>.map.png``."""
    map_png = Path(map_png)
    stem = map_png.name.removesuffix(".png")
    return map_png.with_name(f"{stem}.zoom.png"), map_png.with_name(f"{stem}.zoom.json")


def _linear_resample(field: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``field`` at fractional pixel-centre indices ``rows × cols``
    (separable: along columns first, then rows; indices clamped to the raster)."""
    def weights(index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        index = np.clip(index, 0, n - 1)
        low = np.minimum(np.floor(index).astype(np.intp), max(n - 2, 0))
        high = np.minimum(low + 1, n - 1)
        return low, high, (index - low).astype(np.float32)

    c0, c1, wc = weights(cols, field.shape[1])
    across = field[:, c0] * (1 - wc) + field[:, c1] * wc
    r0, r1, wr = weights(rows, field.shape[0])
    return across[r0] * (1 - wr)[:, None] + across[r1] * wr[:, None]


def zoom_raster(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colours: np.ndarray,
                extent: tuple[float, float, float, float], result: CompartmentResult | None,
                border_um: float, size_px: int = ZOOM_SIZE_PX) -> np.ndarray:
    """RGB raster of the tissue map for the zoomable view (:func:`zoom_index` looked up in
    its palette); parameters and returned image as :func:`zoom_index` describes."""
    index, palette = zoom_index(x, y, codes, colours, extent, result, border_um, size_px)
    return palette[index]


def zoom_index(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colours: np.ndarray,
               extent: tuple[float, float, float, float], result: CompartmentResult | None,
               border_um: float, size_px: int = ZOOM_SIZE_PX) -> tuple[np.ndarray, np.ndarray]:
    """Palette raster of the tissue map for the zoomable view.

    Parameters
    ----------
    x, y
        Cell centroids (µm), shape (n,).
    codes, colours
        Type code per cell and RGB in [0, 1] per code (as :func:`~metaniche.report.paint.
        paint_cells`).
    extent
        ``(x0, x1, y0, y1)`` in µm covered by the raster; pixels are square, the longer side
        has ``size_px`` pixels (fewer when pixels would be under 1 µm).
    result
        Compartment rasters (tissue mask, pixel signed distance) or None.
    border_um
        Half-width w of the border band: pixels with |signed distance| ≤ w are shaded.

    Returns
    -------
    index : numpy.ndarray
        uint16, shape (height, width): 0 outside tissue, 1 tissue, 2 border band, 3 tumour
        boundary, 4 + k a cell of type code k.
    palette : numpy.ndarray
        uint8 RGB per index value, shape (4 + n_types, 3).

    Notes
    -----
    Tissue is taken from the compartment raster by
        nearest pixel; the signed distance is interpolated bilinearly, so the boundary (black:
        tissue pixels whose right or lower tissue neighbour has the other sign, widened by one
        pixel each side, drawn over the cells) and the band edges are smooth.
        Cells are dots of radius min(0.3 × mean spacing, 5 µm), at most 6 pixels. O(W·H + n·r²).
    """
    x0, x1, y0, y1 = extent
    longest = max(x1 - x0, y1 - y0, 1e-9)
    size_px = max(1, min(size_px, int(np.ceil(longest / _MIN_PIXEL_UM))))
    width_px = max(1, round(size_px * (x1 - x0) / longest))
    pixel = max((x1 - x0) / width_px, 1e-9)
    spacing_px = np.sqrt((x1 - x0) * (y1 - y0) / max(len(x), 1)) / pixel
    dot = int(np.clip(min(0.3 * spacing_px, _DOT_RADIUS_UM / pixel), 0, 6))
    colours = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
    cells = paint_codes(x, y, codes, len(colours), extent, width_px, dot)
    height_px = cells.shape[0]
    # Background class per pixel: 0 outside tissue, 1 tissue, 2 border band, 3 boundary.
    kind = np.zeros((height_px, width_px), dtype=np.uint8)
    if result is not None and result.tissue.any():
        grid = result.grid
        xs = x0 + (np.arange(width_px) + 0.5) * pixel
        ys = y0 + (np.arange(height_px) + 0.5) * pixel
        col = np.floor((xs - grid.x0) / grid.pixel_um).astype(np.intp)
        row = np.floor((ys - grid.y0) / grid.pixel_um).astype(np.intp)
        inside_c = (col >= 0) & (col < grid.shape[1])
        inside_r = (row >= 0) & (row < grid.shape[0])
        tissue = result.tissue[np.ix_(np.clip(row, 0, grid.shape[0] - 1),
                                      np.clip(col, 0, grid.shape[1] - 1))]
        tissue &= inside_r[:, None] & inside_c[None, :]
        kind[tissue] = 1
        if result.tumor.any():
            field = _linear_resample(result.pixel_signed_distance_um.astype(np.float32),
                                     (ys - grid.y0) / grid.pixel_um - 0.5,
                                     (xs - grid.x0) / grid.pixel_um - 0.5)
            kind[tissue & (np.abs(field) <= border_um)] = 2
            negative = field < 0
            edge = np.zeros_like(negative)
            edge[:, :-1] |= (negative[:, :-1] != negative[:, 1:]) & tissue[:, :-1] & tissue[:, 1:]
            edge[:-1, :] |= (negative[:-1, :] != negative[1:, :]) & tissue[:-1, :] & tissue[1:, :]
            thick = edge.copy()  # about 3 px wide, so it survives the zoomed-out view
            thick[:, 1:] |= edge[:, :-1]
            thick[:, :-1] |= edge[:, 1:]
            thick[1:] |= edge[:-1]
            thick[:-1] |= edge[1:]
            kind[thick] = 3
    band = np.round((1 - BAND_ALPHA) * _TISSUE_RGB + BAND_ALPHA * _BAND_RGB)
    palette = np.concatenate([np.array([[255, 255, 255], _TISSUE_RGB, band, [0, 0, 0]]),
                              colours * 255]).astype(np.uint8)
    index = kind.astype(np.uint16)
    painted = (cells > 0) & (kind != 3)
    np.copyto(index, cells + 3, where=painted)
    return index, palette


def save_zoom_map(map_png: str | Path, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                  labels: list[str], colours: dict[str, str],
                  extent: tuple[float, float, float, float], result: CompartmentResult | None,
                  border_um: float, size_px: int = ZOOM_SIZE_PX) -> None:
    """Write the zoomable raster and its description beside the static map ``map_png``.

    The JSON holds ``width_px``, ``height_px``, ``extent_um`` (x0, x1, y0, y1; row 0 = y0),
    ``pixel_um``, ``border_um`` and ``legend`` (label, colour, n cells per type).
    """
    png, info = zoom_paths(map_png)
    rgb_colours = np.array([to_rgb(colours[t]) for t in labels]).reshape(-1, 3)
    index, palette = zoom_index(x, y, codes, rgb_colours, extent, result, border_um, size_px)
    if len(palette) <= 256:   # exact colours in a palette PNG: a third of the RGB file
        save_indexed_png(png, index, palette)
    else:
        with atomic_path(png, suffix=".png") as tmp:
            imsave(tmp, palette[index], format="png", pil_kwargs={"compress_level": 1})
    image = index
    counts = np.bincount(codes, minlength=len(labels))
    write_json(info, {
        "image": png.name, "width_px": int(image.shape[1]), "height_px": int(image.shape[0]),
        "extent_um": [float(v) for v in extent],
        "pixel_um": float((extent[1] - extent[0]) / image.shape[1]),
        "border_um": float(border_um),
        "legend": [{"label": t, "colour": to_hex(colours[t]), "n": int(n)}
                   for t, n in zip(labels, counts, strict=True)],
    })


def read_zoom_info(map_png: str | Path) -> dict[str, Any] | None:
    """The zoom description beside ``map_png`` when it and its image exist and are well formed
    (colours must be ``#rrggbb``; the file is not trusted), else None."""
    import json

    png, info = zoom_paths(map_png)
    if not (png.is_file() and info.is_file()):
        return None
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
        extent = [float(v) for v in data["extent_um"]]
        legend = [{"label": str(item["label"]), "colour": str(item["colour"]),
                   "n": f"{int(item['n']):,}"} for item in data.get("legend", [])
                  if _HEX.match(str(item.get("colour", "")))]
        return {"src": f"figures/{png.name}", "width_px": int(data["width_px"]),
                "height_px": int(data["height_px"]), "extent_um": extent, "legend": legend}
    except (ValueError, KeyError, TypeError):
        return None


#: Kinds of legend entries a map description may hold (:class:`~metaniche.plotting.tissue.
#: LegendItem`).
_LEGEND_KINDS = ("type", "band", "boundary", "aggregate")
#: PNG text key of the static map's description (JSON, :func:`save_static_map`).
MAP_INFO_KEY = "metaniche:map"


def save_static_map(map_png: str | Path, index: np.ndarray, palette: np.ndarray,
                    extent: tuple[float, float, float, float], border_um: float, *,
                    title: str, n_cells: int, legend: Sequence[LegendItem],
                    lesions: Sequence[tuple[str, float, float]],
                    outlines: Sequence[tuple[str, np.ndarray]]) -> None:
    """Write the static map: the palette PNG of ``index`` (:func:`zoom_index`) carrying its
    description as a compressed text chunk :data:`MAP_INFO_KEY` (one file, one atomic
    write: the description can never belong to another image).

    The description (JSON) holds ``width_px``, ``height_px`` (of ``index``), ``extent_um``
    (x0, x1, y0, y1; row 0 = y0), ``pixel_um``, ``border_um``, ``title``, ``n_cells``,
    ``legend`` (label, colour, kind), ``lesions`` (id, x, y in µm) and ``outlines``
    (colour, hull vertices in µm rounded to 0.1 µm).
    """
    import json

    height, width = (int(v) for v in index.shape[:2])
    info = {
        "width_px": width, "height_px": height, "extent_um": [float(v) for v in extent],
        "pixel_um": float((extent[1] - extent[0]) / width), "border_um": float(border_um),
        "title": str(title), "n_cells": int(n_cells),
        "legend": [{"label": i.label, "colour": i.colour, "kind": i.kind} for i in legend],
        "lesions": [{"id": str(k), "x": float(x), "y": float(y)} for k, x, y in lesions],
        "outlines": [{"colour": str(c), "points": np.round(np.asarray(p, dtype=np.float64), 1)
                      .tolist()} for c, p in outlines],
    }
    save_indexed_png(map_png, index, palette, text={MAP_INFO_KEY: json.dumps(info)})


def read_map_info(map_png: str | Path) -> dict[str, Any] | None:
    """The description the static map ``map_png`` carries (:func:`save_static_map`) when it
    is well formed, else None (a map of an older run, or a damaged file: the page shows the
    PNG alone). Reads the PNG's header only. The file is not trusted: numbers are parsed,
    colours must be ``#rrggbb`` and legend kinds known; text is escaped where it is shown."""
    import json

    from PIL import Image

    try:
        with Image.open(map_png) as image:
            text = image.info.get(MAP_INFO_KEY)
        if not isinstance(text, str):
            return None
        data = json.loads(text)
        extent = [float(v) for v in data["extent_um"]]
        width, height = int(data["width_px"]), int(data["height_px"])
        if len(extent) != 4 or width < 1 or height < 1 or not (
                extent[1] > extent[0] and extent[3] > extent[2]) or not np.isfinite(extent).all():
            return None
        legend = [{"label": str(i["label"]), "colour": str(i["colour"]), "kind": str(i["kind"])}
                  for i in data.get("legend", [])
                  if _HEX.match(str(i.get("colour", ""))) and i.get("kind") in _LEGEND_KINDS]
        lesions = [{"id": str(i["id"]), "x": float(i["x"]), "y": float(i["y"])}
                   for i in data.get("lesions", [])]
        outlines = [{"colour": str(i["colour"]),
                     "points": [(float(a), float(b)) for a, b in i["points"]]}
                    for i in data.get("outlines", []) if _HEX.match(str(i.get("colour", "")))]
        return {"width_px": width, "height_px": height, "extent_um": extent,
                "title": str(data.get("title", "")), "n_cells": int(data.get("n_cells", 0)),
                "border_um": float(data.get("border_um", 0.0)), "legend": legend,
                "lesions": lesions, "outlines": outlines}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
