"""Tests of metaniche.io.validate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import Config
from metaniche.io import Problem, validate_inputs


def frame(sample: str, n: int = 30, spacing: float = 10.0) -> pd.DataFrame:
    side = int(np.ceil(np.sqrt(n)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    return pd.DataFrame({"sample": sample, "x": gx.ravel()[:n] * spacing,
                         "y": gy.ravel()[:n] * spacing, "cell_type": "Tumor"})


def test_clean_inputs_have_no_problems(tmp_path: Path) -> None:
    frame("A").to_csv(tmp_path / "a.csv", index=False)
    assert validate_inputs([tmp_path / "a.csv"], Config()) == []


def test_one_problem_per_error_and_warning(tmp_path: Path) -> None:
    pd.concat([frame("A", spacing=0.5), frame("B", n=3)]).to_csv(tmp_path / "c.csv",
                                                                 index=False)
    (tmp_path / "bad.xlsx").write_bytes(b"x")
    problems = validate_inputs([tmp_path / "c.csv", tmp_path / "bad.xlsx"], Config())
    assert [(p.severity, p.sample) for p in problems] == [
        ("warning", "A"), ("error", "B"), ("error", None)]
    assert all(isinstance(p, Problem) for p in problems)
    assert problems[0].file.endswith("c.csv") and "um_per_unit" in problems[0].message
    assert "min_cells" in problems[1].message
    assert problems[2].file.endswith("bad.xlsx") and "unsupported" in problems[2].message


def test_file_wide_warning_listed_once(tmp_path: Path) -> None:
    f = pd.concat([frame("A"), frame("B")])
    f["X_um"] = f["x"]
    f.to_csv(tmp_path / "c.csv", index=False)
    from metaniche.config import ColumnNames

    problems = validate_inputs([tmp_path / "c.csv"], Config(columns=ColumnNames(x="X_um")))
    assert len(problems) == 1 and problems[0].sample is None
    assert problems[0].severity == "warning"
