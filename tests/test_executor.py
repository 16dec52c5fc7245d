"""Checks of :mod:`metaniche.executor`: Dask version agreement between client and workers
(with a stand-in client so no cluster is started) and the local pool's preloaded imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from metaniche import __version__
from metaniche.errors import MetanicheError
from metaniche.executor import _check_worker_versions, _context, _installed_version

SRC = Path(__file__).resolve().parents[1] / "src"


class Client:
    """Answers ``run`` like distributed.Client.run: worker address → the function's result."""

    def __init__(self, versions: dict[str, str] | Exception) -> None:
        self.versions = versions

    def run(self, function):
        if isinstance(self.versions, Exception):
            raise self.versions
        assert function() == __version__  # the function is the one the workers would run
        return self.versions


def test_workers_with_this_version_pass():
    _check_worker_versions(Client({"tcp://a:1": __version__, "tcp://b:2": __version__}), "x")
    assert _installed_version() == __version__


def test_a_worker_with_another_version_stops_the_run_naming_it():
    client = Client({"tcp://a:1": __version__, "tcp://b:2": "0.0.1"})
    with pytest.raises(MetanicheError) as err:
        _check_worker_versions(client, "tcp://sched:8786")
    message = str(err.value)
    assert "tcp://b:2 has 0.0.1" in message and "tcp://a:1" not in message
    assert __version__ in message and "tcp://sched:8786" in message


def test_workers_without_metaniche_are_named():
    client = Client(ModuleNotFoundError("No module named 'metaniche'"))
    with pytest.raises(MetanicheError, match=r"cannot import metaniche.*No module named"):
        _check_worker_versions(client, "tcp://sched:8786")


# --- A real cluster: workers read their own files, stage events arrive live ----------------

def _cluster_cohort(tmp_path):
    from metaniche.simulate import simulate_cohort, write_cohort

    samples, clinical = simulate_cohort(n_samples=3, n_cells=2_000, seed=5)
    return write_cohort(tmp_path / "cohort", samples, clinical)


def test_on_a_cluster_workers_read_the_files_and_stage_events_arrive_live(tmp_path):
    import pickle

    from metaniche.config import load_config
    from metaniche.pipeline import _read_inputs, run
    from metaniche.sample import SampleTask
    from test_crash import dask_cluster

    cohort = _cluster_cohort(tmp_path)
    config = load_config(cohort / "config.toml")
    local = run([cohort / "cells"], tmp_path / "local", config)
    events = []
    with dask_cluster(2) as (address, _, _):
        scanned = _read_inputs([cohort / "cells"], config, address)
        # The client holds records, not tables: every sample deferred to its worker, with the
        # same checksum as when this process reads the file itself.
        assert [s.name for s in scanned] == list(local.samples)
        assert all(s.deferred and s.cells is None for s in scanned)
        assert [s.checksum for s in scanned] == [r.input_sha256 for r in
                                                 local.samples.values()]
        task = SampleTask(scanned[0], config, str(tmp_path / "x"), "h")
        assert len(pickle.dumps(task)) < 20_000   # 2,000 cells would pickle to > 100 kB
        result = run([cohort / "cells"], tmp_path / "dask", config, scheduler=address,
                     progress=events.append)
    assert not result.failed
    # "started" stage events are never replayed from a record: these came live from workers.
    live = {(e.sample, e.stage) for e in events if e.stage and e.status == "started"}
    assert {(name, "compartments") for name in local.samples} <= live
    finished = [(e.sample, e.stage) for e in events if e.stage and e.status == "finished"]
    assert len(finished) == len(set(finished)), "a stage reported finished twice"
    for name in local.samples:
        a = pd.read_parquet(tmp_path / "local" / "features.parquet").set_index("sample")
        b = pd.read_parquet(tmp_path / "dask" / "features.parquet").set_index("sample")
        pd.testing.assert_series_equal(a.loc[name], b.loc[name])


def test_a_deferred_sample_whose_file_changed_fails_alone_naming_the_file(tmp_path):
    import dataclasses

    from metaniche.config import load_config
    from metaniche.io.cells import input_entries, reload_sample, scan_entry

    cohort = _cluster_cohort(tmp_path)
    config = load_config(cohort / "config.toml")
    first = scan_entry((input_entries([cohort / "cells"], config)[0], config))[0]
    assert first.deferred and first.ok and first.cells is None
    loaded = reload_sample(first, config)
    assert loaded.cells is not None and loaded.checksum == first.checksum
    changed = reload_sample(dataclasses.replace(first, checksum="0" * 64), config)
    assert not changed.ok and str(first.source) in changed.error
    assert "changed while the run was reading it" in changed.error


@pytest.mark.skipif(_context().get_start_method() != "forkserver",
                    reason="start_workers only acts where forkserver is the start method")
@pytest.mark.parametrize("preload", [True, False])
def test_workers_forked_after_start_workers_have_its_modules_imported(preload):
    """A fresh interpreter (its forkserver not yet running) starts the workers with a module
    preloaded: a pool's worker holds it before any task imports it; without, it does not."""
    module = "metaniche.analyses.compartments"   # not imported by the pool's own machinery
    script = textwrap.dedent(f"""
        from metaniche import executor
        if {preload}:
            executor.start_workers([{module!r}])
        with executor.process_pool(1) as pool:
            print(pool.submit(eval, "{module!r} in __import__('sys').modules").result())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(preload)]
