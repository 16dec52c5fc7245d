"""Synthetic run directories for the report tests (tables built here, no pipeline)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a run directory with run.json and the given tables (``name -> DataFrame``)."""

    def build(tables: dict[str, pd.DataFrame] | None = None, samples: dict | None = None,
              features: pd.DataFrame | None = None, association: pd.DataFrame | None = None,
              prediction: dict | None = None, config: dict | None = None) -> Path:
        run = tmp_path / "run"
        (run / "tables").mkdir(parents=True, exist_ok=True)
        samples = samples or {"S1": {"sample": "S1", "file_name": "S1", "status": "ok",
                                     "error": None, "seconds": 1.5, "phenotype": "inflamed"}}
        manifest = {"metaniche_version": "test", "config": config or {
            "um_per_unit": 1.0, "compartments": {"border_um": 100.0}}, "samples": samples,
                    "seconds": 2.0}
        (run / "run.json").write_text(json.dumps(manifest))
        for name, table in (tables or {}).items():
            table.to_parquet(run / "tables" / f"{name}.parquet", index=False)
        if features is not None:
            features.to_parquet(run / "features.parquet", index=False)
        if association is not None:
            association.to_parquet(run / "association.parquet", index=False)
        if prediction is not None:
            (run / "prediction.json").write_text(json.dumps(prediction))
        return run

    return build


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
