"""Colours of the report: compartments and a categorical palette for cell types.

Defined once in :mod:`metaniche.plotting.style` (shared with ``metaniche.pl``); re-exported
here for the report's modules.
"""

from __future__ import annotations

from metaniche.plotting.style import (
    BACKGROUND_COLOUR,
    COMPARTMENT_COLOURS,
    TUMOUR_COLOUR,
    categorical,
    mpl_text,
    type_colours,
)

__all__ = ["BACKGROUND_COLOUR", "COMPARTMENT_COLOURS", "TUMOUR_COLOUR", "categorical", "mpl_text",
           "type_colours"]
