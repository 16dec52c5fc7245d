"""Small static SVG charts for the report pages: heatmap, small multiples, bars.

Why not matplotlib here: a cohort of hundreds of samples needs several charts per sample page,
and a matplotlib figure costs 0.1–0.5 s to lay out and save; these builders produce the same
charts as SVG text in about a millisecond, inline in the HTML (hover tooltips from ``<title>``;
the sample-page heatmaps store their hover numbers once and the page script writes the title
on hover, see :func:`heatmap`). Every piece of text that reaches the SVG goes
through :func:`esc`, so labels such as ``<script>`` stay inert text. Numbers and ticks
(:func:`fmt`, :func:`nice_ticks`, :func:`log_ticks`) are those of
:mod:`metaniche.plotting.style`, shared with the matplotlib figures and ``metaniche.pl``; the
data each chart shows is prepared by :mod:`metaniche.plotting.prepare`.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps

from metaniche.plotting.style import fmt, log_ticks, nice_ticks

__all__ = ["cell_image", "esc", "fmt", "grouped_hbars", "heatmap", "heatmap_tip", "log_ticks",
           "nice_ticks", "small_multiples", "stacked_bars", "tissue_map"]

_FONT = "font-family:system-ui,sans-serif"
_CHAR_PX = 6.2  # approximate width of one 11 px character
_MISSING = "#eeeeee"


def esc(text: object) -> str:
    """XML/HTML-escape any value for use in SVG text or attributes."""
    return html.escape(str(text), quote=True)


def _open(width: float, height: float, label: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(label)}" '
            f'style="{_FONT};font-size:11px">']


def _esc_single(text: str) -> str:
    """Escape ``text`` for a single-quoted XML/HTML attribute (``&``, ``'``, ``<``, ``>``;
    double quotes stay literal)."""
    return (text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _num(value: float) -> str:
    """A coordinate with at most one decimal and no trailing ``.0`` (``148``, ``89.4``)."""
    text = f"{value:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


@functools.lru_cache(maxsize=16)
def _colormap(name: str) -> Any:
    """``matplotlib.colormaps[name]``, looked up once: the registry returns a fresh copy on
    every lookup (0.57 ms, against 0.03 ms to apply it; two lookups per heatmap)."""
    return colormaps[name]


def _colours(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> list[str]:
    scale = (values - vmin) / (vmax - vmin) if vmax > vmin else np.full(values.shape, 0.5)
    rgb = np.rint(_colormap(cmap)(np.clip(np.nan_to_num(scale, nan=0.5), 0.0, 1.0))[:, :3]
                  * 255).astype(int)
    return [f"#{r:02x}{g:02x}{b:02x}" if ok else _MISSING
            for (r, g, b), ok in zip(rgb.tolist(), np.isfinite(values), strict=True)]


def _label_px(labels: Sequence[str], minimum: float = 20.0, cap: int = 40) -> float:
    return max([minimum] + [min(len(str(s)), cap) * _CHAR_PX + 8 for s in labels])


def _short(text: str, cap: int = 40) -> str:
    return text if len(text) <= cap else text[: cap - 1] + "…"


def heatmap(values: np.ndarray, rows: Sequence[str], columns: Sequence[str], *, title: str,
            cmap: str = "RdBu_r", vmin: float | None = None, vmax: float | None = None,
            unit: str = "", tooltips: Sequence[Sequence[str]] | None = None,
            cell_px: float = 18.0, tip_values: Mapping[str, np.ndarray] | None = None,
            tip_joiner: str = "×") -> str:
    """A labelled heatmap with a colour bar; NaN cells are light grey.

    Parameters
    ----------
    values
        Shape (len(rows), len(columns)).
    rows, columns
        Row and column labels (escaped).
    cmap, vmin, vmax
        Matplotlib colour map name and limits (default: data range; symmetric around 0 for
        diverging maps when both are None and the data has both signs).
    unit
        Shown under the colour bar.
    tooltips
        Optional hover text per cell, same shape as ``values`` (escaped).
    tip_values
        Compact hover text (instead of ``tooltips``): name → matrix shaped like ``values``.
        The numbers (3 significant digits, '–' for NaN) and labels go once into the
        ``data-tips`` attribute of the ``<svg>``, the cells are one image (:func:`cell_image`:
        a pixel per cell), and the page script (``_tips.js.html``) shows the hovered cell's
        text "row ``tip_joiner`` column: name value, …" ("… : not computed" when every value
        is NaN; :func:`heatmap_tip`) beside the pointer, so a 15 × 15 heatmap weighs a
        fifth of one with a ``<rect>`` and a stored title per cell. When rows and columns are
        the same labels and every matrix is symmetric (neighbourhood enrichment), each
        unordered pair is stored once (``"symmetric": 1``; about half the numbers).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if vmin is None or vmax is None:
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if cmap in ("RdBu_r", "coolwarm", "bwr") and low < 0 < high:
            high = max(abs(low), high)
            low = -high
        vmin = low if vmin is None else vmin
        vmax = high if vmax is None else vmax
    left = _label_px(rows)
    top = _label_px(columns) + 22
    width = left + cell_px * len(columns) + 90
    height = max(top + cell_px * len(rows) + 10, top + 130)
    out = _open(width, height, title)
    colours = _colours(values.ravel(), cmap, vmin, vmax)
    if tip_values is not None:
        names = list(tip_values)
        arrays = [np.asarray(tip_values[n], dtype=np.float64) for n in names]
        text = [[" ".join(fmt(a[i, j]) for a in arrays) for j in range(len(columns))]
                for i in range(len(rows))]
        # a symmetric statistic (same labels both ways, every cell's text that of its mirror
        # cell: the numbers as shown, so rounding noise in the last bits does not count)
        # stores each unordered pair once: row i holds columns i.. only
        symmetric = (list(map(str, rows)) == list(map(str, columns))
                     and all(text[i][j] == text[j][i] for i in range(len(rows))
                             for j in range(i)))
        # one string: rows split by ';', cells by '|', a cell's numbers by ' ' (fmt never
        # writes those characters), so the attribute carries no quote per number
        cells = ";".join("|".join(row[i if symmetric else 0:]) for i, row in enumerate(text))
        data: dict[str, Any] = {"rows": [str(r) for r in rows],
                                "cols": [str(c) for c in columns], "names": names,
                                "joiner": tip_joiner, "values": cells}
        if symmetric:
            data["symmetric"] = 1
        packed = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        # single-quoted, so the JSON's many double quotes need no escaping
        out[0] = out[0][:-1] + f" class=\"heatmap\" data-tips='{_esc_single(packed)}'>"
    out.append(f'<text x="2" y="14" font-weight="bold">{esc(title)}</text>')
    if tip_values is not None:
        # every cell one pixel of a PNG scaled up without smoothing: ~60 bytes per cell as
        # <rect> elements, a few hundred bytes for the whole grid as an image
        out.append(f'<g class="cells" transform="translate({left:.1f},{top:.1f}) '
                   f'scale({cell_px:.1f})"><image x="0" y="0" width="{len(columns)}" '
                   f'height="{len(rows)}" preserveAspectRatio="none" '
                   f'style="image-rendering:pixelated" '
                   f'href="{cell_image(colours, len(rows), len(columns))}"/></g>')
    # labels share their anchor and x through their group
    out.append(f'<g text-anchor="end" transform="translate({left - 4:.0f},0)">' + "".join(
        f'<text y="{_num(top + i * cell_px + cell_px * 0.7)}">'
        f'{esc(_short(str(row)))}</text>' for i, row in enumerate(rows)) + "</g>")
    for i, row in enumerate(rows):
        y = top + i * cell_px
        for j, column in enumerate(columns):
            if tip_values is not None:
                break
            tip = (tooltips[i][j] if tooltips is not None
                   else f"{row} × {column}: {fmt(values[i, j])} {unit}")
            out.append(f'<rect x="{left + j * cell_px:.1f}" y="{y:.1f}" width="{cell_px:.1f}" '
                       f'height="{cell_px:.1f}" fill="{colours[i * len(columns) + j]}">'
                       f'<title>{esc(tip)}</title></rect>')
    # column labels read upwards: a group rotated once, each label at (−y, x) in its frame
    out.append(f'<g transform="rotate(-90) translate({-(top - 4):.0f},0)">' + "".join(
        f'<text y="{_num(left + (j + 0.5) * cell_px + 4)}">'
        f'{esc(_short(str(column)))}</text>' for j, column in enumerate(columns)) + "</g>")
    out.extend(_colour_bar(left + cell_px * len(columns) + 14, top, cmap, vmin, vmax, unit))
    out.append("</svg>")
    return "".join(out)


