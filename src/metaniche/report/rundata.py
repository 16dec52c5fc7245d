"""Read-only access to a finished run directory for the report (tables loaded once, lazily)."""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from metaniche.errors import InputError

__all__ = ["RunData", "page_name"]

_SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def page_name(sample: str, record: dict[str, Any]) -> str:
    """File stem of a sample's outputs: its recorded ``file_name`` when safe, else recomputed.

    Never contains a path separator or starts with a dot, so every file derived from it stays
    inside the report directory whatever the sample is called.
    """
    stem = str(record.get("file_name") or "")
    if _SAFE.match(stem) and stem not in (".", ".."):
        return stem
    from metaniche.pipeline import safe_name

    return safe_name(sample)


class RunData:
    """The files of one run directory: manifest, long tables, features, cohort outputs.

    Parameters
    ----------
    run_dir
        A directory written by :func:`metaniche.pipeline.run`.

    Raises
    ------
    InputError
        When ``run_dir`` holds no run.json.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        manifest_path = self.run_dir / "run.json"
        if not manifest_path.is_file():
            raise InputError(f"{self.run_dir}: no run.json here; give the --out directory of a "
                             "finished 'metaniche run'.")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        self._tables: dict[str, pd.DataFrame | None] = {}
        self._by_sample: dict[str, dict[str, pd.DataFrame]] = {}

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as recorded in run.json."""
        return self.manifest.get("config", {}) or {}

    @property
    def samples(self) -> dict[str, dict[str, Any]]:
        """Sample name → status record."""
        return self.manifest.get("samples", {}) or {}

    def table(self, name: str) -> pd.DataFrame | None:
        """``tables/<name>.parquet`` or None when absent."""
        if name not in self._tables:
            path = self.run_dir / "tables" / f"{name}.parquet"
            self._tables[name] = pd.read_parquet(path) if path.is_file() else None
        return self._tables[name]

    def sample_rows(self, name: str, sample: str) -> pd.DataFrame | None:
        """Rows of ``tables/<name>.parquet`` for one sample (None when the table is absent)."""
        table = self.table(name)
        if table is None or "sample" not in table.columns:
            return None
        if name not in self._by_sample:
            self._by_sample[name] = {str(k): g for k, g in table.groupby("sample", sort=False)}
        return self._by_sample[name].get(sample, table.iloc[:0])

    @cached_property
    def features(self) -> pd.DataFrame | None:
        """features.parquet or None."""
        path = self.run_dir / "features.parquet"
        return pd.read_parquet(path) if path.is_file() else None

    @cached_property
    def n_cells(self) -> dict[str, float]:
        """Sample → number of cells (feature ``n_cells``; empty when unavailable)."""
        features = self.features
        if features is None or not {"sample", "n_cells"} <= set(features.columns):
            return {}
        return dict(zip(features["sample"].astype(str), features["n_cells"], strict=True))

    @cached_property
    def association(self) -> pd.DataFrame | None:
        """association.parquet or None."""
        path = self.run_dir / "association.parquet"
        return pd.read_parquet(path) if path.is_file() else None

    @cached_property
    def prediction(self) -> dict[str, Any] | None:
        """prediction.json or None."""
        path = self.run_dir / "prediction.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))
