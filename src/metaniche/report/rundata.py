"""Read-only access to a run directory for the report (tables loaded once, lazily).

A thin layer over :class:`metaniche.rundir.RunDir`: the manifest is the typed
:class:`~metaniche.rundir.Manifest` (read from run.json, or handed over in memory by the
pipeline before it writes run.json), sample records are :class:`~metaniche.rundir.SampleRecord`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from metaniche.rundir import Manifest, RunDir, SampleRecord

__all__ = ["RunData"]


class RunData:
    """The files of one run directory: manifest, long tables, features, cohort outputs.

    Parameters
    ----------
    run_dir
        A directory written by :func:`metaniche.pipeline.run`.
    manifest
        The run's manifest when already in memory; None reads run.json.

    Raises
    ------
    InputError
        When ``manifest`` is None and ``run_dir`` holds no readable run.json.
    """

    def __init__(self, run_dir: str | Path, manifest: Manifest | None = None) -> None:
        self.dir = RunDir(run_dir)
        self.run_dir = self.dir.root
        self.manifest: Manifest = manifest if manifest is not None else self.dir.read_manifest()
        self._tables: dict[str, pd.DataFrame | None] = {}
        self._by_sample: dict[str, dict[str, pd.DataFrame]] = {}
        self._derived: tuple[str, dict[str, Any]] = ("", {})

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as recorded in run.json."""
        return self.manifest.config

    @property
    def samples(self) -> dict[str, SampleRecord]:
        """Sample name → record."""
        return self.manifest.samples

    def table(self, name: str) -> pd.DataFrame | None:
        """``tables/<name>.parquet`` or None when absent."""
        if name not in self._tables:
            self._tables[name] = self.dir.read_table(name)
        return self._tables[name]

    def sample_rows(self, name: str, sample: str) -> pd.DataFrame | None:
        """Rows of ``tables/<name>.parquet`` for one sample (None when the table is absent)."""
        table = self.table(name)
        if table is None or "sample" not in table.columns:
            return None
        if name not in self._by_sample:
            self._by_sample[name] = {str(k): g for k, g in table.groupby("sample", sort=False)}
        return self._by_sample[name].get(sample, table.iloc[:0])

    def derived(self, key: str, sample: str, build: Callable[[], Any]) -> Any:
        """``build()``, computed once per sample page: sections of one page that show the
        same derived data (the gradient panels: the key gradients and every type's) share it.
        Only the current sample's values are kept."""
        current, values = self._derived
        if current != sample:
            values = {}
            self._derived = (sample, values)
        if key not in values:
            values[key] = build()
        return values[key]

    def cohort_table(self, name: str) -> pd.DataFrame | None:
        """``cohort/<name>.parquet`` or None when absent."""
        return self.dir.read_cohort_table(name)

    @cached_property
    def features(self) -> pd.DataFrame | None:
        """features.parquet or None."""
        return self.dir.read_features()

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
        return self.dir.read_association()

    @cached_property
    def prediction(self) -> dict[str, Any] | None:
        """prediction.json or None."""
        return self.dir.read_prediction()
