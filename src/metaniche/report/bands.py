"""Distance bands of the gradient profiles as the report draws them: merged, pooled, masked.

Defined in :mod:`metaniche.plotting.prepare` (shared with ``metaniche.pl``) and re-exported
here: every displayed bin whose band area is below :data:`MIN_BAND_AREA_MM2` is masked (not
drawn); the full-resolution table (``tables/gradients.parquet``) keeps every bin.
"""

from __future__ import annotations

from metaniche.plotting.prepare import (
    MAX_DISPLAY_BINS,
    MIN_BAND_AREA_MM2,
    merge_bins,
    pooled_profile,
)

__all__ = ["MAX_DISPLAY_BINS", "MIN_BAND_AREA_MM2", "merge_bins", "pooled_profile"]
