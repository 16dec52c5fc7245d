"""The NSCLC and melanoma commands of ``examples/README.md``, run as written on the shared
data: exit 0, a cohort result, and the lesion-size step grouping lesions by the real patients.

Each command is read from the README (``metaniche run …`` lines of its ``sh`` block), with
``../shared/data`` replaced by the data directory and ``runs/<name>`` by a temporary folder.
Several minutes to half an hour each on a busy machine, hence ``slow``, and run only when
selected with ``-m slow`` (``pytest -m slow tests/cohort/test_examples_realdata.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "examples" / "README.md"


def _documented_commands() -> dict[str, list[str]]:
    """``--out`` name → argument list of each ``metaniche run`` command in the README."""
    text = README.read_text(encoding="utf-8")
    commands = {}
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command)
            if words[:2] == ["metaniche", "run"]:
                commands[Path(words[words.index("--out") + 1]).name] = words[1:]
    return commands


@pytest.mark.slow
@pytest.mark.parametrize("name, dataset, outcome", [
    ("melanoma", "melanoma_responders_spicyR", "response"),
    ("nsclc", "vectra_nsclc_lung_mxfda", "os"),
])
def test_documented_example_runs_end_to_end(request, data_dir, tmp_path, name, dataset,
                                            outcome):
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("runs a whole real cohort (minutes); select it with -m slow")
    args = _documented_commands()[name]
    out = tmp_path / name
    args = [str(data_dir) + a[len("../shared/data"):] if a.startswith("../shared/data")
            else str(out) if a == f"runs/{name}" else a for a in args]
    assert any(a.endswith(f"{dataset}.patients.csv") for a in args)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-m", "metaniche", *args, "--quiet"], cwd=REPO,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["cohort"]["status"] == "ok", manifest["cohort"]
    assert manifest["cohort"]["unit"] == "patient"
    association = pd.read_parquet(out / "association.parquet")
    assert not association.empty and outcome in set(association["outcome"])

    # the true patient of every image, read independently of metaniche
    cells = pd.read_csv(data_dir / "cells" / f"{dataset}.cells.csv.gz",
                        usecols=["sample_id", "patient_id"], dtype=str)
    truth = cells.drop_duplicates("sample_id").set_index("sample_id")["patient_id"]
    features = pd.read_parquet(out / "features.parquet")
    assert features.columns[1] == "patient"
    assert (features.set_index("sample")["patient"] == truth.reindex(features["sample"])).all()
    lesions = pd.read_parquet(out / "tables" / "lesion_metrics.parquet")
    true_patients = truth.reindex(lesions["sample"].astype(str).unique()).nunique()
    record = manifest["lesion_size_exclusion"]
    assert record["patients_from"] == "cells"
    assert record["n_patients"] == true_patients
    table = pd.read_parquet(out / "cohort" / "lesion_size_exclusion.parquet")
    assert table["n_patients"].max() == true_patients
