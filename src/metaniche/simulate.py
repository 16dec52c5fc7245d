"""Simulated liver-metastasis tissue with known ground truth.

Each simulated sample is a square of liver tissue holding one to four colorectal-like metastases
with irregular outlines (optionally one with a cell-free necrotic hole), hepatocyte parenchyma
with portal and central vein landmarks on a hexagonal lobule pattern, optional tertiary lymphoid
structures (TLS) in the adjacent liver, and one planted immune phenotype (inflamed, excluded or
desert). Cells sit on a jittered square lattice, so the cell density is close to uniform
(:data:`DENSITY_PER_MM2`) everywhere except inside necrotic holes, and every cell's type is
drawn from probabilities that depend on its true signed distance to the tumour boundary.

Everything the analyses are meant to recover is returned alongside the cells: the lesion
outlines, the per-cell signed distance, lesion and compartment, the planted phenotype, the TLS
and the landmarks. :func:`analytic_compartment_areas` gives the exact compartment areas.

Conventions
-----------
* Coordinates are micrometres; the tissue is ``[0, side] x [0, side]`` minus necrotic holes.
* A necrotic hole is an interior ring of its lesion polygon *and* of the tissue polygon; it holds
  no cells and is not tumour tissue, but its edge is *not* a tumour boundary: necrosis is not an
  invasive margin, so signed distances and compartments are measured to the lesions' outer
  rings only (as metaniche's analysis does for cell-free regions).
* Signed distance is negative inside tumour, positive outside, in µm. The compartments are
  ``core`` (d < -w), ``border`` (-w <= d <= w) and ``adjacent`` (d > w) with w = 100 µm.

References
----------
1. Halama N, et al. Localization and density of immune cells in the invasive margin of human
   colorectal cancer liver metastases are prognostic for response to chemotherapy.
   Cancer Res. 2011;71(17):5670-7.
2. Hegde PS, Karanikas V, Evers S. The where, the when, and the how of immune monitoring for
   cancer immunotherapies in the era of checkpoint inhibition. Clin Cancer Res. 2016;22(8):1865-74.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from scipy.spatial import cKDTree

from metaniche._atomic import write_json, write_parquet, write_text
from metaniche.analyses.compartments import ADJACENT, BORDER, CORE, compartment_of

__all__ = [
    "CELL_TYPES",
    "DENSITY_PER_MM2",
    "IMMUNE_TYPES",
    "MARKERS",
    "PDL1_LESION_SIZE",
    "PHENOTYPES",
    "SIZE_EXCLUSION_UM2",
    "STATE_MARKERS",
    "SimulatedSample",
    "analytic_compartment_areas",
    "cd8_probability",
    "marker_intensities",
    "planted_state_probabilities",
    "simulate_cohort",
    "simulate_sample",
    "tls_probabilities",
    "type_probabilities",
    "write_cohort",
]

CELL_TYPES: tuple[str, ...] = (
    "Tumor", "CD8_T", "CD4_T", "Treg", "B", "Macrophage", "GPNMB_macrophage", "Neutrophil",
    "S100A12_neutrophil", "Fibroblast", "CCL19_fibroblast", "Endothelial", "Hepatocyte",
    "Portal_vein", "Central_vein",
)
"""Every cell-type label the simulator emits (exact spelling)."""

IMMUNE_TYPES: tuple[str, ...] = (
    "CD8_T", "CD4_T", "Treg", "B", "Macrophage", "GPNMB_macrophage", "Neutrophil",
    "S100A12_neutrophil",
)
"""The immune labels among :data:`CELL_TYPES` (written to the ``[cell_types] immune`` config)."""

MARKERS: tuple[str, ...] = (
    "PanCK", "CD3", "CD8", "CD4", "FOXP3", "CD20", "CD68", "GPNMB", "S100A12", "CCL19", "CD31",
    "ALB", "CCR7", "CXCL13",
)
"""Marker intensity columns of the simulated cell table, in order."""

STATE_MARKERS: dict[str, str] = {"PDL1_pos": "PDL1", "GZMB_pos": "GZMB", "PD1_pos": "PD1"}
"""With ``states=True``: planted state → its marker column (see
:func:`planted_state_probabilities`)."""

STATE_THRESHOLD = float(np.sqrt(5.0 * 0.5))
"""A fixed threshold that separates the planted state markers (geometric mean of the positive
and negative levels, 4.6 noise sd from each on the log scale)."""

PDL1_LESION_SIZE = (0.55, 0.45)
"""With ``pdl1_lesion_size=True``: (a, b) of the Tumor PD-L1+ probability
``clip(a + b·log10(A / 1 mm²), 0.02, 0.98)`` of a lesion of area A (b per tenfold area)."""
CONTACT_PLANTS: tuple[str, ...] = ("effect", "confounded_null")
"""Values of ``simulate_sample(contact=...)``: a true contact effect, or a confounded null."""

CONTACT_EFFECT = -0.5
"""Planted contact effect (``contact="effect"``): change of log1p(GZMB) of a CD8_T cell per
Macrophage within :data:`CONTACT_RADIUS_UM`."""

CONTACT_RADIUS_UM = 20.0
"""Radius (µm, ``<=``) of the planted contact effect."""

CONTACT_BORDER_SHIFT = -0.5
"""``contact="confounded_null"``: change of log1p(GZMB) of CD8_T in the border band
(|d| <= :data:`BORDER_UM`), where Macrophage is also denser; no contact effect."""

CONTACT_BORDER_MACROPHAGE = 0.15
"""``contact="confounded_null"``: probability that a non-CD8_T cell of the border band is
redrawn as Macrophage (on top of the base probabilities)."""

CONTACT_GZMB_LOG1P = float(np.log1p(5.0))
"""Mean log1p(GZMB) of a CD8_T cell without contact (and outside the border in the null)."""

CONTACT_GZMB_SD = 0.3
"""Noise sd of log1p(GZMB) of CD8_T cells."""

PHENOTYPES: tuple[str, ...] = ("inflamed", "excluded", "desert")
"""Immune phenotypes that can be planted."""

DENSITY_PER_MM2 = 3000.0
"""Cell density of the lattice, cells/mm² (before necrotic holes are emptied)."""

BORDER_UM = 100.0
"""Half-width w of the border compartment of the ground truth, µm."""

GPNMB_FLAT_PROBABILITY = 0.01
"""GPNMB_macrophage probability everywhere when ``gpnmb_gradient=False`` (control samples)."""

SIZE_EXCLUSION_UM2 = 90_000.0
"""With ``cd8_size_exclusion=True``: CD8 penetration length is this over the lesion's radius."""

KUPFFER_ZONATION = (1.6, -1.2)
"""Planted Macrophage zonation with ``zonation=True``: probability ``0.05 * (a + b * eta)``."""

_SPACING_UM = float(np.sqrt(1e6 / DENSITY_PER_MM2))
_JITTER = 0.35
_N_VERTICES = 512
_LESION_GAP_UM = 2 * BORDER_UM + 50.0
_EDGE_MARGIN_UM = 150.0
_MIN_LESION_RADIUS_UM = 120.0
_REFERENCE_SIDE_UM = 2600.0
_LOBULE_SPACING_UM = 900.0
_TYPE_CODE = {name: code for code, name in enumerate(CELL_TYPES)}
_LYMPHOCYTES = ("CD8_T", "CD4_T", "Treg", "B")
_EXPRESSION: dict[str, tuple[str, ...]] = {
    "Tumor": ("PanCK",),
    "CD8_T": ("CD3", "CD8"),
    "CD4_T": ("CD3", "CD4"),
    "Treg": ("CD3", "CD4", "FOXP3"),
    "B": ("CD20",),
    "Macrophage": ("CD68",),
    "GPNMB_macrophage": ("CD68", "GPNMB"),
    "Neutrophil": (),
    "S100A12_neutrophil": ("S100A12",),
    "Fibroblast": (),
    "CCL19_fibroblast": ("CCL19", "CXCL13"),
    "Endothelial": ("CD31",),
    "Hepatocyte": ("ALB",),
    "Portal_vein": ("CD31",),
    "Central_vein": ("CD31",),
}


