"""Cells painted into rasters: defined in :mod:`metaniche.plotting.paint` (shared with
``metaniche.pl``), re-exported for the report's modules."""

from __future__ import annotations

from metaniche.plotting.paint import (
    paint_cells,
    paint_codes,
    save_indexed_png,
    save_quantized_png,
)

__all__ = ["paint_cells", "paint_codes", "save_indexed_png", "save_quantized_png"]
