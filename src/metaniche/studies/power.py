"""Power of a planned pre/post-treatment study, by simulation (``metaniche power``).

For every cell of the design grid (effect × patients × cores per patient) the design's
``n_studies`` studies are simulated and analysed exactly as the pipeline would analyse them:

1. each patient's pre and post slides come from
   :func:`metaniche.studies.remodel.simulate_patient` (one simulated liver per patient,
   whose cells both slides share; no marker intensities, which the chain does not read);
2. each slide is biopsied (``cores_per_patient`` needle cores or punches,
   :mod:`metaniche.studies.biopsy`; 0 = the whole slide) and every core is one image of
   the patient at that time point;
3. each image goes through the pipeline's per-sample functions
   (:func:`metaniche.studies.agreement.slide_features`: context, compartments, composition
   stage) — only what the program's features need;
4. the cohort step itself, :func:`metaniche.cohort.run.analyse_cohort` with
   ``[cohort] analyses = ["treatment"]``, tests each feature's paired change (the
   pipeline's rule: a patient's images averaged per time point, Wilcoxon signed-rank test
   of post − pre, :func:`metaniche.cohort.treatment.treatment_table`);
5. the study detects the change of a feature when that test has p < ``alpha``.

Power is the share of studies that detect it (a study whose test could not run counts as
not detecting), with its exact Clopper–Pearson interval; at effect 1.0 it is the
false-positive rate, whose expected value is at most ``alpha``.

Seeds: study *s*, patient *i* uses ``SeedSequence(seed, spawn_key=(s, i))`` in every grid
cell (common random numbers: the same livers and pre slides at every effect, the first ten
patients of a 20-patient study are the 10-patient study), and its cores
``spawn_key=(s, i, 4, t)``; results do not depend on the number of workers or the order in
which studies run. Runs are resumable: each finished grid cell is written atomically to
``OUT/studies/<key>.parquet`` (key: a hash of everything that determines it) and reused.

References
----------
1. Clopper CJ, Pearson ES. The use of confidence or fiducial limits illustrated in the case
   of the binomial. Biometrika. 1934;26:404-13.
2. Arnold BF, et al. Simulation methods to estimate design power: an overview for applied
   research. BMC Med Res Methodol. 2011;11:94.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from metaniche._atomic import write_json, write_parquet, write_text
from metaniche.config import CellTypeRoles, CohortParams, Config
from metaniche.errors import MetanicheError
from metaniche.executor import process_pool
from metaniche.studies.agreement import slide_features
from metaniche.studies.biopsy import cut_cores, place_cores
from metaniche.studies.design import DesignParams
from metaniche.studies.remodel import POST, PRE, PROGRAMS, simulate_patient

__all__ = ["POWER_COLUMNS", "STUDY_COLUMNS", "clopper_pearson", "run_power", "study_config",
           "study_pvalues"]

#: Columns of ``power.parquet`` (the contract first).
POWER_COLUMNS = ["program", "effect", "n_patients", "cores_per_patient", "feature", "power",
                 "ci_low", "ci_high", "n_studies", "n_detected", "n_tested", "alpha",
                 "core_diameter_um", "core_length_um", "mean_fold_change",
                 "seconds_per_study"]
#: Columns of each grid cell's per-study file ``studies/<key>.parquet``.
STUDY_COLUMNS = ["study", "feature", "p", "effect", "fold_change", "n", "seconds"]


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a proportion k/n (Clopper & Pearson 1934).

    Lower ``Beta(α/2; k, n − k + 1)`` (0 when k = 0), upper ``Beta(1 − α/2; k + 1, n − k)``
    (1 when k = n), α = 1 − confidence; NaN when n = 0.
    """
    if n == 0:
        return math.nan, math.nan
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def study_config(program: str) -> Config:
    """The configuration of a simulated study: the simulator's cell roles, the treatment
    analysis only, the program's primary feature as the primary family."""
    from metaniche.simulate import IMMUNE_TYPES

    return Config(cell_types=CellTypeRoles(tumor=("Tumor",), immune=IMMUNE_TYPES),
                  cohort=CohortParams(analyses=("treatment",),
                                      primary_features=(PROGRAMS[program].primary_feature,)))