@dataclass
class SimulatedSample:
    """One simulated tissue sample with its ground truth.

    Attributes
    ----------
    name : str
        Sample id (``S01``, ``S02``, … in a cohort).
    cells : pandas.DataFrame
        The cell table of the data contract: ``sample``, ``cell_id`` (str, unique), ``x``, ``y``
        (µm), ``cell_type`` (str, one of :data:`CELL_TYPES`), then one float column per marker of
        :data:`MARKERS`.
    truth : pandas.DataFrame
        One row per cell in the same order: ``cell_id``, ``lesion_id`` (int, 1-based index of the
        nearest lesion in :attr:`lesions`), ``signed_distance_um`` (exact Euclidean distance to
        the nearest tumour boundary, negative inside tumour), ``compartment`` (``core`` d < -100,
        ``border`` |d| <= 100, ``adjacent`` d > 100) and ``tls_id`` (int, 0 outside every TLS).
    lesions : list of shapely.Polygon
        True lesion outlines in µm; a lesion may have one interior ring (necrotic hole).
    tissue : shapely.Polygon
        Tissue outline: the square ``[0, side]²`` with necrotic holes as interior rings.
    phenotype : str
        Planted immune phenotype: ``inflamed``, ``excluded`` or ``desert``.
    tls : pandas.DataFrame
        Planted TLS: ``tls_id`` (1-based), ``centroid_x``, ``centroid_y`` (µm), ``n_cells``
        (cells within the radius), ``radius_um``.
    landmarks : pandas.DataFrame
        Vascular landmarks: ``kind`` (``portal`` or ``central``), ``x``, ``y`` (µm).
    """

    name: str
    cells: pd.DataFrame
    truth: pd.DataFrame
    lesions: list[shapely.Polygon]
    tissue: shapely.Polygon
    phenotype: str
    tls: pd.DataFrame
    landmarks: pd.DataFrame


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def simulate_sample(
    name: str,
    n_cells: int = 20_000,
    seed: int | np.random.SeedSequence = 0,
    phenotype: str | None = None,
    n_lesions: int | None = None,
    with_tls: bool | None = None,
    necrosis: bool | None = None,
    gpnmb_gradient: bool = True,
    zonation: bool = False,
    tls_radius_um: tuple[float, float] = (60.0, 100.0),
    tls_maturity: bool = False,
    cd8_size_exclusion: bool = False,
    states: bool = False,
    pdl1_lesion_size: bool = False,
    contact: str | None = None,
    contact_effect: float = CONTACT_EFFECT,
) -> SimulatedSample:
    """Simulate one liver-metastasis sample with known ground truth.

    Parameters
    ----------
    name : str
        Sample id written to the ``sample`` column and used in cell ids (``<name>_<i>``).
    n_cells : int, default 20000
        Target number of cells, at least 2000. Cells fill an ``m x m`` jittered square lattice
        with ``m = round(sqrt(n_cells))`` at :data:`DENSITY_PER_MM2` cells/mm², so the tissue side
        is ``m * 18.26`` µm (2574 µm for 20 000 cells) and the realised count is ``m²`` minus the
        cells of a necrotic hole.
    seed : int or numpy.random.SeedSequence, default 0
        Seed of the one :func:`numpy.random.default_rng` stream; equal seeds give identical output.
    phenotype : {'inflamed', 'excluded', 'desert'}, optional
        Immune phenotype to plant; drawn uniformly when None. *inflamed*: CD8 T cells are 6.5 % of
        the cells throughout the lesion and ~5 % at the border; *excluded*: CD8 T cells are ~14 %
        of the cells 0–100 µm outside the edge and ~0.1 % of the core; *desert*: 0.2 % everywhere.
    n_lesions : int, optional
        Number of lesions, 1 to 4; drawn uniformly when None (fewer are kept if they do not fit).
    with_tls : bool, optional
        Plant 1–3 TLS (radius 60–100 µm, >= 150 µm outside every lesion); drawn with p = 0.5
        when None.
    necrosis : bool, optional
        Give the largest lesion that can hold one a central necrotic hole (area >= 40 000 µm²,
        >= 150 µm from the lesion edge) and remove its cells; drawn with p = 0.35 when None
        (and then skipped silently when no lesion is large enough, e.g. below ~15 000 cells).
    gpnmb_gradient : bool, default True
        Plant the GPNMB_macrophage gradient (probability 0.08 exp(-|d| / 60 µm)); when False
        the type has a flat probability of :data:`GPNMB_FLAT_PROBABILITY` everywhere (a control
        without a gradient). Outside TLS.
    zonation : bool, default False
        Plant a periportal preference of Macrophage (Kupffer-like): outside tumour and TLS a
        cell is Macrophage with probability ``0.05 * (1.6 - 1.2 * eta)`` instead of 0.05, with
        ``eta = d_portal / (d_portal + d_central)`` from the landmark points (Hepatocyte takes
        the difference). Periportal (eta < 1/3) over pericentral (eta > 2/3) density is then
        about 2.3. Extra random draws happen only when True, so the default output is unchanged.
    tls_radius_um : (float, float), default (60, 100)
        Range of the uniformly drawn TLS radius, µm (same number of draws for any range).
    tls_maturity : bool, default False
        Plant a maturity grade per TLS, drawn uniformly from ``lymphoid_aggregate`` (its
        CCL19_fibroblast cells become Fibroblast: no follicular stroma), ``primary_follicle``
        (the default TLS composition) and ``secondary_follicle`` (also a germinal-centre core:
        B cells within half the radius of the centre express ``BCL6``). Adds a ``BCL6`` marker
        column (after :data:`MARKERS`; mean 5 in germinal-centre B cells, 0.5 elsewhere) and a
        ``grade`` column to :attr:`SimulatedSample.tls`. Extra draws happen only when True.
    cd8_size_exclusion : bool, default False
        Plant CD8 exclusion that grows with lesion size: inside lesion i, of equivalent radius
        ``R_i = sqrt(A_i / pi)`` (A_i the area inside its outer ring), the CD8_T probability is
        ``0.065 * exp(d / L_i)`` (d < 0 the signed distance) with penetration length
        ``L_i = SIZE_EXCLUSION_UM2 / R_i`` (600 µm at R = 150 µm, 150 µm at R = 600 µm), in place
        of the phenotype's inside profile; outside tumour the phenotype's profile is kept. Small
        lesions are then infiltrated to the core and large ones excluded. No extra random
        draws, so the default (False) output is unchanged.
    states : bool, default False
        Plant cell states with exact truth: marker columns ``PDL1``, ``GZMB`` and ``PD1`` (after
        the other markers), log-normal with mean 5 in positive cells and 0.5 elsewhere (noise
        sd 0.25 on the log scale, so :data:`STATE_THRESHOLD` separates them), positives drawn
        with :func:`planted_state_probabilities` (PD-L1+ macrophages concentrated at the
        border, GZMB+ CD8 T in the core of inflamed samples, PD-1+ CD8 T independently); the
        truth gains one boolean column per state of :data:`STATE_MARKERS`. Extra draws happen
        only when True.
    pdl1_lesion_size : bool, default False
        With ``states=True``: PD-L1+ tumour rising with lesion size. A Tumor cell of lesion i
        (area A_i inside its outer ring) is ``PDL1_pos`` with probability
        ``clip(a + b·log10(A_i / 1 mm²), 0.02, 0.98)``, (a, b) = :data:`PDL1_LESION_SIZE`
        (0.03 at R = 150 µm, 0.57 at R = 600 µm), instead of 0.2. The same draws as
        ``states=True`` alone, so only the Tumor PD-L1 calls change.
    contact : {'effect', 'confounded_null'}, optional
        Plant a ``GZMB`` marker column with exact contact truth (not with ``states=True``,
        which has its own GZMB). CD8_T cells get ``log1p(GZMB) = CONTACT_GZMB_LOG1P + b·k +
        s·[|d| <= 100 µm] + N(0, CONTACT_GZMB_SD²)``, k the number of Macrophage cells within
        :data:`CONTACT_RADIUS_UM` (``<=``, column ``contact_exposure`` of the truth), other
        cells log-normal with mean 0.5 (noise sd 0.4). ``"effect"``: b = ``contact_effect``
        (default :data:`CONTACT_EFFECT`) in every compartment, s = 0. ``"confounded_null"``:
        b = 0, s = :data:`CONTACT_BORDER_SHIFT` (GZMB lower in the border only), and every
        non-CD8_T cell of the border band becomes Macrophage with probability
        :data:`CONTACT_BORDER_MACROPHAGE` (macrophages denser in the border), so a naive
        GZMB-vs-macrophage regression finds an effect that is the border's. Extra draws
        happen only when given, so the default output is unchanged.
    contact_effect : float, default CONTACT_EFFECT
        The planted b of ``contact="effect"`` (log1p(GZMB) per Macrophage within reach).

    Returns
    -------
    SimulatedSample
        Cells, ground truth, geometry, phenotype, TLS and landmarks.

    Raises
    ------
    ValueError
        On an invalid argument, when ``n_lesions`` lesions or the requested necrotic hole do not
        fit in the tissue.

    Notes
    -----
    Lesions are star-shaped polygons r(θ) = R (1 + Σ_{k=2..6} a_k cos(kθ + φ_k)) with 512
    vertices, rescaled to the area π R_eq², R_eq drawn from 150–600 µm (times
    ``min(1, side / 2600 µm)``; the first lesion from the upper third of that range), placed at
    least 250 µm (2w + 50) apart and 150 µm from the tissue edge. Signed distances are exact
    point-to-segment distances to the lesion rings (see :func:`_boundary_distance`); runtime is
    linear in ``n_cells`` (about 10 s per million cells).

    Examples
    --------
    >>> sample = simulate_sample("S01", n_cells=5000, seed=1, phenotype="excluded")
    >>> sample.phenotype, sample.cells.columns[:5].tolist()
    ('excluded', ['sample', 'cell_id', 'x', 'y', 'cell_type'])
    """
    _check_sample_args(name, n_cells, phenotype, n_lesions)
    if pdl1_lesion_size and not states:
        raise ValueError("`pdl1_lesion_size=True` plants a state; give `states=True` too.")
    if contact is not None and contact not in CONTACT_PLANTS:
        raise ValueError(f"`contact` must be one of {list(CONTACT_PLANTS)} or None; got "
                         f"{contact!r}.")
    if contact is not None and states:
        raise ValueError("`contact` plants its own GZMB column, which `states=True` also "
                         "writes; use one of them.")
    rng = np.random.default_rng(seed)
    phenotype = phenotype if phenotype is not None else str(rng.choice(PHENOTYPES))
    with_tls = bool(rng.random() < 0.5) if with_tls is None else bool(with_tls)
    strict_necrosis = necrosis is not None
    necrosis = bool(rng.random() < 0.35) if necrosis is None else bool(necrosis)
    explicit_lesions = n_lesions is not None
    n_lesions = int(rng.integers(1, 5)) if n_lesions is None else int(n_lesions)

    xy, side = _lattice(rng, n_cells)
    lesions = _place_lesions(rng, side, n_lesions, explicit_lesions)
    lesions, holes = _add_necrosis(rng, lesions, necrosis, strict_necrosis)
    tissue = shapely.Polygon(_square(side), [np.asarray(h.exterior.coords) for h in holes])
    xy = _remove_holes(xy, holes)

    distance, lesion_index = _boundary_distance(xy, lesions)
    union = shapely.union_all(_outer(lesions))
    shapely.prepare(union)
    inside = shapely.contains_xy(union, xy[:, 0], xy[:, 1])
    signed = np.where(inside, -distance, distance)

    tls = _place_tls(rng, side, union, with_tls, tls_radius_um)
    tls_id = _tls_membership(xy, tls)
    landmarks = _place_landmarks(rng, side, union, tls)

    cd8_inside = (_size_exclusion_cd8(signed, lesion_index, lesions) if cd8_size_exclusion
                  else None)
    codes = _draw_types(rng, signed, tls_id, phenotype, gpnmb_gradient, cd8_inside)
    grades = rng.integers(0, 3, len(tls)) if tls_maturity else None
    if grades is not None:
        immature = np.isin(tls_id, tls["tls_id"].to_numpy()[grades == 0])
        codes = np.where(immature & (codes == _TYPE_CODE["CCL19_fibroblast"]),
                         _TYPE_CODE["Fibroblast"], codes)
    if zonation:
        codes = _plant_zonation(rng, xy, signed, tls_id, codes, landmarks, phenotype)
    codes = _paint_landmarks(rng, xy, codes, landmarks)
    if contact == "confounded_null":
        redraw = ((np.abs(signed) <= BORDER_UM) & (codes != _TYPE_CODE["CD8_T"])
                  & (rng.random(len(codes)) < CONTACT_BORDER_MACROPHAGE))
        codes = np.where(redraw, _TYPE_CODE["Macrophage"], codes)
    markers = marker_intensities(rng, codes, tls_id > 0)

    cell_id = name + "_" + pd.Series(np.arange(len(xy))).astype(str)
    cells = _cell_table(name, cell_id, xy, codes, markers)
    if grades is not None:
        cells["BCL6"] = _germinal_centre_marker(rng, xy, codes, tls_id, tls, grades)
    truth = pd.DataFrame({
        "cell_id": cell_id.to_numpy(),
        "lesion_id": lesion_index + 1,
        "signed_distance_um": signed,
        "compartment": compartment_of(signed, BORDER_UM),
        "tls_id": tls_id,
    })
    if states:
        labels = np.asarray(CELL_TYPES, dtype=object)[codes]
        tumour_pdl1 = (_size_pdl1(lesion_index, lesions) if pdl1_lesion_size else None)
        for state, probability in planted_state_probabilities(
                labels, signed, phenotype, tumour_pdl1=tumour_pdl1).items():
            carries = rng.random(len(labels)) < probability
            level = np.where(carries, 5.0, 0.5)
            cells[STATE_MARKERS[state]] = level * np.exp(
                rng.standard_normal(len(labels)) * 0.25 - 0.25**2 / 2)
            truth[state] = carries
    if contact is not None:
        gzmb, exposure = _contact_gzmb(rng, xy, codes, signed, contact, contact_effect)
        cells["GZMB"] = gzmb
        truth["contact_exposure"] = exposure
    tls["n_cells"] = np.bincount(tls_id, minlength=len(tls) + 1)[1:].astype(np.int64)
    tls = tls[["tls_id", "centroid_x", "centroid_y", "n_cells", "radius_um"]]
    if grades is not None:
        tls = tls.assign(grade=np.array(_TLS_GRADES, dtype=object)[grades])
    return SimulatedSample(name, cells, truth, lesions, tissue, phenotype, tls, landmarks)