def cell_image(colours: Sequence[str], n_rows: int, n_cols: int) -> str:
    """The heatmap's cells as a ``data:`` URI of an ``n_cols`` × ``n_rows`` RGB PNG, one pixel
    per cell, row-major ``colours`` (``#rrggbb``) (written by Pillow, matplotlib's own PNG
    writer)."""
    import base64
    import io

    from PIL import Image

    rgb = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)] for c in colours],
                   dtype=np.uint8).reshape(n_rows, n_cols, 3)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heatmap_tip(data: Mapping[str, Any], i: int, j: int) -> str:
    """The hover text of cell (i, j) of a compact heatmap's ``data-tips`` (parsed JSON:
    ``rows``, ``cols``, ``names``, ``joiner`` and ``values``, the numbers as one string,
    rows split by ';', cells by '|', a cell's numbers by ' '; with ``symmetric`` row i holds
    columns i.. only and cell (i, j), j < i, is read as (j, i)), as the page script writes
    it (the one definition both follow)."""
    row, column = (j, i) if data.get("symmetric") and j < i else (i, j)
    offset = row if data.get("symmetric") else 0
    values = data["values"].split(";")[row].split("|")[column - offset].split(" ")
    head = f"{data['rows'][i]} {data['joiner']} {data['cols'][j]}: "
    if all(v == "–" for v in values):
        return head + "not computed"
    return head + ", ".join(f"{n} {v}" for n, v in zip(data["names"], values, strict=True))