def study_pvalues(design: DesignParams, effect: float, n_patients: int, cores: int,
                  study: int, diameter_um: float | None = None) -> pd.DataFrame:
    """Simulate and analyse one study; one row per program feature (:data:`STUDY_COLUMNS`).

    ``cores`` per patient and time point of width ``diameter_um`` (default: the design's
    first core diameter); 0 cores analyses the whole slides.

    ``p``, ``effect`` (matched-pairs rank-biserial) and ``fold_change`` (mean post / mean
    pre) come from the cohort step's ``treatment`` rows; NaN when the test could not run.
    """
    started = time.perf_counter()
    spec = PROGRAMS[design.program]
    config = study_config(design.program)
    diameter = float(design.core_diameter_um[0] if diameter_um is None else diameter_um)
    rows, clinical = [], []
    width = max(2, len(str(n_patients)))
    for i in range(n_patients):
        patient = f"P{i + 1:0{width}d}"
        sequence = np.random.SeedSequence(design.seed, spawn_key=(study, i))
        pre, post, truth, _ = simulate_patient(patient, design.program, float(effect),
                                               design.remodel, sequence, markers=False)
        response = "responder" if truth["responder"] else "non-responder"
        for t, (timepoint, slide) in enumerate(((PRE, pre), (POST, post))):
            if cores == 0:
                images = [(slide.name, slide.cells)]
            else:
                core_seed = np.random.SeedSequence(design.seed, spawn_key=(study, i, 4, t))
                placed = place_cores(slide.name, slide.cells["x"].to_numpy(),
                                     slide.cells["y"].to_numpy(), cores,
                                     diameter, design.core_length_um,
                                     kind=design.core_kind, target=design.core_target,
                                     signed_distance_um=slide.truth[
                                         "signed_distance_um"].to_numpy(),
                                     rng=np.random.default_rng(core_seed))
                images = [(f"{slide.name}.core{core.core}", piece) for core, piece in
                          zip(placed, cut_cores(slide.cells, placed), strict=True)]
            for name, cells in images:
                values = slide_features(cells, config, name)
                rows.append({"sample": name, "patient": patient,
                             **{f: _number(values.get(f)) for f in spec.features}})
                clinical.append({"sample": name, "patient": patient, "timepoint": timepoint,
                                 "response": response})
    features = pd.DataFrame(rows)
    table = _treatment_rows(features, pd.DataFrame(clinical), config)
    out = pd.DataFrame({"study": study, "feature": list(spec.features)})
    out = out.merge(table, on="feature", how="left")
    out["seconds"] = time.perf_counter() - started
    return out[STUDY_COLUMNS]


def _treatment_rows(features: pd.DataFrame, clinical: pd.DataFrame,
                    config: Config) -> pd.DataFrame:
    """The cohort step's paired-test rows: feature, p, effect, fold_change, n."""
    from metaniche.cohort.run import analyse_cohort

    empty = pd.DataFrame(columns=["feature", "p", "effect", "fold_change", "n"])
    try:
        result = analyse_cohort(features, clinical, config)
    except MetanicheError:
        return empty
    rows = result.association
    rows = rows[(rows["outcome"] == "treatment") & (rows["test"] == "wilcoxon_signed_rank")]
    if rows.empty:
        return empty
    if "fold_change" not in rows.columns:
        rows = rows.assign(fold_change=np.nan)
    return rows[["feature", "p", "effect", "fold_change", "n"]].astype(
        {"p": float, "effect": float, "fold_change": float})


def _study_task(args: tuple[DesignParams, float, int, int, int, float | None]
                ) -> pd.DataFrame:
    return study_pvalues(*args)


