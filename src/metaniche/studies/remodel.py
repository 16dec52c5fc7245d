"""Pre/post-treatment remodeling: a patient-level simulator built on :mod:`metaniche.simulate`.

Each patient has one liver (one :func:`metaniche.simulate.simulate_sample` slide: lattice,
lesions, TLS, vascular landmarks) biopsied before and after treatment. Both time points draw
every cell's type from the simulator's own probability model of the signed distance to the
tumour boundary (the same model ``simulate_sample`` draws from), by the same code and with
independent random streams, so at effect 1.0 the pre and post slides are identically
distributed: any difference is sampling noise. After treatment:

* a **responder**'s lesions shrink by ``shrinkage_um`` (outer rings eroded; a lesion eroded
  away is gone), and signed distances are recomputed exactly on the new outlines;
* the patient's **remodeling program** (:data:`PROGRAMS`) changes the type probabilities of
  the patients it applies to, by the patient's realised fold ``f`` of the program's quantity.

Variability: the program's log fold of patient *p* in lesion *l* is
``log(effect) × m_p × m_l`` with ``m = exp(N(0, sd²) − sd²/2)`` (mean-one log-normal
multipliers; ``patient_sd``, ``lesion_sd``), so effect 1.0 means no change in anyone and
the variability is in the magnitude of each patient's response. A patient-level baseline
factor ``exp(N(0, baseline_sd²))`` scales the CD8_T probability at both time points (a
between-patient difference that pairing removes). The pre-treatment phenotype is drawn with
``phenotype_weights`` and the response with probability ``response_<phenotype>`` — response
is linked to the pre-treatment state.

Every planted quantity is returned as truth (:class:`RemodelCohort`): per patient the
phenotype, response probability and outcome, multipliers, realised folds, shrinkage and the
exact pre/post value of the program's quantity (cell counts over analytic compartment
areas); per lesion its fold, area before and after, and its intratumoral TLS.

References
----------
1. Halama N, et al. Localization and density of immune cells in the invasive margin of human
   colorectal cancer liver metastases are prognostic for response to chemotherapy.
   Cancer Res. 2011;71:5670-7 (CD8 infiltration of core and margin under chemotherapy).
2. Bill R, et al. CXCL9:SPP1 macrophage polarity identifies a network of cellular programs
   that control human cancers. Science. 2023;381:515-24 (SPP1+ macrophages).
3. Helmink BA, et al. B cells and tertiary lymphoid structures promote immunotherapy
   response. Nature. 2020;577:549-55.
4. Galon J, Bruni D. Approaches to treat immune hot, altered and cold tumours with
   combination immunotherapies. Nat Rev Drug Discov. 2019;18:197-218 (exclusion, periphery).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from metaniche._atomic import write_text
from metaniche.analyses.compartments import compartment_of
from metaniche.config import Integer, Interval, NonNegative, Validated
from metaniche.simulate import (
    BORDER_UM,
    CELL_TYPES,
    MARKERS,
    PHENOTYPES,
    SIZE_EXCLUSION_UM2,
    SimulatedSample,
    analytic_compartment_areas,
    cd8_probability,
    marker_intensities,
    simulate_sample,
    tls_probabilities,
    type_probabilities,
    write_cohort,
)
from metaniche.studies.programs import APPLIES_TO, PROGRAMS, TLS_AREA_PER_FOLD, Program

__all__ = ["APPLIES_TO", "PROGRAMS", "Program", "RemodelCohort", "RemodelParams",
           "simulate_patient", "simulate_remodel_cohort", "true_density",
           "write_remodel_cohort"]

#: Time-point labels written to the clinical table (the ``[clinical] pre/post`` defaults).
PRE, POST = "pre", "post"

_CODE = {name: code for code, name in enumerate(CELL_TYPES)}
_VEINS = (_CODE["Portal_vein"], _CODE["Central_vein"])


@dataclass(frozen=True)
class RemodelParams(Validated):
    """Parameters of the remodeling simulator (TOML ``[design.remodel]``).

    Attributes
    ----------
    n_cells
        Cells per slide (>= 2000; 10,000 is a 1.83 mm square). Default 10,000.
    n_lesions
        Lesions per liver, 1 to 4; 0 = drawn uniformly. Default 1.
    shift_um
        ``cd8_core_infiltration``: border→core shift of the CD8_T inside profile, µm, in
        affected patients (scaled like the log fold by the patient's and lesion's
        multipliers). Default 0.
    shrinkage_um
        Erosion of a responder's lesion outlines after treatment, µm. Default 0.
    patient_sd, lesion_sd
        SD of the log of the mean-one multipliers of the program's log fold, between patients
        and between the lesions of a patient. Defaults 0.2 and 0.1.
    baseline_sd
        SD of the patient's log CD8_T baseline factor (both time points). Default 0.2.
    inflamed_weight, excluded_weight, desert_weight
        Relative frequencies of the pre-treatment phenotypes. Defaults 1, 1, 1.
    response_inflamed, response_excluded, response_desert
        Probability of response given the pre-treatment phenotype. Defaults 0.7, 0.4, 0.2.
    """

    n_cells: int = field(default=10_000, metadata={"check": Integer(2000)})
    n_lesions: int = field(default=1, metadata={"check": Interval(
        0, 4, integer=True, note="0 = drawn")})
    shift_um: float = field(default=0.0, metadata={"check": NonNegative()})
    shrinkage_um: float = field(default=0.0, metadata={"check": NonNegative()})
    patient_sd: float = field(default=0.2, metadata={"check": NonNegative()})
    lesion_sd: float = field(default=0.1, metadata={"check": NonNegative()})
    baseline_sd: float = field(default=0.2, metadata={"check": NonNegative()})
    inflamed_weight: float = field(default=1.0, metadata={"check": NonNegative()})
    excluded_weight: float = field(default=1.0, metadata={"check": NonNegative()})
    desert_weight: float = field(default=1.0, metadata={"check": NonNegative()})
    response_inflamed: float = field(default=0.7, metadata={"check": Interval(0, 1)})
    response_excluded: float = field(default=0.4, metadata={"check": Interval(0, 1)})
    response_desert: float = field(default=0.2, metadata={"check": Interval(0, 1)})

    def _cross_checks(self) -> list:
        from metaniche.config import Problem

        weights = (self.inflamed_weight, self.excluded_weight, self.desert_weight)
        if sum(weights) <= 0:
            return [Problem("inflamed_weight", "positive for at least one phenotype "
                            "(with excluded_weight, desert_weight)", "all zero")]
        return []


@dataclass
class RemodelCohort:
    """A simulated pre/post cohort with its truth.

    Attributes
    ----------
    samples : list of SimulatedSample
        ``<patient>_pre`` and ``<patient>_post`` slides, patient by patient.
    clinical : pandas.DataFrame
        ``sample``, ``patient``, ``timepoint`` (``pre``/``post``), ``response``
        (``responder``/``non-responder``).
    truth : pandas.DataFrame
        One row per patient: ``patient``, ``program``, ``effect``, ``phenotype``,
        ``response_probability``, ``responder``, ``affected``, ``patient_multiplier``,
        ``patient_fold`` (exp(log effect × m_p) when affected, else 1), ``shift_um``
        (realised), ``shrinkage_um`` (realised), ``baseline_factor``, ``true_pre``,
        ``true_post`` (the program's quantity, cells/mm², from each slide's exact cell types
        and analytic compartment areas; NaN without that compartment) and
        ``true_fold`` (true_post / true_pre).
    lesions : pandas.DataFrame
        One row per patient × lesion: ``patient``, ``lesion_id``, ``fold``, ``area_pre_mm2``,
        ``area_post_mm2``, ``n_tls_intratumoral``, ``tls_area_mm2``.
    """

    samples: list[SimulatedSample]
    clinical: pd.DataFrame
    truth: pd.DataFrame
    lesions: pd.DataFrame


def _multiplier(rng: np.random.Generator, sd: float, size: int | None = None) -> np.ndarray:
    """Mean-one log-normal multipliers exp(N(0, sd²) − sd²/2)."""
    return np.exp(rng.normal(0.0, sd, size) - sd * sd / 2)


def simulate_patient(patient: str, program: str, effect: float,
                     params: RemodelParams | None = None,
                     seed: int | np.random.SeedSequence = 0, *,
                     markers: bool = True) -> tuple[
                         SimulatedSample, SimulatedSample, dict, pd.DataFrame]:
    """Simulate one patient's pre- and post-treatment slides under a remodeling program.

    Parameters
    ----------
    patient
        Patient id; slides are named ``<patient>_pre`` and ``<patient>_post``.
    program
        A key of :data:`PROGRAMS`.
    effect
        The program's fold (> 0; 1.0 = no change).
    params
        Simulator parameters (default :class:`RemodelParams`).
    seed
        Seed or SeedSequence of the patient; it spawns four streams (patient-level draws,
        the liver, the pre draw, the post draw), so the liver and the pre slide do not
        depend on ``program`` or ``effect`` (common random numbers across a design grid).
    markers
        Draw the slides' marker intensities (:data:`metaniche.simulate.MARKERS`, the last
        draw of each time point's stream, so cell types and truth do not depend on it);
        False leaves the marker columns out (``metaniche power``: composition reads none).

    Returns
    -------
    pre, post : SimulatedSample
    truth : dict
        The patient's truth row (see :class:`RemodelCohort`).
    lesions : pandas.DataFrame
        The patient's lesion truth rows.
    """
    if program not in PROGRAMS:
        raise ValueError(f"`program` must be one of {', '.join(PROGRAMS)}; got {program!r}.")
    if not (isinstance(effect, int | float) and math.isfinite(effect) and effect > 0):
        raise ValueError(f"`effect` must be a positive number; got {effect!r}.")
    params = params or RemodelParams()
    spec = PROGRAMS[program]
    streams = np.random.SeedSequence(seed) if not isinstance(
        seed, np.random.SeedSequence) else seed
    s_patient, s_liver, s_pre, s_post = streams.spawn(4)
    rng = np.random.default_rng(s_patient)
    weights = np.array([params.inflamed_weight, params.excluded_weight, params.desert_weight])
    phenotype = str(PHENOTYPES[rng.choice(3, p=weights / weights.sum())])
    p_response = float(getattr(params, f"response_{phenotype}"))
    responder = bool(rng.random() < p_response)
    m_patient = float(_multiplier(rng, params.patient_sd))
    m_lesion = _multiplier(rng, params.lesion_sd, 4)
    baseline = float(np.exp(rng.normal(0.0, params.baseline_sd)))
    affected = (spec.applies_to == "all" or (spec.applies_to == "responders") == responder)

    liver = simulate_sample(f"{patient}_pre", n_cells=params.n_cells, seed=s_liver,
                            phenotype=phenotype, n_lesions=params.n_lesions or None)
    xy = liver.cells[["x", "y"]].to_numpy()
    veins = np.isin(liver.cells["cell_type"].map(_CODE).to_numpy(), _VEINS)
    tls_id = liver.truth["tls_id"].to_numpy()
    signed_pre = liver.truth["signed_distance_um"].to_numpy()
    lesion_pre = liver.truth["lesion_id"].to_numpy() - 1

    log_fold = math.log(effect) * m_patient * m_lesion[:len(liver.lesions)] if affected else (
        np.zeros(len(liver.lesions)))
    fold = np.exp(log_fold)
    shift = params.shift_um * m_patient if (affected and program == "cd8_core_infiltration"
                                            and effect != 1.0) else 0.0
    shrink = params.shrinkage_um if responder else 0.0

    post_lesions = ([shapely.Polygon(lesion.exterior).buffer(-shrink, quad_segs=64)
                     for lesion in liver.lesions] if shrink > 0 else
                    [shapely.Polygon(lesion.exterior) for lesion in liver.lesions])
    signed_post, lesion_post = (_signed_distance(xy, post_lesions) if shrink > 0
                                else (signed_pre, lesion_pre))
    tls_rows: list[tuple[int, float]] = []
    tls_post = tls_id.copy()
    if program == "tls_intratumoral" and affected:
        tls_post, tls_rows = _intratumoral_tls(np.random.default_rng(s_post.spawn(1)[0]), xy,
                                               signed_post, lesion_post, post_lesions, fold,
                                               tls_id)
    rng_pre, rng_post = np.random.default_rng(s_pre), np.random.default_rng(s_post)
    p_pre = _probabilities(signed_pre, phenotype, baseline)
    codes_pre = _draw(rng_pre, p_pre, tls_id, phenotype, liver.cells["cell_type"], veins)
    p_post = _probabilities(signed_post, phenotype, baseline)
    cell_fold = fold[np.clip(lesion_post, 0, len(fold) - 1)] if len(fold) else np.ones(len(xy))
    _apply_program(program, p_post, signed_post, phenotype, baseline, cell_fold, shift,
                   lesion_post, post_lesions)
    codes_post = _draw(rng_post, p_post, tls_post, phenotype, liver.cells["cell_type"], veins)

    pre = _slide(liver, f"{patient}_pre", codes_pre, tls_id > 0, signed_pre, lesion_pre,
                 tls_id, liver.lesions, rng_pre, markers)
    remaining = [part for p in post_lesions for part in shapely.get_parts(p) if not p.is_empty]
    post = _slide(liver, f"{patient}_post", codes_post, tls_post > 0, signed_post,
                  lesion_post, tls_post, remaining, rng_post, markers)
    true_pre = true_density(pre, spec.cell_type, spec.compartment)
    true_post = true_density(post, spec.cell_type, spec.compartment)
    truth = {
        "patient": patient, "program": program, "effect": float(effect),
        "phenotype": phenotype, "response_probability": p_response, "responder": responder,
        "affected": affected, "patient_multiplier": m_patient,
        "patient_fold": float(math.exp(math.log(effect) * m_patient)) if affected else 1.0,
        "shift_um": float(shift), "shrinkage_um": float(shrink), "baseline_factor": baseline,
        "true_pre": true_pre, "true_post": true_post,
        "true_fold": true_post / true_pre if true_pre > 0 else math.nan,
    }
    tls_frame = pd.DataFrame(tls_rows, columns=["lesion_index", "area_um2"])
    lesions = pd.DataFrame({
        "patient": patient,
        "lesion_id": np.arange(1, len(liver.lesions) + 1),
        "fold": fold,
        "area_pre_mm2": [shapely.Polygon(p.exterior).area / 1e6 for p in liver.lesions],
        "area_post_mm2": [p.area / 1e6 for p in post_lesions],
        "n_tls_intratumoral": [int((tls_frame["lesion_index"] == i).sum())
                               for i in range(len(liver.lesions))],
        "tls_area_mm2": [float(tls_frame.loc[tls_frame["lesion_index"] == i,
                                             "area_um2"].sum()) / 1e6
                         for i in range(len(liver.lesions))],
    })
    return pre, post, truth, lesions


def simulate_remodel_cohort(n_patients: int, program: str, effect: float,
                            params: RemodelParams | None = None,
                            seed: int = 0) -> RemodelCohort:
    """Simulate ``n_patients`` patients before and after treatment (see the module notes).

    ``SeedSequence(seed).spawn(n_patients)`` gives one stream per patient, so patient *i*
    does not depend on how many patients are simulated (a larger cohort extends a smaller
    one) nor on ``effect`` for its liver and pre slide.
    """
    if not (isinstance(n_patients, int | np.integer) and n_patients >= 1):
        raise ValueError(f"`n_patients` must be a positive integer; got {n_patients!r}.")
    width = max(2, len(str(n_patients)))
    samples, truths, lesions, clinical = [], [], [], []
    for i, stream in enumerate(np.random.SeedSequence(seed).spawn(n_patients)):
        patient = f"P{i + 1:0{width}d}"
        pre, post, truth, table = simulate_patient(patient, program, effect, params, stream)
        samples += [pre, post]
        truths.append(truth)
        lesions.append(table)
        response = "responder" if truth["responder"] else "non-responder"
        clinical += [(pre.name, patient, PRE, response), (post.name, patient, POST, response)]
    return RemodelCohort(
        samples, pd.DataFrame(clinical, columns=["sample", "patient", "timepoint", "response"]),
        pd.DataFrame(truths), pd.concat(lesions, ignore_index=True))


def write_remodel_cohort(out_dir: str | os.PathLike[str], cohort: RemodelCohort) -> Path:
    """Write a pre/post cohort like :func:`metaniche.simulate.write_cohort`, plus its truth.

    ``cells/<patient>_pre.parquet`` and ``cells/<patient>_post.parquet``, ``clinical.csv``
    (``sample, patient, timepoint, response``), ``config.toml``, the per-slide truth of
    ``write_cohort`` and ``truth/remodel_patients.csv`` (:attr:`RemodelCohort.truth`) and
    ``truth/remodel_lesions.csv`` (:attr:`RemodelCohort.lesions`), each atomically.
    """
    out = write_cohort(out_dir, cohort.samples, cohort.clinical)
    write_text(out / "truth" / "remodel_patients.csv", cohort.truth.to_csv(index=False))
    write_text(out / "truth" / "remodel_lesions.csv", cohort.lesions.to_csv(index=False))
    return out


def true_density(sample: SimulatedSample, cell_type: str, compartment: str) -> float:
    """Exact density of ``cell_type`` in ``compartment`` (cells/mm²) of a simulated slide.

    Cells counted by their true compartment (truth signed distance, w = 100 µm) over the
    analytic compartment area (:func:`metaniche.simulate.analytic_compartment_areas`); NaN
    when the compartment has no area.
    """
    area = analytic_compartment_areas(sample)[compartment]
    if area <= 0:
        return math.nan
    inside = sample.truth["compartment"].to_numpy() == compartment
    count = int(np.sum(inside & (sample.cells["cell_type"].to_numpy() == cell_type)))
    return count / area


# --------------------------------------------------------------------------------------------


def _probabilities(signed: np.ndarray, phenotype: str, baseline: float) -> np.ndarray:
    """The simulator's type probabilities with the CD8_T column × the patient baseline."""
    probabilities = type_probabilities(signed, phenotype)
    probabilities[:, _CODE["CD8_T"]] *= baseline
    return probabilities


