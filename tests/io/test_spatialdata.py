"""SpatialData zarr stores: detection, the error without the extra, and the reader.

The reader tests need the optional ``spatialdata`` package and are skipped without it; run
them in a separate environment, e.g.::

    python -m venv .venv-spatialdata
    .venv-spatialdata/bin/pip install -e '.[spatialdata]' pytest hypothesis
    .venv-spatialdata/bin/pytest tests/io/test_spatialdata.py

Ground truth is the geometry the test writes: circle centres, polygon centroids (closed
form for rectangles) and a known scale transformation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaniche.config import Config
from metaniche.io import read_samples
from metaniche.io._spatialdata import INSTALL_HINT

HAVE_SPATIALDATA = importlib.util.find_spec("spatialdata") is not None
CFG = Config(min_cells=1)


def only(samples):
    assert len(samples) == 1, [(s.name, s.error) for s in samples]
    return samples[0]


# --- without the extra ------------------------------------------------------------------


@pytest.mark.skipif(HAVE_SPATIALDATA, reason="spatialdata is installed")
@pytest.mark.parametrize("name", ["sample.zarr", "store_v3", "store_v2"])
def test_store_without_extra_names_the_install_command(tmp_path: Path, name: str) -> None:
    store = tmp_path / name
    store.mkdir()
    if name == "store_v3":
        (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    elif name == "store_v2":
        (store / ".zgroup").write_text('{"zarr_format": 2}')
    s = only(read_samples([store], CFG))
    assert s.file_error and s.cells is None
    assert s.error.startswith(str(store)) and "\n" not in s.error
    assert "SpatialData zarr store" in s.error and INSTALL_HINT in s.error, s.error


@pytest.mark.skipif(HAVE_SPATIALDATA, reason="spatialdata is installed")
def test_store_inside_an_input_folder_is_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x,y,cell_type\n0,0,T\n10,0,T\n")
    (tmp_path / "b.zarr").mkdir()
    (tmp_path / "notes").mkdir()  # a plain folder inside: ignored (non-recursive)
    samples = read_samples([tmp_path], CFG)
    assert [s.source.name for s in samples] == ["a.csv", "b.zarr"]
    assert samples[0].ok and INSTALL_HINT in samples[1].error


def test_store_with_a_named_text_format_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    store.mkdir()
    s = only(read_samples([store], CFG, format="inform"))
    assert "is a directory (a SpatialData zarr store)" in s.error
    assert "--format auto or spatialdata" in s.error


# --- the reader (needs spatialdata) -----------------------------------------------------


@pytest.fixture(scope="module")
def sd():
    return pytest.importorskip("spatialdata")


def circles_store(sd, path: Path, n: int = 12, seed: int = 0, regions=("cells",),
                  obsm: bool = False):
    """Circles with known centres, a table annotating them in shuffled order."""
    import anndata as ad
    import geopandas as gpd
    from shapely.geometry import Point
    from spatialdata.models import ShapesModel, TableModel

    rng = np.random.default_rng(seed)
    shapes, obs, truth = {}, [], []
    for r, region in enumerate(regions):
        xy = rng.uniform(0, 500, (n, 2))
        ids = np.arange(100 * (r + 1), 100 * (r + 1) + n)
        gdf = gpd.GeoDataFrame({"radius": np.full(n, 4.0)},
                               geometry=[Point(a, b) for a, b in xy], index=ids)
        shapes[region] = ShapesModel.parse(gdf)
        types = rng.choice(["Tumor", "CD8_T", "B"], n)
        truth.append(pd.DataFrame({"region": region, "cell_id": ids, "x": xy[:, 0],
                                   "y": xy[:, 1], "cell_type": types}))
    truth = pd.concat(truth, ignore_index=True)
    order = rng.permutation(len(truth))  # the table lists the cells in another order
    table_obs = truth.iloc[order].reset_index(drop=True)
    obs = pd.DataFrame({"region": pd.Categorical(table_obs["region"]),
                        "cell_id": table_obs["cell_id"].to_numpy(),
                        "cell_type": table_obs["cell_type"].to_numpy()})
    obs.index = obs.index.astype(str)
    markers = rng.normal(size=(len(obs), 2))
    adata = ad.AnnData(X=markers, obs=obs)
    adata.var_names = ["CD8", "PanCK"]
    if obsm:
        adata.obsm["spatial"] = table_obs[["x", "y"]].to_numpy() * 2.0
    table = TableModel.parse(adata, region=list(regions), region_key="region",
                             instance_key="cell_id")
    sd.SpatialData(shapes=shapes, tables={"table": table}).write(path)
    table_obs["CD8"] = markers[:, 0]
    return table_obs


def test_circles_centroids_ids_labels_markers(sd, tmp_path: Path) -> None:
    truth = circles_store(sd, tmp_path / "slide1.zarr")
    s = only(read_samples([tmp_path / "slide1.zarr"], CFG))
    assert s.ok, s.error
    assert s.name == "slide1" and list(s.cells.columns[:5]) == ["sample", "cell_id", "x", "y",
                                                                "cell_type"]
    assert list(s.cells["cell_id"]) == truth["cell_id"].astype(str).tolist()
    np.testing.assert_allclose(s.cells["x"], truth["x"])
    np.testing.assert_allclose(s.cells["y"], truth["y"])
    assert list(s.cells["cell_type"]) == list(truth["cell_type"])
    np.testing.assert_allclose(s.cells["CD8"], truth["CD8"])
    scaled = only(read_samples([tmp_path / "slide1.zarr"], Config(min_cells=1,
                                                                  um_per_unit=0.5)))
    np.testing.assert_allclose(scaled.cells["x"], truth["x"] * 0.5)


def test_store_detected_without_zarr_suffix(sd, tmp_path: Path) -> None:
    truth = circles_store(sd, tmp_path / "slide1.zarr")
    renamed = tmp_path / "slide1_store"
    (tmp_path / "slide1.zarr").rename(renamed)
    s = only(read_samples([renamed], CFG))
    assert s.ok, s.error
    np.testing.assert_allclose(s.cells["x"], truth["x"])


def test_one_sample_per_region(sd, tmp_path: Path) -> None:
    truth = circles_store(sd, tmp_path / "tma.zarr", n=8, regions=("fov1", "fov2"))
    samples = read_samples([tmp_path / "tma.zarr"], CFG)
    assert sorted(s.name for s in samples) == ["fov1", "fov2"]
    for s in samples:
        assert s.ok, s.error
        want = truth[truth["region"] == s.name]
        np.testing.assert_allclose(s.cells["x"], want["x"])
        assert list(s.cells["cell_id"]) == want["cell_id"].astype(str).tolist()


def test_obsm_spatial_wins_over_shapes(sd, tmp_path: Path) -> None:
    truth = circles_store(sd, tmp_path / "s.zarr", obsm=True)
    s = only(read_samples([tmp_path / "s.zarr"], CFG))
    np.testing.assert_allclose(s.cells["x"], truth["x"] * 2.0)


def test_polygon_centroids_in_the_global_system(sd, tmp_path: Path) -> None:
    import anndata as ad
    import geopandas as gpd
    from shapely.geometry import box
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import Scale

    # rectangles in pixels; global = pixels × 0.5 µm, so centroids are box centres × 0.5
    boxes = [(0, 0, 4, 2), (10, 10, 12, 16), (30, 5, 31, 9)]
    gdf = gpd.GeoDataFrame(geometry=[box(*b) for b in boxes], index=["a", "b", "c"])
    shapes = ShapesModel.parse(gdf, transformations={"global": Scale([0.5, 0.5],
                                                                     axes=("x", "y"))})
    obs = pd.DataFrame({"region": pd.Categorical(["cells"] * 3), "cell": ["c", "a", "b"],
                        "cell_type": ["T", "B", "T"]}, index=["0", "1", "2"])
    table = TableModel.parse(ad.AnnData(obs=obs), region="cells", region_key="region",
                             instance_key="cell")
    sd.SpatialData(shapes={"cells": shapes}, tables={"t": table}).write(tmp_path / "p.zarr")
    s = only(read_samples([tmp_path / "p.zarr"], CFG))
    assert s.ok, s.error
    centres = {k: ((b[0] + b[2]) / 2 * 0.5, (b[1] + b[3]) / 2 * 0.5)
               for k, b in zip("abc", boxes, strict=True)}
    np.testing.assert_allclose(s.cells[["x", "y"]].to_numpy(),
                               [centres[k] for k in ["c", "a", "b"]])
    assert list(s.cells["cell_id"]) == ["c", "a", "b"]


def test_points_element(sd, tmp_path: Path) -> None:
    import anndata as ad
    from spatialdata.models import PointsModel, TableModel

    points = PointsModel.parse(pd.DataFrame({"x": [1.0, 3.0, 10.0], "y": [2.0, 4.0, 20.0]}))
    obs = pd.DataFrame({"region": pd.Categorical(["spots"] * 3), "spot": [2, 0, 1],
                        "cell_type": ["T", "B", "T"]}, index=["0", "1", "2"])
    table = TableModel.parse(ad.AnnData(obs=obs), region="spots", region_key="region",
                             instance_key="spot")
    sd.SpatialData(points={"spots": points}, tables={"t": table}).write(tmp_path / "q.zarr")
    s = only(read_samples([tmp_path / "q.zarr"], CFG))
    assert s.ok, s.error
    np.testing.assert_allclose(s.cells["x"], [10.0, 1.0, 3.0])
    np.testing.assert_allclose(s.cells["y"], [20.0, 2.0, 4.0])


# --- malformed stores -------------------------------------------------------------------


def test_table_without_positions(sd, tmp_path: Path) -> None:
    import anndata as ad
    from spatialdata.models import TableModel

    obs = pd.DataFrame({"cell_type": ["T", "B"]}, index=["0", "1"])
    sd.SpatialData(tables={"t": TableModel.parse(ad.AnnData(obs=obs))}).write(
        tmp_path / "n.zarr")
    s = only(read_samples([tmp_path / "n.zarr"], CFG))
    for part in ("n.zarr", "table 't'", "no obsm['spatial']", "no positions",
                 "obsm['spatial']"):
        assert part in s.error, (part, s.error)


def test_no_table_and_missing_instances(sd, tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import Point
    from spatialdata.models import ShapesModel

    gdf = gpd.GeoDataFrame({"radius": [1.0]}, geometry=[Point(0, 0)], index=[5])
    sd.SpatialData(shapes={"cells": ShapesModel.parse(gdf)}).write(tmp_path / "e.zarr")
    s = only(read_samples([tmp_path / "e.zarr"], CFG))
    assert "holds no table" in s.error and "cells (shapes)" in s.error, s.error

    truth = circles_store(sd, tmp_path / "m.zarr", n=5)
    import spatialdata

    store = spatialdata.read_zarr(tmp_path / "m.zarr")
    table = store.tables["table"]
    table.obs["cell_id"] = table.obs["cell_id"].to_numpy() + 1000  # ids not in the shapes
    spatialdata.SpatialData(shapes=dict(store.shapes), tables={"table": table}).write(
        tmp_path / "m2.zarr")
    s = only(read_samples([tmp_path / "m2.zarr"], CFG))
    first = int(truth["cell_id"].iat[0]) + 1000
    for part in ("5 cells", "table rows 1, 2, 3", str(first), "no instance in element 'cells'"):
        assert part in s.error, (part, s.error)


def test_not_a_zarr_store(sd, tmp_path: Path) -> None:
    store = tmp_path / "empty.zarr"
    store.mkdir()
    s = only(read_samples([store], CFG))
    assert "no zarr.json or .zgroup" in s.error, s.error


# --- the reader's own logic with a stand-in spatialdata module (runs without the extra) ----


def test_stand_in_store_through_the_registry(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``map_spatialdata`` via ``read_samples`` with a stub ``spatialdata.read_zarr``.

    Covers the code that needs no real store: table choice, ``obsm['spatial']``, obs label
    and sample columns, markers from ``X`` and the gating placeholder; the real-store tests
    above cover ``spatialdata`` itself.
    """
    import sys
    import types

    import anndata as ad

    rng = np.random.default_rng(11)
    n = 40
    xy = rng.uniform(0, 300, (n, 2))
    obs = pd.DataFrame({"sample": np.repeat(["F1", "F2"], n // 2),
                        "leiden": rng.choice(["T", "CD8"], n)})
    obs.index = [f"c{i}" for i in range(n)]
    markers = rng.normal(size=(n, 2))
    table = ad.AnnData(X=markers, obs=obs)
    table.var_names = ["CD8", "PanCK"]
    table.obsm["spatial"] = xy
    stub = types.ModuleType("spatialdata")
    stub.read_zarr = lambda path: types.SimpleNamespace(tables={"table": table})
    monkeypatch.setitem(sys.modules, "spatialdata", stub)
    store = tmp_path / "slide.zarr"
    store.mkdir()
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')

    f1, f2 = read_samples([store], CFG)
    assert (f1.name, f2.name) == ("F1", "F2") and f1.ok and f2.ok, (f1.error, f2.error)
    both = pd.concat([f1.cells, f2.cells], ignore_index=True)
    np.testing.assert_allclose(both[["x", "y"]].to_numpy(), xy)
    assert both["cell_type"].tolist() == obs["leiden"].tolist()
    np.testing.assert_allclose(both["PanCK"], markers[:, 1])

    table.obs = table.obs.drop(columns="leiden")  # no label column: needs a gating panel
    (bad,) = read_samples([store], CFG)
    assert bad.file_error and "a SpatialData zarr store has no cell phenotypes" in bad.error
    gated = Config(min_cells=1, gating={"rules": {"Tumour": ["PanCK+"]}})
    samples = read_samples([store], gated)
    assert all(s.ok for s in samples), [s.error for s in samples]
