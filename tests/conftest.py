"""Shared fixtures: the real-data directory (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Directory of the shared real data sets: env ``METANICHE_DATA`` or ``../shared/data``."""
    path = Path(os.environ.get("METANICHE_DATA", REPO.parent / "shared" / "data"))
    if not (path / "cells").is_dir():
        pytest.skip(f"real data directory not found at {path}; set METANICHE_DATA to run this test")
    return path
