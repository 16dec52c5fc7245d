"""Per-cohort state thresholds (:mod:`metaniche.cohort.state_thresholds`): the pooled GMM
threshold of a planted two-Gaussian cohort against its closed form, the same threshold in
every sample of a run, the config key and the errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from metaniche import tables as T
from metaniche.analyses.states import call_states
from metaniche.cohort.state_thresholds import cohort_state_thresholds, with_cohort_thresholds
from metaniche.config import Config, StateRule, StatesParams, load_config
from metaniche.errors import ConfigError, InputError
from metaniche.pipeline import run as run_pipeline
from metaniche.simulate import simulate_sample

M1, M2, SD = 2.0, 6.0, 0.8
#: Share of positive cells (the high Gaussian) per sample.
WEIGHTS = (0.1, 0.5, 0.8)
RULES = {"M_pos": StateRule(marker="M", threshold="cohort:gmm", transform="none")}


def _closed_form(w_high: float) -> float:
    """Equal-variance two-Gaussian GMM boundary: w1 N(x; m1) = w2 N(x; m2)."""
    w_low = 1 - w_high
    return (M1 + M2) / 2 + SD**2 * math.log(w_low / w_high) / (M2 - M1)


def _values(rng, n: int, w_high: float) -> np.ndarray:
    n_high = round(w_high * n)
    return rng.permutation(np.concatenate([rng.normal(M2, SD, n_high),
                                           rng.normal(M1, SD, n - n_high)]))


def test_pooled_gmm_threshold_matches_the_closed_form():
    rng = np.random.default_rng(1)
    sizes = (60_000, 40_000, 50_000)
    samples = [(f"s{i}", pd.DataFrame({"M": _values(rng, n, w)}))
               for i, (n, w) in enumerate(zip(sizes, WEIGHTS, strict=True))]
    config = Config(states=StatesParams(rules=RULES))
    table = cohort_state_thresholds(samples, config)
    pooled_w = sum(n * w for n, w in zip(sizes, WEIGHTS, strict=True)) / sum(sizes)
    row = table.iloc[0]
    assert row["threshold"] == pytest.approx(_closed_form(pooled_w), abs=0.03)
    assert (row["n_samples"], row["n_values"], row["method"], row["source"]) == (
        3, sum(sizes), "gmm", "cohort")
    # per-sample GMM thresholds differ from the pooled one by the samples' own mixes
    assert abs(_closed_form(WEIGHTS[0]) - row["threshold"]) > 0.2
    updated, _ = with_cohort_thresholds(config, samples)
    assert updated.states.cohort_thresholds == {"M_pos": row["threshold"]}
    # a given threshold is kept as it is
    given = Config(states=StatesParams(rules=RULES, cohort_thresholds={"M_pos": 3.5}))
    kept, table = with_cohort_thresholds(given, samples)
    assert kept.states.cohort_thresholds == {"M_pos": 3.5}
    assert table.iloc[0]["source"] == "given"


def test_a_run_calls_every_sample_with_the_one_cohort_threshold(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cells"
    folder.mkdir()
    for i, w in enumerate(WEIGHTS):
        cells = simulate_sample(f"s{i}", n_cells=2_500, seed=i, n_lesions=1).cells
        cells["M"] = _values(rng, len(cells), w)
        cells.to_csv(folder / f"s{i}.csv", index=False)
    config = Config(states=StatesParams(rules=RULES))
    out = tmp_path / "run"
    result = run_pipeline([folder], out, config)
    assert result.failed == []
    cohort = pd.read_parquet(out / "cohort" / "state_thresholds.parquet")
    threshold = float(cohort["threshold"].iloc[0])
    pooled = pd.concat([pd.read_csv(folder / f"s{i}.csv") for i in range(3)])
    assert threshold == cohort_state_thresholds([("all", pooled)], config)["threshold"].iloc[0]
    per_sample = pd.read_parquet(out / "tables" / f"{T.STATE_THRESHOLDS}.parquet")
    assert set(per_sample["method"]) == {"cohort:gmm"}
    assert np.all(per_sample["threshold"].to_numpy() == threshold)
    for i in range(3):
        cells = pd.read_parquet(out / "cells" / f"s{i}.parquet")
        assert np.array_equal(cells["state.M_pos"].to_numpy(), cells["M"].to_numpy() > threshold)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["config"]["states"]["cohort_thresholds"] == {"M_pos": threshold}
    # the same cohort again: same thresholds, same configuration, every sample reused
    again = run_pipeline([folder], out, config)
    assert all(r.status == "skipped" for r in again.samples.values())


def test_config_key_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[states]\ncohort_thresholds = {M_pos = 2}\n'
                    '[states.M_pos]\nmarker = "M"\nthreshold = "cohort:otsu"\n')
    config = load_config(path)
    assert config.states.rules["M_pos"].threshold == "cohort:otsu"
    assert config.states.cohort_thresholds == {"M_pos": 2.0}
    path.write_text('[states.M_pos]\nmarker = "M"\nthreshold = "cohort:mean"\n')
    with pytest.raises(ConfigError, match=r"cohort:otsu, cohort:gmm, cohort:valley"):
        load_config(path)
    path.write_text('[states]\ncohort_thresholds = {M_pos = 2}\n'
                    '[states.M_pos]\nmarker = "M"\nthreshold = "otsu"\n')
    with pytest.raises(ConfigError, match=r"cohort_thresholds\.M_pos"):
        load_config(path)
    with pytest.raises(InputError, match=r"state 'M_pos' has threshold = \"cohort:gmm\""):
        call_states(pd.DataFrame({"M": [1.0, 2.0]}), np.array(["T", "T"]), RULES, "s")



def test_a_large_pool_is_thinned_at_one_stride(monkeypatch):
    """Above MAX_POOLED_VALUES every sample is thinned at the same stride: the threshold is
    the one of the thinned pool (computed by hand) and the sample weights are kept."""
    from metaniche.cohort import state_thresholds as module
    from metaniche.phenotype import auto_threshold

    monkeypatch.setattr(module, "MAX_POOLED_VALUES", 10_000)
    rng = np.random.default_rng(3)
    a, b = _values(rng, 30_000, 0.1), _values(rng, 12_000, 0.8)
    config = Config(states=StatesParams(rules=RULES))
    row = cohort_state_thresholds([("a", pd.DataFrame({"M": a})),
                                   ("b", pd.DataFrame({"M": b}))], config).iloc[0]
    by_hand = auto_threshold(np.concatenate([a[::5], b[::5]]), "gmm", "none")
    assert row["threshold"] == by_hand and row["n_values"] == 42_000
