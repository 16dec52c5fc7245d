"""A run directory back in a notebook: :func:`read_run` (AnnData) and :func:`read_features`.

Reads only through :class:`metaniche.rundir.RunDir` (the one owner of the layout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metaniche._api._adapter import OUTPUT_COLUMNS, UNS_KEY, h5ad_safe, storable
from metaniche.analyses.compartments import COMPARTMENTS
from metaniche.errors import InputError
from metaniche.rundir import RunDir
from metaniche.tables import SAMPLE_TABLES

__all__ = ["LESION_CLOSING_SPACINGS", "lesion_outlines", "read_features", "read_run",
           "to_spatialdata"]

#: Radius of the closing that draws lesion outlines, in cell spacings (:func:`lesion_outlines`).
LESION_CLOSING_SPACINGS = 2.0

#: Tables of a run directory read into ``uns["metaniche"]`` (per-sample tables, then the
#: run-level neighbourhood table).
_TABLES = (*SAMPLE_TABLES, "neighbourhoods")


def read_features(out: str | Path) -> pd.DataFrame:
    """The run's feature table, one row per sample, with the data dictionary's units.

    Parameters
    ----------
    out
        Run directory (``metaniche run --out``).

    Returns
    -------
    pandas.DataFrame
        ``features.parquet`` (``sample`` first). ``.attrs["units"]`` maps each feature to its
        unit and ``.attrs["descriptions"]`` to its description (``features_dictionary.csv``).

    Raises
    ------
    InputError
        When ``out`` is not a finished run (no run.json or no features).

    Examples
    --------
    >>> import metaniche as mn
    >>> features = mn.read_features("OUT")                       # doctest: +SKIP
    >>> features.attrs["units"]["density.core.CD8_T"]             # doctest: +SKIP
    'cells/mm²'
    """
    run = RunDir(out)
    run.read_manifest()
    features = run.read_features()
    if features is None:
        raise InputError(f"{run.root}: no features.parquet; the run has no analysed sample "
                         "(see run.json for the errors).")
    units, descriptions = {}, {}
    if run.dictionary_path.is_file():
        dictionary = pd.read_csv(run.dictionary_path)
        if {"name", "unit"} <= set(dictionary.columns):
            units = dict(zip(dictionary["name"].astype(str), dictionary["unit"], strict=True))
        if {"name", "description"} <= set(dictionary.columns):
            descriptions = dict(zip(dictionary["name"].astype(str), dictionary["description"],
                                    strict=True))
    features.attrs["units"] = units
    features.attrs["descriptions"] = descriptions
    return features


def read_run(out: str | Path, as_spatialdata: bool = False) -> Any:
    """One AnnData of every analysed sample's cells, with the run's tables and features.

    Parameters
    ----------
    out
        Run directory (``metaniche run --out``).
    as_spatialdata
        Return a :class:`spatialdata.SpatialData` instead (needs the ``spatialdata`` extra):
        the AnnData below as ``tables["table"]`` and the lesion outlines as
        ``shapes["lesions"]`` (one polygon per sample and lesion, with ``sample`` and
        ``lesion_id`` columns; coordinates in µm, coordinate system ``global``), drawn from
        the lesion's cells inside the tumour by :func:`lesion_outlines`: it follows the
        cells, not the tumour raster the run used (within about one cell spacing).

    Returns
    -------
    anndata.AnnData
        One row per cell of every sample that succeeded, in run.json order; ``obs_names``
        ``<sample>:<cell_id>``. ``obs``: ``sample``, ``cell_id``, ``cell_type``
        (categorical), every per-cell output column (``compartment`` categorical core,
        border, adjacent; ``lesion_id`` Int64, …) and the input's non-numeric metadata;
        ``obsm["spatial"]``: x, y (µm); ``X``: the input's numeric marker columns
        (``var_names`` the marker names; no variables when there are none).
        ``uns["metaniche"]``: every table of ``tables/`` by name (``sample`` first; text
        columns with missing values categorical, so the object can be written to ``.h5ad``),
        ``features`` (with units in ``uns["metaniche"]["feature_units"]``), ``config``
        (the run's configuration as plain data) and, when the cohort step ran,
        ``association`` (association.parquet), ``km_curves``, ``clinical``
        (clinical.parquet) and ``analysis_unit`` (``sample`` or ``patient``): what
        ``mn.pl.effector_density``, ``effector_gradient``, ``volcano`` and
        ``kaplan_meier`` draw, as the report does.

    Raises
    ------
    InputError
        When ``out`` is not a run directory or holds no analysed sample.

    Examples
    --------
    >>> import metaniche as mn
    >>> adata = mn.read_run("OUT")                               # doctest: +SKIP
    >>> mn.tl.nhood_enrichment(adata, "cell_type", library_key="sample")  # doctest: +SKIP
    """
    if as_spatialdata:
        try:
            import spatialdata  # noqa: F401
        except ImportError:
            raise InputError("read_run(as_spatialdata=True) needs the spatialdata extra: "
                             "pip install 'metaniche[spatialdata]'.") from None
        return to_spatialdata(read_run(out))
    import anndata

    run = RunDir(out)
    manifest = run.read_manifest()
    done = [(name, rec) for name, rec in manifest.samples.items() if rec.succeeded]
    if not done:
        raise InputError(f"{run.root}: no sample of this run was analysed (see run.json for "
                         "the errors).")
    frames = []
    for name, rec in done:
        cells = run.read_cells(rec.stem)
        cells.insert(0, "sample", name)
        frames.append(cells)
    cells = pd.concat(frames, ignore_index=True)
    markers = [c for c in cells.columns if c not in OUTPUT_COLUMNS
               and pd.api.types.is_numeric_dtype(cells[c])
               and not pd.api.types.is_bool_dtype(cells[c])]
    obs = cells.drop(columns=[*markers, "x", "y"])
    obs["cell_id"] = obs["cell_id"].astype(str)
    obs.index = (obs["sample"].astype(str) + ":" + obs["cell_id"]).to_numpy()
    obs["sample"] = pd.Categorical(obs["sample"], categories=[n for n, _ in done])
    obs["cell_type"] = pd.Categorical(obs["cell_type"].astype(str))
    if "compartment" in obs.columns:
        obs["compartment"] = pd.Categorical(obs["compartment"], categories=list(COMPARTMENTS))
    matrix = (cells[markers].to_numpy(np.float64) if markers
              else np.zeros((len(cells), 0), dtype=np.float64))
    adata = anndata.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=markers))
    adata.obsm["spatial"] = cells[["x", "y"]].to_numpy(np.float64)
    results: dict[str, Any] = {}
    for table in _TABLES:
        frame = run.read_table(table)
        if frame is not None:
            results[table] = h5ad_safe(frame)
    for name, frame in (("km_curves", run.read_table("km_curves")),
                        ("association", run.read_association()),
                        ("clinical", pd.read_parquet(run.clinical_path)
                         if run.clinical_path.is_file() else None)):
        if frame is not None:
            results[name] = h5ad_safe(frame)
    unit = (manifest.steps.get("cohort") or {}).get("unit")
    if unit is not None:
        results["analysis_unit"] = str(unit)
    features = read_features(out) if run.read_features() is not None else None
    if features is not None:
        results["feature_units"] = dict(features.attrs["units"])
        features.attrs = {}
        results["features"] = h5ad_safe(features)
    results["config"] = storable(manifest.config)
    adata.uns[UNS_KEY] = results
    return adata


def lesion_outlines(adata: Any) -> pd.DataFrame:
    """One outline per (sample, lesion) from the lesion's cells inside the tumour.

    Cells with a ``lesion_id`` and ``signed_distance_um`` ≤ 0 are grouped by sample and
    lesion. With ``s`` the sample's median nearest-neighbour distance between cells (µm), the
    outline is a morphological closing of the cells: the union of discs of radius
    :data:`LESION_CLOSING_SPACINGS` · ``s`` around them, shrunk by that radius less ``s``/2
    (so it runs half a spacing outside the outermost cells, where the boundary between them
    and the first outside cells lies). A lesion of fewer than three inside cells is left out.
    Cost: O(n log n) for the spacing, and shapely's union of the discs per lesion.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample``, ``lesion_id`` (int), ``geometry`` (shapely (multi)polygons, µm).
    """
    import shapely
    from scipy.spatial import cKDTree

    obs = adata.obs
    empty = pd.DataFrame({"sample": [], "lesion_id": [], "geometry": []})
    if not {"lesion_id", "signed_distance_um"} <= set(obs.columns):
        return empty
    xy_all = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    samples = obs["sample"].astype(str).to_numpy()
    inside = (obs["lesion_id"].notna() & (obs["signed_distance_um"] <= 0)).to_numpy()
    rows = []
    for sample in pd.unique(samples[inside]):
        own = samples == sample
        if own.sum() < 2:
            continue
        distance, _ = cKDTree(xy_all[own]).query(xy_all[own], k=2)
        spacing = float(np.median(distance[:, 1]))
        chosen = own & inside
        xy = xy_all[chosen]
        lesions = obs["lesion_id"].to_numpy()[chosen].astype(np.int64)
        radius = LESION_CLOSING_SPACINGS * spacing
        for lesion in np.unique(lesions):
            points = xy[lesions == lesion]
            if len(points) < 3:
                continue
            discs = shapely.buffer(shapely.points(points), radius)
            outline = shapely.union_all(discs).buffer(-(radius - spacing / 2))
            if not outline.is_empty:
                rows.append({"sample": sample, "lesion_id": int(lesion), "geometry": outline})
    return pd.DataFrame(rows, columns=["sample", "lesion_id", "geometry"]) if rows else empty


def to_spatialdata(adata: Any) -> Any:
    """A :class:`spatialdata.SpatialData` of a :func:`read_run` AnnData and its lesion outlines.

    See :func:`read_run` (``as_spatialdata=True``); needs the ``spatialdata`` extra.
    """
    import geopandas
    import spatialdata
    from spatialdata.models import ShapesModel, TableModel

    outlines = lesion_outlines(adata)
    shapes = {}
    if len(outlines):
        frame = geopandas.GeoDataFrame(outlines.drop(columns="geometry"),
                                       geometry=list(outlines["geometry"]))
        frame.index = [f"{s}:{k}" for s, k in zip(outlines["sample"], outlines["lesion_id"],
                                                   strict=True)]
        shapes["lesions"] = ShapesModel.parse(frame)
    return spatialdata.SpatialData(shapes=shapes, tables={"table": TableModel.parse(adata)})
