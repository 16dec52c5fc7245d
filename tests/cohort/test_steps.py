"""The run-level step registry: order, failure isolation, features and run.json written once,
neighbourhood windows computed once and reused exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from metaniche import pipeline, rundir
from metaniche.analyses.communities import (
    assign_neighbourhoods,
    fit_neighbourhoods,
    neighbourhood_composition,
    window_fractions,
)
from metaniche.cohort.steps import RUN_STEPS, RunState, RunStep, StepResult, run_step
from metaniche.config import Config, LigrecParams, NeighbourhoodParams
from metaniche.progress import RUN_STAGES
from metaniche.rundir import CN_WINDOWS, RunDir
from metaniche.simulate import simulate_sample
from metaniche.stages import communities

CONFIG = Config(neighbourhoods=NeighbourhoodParams(n_neighbourhoods=5),
                ligrec=LigrecParams(n_permutations=0))


def test_registry_order_names_and_keys():
    names = [step.name for step in RUN_STEPS]
    assert names == [s for s in RUN_STAGES if s in names]  # progress stages in run order
    reads = [step.reads_features for step in RUN_STEPS]
    assert reads == sorted(reads)  # feature producers before readers
    assert RUN_STAGES.index("features") > max(RUN_STAGES.index(s.name) for s in RUN_STEPS
                                              if not s.reads_features)
    assert len({step.key for step in RUN_STEPS}) == len(RUN_STEPS)
    owners = {family: step.name for step in RUN_STEPS for family in step.families}
    assert owners["cn_fraction"] == "neighbourhoods"


def test_run_step_never_raises(tmp_path):
    def boom(state):
        raise ZeroDivisionError("planted")

    state = RunState(RunDir(tmp_path), CONFIG, {})
    result = run_step(RunStep("boom", "boom", boom), state)
    assert result.record["status"] == "failed"
    assert "ZeroDivisionError('planted')" in result.record["error"]
    assert "traceback" in result.record


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for index in range(2):
        cells = simulate_sample(f"S{index}", 3000, seed=index, with_tls=True).cells
        path = folder / f"S{index}.parquet"
        cells.to_parquet(path)
        paths.append(path)
    return paths


def test_failing_step_is_recorded_and_loses_nothing(inputs, tmp_path, monkeypatch):
    def boom(state):
        raise RuntimeError("planted failure")

    steps = [RUN_STEPS[0], RunStep("boom", "boom", boom, {"boom": ("", "")}), *RUN_STEPS[1:]]
    monkeypatch.setattr(pipeline, "RUN_STEPS", steps)
    written = []
    real_parquet, real_json = rundir.write_parquet, rundir.write_json
    monkeypatch.setattr(rundir, "write_parquet",
                        lambda target, table: (written.append(target), real_parquet(target,
                                                                                    table)))
    monkeypatch.setattr(rundir, "write_json",
                        lambda target, obj: (written.append(target), real_json(target, obj)))
    calls = []
    real_composition = communities.neighbourhood_composition
    monkeypatch.setattr(communities, "neighbourhood_composition",
                        lambda *args: (calls.append(1), real_composition(*args))[1])

    out = tmp_path / "out"
    events = []
    result = pipeline.run(inputs, out, CONFIG, progress=events.append)
    assert result.failed == []
    assert result.failed_steps == ["boom"]
    run_events = [(e.stage, e.status) for e in events if e.sample is None and e.stage]
    assert ("boom", "failed") in run_events and ("neighbourhoods", "finished") in run_events
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["boom"]["status"] == "failed"
    assert "planted failure" in manifest["boom"]["error"]
    assert manifest["neighbourhoods"]["status"] == "ok"
    assert manifest["lesion_size_exclusion"]["status"] in ("ok", "skipped")
    # Everything else is there: tables, cells with their CN, features, report.
    assert (out / "tables" / "neighbourhoods.parquet").is_file()
    assert (out / "report" / "index.html").is_file()
    assert not (out / "tables" / f"{CN_WINDOWS}.parquet").exists()
    features = pd.read_parquet(out / "features.parquet").set_index("sample")
    table = pd.read_parquet(out / "tables" / "neighbourhoods.parquet")
    for name in ("S0", "S1"):
        cells = pd.read_parquet(out / "cells" / f"{name}.parquet")
        counts = np.bincount(cells["neighbourhood"], minlength=6)[1:]
        np.testing.assert_allclose([features.loc[name, f"cn_fraction.CN{cn}"]
                                    for cn in range(1, 6)], counts / counts.sum())
        whole = table.query(f"sample == '{name}' and table == 'abundance' and "
                            "compartment == 'all'")
        np.testing.assert_array_equal(whole["n_cells"], counts)
    dictionary = pd.read_csv(out / "features_dictionary.csv").set_index("name")
    assert dictionary.loc["cn_fraction.CN1", "analysis"] == "neighbourhoods"
    # Written once each: features, their dictionary's source table, run.json.
    assert written.count(out / "features.parquet") == 1
    assert written.count(out / "run.json") == 1
    for name in ("S0", "S1"):
        # cells: by the sample task into its cache generation (published by a hard link),
        # then once with the CN column.
        generation = RunDir(out).generation_dir(name)
        assert written.count(generation / "cells.parquet") == 1
        assert written.count(out / "cells" / f"{name}.parquet") == 1
    # Windows computed once per sample (in its stage), never again by the cohort step.
    assert len(calls) == 2


def test_cached_windows_give_the_labels_of_freshly_computed_windows(inputs, tmp_path):
    out = tmp_path / "out"
    pipeline.run(inputs, out, CONFIG)
    run = RunDir(out)
    training = run.read_table("cn_training")
    model = fit_neighbourhoods(training, 5, CONFIG.neighbourhoods.seed)
    for name in ("S0", "S1"):
        cells = run.read_cells(name)
        codes, types = pd.factorize(cells["cell_type"].astype(str), sort=True)
        fresh = neighbourhood_composition(cKDTree(cells[["x", "y"]].to_numpy(np.float64)),
                                          codes, len(types), CONFIG.neighbourhoods.k)
        cached = run.read_sample_table(name, CN_WINDOWS)
        assert list(cached.columns) == list(types)
        assert cached.dtypes.eq(np.uint16).all()
        assert (cached.sum(axis=1) == CONFIG.neighbourhoods.k).all()
        np.testing.assert_array_equal(window_fractions(cached), fresh)
        np.testing.assert_array_equal(assign_neighbourhoods(model, fresh, list(types)),
                                      cells["neighbourhood"].to_numpy())


def test_step_features_join_later_steps_see_them(tmp_path):
    seen = {}

    def first(state):
        return StepResult({"status": "ok"}, {"A": {"x.one": 1.0}, "B": {"x.one": 2.0}})

    def second(state):
        seen.update(state.features.set_index("sample")["x.one"].to_dict())
        return StepResult({"status": "ok"})

    state = RunState(RunDir(tmp_path), CONFIG, {},
                     features=pd.DataFrame({"sample": ["A", "B", "C"], "n_cells": [1, 2, 3]}))
    run_step(RunStep("first", "first", first), state)
    run_step(RunStep("second", "second", second), state)
    assert seen["A"] == 1.0 and seen["B"] == 2.0 and np.isnan(seen["C"])
    assert list(state.features.columns) == ["sample", "n_cells", "x.one"]
