"""Render the report of a finished run directory (no recomputation).

Writes ``report/index.html`` (cohort page) and ``report/<sample>.html`` (one page per sample,
file stem :attr:`metaniche.rundir.SampleRecord.stem`, so it never leaves ``report/``),
with figures under ``report/figures/``. Everything shown comes from the run directory's files
(run.json, tables/, features, association, prediction, the tissue-map PNGs drawn by the
per-sample tasks). User-supplied text (sample names, cell-type labels, messages) is escaped by
Jinja2's autoescaping and, inside SVG charts, by :func:`metaniche.report.svg.esc`. The pages use
no network resources, so they open offline from the file system; the only JavaScript is
inline and fixed (no user text): the zoomable tissue map's (``templates/_zoom.js.html``,
reading only ``data-*`` attributes) and the page's (``templates/_page.js.html``: sortable and
filterable tables, download of the inline SVG charts).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from metaniche import tables as T
from metaniche._atomic import write_text
from metaniche.executor import process_pool
from metaniche.report.cohort_page import cohort_sections
from metaniche.report.methods import flatten_parameters, methods_paragraphs
from metaniche.report.overview import sample_call_explanation
from metaniche.report.rundata import RunData
from metaniche.report.sample_page import GLANCE, sample_sections
from metaniche.report.svg import tissue_map
from metaniche.report.zoom import read_map_info, read_zoom_info
from metaniche.rundir import Manifest, SampleRecord

__all__ = ["render_report"]

#: Sample pages are rendered in parallel processes from this many samples on.
PARALLEL_PAGES = 64
#: Maps without a description (drawn by runs before the maps were painted, a figure with
#: axes and legend in the image) are shown on the cohort page up to this many samples.
MAX_THUMBNAILS = 48

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("metaniche.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def render_report(run_dir: str | Path, manifest: Manifest | None = None) -> Path:
    """Write the cohort page and every sample page of ``run_dir``; return index.html's path.

    Parameters
    ----------
    run_dir
        The run directory.
    manifest
        The run's manifest when in memory (the pipeline renders the report before it writes
        run.json); None reads ``run_dir``'s run.json.

    Raises
    ------
    InputError
        When ``manifest`` is None and ``run_dir`` holds no run.json (not a finished run).
    """
    run = RunData(run_dir, manifest)
    report_dir = run.dir.report_dir
    write_assets(report_dir)
    samples = [_summary(run, record) for record in run.samples.values()]
    workers = _page_workers(len(samples))
    if workers > 1:
        # Interleaved chunks balance the load; the cohort figures are drawn meanwhile.
        with process_pool(workers) as pool:
            pending = [pool.submit(_render_pages, (run.run_dir, run.manifest), samples,
                                   range(k, len(samples), workers)) for k in range(workers)]
            sections = cohort_sections(run, report_dir)
            for future in pending:
                future.result()
    else:
        _render_pages(run, samples, range(len(samples)))
        sections = cohort_sections(run, report_dir)
    version = run.manifest.metaniche_version
    stage_columns, stage_rows = _stage_table(samples)
    html = _ENV.get_template("index.html").render(
        version=version,
        seconds=None if run.manifest.seconds is None else round(float(run.manifest.seconds), 1),
        samples=samples,
        n_ok=sum(s["status"] in ("ok", "skipped") for s in samples),
        n_failed=sum(s["status"] == "failed" for s in samples),
        thumbnails=[s for s in samples if s["map_figure"]
                    or (s["map"] and len(samples) <= MAX_THUMBNAILS)],
        cohort=run.manifest.steps.get("cohort") or None,
        stage_columns=stage_columns,
        stage_rows=stage_rows,
        run_stages=_stage_seconds(run.manifest.stages),
        sections=sections,
        methods=methods_paragraphs(run.config, version, {
            name: run.table(name) for name in (T.GRADIENTS, T.ENRICHMENT, T.NEIGHBOURHOODS,
                                               T.AGGREGATES, T.ZONATION, T.COMPARTMENTS)}
            | {"association": run.association}),
        parameters=flatten_parameters(run.config),
    )
    target = run.dir.index_path
    write_text(target, html)
    return target


#: Files every page shares, written once per report (file name → template): the style sheet,
#: the page script (sortable / filterable tables, downloads, heatmap hover text) and the
#: zoomable-map viewer. Offline: plain files beside the pages, no network.
ASSETS = {"report.css": "_report.css.html", "report.js": "_page.js.html",
          "zoom.js": "_zoom.js.html"}


def write_assets(report_dir: Path) -> None:
    """Write :data:`ASSETS` into ``report_dir`` (atomically; the pages link them)."""
    for name, template in ASSETS.items():
        write_text(report_dir / name, _ENV.get_template(template).render())


def _page_workers(n_samples: int) -> int:
    """Processes for the sample pages: one below ``PARALLEL_PAGES`` samples, else the CPUs."""
    if n_samples < PARALLEL_PAGES:
        return 1
    return max(1, min(os.cpu_count() or 1, 8, n_samples // (PARALLEL_PAGES // 2)))


def _render_pages(run: RunData | tuple[Path, Manifest], samples: list[dict[str, Any]],
                  indices: Iterable[int]) -> None:
    """Write the pages ``samples[i]`` for ``i`` in ``indices`` (with prev / next links).

    ``run`` is the run, or (in a worker process) its directory and manifest.
    """
    run = run if isinstance(run, RunData) else RunData(*run)
    report_dir = run.dir.report_dir
    page = _ENV.get_template("sample.html")
    for i in indices:
        summary = samples[i]
        sections = []
        if summary["status"] in ("ok", "skipped"):
            sections = sample_sections(run, summary["name"], summary["stem"], report_dir)
        glance = [x for x in sections if x.key in GLANCE]
        html = page.render(s=summary, sections=sections, glance=glance,
                           rest=[x for x in sections if x.key not in GLANCE],
                           prev=samples[i - 1] if i > 0 else None,
                           next=samples[i + 1] if i + 1 < len(samples) else None)
        write_text(run.dir.page_path(summary["stem"]), html)


def _summary(run: RunData, record: SampleRecord) -> dict[str, Any]:
    stem = record.stem
    figure = run.dir.map_path(stem)
    page = run.dir.page_path(stem)
    return {
        "name": record.sample,
        "stem": stem,
        "page": page.name,
        "status": record.status,
        "error": record.error,
        "warnings": list(record.warnings),
        "seconds": None if record.seconds is None else round(float(record.seconds), 2),
        "phenotype": record.phenotype,
        "phenotype_why": sample_call_explanation(run, record.sample),
        "n_cells": _n_cells(run, record.sample),
        "map": figure.relative_to(run.dir.report_dir).as_posix() if figure.is_file() else None,
        "map_figure": _map_figure(figure, run.dir.report_dir),
        "zoom": read_zoom_info(figure) if figure.is_file() else None,
        "stages": _stage_seconds(record.stages),
        "slowest": _slowest(_stage_seconds(record.stages)),
    }


def _map_figure(figure: Path, report_dir: Path) -> dict[str, Any] | None:
    """The sample page's tissue map: the painted PNG in its SVG frame (µm axes, lesion ids,
    aggregate outlines; :func:`metaniche.report.svg.tissue_map`) and its legend, from the
    map's description (:func:`metaniche.report.zoom.read_map_info`). None when the map or
    its description is absent (a map of an older run: the page shows the PNG alone)."""
    info = read_map_info(figure) if figure.is_file() else None
    if info is None:
        return None
    return {"svg": Markup(tissue_map(info, figure.relative_to(report_dir).as_posix())),
            "legend": info["legend"]}


def _slowest(stages: list[tuple[str, float]]) -> str:
    """``"<stage> <seconds> s"`` of the slowest stage ('' when none was timed)."""
    if not stages:
        return ""
    name, seconds = max(stages, key=lambda pair: pair[1])
    return f"{name} {seconds:g} s"


def _stage_seconds(stages: object) -> list[tuple[str, float]]:
    """``(stage, seconds)`` pairs of a run.json ``stages`` mapping (empty when malformed)."""
    if not isinstance(stages, dict):
        return []
    pairs = []
    for name, seconds in stages.items():
        try:
            pairs.append((str(name), round(float(seconds), 2)))
        except (TypeError, ValueError):
            continue
    return pairs


def _stage_table(samples: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Columns (every stage, in first-seen order) and rows (page, sample name, seconds…) of
    the per-stage time table of the cohort page."""
    columns: list[str] = []
    for summary in samples:
        columns += [name for name, _ in summary["stages"] if name not in columns]
    rows = []
    for summary in samples:
        times = dict(summary["stages"])
        if times:
            rows.append([summary["page"], summary["name"],
                         *(f"{times[c]:g}" if c in times else "–" for c in columns)])
    return columns, rows


def _n_cells(run: RunData, name: str) -> str:
    value = run.n_cells.get(name)
    return "" if value is None or pd.isna(value) else f"{int(value):,}"
