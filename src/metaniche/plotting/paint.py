"""Cells painted straight into an RGBA raster with NumPy (shared by the tissue map of the
report and of ``metaniche.pl``, and the report's zoomable view; no matplotlib state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metaniche._atomic import atomic_path

__all__ = ["paint_cells", "paint_codes", "save_indexed_png", "save_quantized_png"]


def paint_codes(x: np.ndarray, y: np.ndarray, codes: np.ndarray, n_types: int,
                extent: tuple[float, float, float, float], width_px: int,
                dot_radius_px: int) -> np.ndarray:
    """Paint cells as square dots of their type code + 1 into an index raster.

    Parameters are those of :func:`paint_cells` (``n_types`` instead of the colours).

    Returns
    -------
    numpy.ndarray
        uint16, shape (height, width): 0 where no cell was painted, else 1 + the type code of
        the cell painted last there. Cells are painted in ascending order of their type's
        abundance, so rare types are on top. O(n · dot²).
    """
    x0, x1, y0, y1 = extent
    pixel = max((x1 - x0) / width_px, 1e-9)
    height_px = max(1, int(np.ceil((y1 - y0) / pixel)))
    image = np.zeros((height_px, width_px), dtype=np.uint16)
    if len(x) == 0:
        return image
    counts = np.bincount(codes, minlength=n_types)
    rank = np.argsort(np.argsort(-counts, kind="stable"), kind="stable")
    order = np.argsort(rank[codes], kind="stable")
    col = np.clip(((x[order] - x0) / pixel).astype(np.intp), 0, width_px - 1)
    row = np.clip(((y[order] - y0) / pixel).astype(np.intp), 0, height_px - 1)
    value = (codes[order] + 1).astype(np.uint16)
    for dr in range(-dot_radius_px, dot_radius_px + 1):
        for dc in range(-dot_radius_px, dot_radius_px + 1):
            image[np.clip(row + dr, 0, height_px - 1), np.clip(col + dc, 0, width_px - 1)] = value
    return image


def paint_cells(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colours: np.ndarray,
                extent: tuple[float, float, float, float], width_px: int,
                dot_radius_px: int) -> np.ndarray:
    """Paint cells as square dots into an RGBA raster (row 0 = smallest y).

    Parameters
    ----------
    x, y
        Cell centroids (µm), shape (n,).
    codes
        Integer type code per cell, indexing ``colours``.
    colours
        RGB in [0, 1] per type code, shape (n_types, 3).
    extent
        ``(x0, x1, y0, y1)`` in µm covered by the raster.
    width_px
        Raster width; the height keeps square pixels.
    dot_radius_px
        Half-size of each dot (0 = one pixel per cell).

    Returns
    -------
    numpy.ndarray
        uint8, shape (height, width, 4); alpha 0 where no cell was painted. Cells are painted
        in ascending order of their type's abundance, so rare types are on top
        (:func:`paint_codes`, then a colour lookup). O(n · dot²).
    """
    index = paint_codes(x, y, codes, len(colours), extent, width_px, dot_radius_px)
    rgba = np.concatenate([np.asarray(colours, dtype=np.float64).reshape(-1, 3) * 255,
                           np.full((len(colours), 1), 255)], axis=1)
    lookup = np.concatenate([np.zeros((1, 4)), rgba]).astype(np.uint8)
    return lookup[index]


def save_indexed_png(path: str | Path, index: np.ndarray, palette: np.ndarray,
                     compress_level: int = 6, text: dict[str, str] | None = None) -> None:
    """Write an index raster as a palette PNG (exact colours, a fraction of the RGB size).

    ``index`` (integers < len(palette) ≤ 256) selects rows of ``palette`` (uint8 RGB);
    ``compress_level`` is zlib's (9: about 5 % smaller, several times slower: for small
    images); ``text``: key → value stored as PNG text chunks. The file is written
    atomically.
    """
    from PIL import Image

    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    if len(palette) > 256:
        raise ValueError(f"a palette PNG holds at most 256 colours; got {len(palette)}.")
    image = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    image.putpalette(palette.ravel().tolist())
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=False, compress_level=compress_level,
                   pnginfo=_png_text(text))


def save_quantized_png(path: str | Path, rgba: np.ndarray, colours: int = 96,
                       method: str = "fastoctree", text: dict[str, str] | None = None) -> None:
    """Write a rendered figure (uint8 RGB(A) on white) as a palette PNG of at most
    ``colours`` colours (Pillow's quantizer ``method``: ``"fastoctree"``, fast, the
    anti-aliased edges of text and lines are the colours lost; ``"maxcoverage"``, closer on
    continuous colour maps, every pixel within a few levels), zlib level 9. About a
    quarter of the RGBA PNG's size. ``text``: key → value stored as PNG text chunks."""
    from PIL import Image

    rgb = np.asarray(rgba)[..., :3]
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    quantized = image.quantize(colors=colours, method=Image.Quantize[method.upper()],
                               dither=Image.Dither.NONE)
    with atomic_path(path, suffix=".png") as tmp:
        quantized.save(tmp, format="PNG", compress_level=9, pnginfo=_png_text(text))


def _png_text(text: dict[str, str] | None) -> Any:
    """Pillow's ``PngInfo`` holding ``text`` as text chunks (compressed: zTXt), or None."""
    if not text:
        return None
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value, zip=True)
    return info