def _apply_program(program: str, p: np.ndarray, signed: np.ndarray, phenotype: str,
                   baseline: float, fold: np.ndarray, shift: float, lesion: np.ndarray,
                   lesions: list[shapely.Polygon]) -> None:
    """Modify the probability rows in place (the filler types are rebalanced in _draw)."""
    inside = signed < 0
    core = signed < -BORDER_UM
    if program == "cd8_core_infiltration":
        shifted = np.minimum(signed + shift, 0.0)
        profile = cd8_probability(shifted, phenotype) * baseline
        p[inside, _CODE["CD8_T"]] = profile[inside] * fold[inside]
    elif program == "spp1_macrophage_loss":
        p[:, _CODE["GPNMB_macrophage"]] *= fold
    elif program == "periphery_restriction":
        for label in ("Treg", "Macrophage"):
            p[core, _CODE[label]] *= fold[core]
    elif program == "size_exclusion":
        radius = np.array([math.sqrt(max(poly.area, 0.0) / math.pi) for poly in lesions])
        r_cell = radius[np.clip(lesion, 0, len(radius) - 1)] if len(radius) else 0.0
        rate = np.log(fold) * np.abs(signed) * r_cell / SIZE_EXCLUSION_UM2
        p[inside, _CODE["CD8_T"]] *= np.exp(-rate[inside])
    # tls_intratumoral acts through the TLS membership (see _intratumoral_tls)


