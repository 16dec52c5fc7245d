"""Virtual biopsies: needle cores and round punches (TMA cores) cut from any cell table.

A **needle core** is a rectangle ``length_um × diameter_um`` (the core's long axis and its
width in the section plane) centred at ``(centre_x, centre_y)`` and rotated by ``angle_rad``
(counter-clockwise from the x axis). A **punch** is a disc of diameter ``diameter_um``
(a TMA core or skin punch). Membership is exact and closed: a cell exactly on the outline is
inside (``|u| <= L/2`` and ``|v| <= W/2`` in the core's frame for a needle, ``distance <=
D/2`` for a punch), as :func:`shapely.covers` decides for the rectangle polygon. A core that
runs off the slide keeps only the cells on the slide (nothing is extrapolated).

Placement: a core's centre is a cell drawn uniformly at random (so a core always hits
tissue and the sampling is area-weighted), optionally only among the cells within
``diameter_um / 2`` of the tumour edge (``target="edge"``: a biopsy aimed at the invasive
margin; needs each cell's signed distance to the tumour boundary); the angle is uniform on
``[0, π)``.

References
----------
1. Kather JN, et al. Topography of cancer-associated immune cells in human solid tumors.
   eLife. 2018;7:e36967 (needle biopsy vs whole slide: immune topography under-sampled).
2. Camp RL, Charette LA, Rimm DL. Validation of tissue microarray technology in breast
   carcinoma. Lab Invest. 2000;80:1943-9 (how many TMA cores represent a whole section).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from metaniche._atomic import write_json, write_parquet
from metaniche._contract import CONTRACT_COLUMNS
from metaniche.config import Config
from metaniche.sample import build_context

__all__ = ["KINDS", "TARGETS", "Core", "cores_geojson", "cut_cores", "inside_core",
           "place_cores", "write_biopsies"]

#: Kinds of biopsy: a needle core (rectangle) or a round punch / TMA core (disc).
KINDS: tuple[str, ...] = ("needle", "punch")
#: Where cores are aimed: anywhere in the tissue, or at the tumour edge.
TARGETS: tuple[str, ...] = ("random", "edge")
#: Segments per quarter circle of a punch's outline polygon (drawing only; membership is exact).
_QUAD_SEGS = 64


@dataclass(frozen=True)
class Core:
    """One virtual biopsy core.

    Attributes
    ----------
    sample : str
        Sample (slide) it is cut from.
    core : int
        1-based index within the sample.
    kind : {'needle', 'punch'}
        Rectangle or disc.
    centre_x, centre_y : float
        Centre, µm.
    angle_rad : float
        Long-axis angle, radians counter-clockwise from +x (0 for a punch).
    diameter_um : float
        Needle width / punch diameter, µm.
    length_um : float
        Needle length, µm (equal to ``diameter_um`` for a punch).
    """

    sample: str
    core: int
    kind: str
    centre_x: float
    centre_y: float
    angle_rad: float
    diameter_um: float
    length_um: float

    def polygon(self) -> shapely.Polygon:
        """The outline in µm: the exact rectangle, or the disc with 256 vertices (drawing)."""
        if self.kind == "punch":
            return shapely.Point(self.centre_x, self.centre_y).buffer(
                self.diameter_um / 2, quad_segs=_QUAD_SEGS)
        half_l, half_w = self.length_um / 2, self.diameter_um / 2
        corners = np.array([[-half_l, -half_w], [half_l, -half_w], [half_l, half_w],
                            [-half_l, half_w]])
        c, s = np.cos(self.angle_rad), np.sin(self.angle_rad)
        rotated = corners @ np.array([[c, s], [-s, c]])
        return shapely.Polygon(rotated + np.array([self.centre_x, self.centre_y]))


def inside_core(x: np.ndarray, y: np.ndarray, core: Core) -> np.ndarray:
    """Boolean mask of the points inside ``core`` (closed: the outline counts as inside).

    Needle: with ``u = (x − cx) cos θ + (y − cy) sin θ`` and ``v = −(x − cx) sin θ +
    (y − cy) cos θ`` the point is inside when ``|u| <= L/2`` and ``|v| <= W/2``. Punch:
    ``(x − cx)² + (y − cy)² <= (D/2)²``. Vectorised, O(n).
    """
    dx = np.asarray(x, dtype=np.float64) - core.centre_x
    dy = np.asarray(y, dtype=np.float64) - core.centre_y
    if core.kind == "punch":
        return dx * dx + dy * dy <= (core.diameter_um / 2) ** 2
    c, s = np.cos(core.angle_rad), np.sin(core.angle_rad)
    u = dx * c + dy * s
    v = -dx * s + dy * c
    return (np.abs(u) <= core.length_um / 2) & (np.abs(v) <= core.diameter_um / 2)


def place_cores(sample: str, x: np.ndarray, y: np.ndarray, n_cores: int, diameter_um: float,
                length_um: float | None = None, *, kind: str = "needle",
                target: str = "random", signed_distance_um: np.ndarray | None = None,
                rng: np.random.Generator | int | None = 0) -> list[Core]:
    """Draw ``n_cores`` core positions and angles on one slide.

    Parameters
    ----------
    sample
        Slide name written to each :class:`Core`.
    x, y
        Cell centroids, µm.
    n_cores
        Number of cores (>= 1).
    diameter_um
        Needle width or punch diameter, µm (> 0).
    length_um
        Needle length, µm (> 0); ignored for a punch. Default: ``diameter_um``.
    kind : {'needle', 'punch'}, default 'needle'
    target : {'random', 'edge'}, default 'random'
        ``random``: the centre is a uniformly drawn cell; ``edge``: a uniformly drawn cell
        with ``|signed_distance_um| <= diameter_um / 2`` (all cells when none is that close).
    signed_distance_um
        Per-cell signed distance to the tumour boundary (negative inside); required for
        ``target='edge'``.
    rng
        Generator or seed. Draws: one cell index per core, then one angle per core.

    Returns
    -------
    list of Core
        Numbered 1..n_cores.

    Raises
    ------
    ValueError
        On a bad argument (message names it and the allowed values).
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(KINDS)}; got {kind!r}.")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {', '.join(TARGETS)}; got {target!r}.")
    if not (isinstance(n_cores, int | np.integer) and n_cores >= 1):
        raise ValueError(f"`n_cores` must be a positive integer; got {n_cores!r}.")
    for key, value in (("diameter_um", diameter_um), ("length_um", length_um)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"`{key}` must be a positive number; got {value!r}.")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        raise ValueError(f"sample '{sample}' has no cells to cut a core from.")
    rng = np.random.default_rng(rng)
    pool = np.arange(len(x))
    if target == "edge":
        if signed_distance_um is None:
            raise ValueError("`target='edge'` needs `signed_distance_um` (each cell's signed "
                             "distance to the tumour boundary).")
        near = np.flatnonzero(np.abs(np.asarray(signed_distance_um)) <= diameter_um / 2)
        pool = near if len(near) else pool
    centres = pool[rng.integers(0, len(pool), n_cores)]
    angles = rng.uniform(0.0, np.pi, n_cores) if kind == "needle" else np.zeros(n_cores)
    length = diameter_um if (kind == "punch" or length_um is None) else float(length_um)
    return [Core(sample, k + 1, kind, float(x[i]), float(y[i]), float(a), float(diameter_um),
                 length) for k, (i, a) in enumerate(zip(centres, angles, strict=True))]


