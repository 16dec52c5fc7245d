"""Colours of the report: compartments and a categorical palette for cell types."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib import color_sequences
from matplotlib.colors import to_hex

from metaniche.analyses.compartments import ADJACENT, BORDER, CORE, WHOLE

__all__ = ["BACKGROUND_COLOUR", "COMPARTMENT_COLOURS", "TUMOUR_COLOUR", "categorical", "mpl_text",
           "type_colours"]

COMPARTMENT_COLOURS = {CORE: "#c0392b", BORDER: "#f39c12", ADJACENT: "#7f8c8d",
                       WHOLE: "#34495e"}
#: Tumour cells are drawn in a light neutral so immune cells stand out on the map.
TUMOUR_COLOUR = "#e3b8b8"
#: Abundant host cells (hepatocytes, …) recede into the background.
BACKGROUND_COLOUR = "#c9d3da"


def categorical(n: int) -> list[str]:
    """``n`` distinguishable colours (tab10, then tab20's light shades, then repeating)."""
    base = [to_hex(c) for c in color_sequences["tab10"]]
    light = [to_hex(c) for c in color_sequences["tab20"][1::2]]
    extra = [to_hex(c) for c in color_sequences["Dark2"]]
    palette = base + light + extra
    return [palette[i % len(palette)] for i in range(n)]


def type_colours(cell_types: Sequence[str], tumour_types: Sequence[str] = (),
                 background_types: Sequence[str] = ()) -> dict[str, str]:
    """Cell type → colour: tumour types tan, abundant host types (``background_types``, e.g.
    hepatocytes) light grey-blue, the rest categorical in the given order."""
    muted = {t: TUMOUR_COLOUR for t in tumour_types} | {t: BACKGROUND_COLOUR
                                                         for t in background_types}
    others = [t for t in cell_types if t not in muted]
    colours = dict(zip(others, categorical(len(others)), strict=True))
    return {t: muted.get(t) or colours[t] for t in cell_types}


def mpl_text(text: object) -> str:
    """User text made literal for matplotlib (``$`` would start mathtext and can raise)."""
    return str(text).replace("$", r"\$")