def cell_key(design: DesignParams, effect: float, n_patients: int, cores: int,
             diameter_um: float | None) -> str:
    """Hash of everything that determines a grid cell's studies (its cache file name)."""
    spec = asdict(design)
    for name in ("effects", "n_patients", "cores_per_patient", "core_diameter_um", "alpha",
                 "confidence"):
        spec.pop(name)
    spec |= {"effect": float(effect), "n_patients_cell": int(n_patients),
             "cores_cell": int(cores), "diameter_cell": diameter_um}
    if cores == 0:
        for name in ("core_length_um", "core_kind", "core_target"):
            spec.pop(name)
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def run_power(design: DesignParams, out: str | Path, workers: int = 1,
              progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run a power design and write ``OUT/power.parquet`` (+ csv), the figure and the page.

    Parameters
    ----------
    design
        The validated design (:func:`metaniche.studies.design.load_design`).
    out
        Output directory: ``power.parquet`` and ``power.csv`` (:data:`POWER_COLUMNS`),
        ``power.svg`` (power against patients, one line per effect × cores, with the
        intervals), ``index.html`` (figure and table), ``design.json``, and
        ``studies/<key>.parquet`` (per study and feature: :data:`STUDY_COLUMNS`).
    workers
        Local worker processes (results do not depend on it).
    progress
        Called with one line per finished grid cell.

    Returns
    -------
    pandas.DataFrame
        The power table.
    """
    out = Path(out)
    write_json(out / "design.json", design.to_dict())
    grid = [(float(e), int(n), int(c), d) for e in design.effects for n in design.n_patients
            for c in design.cores_per_patient
            for d in ((None,) if c == 0 else tuple(float(v) for v in design.core_diameter_um))]
    results = []
    pool = process_pool(workers) if workers > 1 else None
    try:
        for effect, n_patients, cores, diameter in grid:
            key = cell_key(design, effect, n_patients, cores, diameter)
            path = out / "studies" / f"{key}.parquet"
            if path.exists():
                studies = pd.read_parquet(path)
                state = "reused"
            else:
                tasks = [(design, effect, n_patients, cores, s, diameter)
                         for s in range(design.n_studies)]
                parts = (list(pool.map(_study_task, tasks, chunksize=1)) if pool is not None
                         else [_study_task(task) for task in tasks])
                studies = pd.concat(parts, ignore_index=True)
                write_parquet(path, studies)
                state = "done"
            results.append(_summarise(design, effect, n_patients, cores, diameter, studies))
            if progress is not None:
                size = "" if diameter is None else f" of {diameter:g} µm"
                progress(f"effect {effect:g}, {n_patients} patients, {cores} cores{size}: "
                         f"{state}")
    finally:
        if pool is not None:
            pool.shutdown()
    table = pd.concat(results, ignore_index=True)[POWER_COLUMNS]
    write_parquet(out / "power.parquet", table)
    write_text(out / "power.csv", table.to_csv(index=False))
    write_text(out / "power.svg", _figure(table, design))
    write_text(out / "index.html", _page(table, design))
    return table


def _summarise(design: DesignParams, effect: float, n_patients: int, cores: int,
               diameter: float | None, studies: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for feature in PROGRAMS[design.program].features:
        part = studies[studies["feature"] == feature]
        p = part["p"].to_numpy(np.float64)
        detected = int(np.sum(p < design.alpha))
        low, high = clopper_pearson(detected, design.n_studies, design.confidence)
        rows.append({
            "program": design.program, "effect": effect, "n_patients": n_patients,
            "cores_per_patient": cores, "feature": feature,
            "power": detected / design.n_studies, "ci_low": low, "ci_high": high,
            "n_studies": design.n_studies, "n_detected": detected,
            "n_tested": int(np.isfinite(p).sum()), "alpha": design.alpha,
            "core_diameter_um": math.nan if diameter is None else diameter,
            "core_length_um": design.core_length_um if cores else math.nan,
            "mean_fold_change": float(np.nanmean(part["fold_change"]))
            if np.isfinite(part["fold_change"].to_numpy(np.float64)).any() else math.nan,
            "seconds_per_study": float(part.groupby("study")["seconds"].first().mean()),
        })
    return pd.DataFrame(rows)


def _figure(table: pd.DataFrame, design: DesignParams) -> str:
    """Power of the primary feature against cohort size, one line per effect × cores."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = PROGRAMS[design.program].primary_feature
    data = table[table["feature"] == primary]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    several = len(design.core_diameter_um) > 1
    groups = data.assign(size=data["core_diameter_um"].fillna(0.0)).groupby(
        ["effect", "cores_per_patient", "size"])
    for (effect, cores, size), part in groups:
        part = part.sort_values("n_patients")
        label = f"×{effect:g}, " + ("whole slide" if cores == 0 else f"{cores} cores") + (
            f" of {size:g} µm" if several and cores else "")
        power = part["power"].to_numpy(np.float64)
        ax.errorbar(part["n_patients"].to_numpy(), power,
                    yerr=np.vstack([power - part["ci_low"].to_numpy(np.float64),
                                    part["ci_high"].to_numpy(np.float64) - power]),
                    marker="o", capsize=3, label=label)
    ax.axhline(design.alpha, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("patients (pre and post biopsy each)")
    ax.set_ylabel(f"power (p < {design.alpha:g})")
    ax.set_title(f"{design.program}: {primary}", fontsize=10)
    ax.legend(fontsize=8, title="effect, sampling", title_fontsize=8)
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    return buffer.getvalue()


def _page(table: pd.DataFrame, design: DesignParams) -> str:
    """A small HTML report: the design, the power curve and the table."""
    spec = PROGRAMS[design.program]
    shown = table.drop(columns=["program"]).round(4)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>metaniche power</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{padding:2px 6px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        f"<h1>Power: {html.escape(design.program)}</h1>"
        f"<p>Quantity: {html.escape(spec.quantity)}; applies to "
        f"{html.escape(spec.applies_to.replace('_', '-'))}. Primary feature "
        f"<code>{html.escape(spec.primary_feature)}</code>; a study detects the change when "
        f"the cohort step's paired Wilcoxon signed-rank test has p &lt; {design.alpha:g}. "
        f"{design.n_studies} simulated studies per cell; intervals are exact "
        f"(Clopper–Pearson, {design.confidence:.0%}). Cores: {html.escape(design.core_kind)} "
        f"{' / '.join(f'{d:g}' for d in design.core_diameter_um)} × "
        f"{design.core_length_um:g} µm, "
        f"{html.escape(design.core_target)} placement; 0 cores = the whole slide. At "
        "effect 1 the power is the false-positive rate.</p>"
        "<img src='power.svg' alt='power curve'>"
        + shown.to_html(index=False, escape=True, na_rep="")
        + "</body></html>\n")


def _number(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