def cut_cores(cells: pd.DataFrame, cores: list[Core]) -> list[pd.DataFrame]:
    """The cells of ``cells`` (columns ``x``, ``y`` in µm) inside each core.

    Every column is kept, rows in their original order with their original ``cell_id``;
    a cell inside several overlapping cores appears in each.
    """
    x = cells["x"].to_numpy(np.float64)
    y = cells["y"].to_numpy(np.float64)
    return [cells.loc[inside_core(x, y, core)].reset_index(drop=True) for core in cores]


def cores_geojson(cores: list[Core]) -> dict:
    """A GeoJSON FeatureCollection: one polygon per core (µm) with its properties.

    Properties: ``sample``, ``core`` (the contract), then ``kind``, ``centre_x``,
    ``centre_y``, ``angle_rad``, ``diameter_um``, ``length_um``.
    """
    features = []
    for core in cores:
        features.append({
            "type": "Feature",
            "geometry": shapely.geometry.mapping(core.polygon()),
            "properties": {"sample": core.sample, "core": core.core, "kind": core.kind,
                           "centre_x": core.centre_x, "centre_y": core.centre_y,
                           "angle_rad": core.angle_rad, "diameter_um": core.diameter_um,
                           "length_um": core.length_um},
        })
    return {"type": "FeatureCollection", "features": features}


def write_biopsies(samples: Sequence[tuple[str, pd.DataFrame]], out: str | Path, n_cores: int,
                   diameter_um: float, length_um: float | None = None, *, seed: int = 0,
                   kind: str = "needle", target: str = "random",
                   config: Config | None = None) -> list[Core]:
    """Cut cores from every slide and write them (what ``metaniche biopsy`` does).

    Writes ``out/<sample>.core<k>.parquet`` per core (contract columns first — ``sample``,
    ``cell_id`` (the original ids), ``x``, ``y`` (µm), ``cell_type`` — then every other input
    column; the sample name made file-safe by :func:`metaniche.rundir.safe_name`) and
    ``out/biopsies.geojson`` (:func:`cores_geojson`), each atomically.

    Parameters
    ----------
    samples
        ``(name, cells)`` pairs: standardised cell tables (µm).
    out
        Output directory (created).
    n_cores, diameter_um, length_um, kind, target
        As :func:`place_cores`. ``target='edge'`` computes each cell's signed distance with
        the pipeline's compartments (:func:`metaniche.sample.build_context`) under
        ``config`` (default configuration when None).
    seed
        Root seed; ``SeedSequence(seed).spawn(len(samples))`` gives one stream per slide, in
        input order.

    Returns
    -------
    list of Core
        Every core cut, slide by slide.
    """
    from metaniche.rundir import safe_name

    out = Path(out)
    streams = np.random.SeedSequence(seed).spawn(len(samples))
    every: list[Core] = []
    for (name, cells), stream in zip(samples, streams, strict=True):
        signed = None
        if target == "edge":
            context = build_context(name, cells, config if config is not None else Config())
            signed = context.compartments.signed_distance_um
        cores = place_cores(name, cells["x"].to_numpy(), cells["y"].to_numpy(), n_cores,
                            diameter_um, length_um, kind=kind, target=target,
                            signed_distance_um=signed, rng=np.random.default_rng(stream))
        order = [c for c in CONTRACT_COLUMNS if c in cells.columns]
        ordered = cells[order + [c for c in cells.columns if c not in order]]
        for core, piece in zip(cores, cut_cores(ordered, cores), strict=True):
            write_parquet(out / f"{safe_name(name)}.core{core.core}.parquet", piece)
        every.extend(cores)
    write_json(out / "biopsies.geojson", cores_geojson(every))
    return every