def planted_state_probabilities(cell_type: np.ndarray, signed_distance_um: np.ndarray,
                                phenotype: str, tumour_pdl1: np.ndarray | None = None
                                ) -> dict[str, np.ndarray]:
    """Per-cell probability of every planted state (``simulate_sample(states=True)``).

    - ``PDL1_pos``: Macrophage ``0.1 + 0.6 exp(-|d| / 80 µm)`` (concentrated at the border),
      Tumor 0.2 (or ``tumour_pdl1``, per cell, when given: ``pdl1_lesion_size=True``), other
      types 0;
    - ``GZMB_pos``: CD8_T 0.6 in the core (d < -100 µm) of an inflamed sample, else 0.2;
      other types 0;
    - ``PD1_pos``: CD8_T 0.3 everywhere (independent of GZMB), other types 0.
    """
    labels = np.asarray(cell_type).astype(str)
    d = np.asarray(signed_distance_um, dtype=np.float64)
    macrophage, tumour, cd8 = labels == "Macrophage", labels == "Tumor", labels == "CD8_T"
    core = d < -BORDER_UM
    gzmb = np.where(core & (phenotype == "inflamed"), 0.6, 0.2)
    return {
        "PDL1_pos": np.where(macrophage, 0.1 + 0.6 * np.exp(-np.abs(d) / 80.0),
                             np.where(tumour, 0.2 if tumour_pdl1 is None else tumour_pdl1,
                                      0.0)),
        "GZMB_pos": np.where(cd8, gzmb, 0.0),
        "PD1_pos": np.where(cd8, 0.3, 0.0),
    }


