"""Colours, number formatting, ticks and log axes shared by every figure of the report and of
``metaniche.pl`` (matplotlib and the report's hand-written SVG charts alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import color_sequences
from matplotlib.colors import to_hex

from metaniche.analyses.compartments import ADJACENT, BORDER, CORE, WHOLE

__all__ = [
    "BACKGROUND_COLOUR",
    "COMPARTMENT_COLOURS",
    "TUMOUR_COLOUR",
    "categorical",
    "floor_zeros",
    "fmt",
    "log_axis",
    "log_range",
    "log_ticks",
    "mpl_text",
    "nice_ticks",
    "type_colours",
]

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


def fmt(value: float) -> str:
    """A number in at most 3 significant digits (thousands separated), '–' for NaN."""
    if value is None or not np.isfinite(value):
        return "–"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.2e}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def nice_ticks(low: float, high: float, n: int = 5) -> np.ndarray:
    """Round tick positions (1, 2, 2.5 or 5 × 10^k apart) covering [low, high]; 0 is a tick
    whenever the range contains it."""
    if not (np.isfinite(low) and np.isfinite(high)) or high <= low:
        return np.array([low]) if np.isfinite(low) else np.array([])
    raw = (high - low) / max(n - 1, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    step = power * min((m for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw),
                       default=10.0)
    ticks = np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)
    return np.round(ticks, 10) + 0.0   # + 0.0: -0.0 (from ceil of a small negative) is 0


def log_ticks(low: float, high: float) -> np.ndarray:
    """Decade ticks 10^k within [low, high] (low > 0); with fewer than two decades also the
    1-2-5 steps between them."""
    k0, k1 = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    decades = 10.0 ** np.arange(k0, k1 + 1)
    ticks = decades if k1 - k0 >= 2 else np.concatenate([decades * m for m in (1, 2, 5)])
    ticks = np.sort(ticks)
    return ticks[(ticks >= low * (1 - 1e-9)) & (ticks <= high * (1 + 1e-9))]


def log_range(values: np.ndarray) -> tuple[float, float, float]:
    """Decade limits of the positive finite ``values`` and the level where zeros are drawn.

    Returns ``(low, high, zero_at)``: the decade at or below the smallest positive value, the
    decade at or above the largest (at least one decade above ``low``), and ``low / 2.5``,
    the height of the line labelled 0 that stands for zero values on a log axis.
    """
    values = np.asarray(values, dtype=np.float64)
    positive = values[np.isfinite(values) & (values > 0)]
    low = 10.0 ** np.floor(np.log10(positive.min())) if positive.size else 1.0
    high = 10.0 ** np.ceil(np.log10(positive.max())) if positive.size else 10.0
    high = high if high > low else low * 10
    return float(low), float(high), float(low / 2.5)


def log_axis(ax: Any, low: float, high: float, zero_at: float | None = None) -> None:
    """Log y axis from ``low`` to ``high`` with every decade labelled in plain numbers
    (:func:`log_ticks`, :func:`fmt`); a ``zero_at`` line labelled 0 stands for zero values."""
    from matplotlib.ticker import FixedLocator, NullFormatter

    ax.set_yscale("log")
    ticks = list(log_ticks(low, high))
    labels = [fmt(t) for t in ticks]
    if zero_at is not None:
        ticks, labels = [zero_at, *ticks], ["0", *labels]
        ax.axhline(zero_at, color="#bbb", lw=0.6, ls=":", zorder=0)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticklabels(labels)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(zero_at / 1.6 if zero_at is not None else low, high)


def floor_zeros(values: np.ndarray, zero_at: float) -> np.ndarray:
    """Values for a log axis: zeros drawn at ``zero_at`` (the line labelled 0), NaN kept."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(values > 0, values, np.where(np.isfinite(values), zero_at, np.nan))