def _colour_bar(x: float, y: float, cmap: str, vmin: float, vmax: float,
                unit: str) -> list[str]:
    steps = 20
    h = 5.0
    shades = _colours(np.linspace(vmax, vmin, steps), cmap, vmin, vmax)
    # the 20 shades as one 1 × 20 image (:func:`cell_image`) stretched over the bar
    out = [f'<image x="{_num(x)}" y="{_num(y)}" width="12" height="{steps * h:g}" '
           'preserveAspectRatio="none" style="image-rendering:pixelated" '
           f'href="{cell_image(shades, steps, 1)}"/>']
    out.append(f'<text x="{x + 16:.1f}" y="{y + 8:.1f}">{esc(fmt(vmax))}</text>')
    out.append(f'<text x="{x + 16:.1f}" y="{y + steps * h:.1f}">{esc(fmt(vmin))}</text>')
    if unit:
        out.append(f'<text x="{x:.1f}" y="{y + steps * h + 16:.1f}">{esc(unit)}</text>')
    return out


def small_multiples(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], *, title: str,
                    xlabel: str, ylabel: str, band: tuple[float, float] | None = None,
                    vline: float | None = None, ncols: int = 4, panel_px: tuple[int, int] = (
                        190, 110), colour: str = "#1f5fa8",
                    intervals: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
                    ) -> str:
    """One line chart per panel (own y scale from 0), shared x range; x and y ticks are
    labelled at round values (0 among them when in range).

    Each panel is a ``<g>`` translated to its corner, so its coordinates are local and short;
    what every panel shares (frame, x ticks and their labels, band, reference line) is
    drawn once in ``<defs>`` and placed by ``<use>``; tick labels share their anchor through
    a group, and coordinates carry at most one decimal (:func:`_num`).

    Parameters
    ----------
    panels
        ``(label, x, y)`` per panel; NaN y values break the line. A label with a newline
        is written on two lines (each cut at 30 characters).
    band
        Optional x interval shaded in every panel (e.g. the border band).
    vline
        Optional x position of a vertical reference line (e.g. the tumour boundary, 0).
    intervals
        Optional ``{label: (low, high)}`` aligned with a panel's x: drawn as a shaded band
        under its line. The y scale stays the line's, so a band taller than the panel is
        cut at its top edge (the line is what the scale is for; a band reaching the edge
        reads as "at least this uncertain").
    """
    pw, ph = panel_px
    two_lines = any("\n" in str(p[0]) for p in panels)
    pad_l, pad_b, pad_t = 44, 18, 28 if two_lines else 16
    pw, ph = max(pw, 40), max(ph, 40)
    xs = [np.asarray(p[1], dtype=np.float64) for p in panels]
    all_x = np.concatenate(xs) if xs else np.zeros(1)
    x0, x1 = float(np.nanmin(all_x)), float(np.nanmax(all_x))
    x1 = x1 if x1 > x0 else x0 + 1.0
    x_ticks = nice_ticks(x0, x1, 5)
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    cell_w, cell_h = pw + pad_l + 10, ph + pad_b + pad_t + 6

    def px(v: np.ndarray | float) -> np.ndarray:
        return np.asarray((np.asarray(v) - x0) / (x1 - x0) * pw)

    # identical in every panel (shared x range): drawn once in <defs>, placed by <use>
    x_tick_px = [float(px(t)) for t in x_ticks]
    shared = ""
    if band is not None:
        b0, b1 = (float(np.clip(px(b), 0, pw)) for b in band)
        shared += (f'<rect x="{_num(b0)}" width="{_num(b1 - b0)}" height="{ph}" '
                   'fill="#f6d8a8" opacity="0.6"/>')
    if vline is not None and x0 <= vline <= x1:
        shared += (f'<path d="M{_num(float(px(vline)))} 0v{ph}" stroke="#333" '
                   'stroke-dasharray="3,2"/>')
    shared += (f'<path d="M0 0h{pw}v{ph}H0z' + "".join(f"M{_num(tx)} {ph}v3" for tx in x_tick_px)
               + f'" fill="none" stroke="#999"/><g text-anchor="middle" '
               f'transform="translate(0,{ph + 13})">'
               + "".join(f'<text x="{_num(tx)}">{esc(fmt(t))}</text>'
                         for tx, t in zip(x_tick_px, x_ticks, strict=True)) + "</g>")
    # an id unique to this content, so charts inline in one page never clash (two charts with
    # the same id have the same content)
    uid = "sm" + hashlib.sha1((title + shared).encode("utf-8")).hexdigest()[:10]
    width, height = ncols * cell_w, nrows * cell_h + 40
    out = _open(width, height, title)
    out.append(f'<defs><g id="{uid}">{shared}</g></defs>')
    out.append(f'<text x="2" y="14" font-weight="bold">{esc(title)}</text>')
    out.append(f'<text x="2" y="{height - 6:.0f}" fill="#555">x: {esc(xlabel)}; '
               f'y: {esc(ylabel)}</text>')
    for k, (label, x, y) in enumerate(panels):
        ox = (k % ncols) * cell_w + pad_l
        oy = (k // ncols) * cell_h + pad_t + 22
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        top = float(np.nanmax(y)) if np.isfinite(y).any() else 0.0
        top = top if top > 0 else 1.0

        def py(v: np.ndarray | float, top: float = top) -> np.ndarray:
            return np.asarray(ph - np.asarray(v) / top * ph)

        y_ticks = nice_ticks(0.0, top, 3)
        y_tick_px = [float(py(t)) for t in y_ticks]
        out.append(f'<g transform="translate({ox},{oy})">'
                   + _panel_title(str(label))
                   + f'<use href="#{uid}"/><path d="'
                   + "".join(f"M-3 {_num(ty)}h3" for ty in y_tick_px)
                   + '" stroke="#999"/><g text-anchor="end">'
                   + "".join(f'<text x="-5" y="{_num(ty + 4)}">{esc(fmt(t))}</text>'
                             for ty, t in zip(y_tick_px, y_ticks, strict=True))
                   + "</g>")
        if intervals is not None and str(label) in intervals:
            low, high = (np.asarray(v, dtype=np.float64) for v in intervals[str(label)])
            out.extend(_bands(px(x), np.clip(py(low), 0, ph), np.clip(py(high), 0, ph),
                              colour))
        out.extend(_polylines(px(x), py(y), colour))
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _relative_path(px: np.ndarray, py: np.ndarray) -> str:
    """SVG path data through the points at whole pixels: ``M x0 y0`` then relative ``l``
    steps (``dx dy`` pairs, the sign as separator where negative).

    Rounding the absolute positions first and stepping between the rounded values lands every
    point on its own whole pixel (no drift). A step of a gradient panel is 1–2 characters per
    number against 3 for an absolute coordinate: with the gradient bands drawn in every panel,
    the 150-sample report weighed 10.40 MB against 10.68 MB with ``<polyline points>`` and
    absolute band coordinates.
    """
    x = np.rint(px).astype(np.int64)
    y = np.rint(py).astype(np.int64)
    steps = np.column_stack([np.diff(x), np.diff(y)]).ravel()
    text = "".join(f"{v}" if v < 0 else f" {v}" for v in steps.tolist()).lstrip(" ")
    return f"M{x[0]} {y[0]}" + (f"l{text}" if steps.size else "")


def _runs(ok: np.ndarray) -> list[np.ndarray]:
    """Index runs of consecutive True values of ``ok``."""
    breaks = np.flatnonzero(np.diff(ok.astype(np.int8)) != 0) + 1
    return [segment for segment in np.split(np.arange(len(ok)), breaks)
            if segment.size and ok[segment[0]]]


def _panel_title(label: str) -> str:
    """A panel's title above its frame: one line, or two when the label holds a newline
    (each line cut at 30 characters, the width of a panel)."""
    lines = label.split("\n")[:2]
    return "".join(f'<text y="{-4 - 12 * (len(lines) - 1 - k)}" font-weight="600">'
                   f"{esc(_short(line, 30))}</text>" for k, line in enumerate(lines))


def _bands(px: np.ndarray, low: np.ndarray, high: np.ndarray, colour: str) -> list[str]:
    """One filled ``<path>`` per run of bins with a finite interval (upper edge forwards,
    lower edge back), at whole pixels (:func:`_relative_path`)."""
    out = []
    for segment in _runs(np.isfinite(low) & np.isfinite(high)):
        d = _relative_path(np.r_[px[segment], px[segment][::-1]],
                           np.r_[high[segment], low[segment][::-1]])
        out.append(f'<path d="{d}Z" fill="{colour}" fill-opacity="0.18" stroke="none"/>')
    return out


def _polylines(px: np.ndarray, py: np.ndarray, colour: str) -> list[str]:
    """One line (a ``<path>``, :func:`_relative_path`) per run of finite points, a dot for a
    run of one, at whole pixels (no hover title: the panel's label is written right above
    it)."""
    # whole pixels: a line in a ~200 × 110 px panel, its numbers in the tables. A point
    # alone between gaps would draw nothing as a line: it is a dot.
    out = []
    for segment in _runs(np.isfinite(py)):
        if segment.size == 1:
            out.append(f'<circle class="line" cx="{px[segment[0]]:.0f}" '
                       f'cy="{py[segment[0]]:.0f}" r="2" fill="{colour}"/>')
        else:
            out.append(f'<path class="line" d="{_relative_path(px[segment], py[segment])}" '
                       f'fill="none" stroke="{colour}" stroke-width="1.5"/>')
    return out


def grouped_hbars(categories: Sequence[str], groups: Sequence[str], values: np.ndarray, *,
                  title: str, colours: Sequence[str], unit: str, bar_px: float = 8.0,
                  plot_px: float = 480.0, log: bool = True, tooltips: bool = True) -> str:
    """Horizontal grouped bars: one block per category, one bar per group.

    ``values`` has shape (len(categories), len(groups)); NaN bars are omitted. With ``log``
    (default) the axis is logarithmic from the decade at or below the smallest positive value
    to the decade at or above the largest, ticks labelled at every decade (and 2, 5 between
    them when the range spans under two decades), so 4 cells/mm² stays visible beside 2,500;
    zero values are drawn as a short grey mark at the axis start labelled 0 in the tooltip.
    Without ``log`` the axis is linear from 0 with round ticks. ``tooltips``: each bar's
    value as its hover title (off when a table beside the chart holds the numbers). Bars are
    grouped by ``groups`` (one ``<g>`` per group, its colour as the fill), in category order.
    """
    values = np.asarray(values, dtype=np.float64)
    left = _label_px(categories)
    top = 40.0
    block = bar_px * len(groups) + 6
    positive = values[np.isfinite(values) & (values > 0)]
    if log and positive.size:
        lo = 10.0 ** np.floor(np.log10(positive.min()))
        hi = 10.0 ** np.ceil(np.log10(positive.max()))
        hi = hi if hi > lo else lo * 10

        def to_px(v: float) -> float:
            return float(np.log10(v / lo) / np.log10(hi / lo) * plot_px) if v > 0 else 0.0

        ticks = log_ticks(lo, hi)
    else:
        vmax = float(positive.max()) if positive.size else 1.0
        ticks = nice_ticks(0.0, vmax, 5)
        hi = max(vmax, float(ticks[-1]))

        def to_px(v: float) -> float:
            return float(v / hi * plot_px)

    width = left + plot_px + 40
    height = top + block * len(categories) + 36
    out = _open(width, height, title)
    out.append(f'<text x="2" y="14" font-weight="bold">{esc(title)}</text>')
    lx = left
    for group, colour in zip(groups, colours, strict=True):
        out.append(f'<rect x="{lx:.0f}" y="22" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 13:.0f}" y="31">{esc(group)}</text>')
        lx += 13 + len(str(group)) * _CHAR_PX + 14
    axis_y = top + block * len(categories) + 2
    tick_px = [left + to_px(float(tick)) for tick in ticks]
    out.append('<path d="' + "".join(f"M{_num(tx)} {top - 2:.0f}V{axis_y + 3:.0f}"
                                     for tx in tick_px) + '" stroke="#e6e6e6"/>')
    out.append(f'<g text-anchor="middle" transform="translate(0,{axis_y + 14:.0f})">'
               + "".join(f'<text x="{_num(tx)}">{esc(fmt(float(t)))}</text>'
                         for tx, t in zip(tick_px, ticks, strict=True)) + "</g>")
    out.append(f'<g text-anchor="end" transform="translate({left - 4:.0f},0)">'
               + "".join(f'<text y="{_num(top + i * block + block / 2 + 2)}">'
                         f'{esc(_short(str(category)))}</text>'
                         for i, category in enumerate(categories)) + "</g>")
    # one group per compartment colour, bars at local x 0 (the axis start)
    for j, (group, colour) in enumerate(zip(groups, colours, strict=True)):
        out.append(f'<g transform="translate({left:.0f},0)" fill="{colour}">')
        for i, category in enumerate(categories):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            y = _num(top + i * block + j * bar_px)
            end = (f"><title>{esc(f'{category}, {group}: {fmt(v)} {unit}')}</title></rect>"
                   if tooltips else "/>")
            if v > 0:
                out.append(f'<rect y="{y}" width="{_num(max(to_px(v), 1.0))}" '
                           f'height="{_num(bar_px - 1)}"' + end)
            else:
                out.append(f'<rect y="{y}" width="2" height="{_num(bar_px - 1)}" '
                           'fill="#bbbbbb"' + end)
        out.append("</g>")
    out.append(f'<path d="M{left:.0f} {axis_y:.0f}h{plot_px:.0f}" stroke="#999"/>')
    scale = "log scale" if log and positive.size else "linear scale"
    out.append(f'<text x="{left + plot_px / 2:.0f}" y="{axis_y + 30:.0f}" '
               f'text-anchor="middle">{esc(unit)} ({scale})</text>')
    out.append("</svg>")
    return "".join(out)


def stacked_bars(bars: Sequence[str], segments: Sequence[str], fractions: np.ndarray, *,
                 title: str, colours: Sequence[str], plot_px: float = 360.0) -> str:
    """Horizontal 100 % stacked bars (one per ``bars`` label, segments in order).

    ``fractions`` has shape (len(bars), len(segments)); each row is drawn as given (rows are
    expected to sum to 1; NaN counts as 0).
    """
    fractions = np.nan_to_num(np.asarray(fractions, dtype=np.float64))
    left = _label_px(bars)
    top = 22.0 + 16 * (-(-len(segments) // 6))
    height = top + 22 * len(bars) + 28
    width = left + plot_px + 20
    out = _open(width, height, title)
    out.append(f'<text x="2" y="14" font-weight="bold">{esc(title)}</text>')
    for k, (segment, colour) in enumerate(zip(segments, colours, strict=True)):
        lx = 2 + (k % 6) * 100
        ly = 22 + (k // 6) * 16
        out.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{colour}"/>'
                   f'<text x="{lx + 13}" y="{ly + 9}">{esc(_short(str(segment), 14))}</text>')
    for i, bar in enumerate(bars):
        y = top + 6 + i * 22
        out.append(f'<text x="{left - 4:.0f}" y="{y + 12:.0f}" text-anchor="end">'
                   f'{esc(_short(str(bar)))}</text>')
        x = left
        for segment, colour, f in zip(segments, colours, fractions[i], strict=True):
            w = f * plot_px
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y:.0f}" width="{w:.1f}" height="16" '
                           f'fill="{colour}"><title>{esc(f"{bar}, {segment}: {f:.1%}")}'
                           '</title></rect>')
            x += w
    out.append("</svg>")
    return "".join(out)


#: Largest width and height of the tissue map's plot area (SVG units, about CSS pixels).
MAP_PLOT_PX = (560, 620)


def tissue_map(info: Mapping[str, Any], src: str) -> str:
    """The sample's tissue map: the painted PNG ``src`` in a frame with µm axes, the lesion
    ids at their centroids and the dashed aggregate outlines drawn over it.

    ``info`` is the map's description (:func:`metaniche.report.zoom.read_map_info`): image
    size (px), extent (µm; row 0 of the image is y0, so y grows downward as in the source
    image), title, number of cells, lesions and outlines. Ticks at round µm values, 0 among
    them when in range (:func:`nice_ticks`). The legend is HTML beside it (the sample
    page). The plot area is at most :data:`MAP_PLOT_PX` in SVG units (the image keeps its
    own resolution inside it), so the 11 px text stays about that size where the page
    shows the map.
    """
    x0, x1, y0, y1 = (float(v) for v in info["extent_um"])
    scale = min(MAP_PLOT_PX[0] / int(info["width_px"]), MAP_PLOT_PX[1] / int(info["height_px"]))
    pw, ph = round(int(info["width_px"]) * scale), round(int(info["height_px"]) * scale)
    left, top, bottom, right = 52, 24, 36, 10
    sx, sy = pw / (x1 - x0), ph / (y1 - y0)
    title = f"{info['title']} — {int(info['n_cells']):,} cells"
    width, height = left + pw + right, top + ph + bottom
    out = _open(width, height, f"tissue map of {info['title']}")
    out[0] = out[0].replace("<svg ", '<svg class="tissue-map" ', 1)
    out.append(f'<text x="{left}" y="15" font-weight="bold">{esc(_short(title, 90))}</text>')
    out.append(f'<g transform="translate({left},{top})">')
    out.append(f'<image href="{esc(src)}" width="{pw}" height="{ph}" '
               'preserveAspectRatio="none"/>')
    for outline in info.get("outlines", []):
        points = " ".join(f"{_num((a - x0) * sx)},{_num((b - y0) * sy)}"
                          for a, b in outline["points"])
        out.append(f'<polygon points="{points}" fill="none" stroke="{esc(outline["colour"])}" '
                   'stroke-width="1.5" stroke-dasharray="5,3"/>')
    for lesion in info.get("lesions", []):
        cx, cy = (lesion["x"] - x0) * sx, (lesion["y"] - y0) * sy
        if 0 <= cx <= pw and 0 <= cy <= ph:
            out.append(f'<g transform="translate({_num(cx)},{_num(cy)})"><circle r="9" '
                       'fill="#000" fill-opacity="0.7"/><text y="4" text-anchor="middle" '
                       f'fill="#fff" font-weight="bold">{esc(_short(lesion["id"], 4))}</text></g>')
    x_ticks = [t for t in nice_ticks(x0, x1, 6) if x0 <= t <= x1]
    y_ticks = [t for t in nice_ticks(y0, y1, 6) if y0 <= t <= y1]
    xs = [(t - x0) * sx for t in x_ticks]
    ys = [(t - y0) * sy for t in y_ticks]
    out.append(f'<path d="M0 0h{pw}v{ph}H0z' + "".join(f"M{_num(v)} {ph}v4" for v in xs)
               + "".join(f"M-4 {_num(v)}h4" for v in ys) + '" fill="none" stroke="#666"/>')
    out.append(f'<g text-anchor="middle" transform="translate(0,{ph + 15})">'
               + "".join(f'<text x="{_num(v)}">{esc(fmt(t))}</text>'
                         for v, t in zip(xs, x_ticks, strict=True)) + "</g>")
    out.append('<g text-anchor="end">'
               + "".join(f'<text x="-6" y="{_num(v + 4)}">{esc(fmt(t))}</text>'
                         for v, t in zip(ys, y_ticks, strict=True)) + "</g>")
    out.append(f'<text x="{_num(pw / 2)}" y="{ph + 30}" text-anchor="middle">x (µm)</text>')
    out.append(f'<text transform="translate({-left + 12},{_num(ph / 2)}) rotate(-90)" '
               'text-anchor="middle">y (µm)</text>')
    out.append("</g></svg>")
    return "".join(out)