def _contact_gzmb(rng: np.random.Generator, xy: np.ndarray, codes: np.ndarray,
                  signed: np.ndarray, contact: str, effect: float,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """GZMB with the planted contact truth of ``simulate_sample(contact=...)``, and the count
    of Macrophage cells within :data:`CONTACT_RADIUS_UM` of every cell (itself excluded)."""
    macrophage = codes == _TYPE_CODE["Macrophage"]
    exposure = np.zeros(len(codes), dtype=np.int64)
    if macrophage.any():
        exposure = cKDTree(xy[macrophage]).query_ball_point(
            xy, CONTACT_RADIUS_UM, return_length=True).astype(np.int64)
        exposure -= macrophage  # a macrophage is not its own neighbour
    cd8 = codes == _TYPE_CODE["CD8_T"]
    slope, shift = (effect, 0.0) if contact == "effect" else (0.0, CONTACT_BORDER_SHIFT)
    mean = CONTACT_GZMB_LOG1P + slope * exposure + shift * (np.abs(signed) <= BORDER_UM)
    noise = rng.standard_normal(len(codes))
    cd8_value = np.expm1(mean + CONTACT_GZMB_SD * noise)
    other = 0.5 * np.exp(0.4 * noise - 0.08)
    return np.where(cd8, cd8_value, other), exposure


def analytic_compartment_areas(
    sample: SimulatedSample, border_um: float = BORDER_UM
) -> dict[str, float]:
    """Exact compartment areas of a simulated sample, in mm².

    Parameters
    ----------
    sample : SimulatedSample
        The sample whose :attr:`~SimulatedSample.lesions` and :attr:`~SimulatedSample.tissue`
        define the compartments.
    border_um : float, default 100.0
        Half-width w of the border band, µm; must be positive.

    Returns
    -------
    dict of str to float
        Lesions are taken with necrotic holes filled (holes are not boundaries; they are
        outside ``tissue``). ``core`` = tissue ∩ (lesions eroded by w), ``border`` =
        tissue ∩ (lesions dilated by w minus lesions eroded by w), ``adjacent`` = tissue
        minus lesions dilated by w,
        ``tumor`` = tissue ∩ lesions, ``tissue`` = tissue area; all in mm². Buffers use 64
        segments per quarter circle, so ``core + border + adjacent == tissue`` to rounding and
        arcs are within 0.01 % of true circles. A point exactly at distance w belongs to the
        border, matching the ``|d| <= w`` rule of the per-cell truth.
    """
    if not (isinstance(border_um, int | float) and np.isfinite(border_um) and border_um > 0):
        raise ValueError(f"`border_um` must be a positive number; got {border_um!r}.")
    union = shapely.union_all(_outer(sample.lesions))
    dilated = shapely.buffer(union, border_um, quad_segs=64)
    eroded = shapely.buffer(union, -border_um, quad_segs=64)
    tissue = sample.tissue
    areas = {
        CORE: shapely.intersection(tissue, eroded).area,
        BORDER: shapely.intersection(tissue, shapely.difference(dilated, eroded)).area,
        ADJACENT: shapely.difference(tissue, dilated).area,
        "tumor": shapely.intersection(tissue, union).area,
        "tissue": tissue.area,
    }
    return {key: float(value) / 1e6 for key, value in areas.items()}


def simulate_cohort(
    n_samples: int = 6, n_cells: int = 20_000, seed: int = 0, os_log_hr: float = 0.8,
    response_rates: tuple[float, float] = (0.85, 0.15), states: bool = False,
    contact: str | None = None,
) -> tuple[list[SimulatedSample], pd.DataFrame]:
    """Simulate a cohort of samples and a clinical table linked to a planted spatial feature.

    Parameters
    ----------
    n_samples : int, default 6
        Number of samples (one patient each), named ``S01``, ``S02``, ….
    n_cells : int, default 20000
        Target cells per sample (see :func:`simulate_sample`).
    seed : int, default 0
        Root seed; ``SeedSequence(seed).spawn(n_samples + 1)`` gives one stream per sample and one
        for the cohort-level draws, so a sample does not depend on how many others are simulated.
    os_log_hr : float, default 0.8
        Planted survival effect β: the hazard is multiplied by exp(-β z) (so the true hazard
        ratio per SD of core CD8_T density is exp(-β)).
    response_rates : (float, float), default (0.85, 0.15)
        Planted response effect: P(responder) of inflamed samples and of the others
        (excluded, desert). (0.5, 0.5) makes response independent of the tissue.
    states : bool, default False
        Plant cell states in every sample (``simulate_sample(states=True)``).
    contact : {'effect', 'confounded_null'}, optional
        Plant the contact truth in every sample (``simulate_sample(contact=...)``).

    Returns
    -------
    samples : list of SimulatedSample
    clinical : pandas.DataFrame
        ``sample``, ``patient`` (``P01``, …), ``response`` (``responder`` with probability
        ``response_rates[0]`` when the sample is inflamed, else ``response_rates[1]``;
        otherwise ``non-responder``), ``os_time`` (months,
        exponential with baseline hazard 1/24 per month multiplied by exp(-β z), z the cohort
        z-score of the true CD8_T density of the core in cells/mm²) and ``os_event`` (1 with
        p = 0.7, else censored).

    Notes
    -----
    Phenotypes cycle through inflamed, excluded, desert and are shuffled, so every phenotype
    appears ``n_samples // 3`` or one more times; at least two samples (if there are two) carry
    TLS.
    """
    if not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ValueError(f"`n_samples` must be a positive integer; got {n_samples!r}.")
    if len(response_rates) != 2 or not all(0 <= rate <= 1 for rate in response_rates):
        raise ValueError(f"`response_rates` must be two probabilities in [0, 1]; got "
                         f"{response_rates!r}.")
    children = np.random.SeedSequence(seed).spawn(n_samples + 1)
    rng = np.random.default_rng(children[-1])
    phenotypes = rng.permutation(np.resize(np.array(PHENOTYPES), n_samples))
    with_tls = rng.random(n_samples) < 0.5
    if with_tls.sum() < min(2, n_samples):
        with_tls[rng.permutation(n_samples)[:2]] = True
    width = max(2, len(str(n_samples)))
    samples = [
        simulate_sample(f"S{i + 1:0{width}d}", n_cells=n_cells, seed=children[i],
                        phenotype=str(phenotypes[i]), with_tls=bool(with_tls[i]),
                        states=states, contact=contact)
        for i in range(n_samples)
    ]
    return samples, _clinical_table(rng, samples, width, os_log_hr, response_rates)


def write_cohort(
    out_dir: str | os.PathLike[str], samples: list[SimulatedSample], clinical: pd.DataFrame
) -> Path:
    """Write a simulated cohort and its ground truth to a directory (each file atomically).

    Parameters
    ----------
    out_dir : str or os.PathLike
        Destination directory (created if needed; existing files of the same names are replaced).
    samples : list of SimulatedSample
    clinical : pandas.DataFrame
        The clinical table returned by :func:`simulate_cohort`.

    Returns
    -------
    pathlib.Path
        ``out_dir``, holding::

            cells/<sample>.parquet            cell table (data contract)
            clinical.csv                      sample, patient, response, os_time, os_event
            config.toml                       [cell_types] tumor and immune labels
            truth/<sample>.cells.parquet      cell_id, lesion_id, signed_distance_um,
                                              compartment, tls_id
            truth/<sample>.lesions.geojson    QuPath-style FeatureCollection of lesion polygons
            truth/samples.csv                 sample, phenotype, n_lesions, n_tls, has_necrosis,
                                              cd8_core_density_per_mm2, area_mm2_{core,border,
                                              adjacent,tumor,tissue} (w = 100 µm)
            truth/tls.csv                     sample, tls_id, centroid_x, centroid_y, n_cells,
                                              radius_um
            truth/landmarks.csv               sample, kind, x, y
    """
    out = Path(out_dir)
    for sample in samples:
        write_parquet(out / "cells" / f"{sample.name}.parquet", sample.cells)
        write_parquet(out / "truth" / f"{sample.name}.cells.parquet", sample.truth)
        write_json(out / "truth" / f"{sample.name}.lesions.geojson", _lesions_geojson(sample))
    write_text(out / "clinical.csv", clinical.to_csv(index=False))
    write_text(out / "config.toml", _config_toml())
    truth = pd.DataFrame([_sample_summary(sample) for sample in samples])
    write_text(out / "truth" / "samples.csv", truth.to_csv(index=False))
    write_text(out / "truth" / "tls.csv", _stack(samples, "tls").to_csv(index=False))
    write_text(out / "truth" / "landmarks.csv", _stack(samples, "landmarks").to_csv(index=False))
    return out


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


def _check_sample_args(
    name: str, n_cells: int, phenotype: str | None, n_lesions: int | None
) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string; got {name!r}.")
    if not isinstance(n_cells, int | np.integer) or n_cells < 2000:
        raise ValueError(f"`n_cells` must be an integer >= 2000; got {n_cells!r}.")
    if phenotype is not None and phenotype not in PHENOTYPES:
        raise ValueError(f"`phenotype` must be one of {list(PHENOTYPES)}; got {phenotype!r}.")
    if n_lesions is not None and (
        not isinstance(n_lesions, int | np.integer) or not 1 <= n_lesions <= 4
    ):
        raise ValueError(f"`n_lesions` must be an integer from 1 to 4; got {n_lesions!r}.")


def _square(side: float) -> np.ndarray:
    return np.array([[0.0, 0.0], [side, 0.0], [side, side], [0.0, side]])


def _lattice(rng: np.random.Generator, n_cells: int) -> tuple[np.ndarray, float]:
    """Jittered square lattice at :data:`DENSITY_PER_MM2`; returns (xy in µm, side in µm)."""
    m = round(np.sqrt(n_cells))
    side = m * _SPACING_UM
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    centres = (np.column_stack([j.ravel(), i.ravel()]) + 0.5) * _SPACING_UM
    jitter = rng.uniform(-_JITTER, _JITTER, size=centres.shape) * _SPACING_UM
    return centres + jitter, side


def _star_ring(
    centre: np.ndarray, r_eq: float, amplitudes: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """Vertices of r(θ) = R(1 + Σ a_k cos(kθ + φ_k)), k = 2.., scaled to area π r_eq²."""
    theta = np.linspace(0.0, 2 * np.pi, _N_VERTICES, endpoint=False)
    k = np.arange(2, 2 + len(amplitudes))[:, None]
    radius = 1.0 + (amplitudes[:, None] * np.cos(k * theta + phases[:, None])).sum(0)
    unit = np.column_stack([radius * np.cos(theta), radius * np.sin(theta)])
    scale = r_eq * np.sqrt(np.pi / shapely.Polygon(unit).area)
    return centre + unit * scale


def _random_shape(rng: np.random.Generator, roughness: float) -> tuple[np.ndarray, np.ndarray]:
    amplitudes = rng.uniform(0.2, 1.0, 5) * roughness / np.sqrt(np.arange(1, 6))
    return amplitudes, rng.uniform(0, 2 * np.pi, 5)


def _place_lesions(
    rng: np.random.Generator, side: float, n_lesions: int, explicit: bool
) -> list[shapely.Polygon]:
    """Place non-overlapping star-shaped lesions, largest first (see simulate_sample Notes)."""
    scale = min(1.0, side / _REFERENCE_SIDE_UM)
    radii = rng.uniform(150.0, 600.0, n_lesions) * scale
    radii[0] = rng.uniform(450.0, 600.0) * scale
    radii = np.sort(np.maximum(radii, _MIN_LESION_RADIUS_UM))[::-1]
    lesions: list[shapely.Polygon] = []
    for r_eq in radii:
        shape = _random_shape(rng, 0.08)
        lesion = _place_one(rng, side, r_eq, shape, lesions)
        if lesion is None:
            if explicit or not lesions:
                raise ValueError(
                    f"{n_lesions} lesion(s) do not fit in a {side:.0f} µm tissue; "
                    "increase `n_cells` or lower `n_lesions`."
                )
            break
        lesions.append(lesion)
    return lesions


def _place_one(
    rng: np.random.Generator,
    side: float,
    r_eq: float,
    shape: tuple[np.ndarray, np.ndarray],
    others: list[shapely.Polygon],
) -> shapely.Polygon | None:
    """Rejection-sample a lesion position; shrink it by 15 % after every 100 failed tries."""
    occupied = shapely.union_all(others) if others else None
    while r_eq >= _MIN_LESION_RADIUS_UM:
        ring = _star_ring(np.zeros(2), r_eq, *shape)
        low = _EDGE_MARGIN_UM - ring.min(0)
        high = side - _EDGE_MARGIN_UM - ring.max(0)
        if np.all(high > low):
            for _ in range(100):
                lesion = shapely.Polygon(ring + rng.uniform(low, high))
                if occupied is None or shapely.distance(lesion, occupied) >= _LESION_GAP_UM:
                    return lesion
        r_eq *= 0.85
    return None


def _add_necrosis(
    rng: np.random.Generator, lesions: list[shapely.Polygon], necrosis: bool, strict: bool
) -> tuple[list[shapely.Polygon], list[shapely.Polygon]]:
    """Punch a central hole (area >= 40 000 µm², >= 150 µm inside the edge) in one lesion.

    When no lesion can hold one, raise if ``strict`` (requested explicitly), else skip.
    """
    if not necrosis:
        return lesions, []
    for index in np.argsort([-lesion.area for lesion in lesions]):
        lesion = lesions[index]
        centre = np.asarray(lesion.centroid.coords[0])
        r_hole = rng.uniform(120.0, 150.0)
        hole = shapely.Polygon(_star_ring(centre, r_hole, *_random_shape(rng, 0.04)))
        if shapely.distance(hole, lesion.exterior) >= _EDGE_MARGIN_UM and lesion.contains(hole):
            lesions = list(lesions)
            lesions[index] = shapely.Polygon(lesion.exterior.coords, [hole.exterior.coords])
            return lesions, [hole]
    if not strict:
        return lesions, []
    raise ValueError(
        "no lesion is large enough for a necrotic hole; increase `n_cells` or pass "
        "`necrosis=False`."
    )


def _remove_holes(xy: np.ndarray, holes: list[shapely.Polygon]) -> np.ndarray:
    keep = np.ones(len(xy), dtype=bool)
    for hole in holes:
        keep &= ~shapely.contains_xy(hole, xy[:, 0], xy[:, 1])
    return xy[keep]


def _boundary_distance(
    xy: np.ndarray, lesions: list[shapely.Polygon], k: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance (µm) from each point to the nearest lesion outer ring, and its lesion.

    The rings' vertices go in a KD-tree; for each point the segments adjacent to its ``k``
    nearest vertices are measured exactly. The answer ``d`` is certified when the k-th vertex is
    at least ``sqrt(d² + h²)`` away, h = half the longest segment: the closest point X of a
    segment closer than ``d`` is either an endpoint or the foot of a perpendicular, so one
    endpoint A has ``|PA|² = |PX|² + |XA|² < d² + h²`` and is among the k nearest vertices. The
    rare uncertified points are measured with :func:`shapely.distance`. Cost O(n k log V) instead
    of O(n V) for V vertices.
    """
    starts, ends, owner, previous = _segments(lesions)
    half = 0.5 * float(np.max(np.hypot(*(ends - starts).T)))
    tree = cKDTree(starts)
    distance = np.empty(len(xy))
    nearest = np.empty(len(xy), dtype=np.int64)
    k = min(k, len(starts))
    for lo in range(0, len(xy), 200_000):
        chunk = slice(lo, lo + 200_000)
        distance[chunk], nearest[chunk], vertex_dist = _candidate_distance(
            xy[chunk], tree, (starts, ends, previous), k)
        bad = np.flatnonzero(vertex_dist < np.hypot(distance[chunk], half)) + lo
        if bad.size:
            distance[bad], nearest[bad] = _shapely_distance(xy[bad], lesions)
            nearest[bad] = -1 - nearest[bad]
    lesion = np.where(nearest >= 0, owner[np.maximum(nearest, 0)], -1 - nearest)
    return distance, lesion


def _outer(lesions: list[shapely.Polygon]) -> list[shapely.Polygon]:
    """Lesions with their necrotic holes filled (outer rings only)."""
    return [shapely.Polygon(lesion.exterior) for lesion in lesions]


def _segments(
    lesions: list[shapely.Polygon],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments of every ring: starts, ends, owning lesion, and the segment ending at each start.

    Vertex i of the concatenated rings starts segment i.
    """
    starts, ends, owner, previous = [], [], [], []
    offset = 0
    for index, lesion in enumerate(lesions):
        for ring in (lesion.exterior,):
            coords = np.asarray(ring.coords)[:-1]
            starts.append(coords)
            ends.append(np.roll(coords, -1, axis=0))
            owner.append(np.full(len(coords), index))
            previous.append(offset + np.roll(np.arange(len(coords)), 1))
            offset += len(coords)
    return (np.concatenate(starts), np.concatenate(ends), np.concatenate(owner),
            np.concatenate(previous))


def _candidate_distance(
    points: np.ndarray,
    tree: cKDTree,
    segments: tuple[np.ndarray, np.ndarray, np.ndarray],
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min distance to segments touching the k nearest vertices; also the k-th vertex distance."""
    starts, ends, previous = segments
    vertex_dist, vertex = tree.query(points, k=k)
    vertex_dist, vertex = vertex_dist.reshape(len(points), k), vertex.reshape(len(points), k)
    candidates = np.concatenate([vertex, previous[vertex]], axis=1)
    # x and y kept apart (the same operations, in the same order, as on (…, 2) arrays).
    ab_x, ab_y = ends[:, 0] - starts[:, 0], ends[:, 1] - starts[:, 1]
    ab2 = ab_x * ab_x + ab_y * ab_y
    ab_x, ab_y, ab2 = ab_x[candidates], ab_y[candidates], ab2[candidates]
    ap_x = points[:, 0, None] - starts[:, 0][candidates]
    ap_y = points[:, 1, None] - starts[:, 1][candidates]
    t = np.clip((ap_x * ab_x + ap_y * ab_y) / ab2, 0.0, 1.0)
    seg_dist = np.hypot(ap_x - t * ab_x, ap_y - t * ab_y)
    best = seg_dist.argmin(1)
    rows = np.arange(len(points))
    return seg_dist[rows, best], candidates[rows, best], vertex_dist[:, -1]


def _shapely_distance(
    points: np.ndarray, lesions: list[shapely.Polygon]
) -> tuple[np.ndarray, np.ndarray]:
    geoms = shapely.points(points)
    per_lesion = np.stack([shapely.distance(lesion.boundary, geoms) for lesion in lesions])
    return per_lesion.min(0), per_lesion.argmin(0)


# --------------------------------------------------------------------------------------------
# TLS and landmarks
# --------------------------------------------------------------------------------------------


def _place_tls(
    rng: np.random.Generator, side: float, union: shapely.Geometry, with_tls: bool,
    radius_range: tuple[float, float] = (60.0, 100.0),
) -> pd.DataFrame:
    """1–3 disks of radius 60–100 µm, >= 150 µm outside lesions, 100 µm apart, 50 µm from edge."""
    rows: list[tuple[float, float, float]] = []
    n_wanted = int(rng.integers(1, 4)) if with_tls else 0
    for _ in range(n_wanted):
        radius = rng.uniform(radius_range[0], radius_range[1])
        for _ in range(500):
            centre = rng.uniform(radius + 50.0, side - radius - 50.0, 2)
            far_from_tumour = shapely.distance(shapely.Point(centre), union) >= 150.0 + radius
            apart = all(np.hypot(centre[0] - x, centre[1] - y) >= radius + r + 100.0
                        for x, y, r in rows)
            if far_from_tumour and apart:
                rows.append((float(centre[0]), float(centre[1]), float(radius)))
                break
    table = pd.DataFrame(np.array(rows, dtype=float).reshape(-1, 3),
                         columns=["centroid_x", "centroid_y", "radius_um"])
    table.insert(0, "tls_id", np.arange(1, len(table) + 1, dtype=np.int64))
    return table


_TLS_GRADES = ("lymphoid_aggregate", "primary_follicle", "secondary_follicle")


def _germinal_centre_marker(
    rng: np.random.Generator, xy: np.ndarray, codes: np.ndarray, tls_id: np.ndarray,
    tls: pd.DataFrame, grades: np.ndarray,
) -> np.ndarray:
    """BCL6 intensity: high in B cells within half the radius of a secondary TLS centre."""
    high = np.zeros(len(xy), dtype=bool)
    for row, grade in zip(tls.itertuples(), grades, strict=True):
        if grade == 2:
            near = np.hypot(xy[:, 0] - row.centroid_x,
                            xy[:, 1] - row.centroid_y) <= 0.5 * row.radius_um
            high |= near & (tls_id == row.tls_id) & (codes == _TYPE_CODE["B"])
    sigma = np.float32(0.4)
    noise = np.exp(rng.standard_normal(len(xy), dtype=np.float32) * sigma - sigma**2 / 2)
    return np.where(high, np.float32(5.0), np.float32(0.5)) * noise


def _tls_membership(xy: np.ndarray, tls: pd.DataFrame) -> np.ndarray:
    """TLS id of each cell (0 = none); a cell at exactly the radius is inside."""
    member = np.zeros(len(xy), dtype=np.int64)
    for row in tls.itertuples():
        inside = np.hypot(xy[:, 0] - row.centroid_x, xy[:, 1] - row.centroid_y) <= row.radius_um
        member[inside] = row.tls_id
    return member


def _place_landmarks(
    rng: np.random.Generator, side: float, union: shapely.Geometry, tls: pd.DataFrame
) -> pd.DataFrame:
    """Central veins on a random triangular lattice (900 µm), portal tracts at its triangles'
    centroids (520 µm from the centrals), kept 200 µm outside lesions and clear of TLS."""
    angle = rng.uniform(0.0, np.pi / 3)
    a1 = _LOBULE_SPACING_UM * np.array([np.cos(angle), np.sin(angle)])
    a2 = _LOBULE_SPACING_UM * np.array([np.cos(angle + np.pi / 3), np.sin(angle + np.pi / 3)])
    n = int(np.ceil(2 * side / _LOBULE_SPACING_UM)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    origin = rng.uniform(0.0, side, 2)
    central = origin + i.ravel()[:, None] * a1 + j.ravel()[:, None] * a2
    portal = np.concatenate([central + (a1 + a2) / 3, central + 2 * (a1 + a2) / 3])
    table = pd.DataFrame({
        "kind": ["central"] * len(central) + ["portal"] * len(portal),
        "x": np.concatenate([central[:, 0], portal[:, 0]]),
        "y": np.concatenate([central[:, 1], portal[:, 1]]),
    })
    xy = table[["x", "y"]].to_numpy()
    keep = np.all((xy >= 60.0) & (xy <= side - 60.0), axis=1)
    keep &= shapely.distance(union, shapely.points(xy)) >= BORDER_UM + 100.0
    for row in tls.itertuples():
        keep &= np.hypot(xy[:, 0] - row.centroid_x, xy[:, 1] - row.centroid_y) > (
            row.radius_um + 80.0)
    return table[keep].sort_values(["kind", "x", "y"], ascending=[False, True, True],
                                   ignore_index=True)


# --------------------------------------------------------------------------------------------
# cell types and markers
# --------------------------------------------------------------------------------------------


def cd8_probability(signed: np.ndarray, phenotype: str) -> np.ndarray:
    """Planted CD8_T probability as a function of signed distance to the tumour border.

    Parameters
    ----------
    signed
        Signed distance to the border, µm (negative inside tumour).
    phenotype
        ``"inflamed"`` (CD8 in the core), ``"excluded"`` (CD8 held in a band of
        :data:`BORDER_UM` outside the border, decaying over 25 µm inside) or ``"desert"``.

    Returns
    -------
    numpy.ndarray
        Probability that a cell at each distance is CD8_T (outside TLS), same shape as
        ``signed``. Public so the remodeling simulator (:mod:`metaniche.studies.remodel`) plants
        the same profile.

    Examples
    --------
    >>> import numpy as np
    >>> from metaniche.simulate import cd8_probability
    >>> cd8_probability(np.array([-100.0, 0.0, 100.0]), "inflamed").round(3)
    array([0.065, 0.057, 0.032])
    """
    inside = signed < 0
    outside_d = np.maximum(signed, 0.0)
    inside_d = np.minimum(signed, 0.0)
    if phenotype == "inflamed":
        return np.where(inside, 0.065, 0.012 + 0.045 * np.exp(-outside_d / 120.0))
    if phenotype == "excluded":
        band = np.where(outside_d <= BORDER_UM, 0.13,
                        0.13 * np.exp(-(outside_d - BORDER_UM) / 40.0))
        return np.where(inside, 0.001 + 0.08 * np.exp(inside_d / 25.0), 0.01 + band)
    return np.full(signed.shape, 0.002)


def type_probabilities(
    signed: np.ndarray, phenotype: str, gpnmb_gradient: bool = True
) -> np.ndarray:
    """Planted cell-type probabilities outside TLS as a function of signed distance.

    Parameters
    ----------
    signed
        Signed distance to the tumour border, µm (negative inside).
    phenotype
        Immune phenotype of the lesion (see :func:`cd8_probability`).
    gpnmb_gradient
        When True, GPNMB_macrophage probability decays as ``0.08 exp(-|d| / 60 µm)`` away from
        the border; otherwise it is flat.

    Returns
    -------
    numpy.ndarray
        ``(n, len(CELL_TYPES))`` probabilities in :data:`CELL_TYPES` order; rows sum to 1 (Tumor
        takes the rest inside, Hepatocyte outside).

    Examples
    --------
    >>> import numpy as np
    >>> from metaniche.simulate import type_probabilities
    >>> type_probabilities(np.array([-50.0, 50.0]), "excluded").sum(axis=1)
    array([1., 1.])
    """
    inside = signed < 0
    distance = np.abs(signed)
    outside_d = np.maximum(signed, 0.0)
    columns = {
        "CD8_T": cd8_probability(signed, phenotype),
        "CD4_T": np.where(inside, 0.02, 0.015),
        "Treg": np.where(inside, 0.006, 0.003),
        "B": np.where(inside, 0.003, 0.004),
        "Macrophage": np.where(inside, 0.03, 0.05),
        "GPNMB_macrophage": (0.08 * np.exp(-distance / 60.0) if gpnmb_gradient
                             else np.full(signed.shape, GPNMB_FLAT_PROBABILITY)),
        "Neutrophil": np.where(inside, 0.01, 0.012),
        "S100A12_neutrophil": 0.04 * np.exp(-distance / 80.0),
        "Fibroblast": np.where(inside, 0.06, 0.04 + 0.08 * np.exp(-outside_d / 80.0)),
        "Endothelial": np.where(inside, 0.03, 0.04),
    }
    probabilities = np.zeros((len(signed), len(CELL_TYPES)))
    for label, values in columns.items():
        probabilities[:, _TYPE_CODE[label]] = values
    rest = 1.0 - probabilities.sum(1)
    probabilities[:, _TYPE_CODE["Tumor"]] = np.where(inside, rest, 0.0)
    probabilities[:, _TYPE_CODE["Hepatocyte"]] = np.where(inside, 0.0, rest)
    return probabilities


def tls_probabilities(phenotype: str) -> np.ndarray:
    """Planted composition of a TLS: ~50 % B, CD4/CD8 T, 6 % CCL19+ fibroblasts, endothelium.

    Parameters
    ----------
    phenotype
        Lesion phenotype; a ``"desert"`` lesion's TLS holds 2 % CD8_T instead of 10 %.

    Returns
    -------
    numpy.ndarray
        One probability per :data:`CELL_TYPES` entry, summing to 1.

    Examples
    --------
    >>> from metaniche.simulate import tls_probabilities
    >>> float(tls_probabilities("inflamed").sum())
    1.0
    """
    cd8 = 0.02 if phenotype == "desert" else 0.10
    shares = {"B": 0.50, "CD8_T": cd8, "Treg": 0.03, "CCL19_fibroblast": 0.06,
              "Endothelial": 0.04, "Macrophage": 0.03, "Fibroblast": 0.02, "Hepatocyte": 0.02}
    shares["CD4_T"] = 1.0 - sum(shares.values())
    row = np.zeros(len(CELL_TYPES))
    for label, value in shares.items():
        row[_TYPE_CODE[label]] = value
    return row


def _size_exclusion_cd8(
    signed: np.ndarray, lesion_index: np.ndarray, lesions: list[shapely.Polygon]
) -> np.ndarray:
    """CD8_T probability ``0.065 exp(d / L)``, ``L = SIZE_EXCLUSION_UM2 / R_eq`` of the lesion."""
    radius = np.array([np.sqrt(shapely.Polygon(lesion.exterior).area / np.pi)
                       for lesion in lesions])
    length = SIZE_EXCLUSION_UM2 / radius[np.clip(lesion_index, 0, len(lesions) - 1)]
    return 0.065 * np.exp(np.minimum(signed, 0.0) / length)


def _size_pdl1(lesion_index: np.ndarray, lesions: list[shapely.Polygon]) -> np.ndarray:
    """Per cell, the Tumor PD-L1+ probability of its lesion (:data:`PDL1_LESION_SIZE`)."""
    area_mm2 = np.array([shapely.Polygon(lesion.exterior).area for lesion in lesions]) / 1e6
    a, b = PDL1_LESION_SIZE
    probability = np.clip(a + b * np.log10(area_mm2), 0.02, 0.98)
    return probability[np.clip(lesion_index, 0, len(lesions) - 1)]


def _draw_types(
    rng: np.random.Generator, signed: np.ndarray, tls_id: np.ndarray, phenotype: str,
    gpnmb_gradient: bool = True, cd8_inside: np.ndarray | None = None,
) -> np.ndarray:
    """Integer type code of each cell, drawn by inverse CDF from its probability row.

    ``cd8_inside``, when given, replaces the CD8_T probability of the cells inside tumour
    (Tumor takes the rest of the row).
    """
    probabilities = type_probabilities(signed, phenotype, gpnmb_gradient)
    if cd8_inside is not None:
        inside = signed < 0
        cd8, tumor = _TYPE_CODE["CD8_T"], _TYPE_CODE["Tumor"]
        probabilities[inside, tumor] += probabilities[inside, cd8] - cd8_inside[inside]
        probabilities[inside, cd8] = cd8_inside[inside]
    probabilities[tls_id > 0] = tls_probabilities(phenotype)
    cumulative = np.cumsum(probabilities, axis=1)
    uniform = rng.random(len(signed)) * cumulative[:, -1]
    codes = (uniform[:, None] >= cumulative).sum(1)
    return np.minimum(codes, len(CELL_TYPES) - 1)


def _plant_zonation(
    rng: np.random.Generator,
    xy: np.ndarray,
    signed: np.ndarray,
    tls_id: np.ndarray,
    codes: np.ndarray,
    landmarks: pd.DataFrame,
    phenotype: str,
) -> np.ndarray:
    """Redraw Macrophage vs Hepatocyte outside tumour and TLS with a periportal preference.

    A cell drawn as Macrophage or Hepatocyte becomes Macrophage with probability
    ``p_mac(eta) / (p_mac + p_hep)`` where ``p_mac(eta) = 0.05 (1.6 - 1.2 eta)``, so the
    Macrophage probability of every such cell is ``p_mac(eta)`` (see ``zonation`` of
    :func:`simulate_sample`); no-op without both landmark kinds.
    """
    kinds = landmarks["kind"].to_numpy()
    if not ((kinds == "portal").any() and (kinds == "central").any()):
        return codes
    points = landmarks[["x", "y"]].to_numpy()
    d_portal, _ = cKDTree(points[kinds == "portal"]).query(xy)
    d_central, _ = cKDTree(points[kinds == "central"]).query(xy)
    eta = d_portal / np.maximum(d_portal + d_central, 1e-12)
    mac, hep = _TYPE_CODE["Macrophage"], _TYPE_CODE["Hepatocyte"]
    chosen = np.flatnonzero((signed > 0) & (tls_id == 0) & ((codes == mac) | (codes == hep)))
    base = type_probabilities(signed[chosen], phenotype)
    pair = base[:, mac] + base[:, hep]
    a, b = KUPFFER_ZONATION
    p_mac = base[:, mac] * (a + b * eta[chosen])
    codes = codes.copy()
    codes[chosen] = np.where(rng.random(len(chosen)) < p_mac / pair, mac, hep)
    return codes


def _paint_landmarks(
    rng: np.random.Generator, xy: np.ndarray, codes: np.ndarray, landmarks: pd.DataFrame
) -> np.ndarray:
    """Relabel the 6–15 cells nearest each landmark as Portal_vein or Central_vein."""
    if landmarks.empty:
        return codes
    _, nearest = cKDTree(xy).query(landmarks[["x", "y"]].to_numpy(), k=15)
    size = rng.integers(6, 16, len(landmarks))
    take = np.arange(15)[None, :] < size[:, None]
    label = np.where(landmarks["kind"].to_numpy() == "portal",
                     _TYPE_CODE["Portal_vein"], _TYPE_CODE["Central_vein"])
    codes = codes.copy()
    codes[nearest[take]] = np.broadcast_to(label[:, None], nearest.shape)[take]
    return codes


def marker_intensities(
    rng: np.random.Generator, codes: np.ndarray, in_tls: np.ndarray
) -> np.ndarray:
    """Log-normal intensities, mean 5 where the type expresses a marker and 0.5 elsewhere.

    CCR7 is high in lymphocytes (B, CD4_T, CD8_T, Treg) inside TLS; CXCL13 in CCL19_fibroblast
    and in TLS CD4_T (T follicular helper-like) cells. Noise is exp(N(0, 0.4²) - 0.08), so the
    mean equals the stated level.

    Parameters
    ----------
    rng
        Random generator (one stream of the caller's :class:`numpy.random.SeedSequence`).
    codes
        Cell-type code per cell (index into :data:`CELL_TYPES`).
    in_tls
        True for cells inside a TLS.

    Returns
    -------
    numpy.ndarray
        ``(n, len(MARKERS))`` float32 intensities (arbitrary units).

    Examples
    --------
    >>> import numpy as np
    >>> from metaniche.simulate import marker_intensities
    >>> marker_intensities(np.random.default_rng(0), np.array([0, 1]), np.zeros(2, bool)).shape
    (2, 14)
    """
    expression = np.zeros((len(CELL_TYPES), len(MARKERS)), dtype=bool)
    for label, markers in _EXPRESSION.items():
        for marker in markers:
            expression[_TYPE_CODE[label], MARKERS.index(marker)] = True
    high = expression[codes]
    lymphocyte = np.isin(codes, [_TYPE_CODE[label] for label in _LYMPHOCYTES])
    high[:, MARKERS.index("CCR7")] |= lymphocyte & in_tls
    high[:, MARKERS.index("CXCL13")] |= (codes == _TYPE_CODE["CD4_T"]) & in_tls
    sigma = np.float32(0.4)
    noise = np.exp(rng.standard_normal(high.shape, dtype=np.float32) * sigma - sigma**2 / 2)
    return np.where(high, np.float32(5.0), np.float32(0.5)) * noise


def _cell_table(
    name: str, cell_id: pd.Series, xy: np.ndarray, codes: np.ndarray, markers: np.ndarray
) -> pd.DataFrame:
    table = pd.DataFrame({
        "sample": np.full(len(xy), name, dtype=object),
        "cell_id": cell_id.to_numpy(),
        "x": xy[:, 0],
        "y": xy[:, 1],
        "cell_type": np.array(CELL_TYPES, dtype=object)[codes],
    })
    marker_frame = pd.DataFrame(markers, columns=list(MARKERS))
    return pd.concat([table, marker_frame], axis=1)


# --------------------------------------------------------------------------------------------
# cohort and files
# --------------------------------------------------------------------------------------------


def _core_cd8_density(sample: SimulatedSample) -> float:
    """True CD8_T density of the core (cells/mm² of analytic core area; 0 when no core)."""
    core = sample.truth["compartment"].to_numpy() == CORE
    n_cd8 = int(np.sum(core & (sample.cells["cell_type"].to_numpy() == "CD8_T")))
    area = analytic_compartment_areas(sample)[CORE]
    return n_cd8 / area if area > 0 else 0.0


def _clinical_table(
    rng: np.random.Generator, samples: list[SimulatedSample], width: int,
    os_log_hr: float = 0.8, response_rates: tuple[float, float] = (0.85, 0.15),
) -> pd.DataFrame:
    density = np.array([_core_cd8_density(sample) for sample in samples])
    spread = density.std()
    z = (density - density.mean()) / spread if spread > 0 else np.zeros_like(density)
    inflamed = np.array([sample.phenotype == "inflamed" for sample in samples])
    responder = rng.random(len(samples)) < np.where(inflamed, *response_rates)
    hazard = (1.0 / 24.0) * np.exp(-os_log_hr * z)
    os_time = np.maximum(rng.exponential(1.0 / hazard), 0.1)
    return pd.DataFrame({
        "sample": [sample.name for sample in samples],
        "patient": [f"P{i + 1:0{width}d}" for i in range(len(samples))],
        "response": np.where(responder, "responder", "non-responder"),
        "os_time": os_time,
        "os_event": (rng.random(len(samples)) < 0.7).astype(np.int64),
    })


def _lesions_geojson(sample: SimulatedSample) -> dict:
    """Lesions as a FeatureCollection shaped like a QuPath annotation export (units: µm)."""
    features = []
    for index, lesion in enumerate(sample.lesions, start=1):
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"metaniche/{sample.name}/lesion/{index}")),
            "geometry": shapely.geometry.mapping(lesion),
            "properties": {
                "objectType": "annotation",
                "name": f"lesion {index}",
                "classification": {"name": "Tumor", "color": [200, 0, 0]},
            },
        })
    return {"type": "FeatureCollection", "features": features}


def _config_toml() -> str:
    immune = ", ".join(f'"{label}"' for label in IMMUNE_TYPES)
    return (
        "# metaniche configuration for a cohort written by metaniche.simulate\n"
        "[cell_types]\n"
        'tumor = ["Tumor"]\n'
        f"immune = [{immune}]\n"
        "[clinical]\n"
        'time_unit = "months"  # os_time of clinical.csv\n'
    )


def _sample_summary(sample: SimulatedSample) -> dict[str, object]:
    areas = analytic_compartment_areas(sample)
    return {
        "sample": sample.name,
        "phenotype": sample.phenotype,
        "n_lesions": len(sample.lesions),
        "n_tls": len(sample.tls),
        "has_necrosis": any(len(lesion.interiors) > 0 for lesion in sample.lesions),
        "cd8_core_density_per_mm2": _core_cd8_density(sample),
        **{f"area_mm2_{key}": value for key, value in areas.items()},
    }


def _stack(samples: list[SimulatedSample], attribute: str) -> pd.DataFrame:
    frames = [getattr(sample, attribute).assign(sample=sample.name) for sample in samples]
    non_empty = [frame for frame in frames if len(frame)]
    stacked = pd.concat(non_empty or frames[:1], ignore_index=True)
    return stacked[["sample", *[c for c in stacked.columns if c != "sample"]]]
