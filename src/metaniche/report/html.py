"""Render ``report/index.html`` from a finished run directory (no recomputation).

Everything shown comes from the files of the run directory (run.json, tables/, features,
figures); all user-supplied text is escaped by Jinja2's autoescaping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from metaniche._atomic import write_text
from metaniche.errors import InputError

__all__ = ["render_report"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("metaniche.report", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


def render_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report/index.html`` and return its path.

    Raises
    ------
    InputError
        When ``run_dir`` holds no run.json (not a finished run directory).
    """
    run_dir = Path(run_dir)
    manifest_path = run_dir / "run.json"
    if not manifest_path.is_file():
        raise InputError(f"{run_dir}: no run.json here; give the --out directory of a "
                         "finished 'metaniche run'.")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    composition = _read_table(run_dir / "tables" / "composition.parquet")
    samples = [_sample_context(name, record, composition, run_dir)
               for name, record in manifest["samples"].items()]
    html = _ENV.get_template("index.html").render(
        version=manifest.get("metaniche_version", ""),
        seconds=manifest.get("seconds"),
        config_json=json.dumps(manifest.get("config", {}), indent=2),
        samples=samples,
        n_failed=sum(s["status"] == "failed" for s in samples),
    )
    target = run_dir / "report" / "index.html"
    write_text(target, html)
    return target


def _read_table(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _sample_context(name: str, record: dict[str, Any], composition: pd.DataFrame | None,
                    run_dir: Path) -> dict[str, Any]:
    context: dict[str, Any] = {
        "name": name,
        "anchor": "s-" + record.get("file_name", name),
        "status": record.get("status", "?"),
        "error": record.get("error"),
        "warnings": record.get("warnings", []),
        "seconds": record.get("seconds"),
        "phenotype": record.get("phenotype"),
        "map": None,
        "density_columns": [],
        "density_rows": [],
    }
    figure = run_dir / "report" / "figures" / f"{record.get('file_name', name)}.map.png"
    if figure.is_file():
        context["map"] = f"figures/{figure.name}"
    if composition is not None and record.get("status") in ("ok", "skipped"):
        whole = composition[(composition["sample"] == name) & composition["lesion_id"].isna()]
        if not whole.empty:
            wide = whole.pivot_table(index="cell_type", columns="compartment",
                                     values="density_per_mm2", aggfunc="first")
            columns = [c for c in ("core", "border", "adjacent", "all") if c in wide.columns]
            context["density_columns"] = columns
            context["density_rows"] = [
                (cell_type, [_fmt(wide.loc[cell_type, c]) for c in columns])
                for cell_type in wide.index
            ]
    return context


def _fmt(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:,.1f}"
