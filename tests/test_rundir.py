"""The run directory module: safe names, typed records, every path inside the run directory."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest

from metaniche._atomic import write_parquet
from metaniche.config import CompartmentParams, Config
from metaniche.errors import InputError
from metaniche.rundir import (
    CN_WINDOWS,
    LAYOUT_VERSION,
    MAX_STEM,
    DoneMarker,
    Manifest,
    RunDir,
    RunDirLocked,
    SampleRecord,
    config_hash,
    safe_name,
)

HOSTILE = ["S01", "../../etc/x", "a/b", "a_b", ".hidden", "x y", "..", ".", "", "/", "\\x\\y",
           "C:\\evil", "ü-ñ", "a\x00b", "-leading", "name.", "_", "___", "a" * 80, "tab\tname",
           "<script>", "résumé.parquet", "..\\..\\x", "~", "$HOME"]


def test_safe_name_is_stable_and_documented():
    # The rule of the docstring, computed independently.
    assert safe_name("S01") == "S01"
    assert safe_name("a.b-c_d") == "a.b-c_d"
    for name, cleaned in [("x y", "x_y"), ("../../etc/x", "etc_x"), (".hidden", "hidden"),
                          ("", "sample"), ("ü-ñ", "-")]:
        digest = hashlib.sha1(name.encode()).hexdigest()[:6]
        assert safe_name(name) == f"{cleaned}-{digest}"


def test_safe_name_bounds_long_names_and_keeps_them_distinct(tmp_path):
    long = ["a" * 300, "a" * 300 + "b", "x/" * 200, "a" * MAX_STEM, "a" * (MAX_STEM + 1)]
    stems = [safe_name(n) for n in long]
    assert len(set(stems)) == len(stems)
    assert all(len(s) <= MAX_STEM + 7 for s in stems)
    assert stems[3] == "a" * MAX_STEM  # at the limit: unchanged
    digest = hashlib.sha1(long[0].encode()).hexdigest()[:6]
    assert stems[0] == "a" * MAX_STEM + "-" + digest
    # Every file of the layout can be created with the longest stem.
    run = RunDir(tmp_path)
    for stem in stems:
        for path in (run.page_path(stem), run.cells_path(stem),
                     run.map_path(stem).with_name(run.map_path(stem).name + ".zoom.json")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")


def test_safe_names_are_distinct_plain_and_never_escape(tmp_path):
    stems = [safe_name(n) for n in HOSTILE]
    assert len(set(stems)) == len(stems)
    run = RunDir(tmp_path / "out")
    root = run.root.resolve()
    for stem in stems:
        assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
        for path in (run.cells_path(stem), run.page_path(stem), run.map_path(stem),
                     run.sample_dir(stem), run.done_path(stem),
                     run.sample_features_path(stem, "gen-1"),
                     run.sample_table_path(stem, "composition", "gen-1"),
                     run.sample_table_path(stem, CN_WINDOWS, "gen-1"),
                     run.generation_map_path(stem, "gen-1")):
            assert root in path.resolve().parents
            # The stem is one whole path component (plus its extension).
            parts = path.resolve().relative_to(root).parts
            assert any(p == stem or p.startswith(stem + ".") for p in parts)


def test_every_path_is_under_the_run_directory(tmp_path):
    run = RunDir(tmp_path)
    root = tmp_path.resolve()
    properties = [run.manifest_path, run.tables_dir, run.features_path, run.features_csv_path,
                  run.dictionary_path, run.clinical_path, run.association_path,
                  run.prediction_path, run.report_dir, run.index_path,
                  run.table_path("composition"), run.cohort_table_path("lesion_size_exclusion")]
    for path in properties:
        assert root in path.resolve().parents
    assert run.manifest_path.name == "run.json"
    assert run.cells_path("S1") == tmp_path / "cells" / "S1.parquet"
    assert run.table_path("x") == tmp_path / "tables" / "x.parquet"
    assert run.map_path("S1") == tmp_path / "report" / "figures" / "S1.map.png"
    generation = tmp_path / ".samples" / "S1" / "gen-2"
    assert run.sample_table_path("S1", "x", "gen-2") == generation / "tables" / "x.arrow"
    assert run.sample_table_path("S1", CN_WINDOWS, "gen-2").parent == generation
    with pytest.raises(LookupError, match="no finished analysis"):
        run.sample_table_path("S1", "x")  # no current generation yet
    with pytest.raises(ValueError, match="generation"):
        run.generation_dir("S1", "../x")


@pytest.mark.parametrize("stem", ["../x", "a/b", ".hidden", "..", "", "x/../../y"])
def test_unsafe_stems_are_refused(tmp_path, stem):
    run = RunDir(tmp_path)
    for build in (run.cells_path, run.table_path, run.sample_dir, run.page_path,
                  run.cohort_table_path):
        with pytest.raises(ValueError, match="safe file stem"):
            build(stem)


def test_record_stem_never_trusts_an_unsafe_file_name():
    assert SampleRecord("S1", "S1").stem == "S1"
    forged = SampleRecord("../../etc/x", "../../etc/x")
    assert forged.stem == safe_name("../../etc/x")
    assert SampleRecord("x y", "").stem == safe_name("x y")


def _manifest() -> Manifest:
    records = {
        "S1": SampleRecord("S1", "S1", "in/S1.csv", ["pixels?"], "a" * 64, "b" * 64, "ok",
                           None, 1.25, {"compartments": 0.5, "writing": 0.1}, "inflamed"),
        "../x": SampleRecord("../x", safe_name("../x"), "in/x.csv", [], "", "b" * 64,
                             "failed", "boom", 0.0, {}, None, "Traceback ..."),
    }
    config = json.loads(json.dumps(Config().to_dict()))  # as plain JSON data (lists)
    return Manifest("1.2.3", config, "b" * 64, [{"path": "in", "bytes": None,
                                                             "sha256": None}],
                    "clinical.csv", records,
                    {"neighbourhoods": {"status": "ok", "n_neighbourhoods": 4},
                     "lesion_size_exclusion": {"status": "skipped", "reason": "none"},
                     "cohort": None},
                    {"gather": 0.1, "report": 2.0}, 12.5)


def test_manifest_round_trip_through_run_json(tmp_path):
    manifest = _manifest()
    run = RunDir(tmp_path)
    run.write_manifest(manifest)
    again = run.read_manifest()
    assert again == manifest
    data = json.loads(run.manifest_path.read_text())
    # The run.json keys every earlier reader uses.
    assert list(data) == ["metaniche_version", "config", "config_sha256", "inputs", "clinical",
                          "samples", "neighbourhoods", "lesion_size_exclusion", "cohort",
                          "stages", "seconds"]
    assert data["samples"]["S1"]["status"] == "ok"
    assert "traceback" not in data["samples"]["S1"]
    assert data["samples"]["../x"]["traceback"] == "Traceback ..."
    assert again.failed_samples == ["../x"]
    assert again.failed_steps == []
    assert again.samples["S1"].succeeded and not again.samples["../x"].succeeded


def test_manifest_reads_partial_records_and_lists_failed_steps():
    manifest = Manifest.from_dict({"samples": {"S1": {"status": "ok", "file_name": "S1",
                                                      "unknown_key": 1}},
                                   "cohort": {"status": "failed", "error": "no patient"},
                                   "lesion_size_exclusion": {"status": "ok", "rows": 3}})
    record = manifest.samples["S1"]
    assert record.sample == "S1" and record.stages == {} and record.warnings == []
    assert manifest.failed_steps == ["cohort"]


def test_missing_or_broken_run_json_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"no run\.json"):
        RunDir(tmp_path).read_manifest()
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(InputError, match=r"unreadable run\.json"):
        RunDir(tmp_path).read_manifest()


def test_config_hash_changes_with_any_value():
    assert config_hash(Config()) == config_hash(Config())
    assert config_hash(Config()) != config_hash(Config(compartments=CompartmentParams(
        border_um=200)))


def test_sample_cache_round_trip_and_skip_decision(tmp_path):
    run = RunDir(tmp_path)
    cells = pd.DataFrame({"cell_id": ["a", "b"], "x": [0.0, 1.0]})
    tables = {"composition": pd.DataFrame({"n": [1, 2]}),
              CN_WINDOWS: pd.DataFrame({"A": np.array([1, 2], np.uint16)})}
    generation = run.write_sample("S1", cells, tables, {"n_cells": 2, "phenotype": "desert"})
    # Nothing is visible before the switch.
    assert run.is_current("S1", "abc", "cfg") is None
    assert not run.cells_path("S1").exists()
    assert run.sample_table_names("S1") == [] and run.read_sample_table("S1", "composition") is None
    run.write_done("S1", DoneMarker("abc", "cfg", 1.5, {"writing": 0.2}, generation=generation))
    marker = run.is_current("S1", "abc", "cfg")
    assert marker is not None and marker.seconds == 1.5 and marker.stages == {"writing": 0.2}
    assert set(marker.files) == {"cells.parquet", "features.json", "tables/composition.arrow",
                                 f"{CN_WINDOWS}.arrow"}
    # The recorded checksums are those of the files, computed independently.
    features = run.sample_features_path("S1")
    assert marker.files["features.json"] == {
        "bytes": features.stat().st_size,
        "sha256": hashlib.sha256(features.read_bytes()).hexdigest()}
    pd.testing.assert_frame_equal(run.read_cells("S1"), cells)
    assert run.is_current("S1", "abc", "other") is None
    assert run.is_current("S1", "", "cfg") is None
    assert run.sample_table_names("S1") == ["composition"]  # private tables are not gathered
    assert run.read_sample_table("S1", CN_WINDOWS)["A"].dtype == np.uint16
    assert run.read_sample_features("S1") == {"n_cells": 2, "phenotype": "desert"}
    # A cache of another layout version is not current.
    done = json.loads(run.done_path("S1").read_text())
    run.done_path("S1").write_text(json.dumps(done | {"layout": LAYOUT_VERSION - 1}))
    assert run.is_current("S1", "abc", "cfg") is None
    run.done_path("S1").write_text(json.dumps(done))
    # A new generation replaces the old one only at the switch; the old one is then removed.
    second = run.write_sample("S1", cells, {"other": pd.DataFrame({"n": [3]})}, {})
    assert second != generation
    assert run.sample_table_names("S1") == ["composition"]
    run.write_done("S1", DoneMarker("abc", "cfg", 1.0, generation=second))
    assert run.sample_table_names("S1") == ["other"]
    assert run.read_sample_table("S1", CN_WINDOWS) is None
    assert sorted(p.name for p in run.sample_dir("S1").iterdir()) == [
        "done.json", second, "published.json"]


def _write(run: RunDir, name: str, cells: pd.DataFrame, tables=None, features=None) -> None:
    generation = run.write_sample(name, cells, tables or {}, features or {})
    run.write_done(name, DoneMarker("abc", "cfg", 1.0, generation=generation))


def test_damaged_cache_is_recomputed_and_damaged_cells_file_restored(tmp_path):
    run = RunDir(tmp_path)
    cells = pd.DataFrame({"cell_id": ["a", "b", "c"], "x": [0.0, 1.0, 2.0]})
    _write(run, "S1", cells, {"composition": pd.DataFrame({"n": [1, 2]})}, {"n": 3})
    assert run.check_sample("S1", "abc", "cfg").warnings == []
    # A truncated published cells file is restored from the generation, with a warning.
    path = run.cells_path("S1")
    data = path.read_bytes()
    path.unlink()                       # a new inode: the generation's copy is intact
    path.write_bytes(data[: len(data) // 2])
    check = run.check_sample("S1", "abc", "cfg")
    assert check.marker is not None
    assert len(check.warnings) == 1 and "cells/S1.parquet" in check.warnings[0]
    pd.testing.assert_frame_equal(run.read_cells("S1"), cells)
    assert run.check_sample("S1", "abc", "cfg").warnings == []
    # A missing one too.
    path.unlink()
    assert "restored" in run.check_sample("S1", "abc", "cfg").warnings[0]
    assert path.is_file()
    # A damaged cached table makes the sample be recomputed (no marker), naming the file.
    table = run.sample_table_path("S1", "composition")
    table.write_bytes(table.read_bytes()[:-10])
    check = run.check_sample("S1", "abc", "cfg")
    assert check.marker is None
    assert "composition.arrow" in check.warnings[0] and "recomputed" in check.warnings[0]
    # A truncated cells file sharing the generation's inode (truncated in place) likewise.
    _write(run, "S2", cells)
    with open(run.cells_path("S2"), "r+b") as handle:
        handle.truncate(10)
    check = run.check_sample("S2", "abc", "cfg")
    assert check.marker is None and "cells.parquet" in check.warnings[0]


def test_clean_stale_removes_temporary_files_and_unfinished_generations(tmp_path):
    run = RunDir(tmp_path)
    _write(run, "S1", pd.DataFrame({"x": [0.0]}))
    current = run.read_done("S1").generation
    leftover = run.write_sample("S1", pd.DataFrame({"x": [1.0]}), {}, {})  # never switched
    orphan = run.write_sample("S2", pd.DataFrame({"x": [1.0]}), {}, {})    # no done marker
    temporary = tmp_path / "tables" / ".composition.parquet.abc123.parquet.tmp"
    temporary.parent.mkdir()
    temporary.write_bytes(b"")
    keep = tmp_path / "tables" / "composition.parquet"
    keep.write_bytes(b"x")
    removed = set(run.clean_stale())
    assert removed == {temporary, run.sample_dir("S1") / leftover, run.sample_dir("S2") / orphan}
    assert keep.is_file() and (run.sample_dir("S1") / current).is_dir()
    assert run.is_current("S1", "abc", "cfg") is not None


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    import multiprocessing

    run = RunDir(tmp_path)
    with run.lock():
        assert run.lock_path.read_text().strip() == str(os.getpid())
        # flock locks belong to the open file: a second open in this process conflicts too.
        with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"), run.lock():
            pass
    assert not run.lock_path.exists()
    # A lock file left by a dead process is taken over.
    process = multiprocessing.get_context("spawn").Process(target=os.getpid)
    process.start()
    process.join()
    run.lock_path.write_text(f"{process.pid}\n")
    with run.lock():
        assert run.lock_path.read_text().strip() == str(os.getpid())


def test_gather_on_worker_processes_writes_the_same_tables(tmp_path):
    rng = np.random.default_rng(5)
    runs = {workers: RunDir(tmp_path / f"w{workers}") for workers in (1, 2)}
    for name in ("S3", "S1", "S2"):
        n = int(rng.integers(0, 6))
        tables = {"small": pd.DataFrame({"v": rng.random(n)}),
                  "large": pd.DataFrame({"cell_type": rng.choice(["A", "B"], 50 * n + 1),
                                         "x": rng.random(50 * n + 1)}),
                  "nullable": pd.DataFrame({"id": pd.array([1, None], dtype="Int64")})}
        for run in runs.values():
            _write(run, name, pd.DataFrame({"x": [0.0]}), tables)
    order = {"S3": "S3", "S1": "S1", "S2": "S2"}
    names = {w: run.gather_tables(order, workers=w) for w, run in runs.items()}
    assert names[1] == names[2] == ["large", "nullable", "small"]
    for name in names[1]:
        pd.testing.assert_frame_equal(runs[2].read_table(name), runs[1].read_table(name),
                                      obj=name)


def test_gather_whose_worker_dies_fails_in_one_sentence(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from metaniche import executor
    from metaniche.errors import MetanicheError

    class DyingPool:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, function, jobs):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(executor, "process_pool", lambda workers: DyingPool())
    run = RunDir(tmp_path)
    for name in ("S1", "S2"):
        _write(run, name, pd.DataFrame({"x": [0.0]}),
               {"a": pd.DataFrame({"v": [1]}), "b": pd.DataFrame({"w": [2]})})
    with pytest.raises(MetanicheError, match=r"a worker process died .* --workers 1"):
        run.gather_tables({"S1": "S1", "S2": "S2"}, workers=2)


def test_gather_puts_sample_first_and_keeps_output_order(tmp_path):
    run = RunDir(tmp_path)
    for name, n in (("S2", 2), ("S1", 1)):
        _write(run, name, pd.DataFrame({"x": [0.0]}), {"t": pd.DataFrame({"v": np.arange(n)})})
    assert run.gather_tables({"S2": "S2", "S1": "S1"}) == ["t"]
    table = run.read_table("t")
    assert list(table.columns) == ["sample", "v"]
    assert table["sample"].tolist() == ["S2", "S2", "S1"]
    assert not run.has_table(CN_WINDOWS)


def test_set_cell_column_rewrites_only_on_change(tmp_path):
    run = RunDir(tmp_path)
    _write(run, "S1", pd.DataFrame({"x": [0.0, 1.0, 2.0]}))
    labels = np.array([1, 2, 3], dtype=np.int32)
    assert run.set_cell_column("S1", "neighbourhood", labels)
    mtime = run.cells_path("S1").stat().st_mtime_ns
    assert not run.set_cell_column("S1", "neighbourhood", labels.copy())
    assert run.cells_path("S1").stat().st_mtime_ns == mtime
    assert run.set_cell_column("S1", "neighbourhood", labels[::-1].copy())
    np.testing.assert_array_equal(run.read_cells("S1")["neighbourhood"], labels[::-1])
    assert list(run.read_cells("S1").columns) == ["x", "neighbourhood"]
    # The rewritten cells file is recorded: the skip decision keeps it, without a warning.
    check = run.check_sample("S1", "abc", "cfg")
    assert check.marker is not None and check.warnings == []
    assert "neighbourhood" in run.read_cells("S1").columns


def test_concat_table_files_is_pandas_concat_of_each_file(tmp_path):
    from metaniche.rundir import concat_table_files, read_frame, write_cache_table

    def pandas_way(paths, labels):
        parts = []
        for path, label in zip(paths, labels, strict=True):
            table = pd.read_parquet(path) if path.suffix == ".parquet" else read_frame(path)
            table.insert(0, "sample", label)
            parts.append(table)
        parts = [p for p in parts if not p.empty] or parts[:1]
        return pd.concat(parts, ignore_index=True)

    rng = np.random.default_rng(0)

    def frame(n, kind="same"):
        out = pd.DataFrame({"cell_type": rng.choice(["A", "B"], n), "x": rng.random(n),
                            "n": pd.array(rng.integers(0, 5, n), dtype="Int64")})
        if kind == "int":
            out["x"] = rng.integers(0, 9, n)          # another dtype in one file
        if kind == "cat":
            # categories that differ between files (pandas then concatenates as object)
            categories = ["B", "A", "C"][:n % 3 + 1] if n % 3 else ["A", "B"]
            out["cell_type"] = pd.Categorical(out["cell_type"], categories=categories)
        return out

    def plain(n):   # plain dtypes: write_parquet stores them without pandas metadata
        return pd.DataFrame({"cell_type": rng.choice(["A", "B"], n), "x": rng.random(n),
                             "n": rng.integers(0, 5, n)})

    cases = {"same": ["same"] * 4, "mixed": ["same", "int", "same", "same"],
             "categorical": ["cat"] * 4, "ours": ["ours"] * 4,
             "both writers": ["ours", "pandas", "ours", "pandas"],
             "cache": ["cache"] * 4, "cache and parquet": ["cache", "ours", "pandas", "cache"]}
    for case, kinds in cases.items():
        paths, labels = [], []
        for k, (kind, n) in enumerate(zip(kinds, [5, 0, 7, 3], strict=True)):
            path = tmp_path / f"{case}{k}.parquet"
            if kind == "cache":   # a generation's cached table (Arrow IPC)
                path = path.with_suffix(".arrow")
                write_cache_table(path, plain(n))
            elif kind == "ours":
                write_parquet(path, plain(n))
            elif kind == "pandas":
                plain(n).to_parquet(path, index=False)
            else:
                frame(n, kind).to_parquet(path, index=False)
            paths.append(path)
            labels.append(f"S{k}")
        pd.testing.assert_frame_equal(concat_table_files(paths, labels, "sample"),
                                      pandas_way(paths, labels), obj=case)
    # every file empty: the first keeps the columns
    empty = [tmp_path / "e0.parquet", tmp_path / "e1.parquet"]
    for path in empty:
        frame(0).to_parquet(path, index=False)
    pd.testing.assert_frame_equal(concat_table_files(empty, ["a", "b"], "sample"),
                                  pandas_way(empty, ["a", "b"]))


def test_read_arrow_and_read_frame_are_read_table_and_read_parquet(tmp_path):
    import pyarrow.parquet as pq

    from metaniche.rundir import read_arrow, read_frame

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"s": rng.choice(["a", "b", None], 9), "x": rng.random(9),
                          "n": pd.array(rng.integers(0, 5, 9), dtype="Int64"),
                          "c": pd.Categorical(rng.choice(["p", "q"], 9))})
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False)
    for columns in (None, ["x", "n"], ["c"]):
        assert read_arrow(path, columns).equals(pq.read_table(path, columns=columns),
                                                check_metadata=True)
        pd.testing.assert_frame_equal(read_frame(path, columns),
                                      pd.read_parquet(path, columns=columns))


def test_cached_table_reads_back_as_its_parquet_file(tmp_path):
    """A generation's cached table (Arrow IPC) reads back as the Parquet file write_parquet
    writes of the same frame: dtypes, nulls, categoricals, column selection; a large table is
    compressed and still reads back the same."""
    import pyarrow as pa

    from metaniche.rundir import _COMPRESS_BYTES, read_arrow, read_frame, write_cache_table

    rng = np.random.default_rng(2)
    n = 11
    frames = {
        "plain": pd.DataFrame({"s": rng.choice(["a", "b", None], n), "x": rng.random(n),
                               "i": rng.integers(-5, 5, n), "u": rng.integers(0, 9, n)
                               .astype(np.uint16), "b": rng.random(n) > 0.5}),
        "extension": pd.DataFrame({"n": pd.array(rng.integers(0, 5, n), dtype="Int64"),
                                   "c": pd.Categorical(rng.choice(["p", "q"], n)),
                                   "x": np.where(rng.random(n) > 0.5, np.nan, 1.0)}),
        "empty": pd.DataFrame({"cell_type": pd.Series([], dtype=object),
                               "x": pd.Series([], dtype=float)}),
        "large": pd.DataFrame({"A": rng.poisson(0.5, 400_000).astype(np.uint16),
                               "B": rng.poisson(2.0, 400_000).astype(np.uint16)}),
    }
    assert frames["large"].memory_usage(index=False).sum() > _COMPRESS_BYTES
    for name, frame in frames.items():
        cached, parquet = tmp_path / f"{name}.arrow", tmp_path / f"{name}.parquet"
        write_cache_table(cached, frame)
        write_parquet(parquet, frame)
        with pa.OSFile(str(cached), "rb") as handle:   # an Arrow IPC file
            assert pa.ipc.open_file(handle).schema.names == list(frame.columns)
        pd.testing.assert_frame_equal(read_frame(cached), pd.read_parquet(parquet), obj=name)
        columns = list(frame.columns[::-1][:2])
        pd.testing.assert_frame_equal(read_frame(cached, columns),
                                      pd.read_parquet(parquet, columns=columns), obj=name)
        assert read_arrow(cached).schema.equals(read_arrow(parquet).schema)
    assert (tmp_path / "large.arrow").stat().st_size < frames["large"].memory_usage(
        index=False).sum() / 2      # LZ4 took the window counts to under half


def test_set_cell_column_reads_back_as_the_pandas_assign(tmp_path):
    run = RunDir(tmp_path)
    cells = pd.DataFrame({"x": [0.0, 1.0, 2.0], "cell_type": pd.Categorical(["A", "B", "A"]),
                          "name": ["a", "b", None], "lesion_id": pd.array([1, None, 2],
                                                                         dtype="Int64"),
                          "compartment": ["core", "border", "adjacent"]})
    _write(run, "S1", cells)
    before = run.read_cells("S1")
    labels = np.array([3, 1, 2], dtype=np.int32)
    assert run.set_cell_column("S1", "neighbourhood", labels)        # appended
    pd.testing.assert_frame_equal(run.read_cells("S1"), before.assign(neighbourhood=labels))
    assert run.set_cell_column("S1", "neighbourhood", labels + 1)    # replaced
    pd.testing.assert_frame_equal(run.read_cells("S1"),
                                  before.assign(neighbourhood=labels + 1))
    assert not run.set_cell_column("S1", "neighbourhood", labels + 1)
    # a column of another dtype with the same numbers is rewritten with the new dtype
    assert run.set_cell_column("S1", "neighbourhood", (labels + 1).astype(np.int64))
    assert run.read_cells("S1")["neighbourhood"].dtype == np.int64
