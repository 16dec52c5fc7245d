"""read_run / read_features round trip: a run read back and re-analysed with mn.tl reproduces
the run's tables; the feature table carries the dictionary's units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

import metaniche as mn
from metaniche.errors import InputError
from metaniche.pipeline import run
from metaniche.rundir import RunDir
from metaniche.simulate import simulate_sample


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    samples = [simulate_sample("P1 pre", n_cells=2500, seed=11, phenotype="excluded",
                               n_lesions=1),
               simulate_sample("P2", n_cells=2500, seed=12, phenotype="inflamed", n_lesions=1)]
    paths = []
    for sample in samples:
        path = folder / f"{sample.name.replace(' ', '_')}.csv"
        sample.cells.to_csv(path, index=False)
        paths.append(path)
    out = tmp_path_factory.mktemp("run")
    run(paths, out)
    return out, {s.name: s.cells for s in samples}


def _rows(table: pd.DataFrame) -> pd.DataFrame:
    table = table.sort_values(list(table.columns[:3])).reset_index(drop=True)
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype) or table[column].dtype == object:
            values = table[column].astype(object)
            table[column] = values.where(values.notna(), None)
    return table


def test_read_run_holds_every_cell_column_and_table(finished):
    out, inputs = finished
    adata = mn.read_run(out)
    assert adata.n_obs == sum(len(c) for c in inputs.values())
    assert list(adata.obs["sample"].cat.categories) == list(inputs)
    for name, cells in inputs.items():
        mine = adata[adata.obs["sample"] == name]
        np.testing.assert_array_equal(mine.obsm["spatial"], cells[["x", "y"]].to_numpy())
        markers = [c for c in cells.columns if c not in ("sample", "cell_id", "x", "y",
                                                          "cell_type")]
        assert list(adata.var_names) == markers
        stem = RunDir(out).read_manifest().samples[name].stem
        written = RunDir(out).read_cells(stem)
        np.testing.assert_array_equal(mine.X, written[markers].to_numpy())
        np.testing.assert_allclose(mine.X, cells[markers].to_numpy(), rtol=1e-6)
        for column in ("signed_distance_um", "zonation_eta", "aggregate_id", "neighbourhood"):
            np.testing.assert_array_equal(mine.obs[column].to_numpy(),
                                          written[column].to_numpy())
    assert list(adata.obs["compartment"].cat.categories) == ["core", "border", "adjacent"]
    for table in ("composition", "enrichment", "cooccurrence", "neighbourhoods"):
        pd.testing.assert_frame_equal(_rows(adata.uns["metaniche"][table]),
                                      _rows(RunDir(out).read_table(table)), check_dtype=False)
    assert list(adata.uns["metaniche"]["features"]["sample"]) == list(inputs)


def test_tools_on_read_run_reproduce_the_run_tables(finished):
    out, _ = finished
    adata = mn.read_run(out)
    tables = {name: adata.uns["metaniche"][name]
              for name in ("compartments", "composition", "enrichment", "cooccurrence",
                           "gradient_stats", "ripley")}
    mn.tl.compartments(adata, "cell_type", library_key="sample")
    mn.tl.composition(adata, "cell_type", library_key="sample")
    mn.tl.nhood_enrichment(adata, "cell_type", library_key="sample")
    mn.tl.co_occurrence(adata, "cell_type", library_key="sample")
    mn.tl.gradients(adata, "cell_type", library_key="sample")
    mn.tl.ripley(adata, "cell_type", library_key="sample")
    for name, expected in tables.items():
        pd.testing.assert_frame_equal(_rows(adata.uns["metaniche"][name]), _rows(expected),
                                      check_dtype=False, obj=name)
    per_sample = adata.uns["cell_type_nhood_enrichment"]
    assert set(per_sample) == {"P1 pre", "P2"}
    k = len(adata.obs["cell_type"].cat.categories)
    assert per_sample["P2"]["zscore"].shape == (k, k)


def test_neighbourhoods_on_read_run_reproduce_the_run(finished):
    out, _ = finished
    adata = mn.read_run(out)
    written = adata.obs["neighbourhood"].to_numpy().copy()
    expected = adata.uns["metaniche"]["neighbourhoods"]
    mn.tl.neighbourhoods(adata, "cell_type", library_key="sample")
    np.testing.assert_array_equal(adata.obs["neighbourhood"].to_numpy(), written)
    pd.testing.assert_frame_equal(_rows(adata.uns["metaniche"]["neighbourhoods"]),
                                  _rows(expected), check_dtype=False)


def test_read_features_carries_units(finished):
    out, inputs = finished
    features = mn.read_features(out)
    assert list(features["sample"]) == list(inputs)
    dictionary = pd.read_csv(RunDir(out).dictionary_path)
    units = features.attrs["units"]
    assert units == dict(zip(dictionary["name"], dictionary["unit"], strict=True))
    density = next(c for c in features.columns if c.startswith("density.core."))
    assert units[density] == "cells/mm²"


def test_read_run_writes_to_h5ad(finished, tmp_path):
    import anndata as ad

    out, _ = finished
    adata = mn.read_run(out)
    adata.write_h5ad(tmp_path / "run.h5ad")
    back = ad.read_h5ad(tmp_path / "run.h5ad")
    assert back.n_obs == adata.n_obs
    pd.testing.assert_frame_equal(_rows(back.uns["metaniche"]["aggregates"]),
                                  _rows(adata.uns["metaniche"]["aggregates"]), check_dtype=False)


def test_not_a_run_is_one_clear_sentence(tmp_path):
    with pytest.raises(InputError, match=r"no run\.json"):
        mn.read_run(tmp_path)
    with pytest.raises(InputError, match=r"no run\.json"):
        mn.read_features(tmp_path)


def test_lesion_outlines_match_the_run_lesion_areas(finished):
    from metaniche._api.readrun import lesion_outlines

    out, _ = finished
    adata = mn.read_run(out)
    outlines = lesion_outlines(adata)
    lesions = RunDir(out).read_table("lesions")
    assert lesions is not None and len(outlines) == len(lesions)
    merged = outlines.merge(lesions, on=["sample", "lesion_id"])
    assert len(merged) == len(lesions)
    # The outline drawn from the cells spans the area of the lesion raster the run measured,
    # within about a cell spacing along the perimeter (< 10 % for lesions of ~0.1 mm²).
    outline_mm2 = np.array([g.area for g in merged["geometry"]]) / 1e6
    np.testing.assert_allclose(outline_mm2, merged["area_mm2"].to_numpy(), rtol=0.10)
    # and holds every cell of its lesion inside the tumour
    for row in merged.itertuples():
        obs = adata.obs
        own = ((obs["sample"] == row.sample) & (obs["lesion_id"] == row.lesion_id)
               & (obs["signed_distance_um"] <= 0)).to_numpy()
        assert shapely.contains_xy(row.geometry, *adata.obsm["spatial"][own].T).all()


def test_read_run_as_spatialdata_holds_the_table_and_the_lesions(finished):
    pytest.importorskip("spatialdata", reason="the spatialdata extra is not installed")
    out, _ = finished
    sdata = mn.read_run(out, as_spatialdata=True)
    table = sdata.tables["table"]
    assert table.n_obs == mn.read_run(out).n_obs
    lesions = sdata.shapes["lesions"]
    assert set(lesions["sample"]) == {"P1 pre", "P2"}
    assert len(lesions) == len(RunDir(out).read_table("lesions"))
