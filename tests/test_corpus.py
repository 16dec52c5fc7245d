"""A corpus of bad and degenerate inputs run together with good samples, as a new user would.

Every file of the corpus sits in one folder with two good samples and goes through
``metaniche validate`` and ``metaniche run``. Asserted for every case: no traceback; the
documented exit code (1: some input is bad); a bad file fails alone with one message naming
the file and the problem; the good samples complete and are in every table; a degenerate but
readable sample (no tumour, all tumour, no immune cells, text in a marker column) is analysed,
and its undetermined phenotype or dropped marker carries its reason in the sample's warnings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from metaniche.cli import app
from metaniche.simulate import simulate_cohort

CONFIG = """
[ligrec]
n_permutations = 0
[relations]
n_permutations = 0
[neighbourhoods]
n_neighbourhoods = 3
n_training = 300
"""


def _good(seed: int, name: str) -> pd.DataFrame:
    samples, _ = simulate_cohort(n_samples=1, n_cells=2500, seed=seed)
    cells = samples[0].cells.copy()
    cells["sample"] = name
    cells["cell_id"] = [f"{name}_{i}" for i in range(len(cells))]
    return cells


def _csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def _with(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path],
                                                                        None]:
    return lambda base, path: _csv(change(base.copy()), path)


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


def _relabel(mapping: Callable[[pd.Series], pd.Series]) -> Callable[[pd.DataFrame],
                                                                     pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame["cell_type"] = mapping(frame["cell_type"])
        return frame
    return change


IMMUNE = {"CD8_T", "CD4_T", "Treg", "B", "Macrophage", "Neutrophil", "GPNMB_macrophage",
          "S100A12_neutrophil"}

#: Bad files: each must fail alone; the message names the file and contains these words.
BAD: dict[str, tuple[Callable[[pd.DataFrame, Path], None], list[str]]] = {
    "no_x": (_with(lambda f: f.drop(columns="x")), ["'x'"]),
    "text_in_y": (_with(_set("y", 17, "12,5")), ["y", "12,5"]),
    "missing_x": (_with(_set("x", 3, np.nan)), ["x"]),
    "no_cell_type": (_with(lambda f: f.drop(columns="cell_type")), ["cell_type"]),
    "too_few": (_with(lambda f: f.head(5)), ["5 cells"]),
    "header_only": (_with(lambda f: f.head(0)), []),
    "empty": (lambda base, path: path.write_bytes(b""), ["empty"]),
    "garbage": (lambda base, path: path.write_bytes(bytes(range(256)) * 8), []),
    "duplicate_a": (_with(lambda f: f.assign(sample="TWIN")), ["TWIN"]),
    "duplicate_b": (_with(lambda f: f.assign(sample="TWIN")), ["TWIN"]),
}
#: Readable but degenerate samples: analysed, with a reason in the warnings.
DEGENERATE: dict[str, tuple[Callable[[pd.DataFrame, Path], None], str]] = {
    "no_tumour": (_with(_relabel(lambda t: t.replace({"Tumor": "CK+"}))), "tumour"),
    "all_tumour": (_with(_relabel(lambda t: pd.Series("Tumor", index=t.index))), "tumour"),
    "no_immune": (_with(lambda f: f[~f["cell_type"].isin(IMMUNE)].reset_index(drop=True)),
                  "effector"),
    "text_marker": (_with(_set("CD68", 11, "high")), "CD68"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    folder = root / "cells"
    folder.mkdir()
    base = _good(5, "base")
    _csv(_good(1, "GOOD1"), folder / "GOOD1.csv")
    _csv(_good(2, "GOOD2"), folder / "GOOD2.csv")
    for name, (write, _) in {**BAD, **DEGENERATE}.items():
        sample = "TWIN" if name.startswith("duplicate") else name
        write(base.assign(sample=sample), folder / f"{name}.csv")
    (root / "config.toml").write_text(CONFIG)
    return root


def _invoke(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, list(args))
    return done.exit_code, done.output  # stdout and stderr, interleaved


@pytest.fixture(scope="module")
def ran(corpus) -> tuple[int, str, dict]:
    out = corpus / "out"
    code, text = _invoke("run", str(corpus / "cells"), "--out", str(out), "--config",
                         str(corpus / "config.toml"), "--quiet")
    manifest = json.loads((out / "run.json").read_text())
    return code, text, manifest


def test_validate_names_every_bad_file_without_traceback(corpus):
    code, text = _invoke("validate", str(corpus / "cells"), "--config",
                         str(corpus / "config.toml"))
    assert "Traceback" not in text
    assert code == 1, text
    errors = [line for line in text.splitlines() if line.startswith("error")]
    for name, (_, words) in BAD.items():
        mine = [line for line in errors if f"{name}.csv" in line]
        assert mine, f"validate printed no error for {name}.csv:\n{text}"
        assert any(all(w in line for w in words) for line in mine), (name, mine)
    for name in ("GOOD1", "GOOD2", *DEGENERATE):
        assert not [line for line in errors if f"{name}.csv" in line], (name, errors)


def test_run_fails_each_bad_file_alone_with_its_message(ran):
    code, text, manifest = ran
    assert "Traceback" not in text
    assert code == 1, text
    records = {Path(r["source"]).stem: r for r in manifest["samples"].values()
               if r.get("source")}
    failed = {r.get("source") and Path(r["source"]).stem for r in manifest["samples"].values()
              if r["status"] == "failed"}
    for name, (_, words) in BAD.items():
        messages = [r["error"] for r in manifest["samples"].values()
                    if r["status"] == "failed" and f"{name}.csv" in (r.get("error") or "")]
        assert messages, f"{name}.csv is not recorded as failed: {failed}"
        assert any(all(w in m for w in words) for m in messages), (name, messages)
        assert "\n" not in messages[0].strip(), messages[0]
    for name in ("GOOD1", "GOOD2", *DEGENERATE):
        assert records[name]["status"] == "ok", records[name]


def test_good_and_degenerate_samples_are_in_every_table(ran, corpus):
    _, _, manifest = ran
    out = corpus / "out"
    analysed = {n for n, r in manifest["samples"].items() if r["status"] == "ok"}
    assert {"GOOD1", "GOOD2", *DEGENERATE} <= analysed
    features = pd.read_parquet(out / "features.parquet")
    assert set(features["sample"]) == analysed
    for name in ("composition", "compartments", "gradients", "distances"):
        table = pd.read_parquet(out / "tables" / f"{name}.parquet")
        assert {"GOOD1", "GOOD2"} <= set(table["sample"]), name
        assert not {"TWIN", *BAD} & set(table["sample"]), name


def test_degenerate_samples_carry_their_reason(ran, corpus):
    _, _, manifest = ran
    features = pd.read_parquet(corpus / "out" / "features.parquet").set_index("sample")
    for name, (_, word) in DEGENERATE.items():
        warnings = manifest["samples"][name]["warnings"]
        if name == "text_marker":
            assert any("CD68" in w and "high" in w for w in warnings), warnings
            continue
        assert features.loc[name, "phenotype"] == "undetermined", name
        reasons = [w for w in warnings if word in w.lower()]
        assert reasons, f"{name}: undetermined with no reason in its warnings: {warnings}"
    for name in ("GOOD1", "GOOD2"):
        assert features.loc[name, "phenotype"] != "undetermined"


def test_a_rerun_that_skips_keeps_the_reasons(ran, corpus):
    _, _, first = ran
    code, text = _invoke("run", str(corpus / "cells"), "--out", str(corpus / "out"),
                         "--config", str(corpus / "config.toml"), "--quiet")
    assert code == 1 and "Traceback" not in text
    again = json.loads((corpus / "out" / "run.json").read_text())["samples"]
    for name in ("GOOD1", "GOOD2", *DEGENERATE):
        assert again[name]["status"] == "skipped", again[name]
        assert again[name]["warnings"] == first["samples"][name]["warnings"], name
        assert again[name]["phenotype"] == first["samples"][name]["phenotype"], name