def _draw(rng: np.random.Generator, p: np.ndarray, tls_id: np.ndarray, phenotype: str,
          labels: pd.Series, veins: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of each cell's type; Tumor (inside) or Hepatocyte (outside) take the
    rest of a row (non-filler columns scaled down when they exceed 1); TLS rows get the
    simulator's TLS composition; vascular landmark cells keep their label."""
    p = p.copy()
    fillers = [_CODE["Tumor"], _CODE["Hepatocyte"]]
    others = np.ones(p.shape[1], dtype=bool)
    others[fillers] = False
    total = p[:, others].sum(1)
    over = total > 1.0
    p[np.ix_(over, others)] /= total[over, None]
    inside = p[:, _CODE["Tumor"]] > 0
    rest = 1.0 - p[:, others].sum(1)
    p[:, _CODE["Tumor"]] = np.where(inside, rest, 0.0)
    p[:, _CODE["Hepatocyte"]] = np.where(inside, 0.0, rest)
    p[tls_id > 0] = tls_probabilities(phenotype)
    cumulative = np.cumsum(p, axis=1)
    uniform = rng.random(len(p)) * cumulative[:, -1]
    codes = np.minimum((uniform[:, None] >= cumulative).sum(1), len(CELL_TYPES) - 1)
    original = labels.map(_CODE).to_numpy()
    return np.where(veins, original, codes)


def _signed_distance(xy: np.ndarray, lesions: list[shapely.Polygon]) -> tuple[
        np.ndarray, np.ndarray]:
    """Exact signed distance to the nearest lesion outline (negative inside) and its index;
    +inf distance and index 0 when every lesion has gone."""
    points = shapely.points(xy)
    distances = np.full((len(lesions), len(xy)), np.inf)
    inside = np.zeros(len(xy), dtype=bool)
    for i, lesion in enumerate(lesions):
        if lesion.is_empty:
            continue
        distances[i] = shapely.distance(points, lesion.boundary)
        inside |= shapely.contains_xy(lesion, xy[:, 0], xy[:, 1])
    nearest = np.argmin(distances, axis=0)
    distance = distances[nearest, np.arange(len(xy))]
    distance = np.where(np.isfinite(distance), distance, 1e9)
    return np.where(inside, -distance, distance), nearest


def _intratumoral_tls(rng: np.random.Generator, xy: np.ndarray, signed: np.ndarray,
                      lesion: np.ndarray, lesions: list[shapely.Polygon], fold: np.ndarray,
                      tls_id: np.ndarray) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """Plant TLS discs (radius 60–100 µm, wholly in the core) until each lesion's share of
    core area covered reaches ``TLS_AREA_PER_FOLD × (fold − 1)``; returns the new TLS
    membership and one ``(lesion index, disc area µm²)`` row per TLS."""
    member = tls_id.copy()
    next_id = int(tls_id.max()) + 1 if len(tls_id) else 1
    rows: list[tuple[int, float]] = []
    for i, polygon in enumerate(lesions):
        if polygon.is_empty:
            continue
        core = polygon.buffer(-BORDER_UM, quad_segs=32)
        target = TLS_AREA_PER_FOLD * max(fold[i] - 1.0, 0.0) * core.area
        covered = 0.0
        candidates = np.flatnonzero((lesion == i) & (signed < -BORDER_UM - 100.0))
        for _ in range(200):
            if covered >= target or len(candidates) == 0:
                break
            radius = float(rng.uniform(60.0, 100.0))
            centre = xy[candidates[rng.integers(len(candidates))]]
            disc = np.hypot(xy[:, 0] - centre[0], xy[:, 1] - centre[1]) <= radius
            if (signed[disc] >= -BORDER_UM).any() or (member[disc] > 0).any():
                continue
            member[disc] = next_id
            next_id += 1
            covered += math.pi * radius**2
            rows.append((i, math.pi * radius**2))
    return member, rows


def _slide(liver: SimulatedSample, name: str, codes: np.ndarray, in_tls: np.ndarray,
           signed: np.ndarray, lesion: np.ndarray, tls_id: np.ndarray,
           lesions: list[shapely.Polygon], rng: np.random.Generator,
           markers: bool = True) -> SimulatedSample:
    """A time point's slide: the liver's cells with new types, markers (unless ``markers``
    is False: no marker column) and truth."""
    cell_id = name + "_" + pd.Series(np.arange(len(codes))).astype(str)
    cells = (liver.cells.copy() if markers else
             liver.cells[[c for c in liver.cells.columns if c not in MARKERS]].copy())
    cells["sample"] = name
    cells["cell_id"] = cell_id.to_numpy()
    cells["cell_type"] = np.asarray(CELL_TYPES, dtype=object)[codes]
    if markers:
        cells[list(MARKERS)] = marker_intensities(rng, codes, in_tls)
    truth = pd.DataFrame({
        "cell_id": cell_id.to_numpy(),
        "lesion_id": np.asarray(lesion) + 1,
        "signed_distance_um": signed,
        "compartment": compartment_of(signed, BORDER_UM),
        "tls_id": tls_id,
    })
    return SimulatedSample(name, cells, truth, lesions, liver.tissue, liver.phenotype,
                           liver.tls, liver.landmarks)
