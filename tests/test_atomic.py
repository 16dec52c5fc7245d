"""Atomic writers of :mod:`metaniche._atomic`: the Parquet writer's direct Arrow build gives
back what ``DataFrame.to_parquet(index=False)`` gives, and falls back where it could not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from metaniche._atomic import _plain_arrow, write_parquet

N = 7
RNG = np.random.default_rng(0)
FLOATS = RNG.normal(size=N)
FLOATS[[1, 4]] = np.nan

PLAIN = {
    "numbers": pd.DataFrame({"f": FLOATS, "i": np.arange(N), "u": np.arange(N, dtype=np.uint16),
                             "b": np.arange(N) % 2 == 0, "f32": FLOATS.astype(np.float32)}),
    "strings with None": pd.DataFrame({"s": ["a", None, "c", "é", "", "f", None],
                                       "x": np.ones(N)}),
    "all None": pd.DataFrame({"s": [None] * N, "x": np.ones(N)}),
    "object floats": pd.DataFrame({"o": np.array([1.5, None, 2.0, np.nan, 3, 4, 5],
                                                 dtype=object)}),
    "object bools": pd.DataFrame({"o": np.array([True, False, None, True, True, False, True],
                                                dtype=object)}),
    "no rows": pd.DataFrame({"s": pd.Series([], dtype=object), "f": pd.Series([], dtype=float),
                             "i": pd.Series([], dtype=np.int64)}),
    "inf": pd.DataFrame({"f": [np.inf, -np.inf, 0.0, 1.0, np.nan, 2.0, 3.0]}),
    "non-default index": pd.DataFrame({"f": FLOATS}, index=np.arange(N)[::-1] * 3),
}

NEEDS_PANDAS = {
    "Int64": pd.DataFrame({"lesion_id": pd.array([1, None, 3, 4, 5, 6, 7], dtype="Int64")}),
    "category": pd.DataFrame({"c": pd.Categorical(list("abcabca"))}),
    "datetime": pd.DataFrame({"t": pd.date_range("2026-01-01", periods=N)}),
    "int labels": pd.DataFrame({0: FLOATS, 1: FLOATS}),
    "duplicate labels": pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]),
    "named columns": pd.DataFrame({"a": FLOATS}).rename_axis(columns="kind"),
    "no columns": pd.DataFrame(index=range(N)),
    "mixed object": pd.DataFrame({"o": np.array(["a", 1, 2.0, None, "b", "c", "d"],
                                                dtype=object)}),
}


def read_back_both(frame: pd.DataFrame, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    ours, theirs = tmp_path / "ours.parquet", tmp_path / "theirs.parquet"
    write_parquet(ours, frame)
    frame.to_parquet(theirs, index=False)
    assert pq.read_schema(ours).equals(pq.read_schema(theirs), check_metadata=False)
    # the same values and nulls (NaN stored as null, as pandas writes it) for other readers
    assert pq.read_table(ours).equals(pq.read_table(theirs), check_metadata=False)
    return pd.read_parquet(ours), pd.read_parquet(theirs)


@pytest.mark.parametrize("case", sorted(PLAIN))
def test_plain_frames_are_built_directly_and_read_back_as_to_parquet_gives(case, tmp_path):
    frame = PLAIN[case]
    assert _plain_arrow(frame) is not None
    ours, theirs = read_back_both(frame, tmp_path)
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours.columns.tolist() == frame.columns.tolist()


@pytest.mark.parametrize("case", sorted(NEEDS_PANDAS))
def test_frames_needing_pandas_metadata_fall_back_and_read_back_unchanged(case, tmp_path):
    frame = NEEDS_PANDAS[case]
    assert _plain_arrow(frame) is None
    try:
        frame.to_parquet(tmp_path / "check.parquet", index=False)
    except Exception as err:   # pandas cannot write it: neither do we, with the same error
        with pytest.raises(type(err)):
            write_parquet(tmp_path / "ours.parquet", frame)
        return
    ours, theirs = read_back_both(frame, tmp_path)
    pd.testing.assert_frame_equal(ours, theirs)
    assert pq.read_schema(tmp_path / "ours.parquet").pandas_metadata is not None


def test_sample_tables_read_back_as_before(tmp_path):
    """Every table a simulated sample writes reads back exactly as ``to_parquet`` gives it."""
    from metaniche.config import Config
    from metaniche.sample import analyse_sample
    from metaniche.simulate import simulate_sample

    cells = simulate_sample("S", n_cells=3000, seed=3, states=True).cells
    analysis = analyse_sample(cells, Config(), name="S")
    direct = 0
    for name, table in {"cells": analysis.cells, **analysis.tables}.items():
        direct += _plain_arrow(table) is not None
        folder = tmp_path / name
        folder.mkdir()
        ours, theirs = read_back_both(table, folder)
        pd.testing.assert_frame_equal(ours, theirs, obj=name)
    assert direct >= len(analysis.tables) // 2   # the direct build is the common case
