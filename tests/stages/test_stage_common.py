"""Checks every registered sample stage must pass (one parametrised test per check and stage).

On a small simulated sample (2,500 cells, one lesion, TLS planted), for each entry of
:data:`metaniche.stages.SAMPLE_STAGES`:

- deterministic: two runs on two freshly built contexts give identical tables, features and
  per-cell columns;
- invariant to cell order: permuting the input rows gives the same tables (up to row order),
  features and per-cell columns (mapped back to the original rows). Labels that only number
  things (aggregate / unit / α-hull polygon ids, the window and cell index of ``cn_training``)
  are compared as partitions / mapped through the permutation. Monte-Carlo p-values of the
  ligand–receptor test draw their permutations over cell indices, so they are reproducible for
  a given input (checked by the determinism test) but not across row orders: their columns
  (``p``, ``q`` and the adaptive ``n_permutations``) and the feature counting them
  (``ligrec.n_significant``) are excluded here;
- invariant to translation: shifting x and y by a constant gives the same results (centroid
  columns shifted by that constant);
- one-type and tiny samples: no crash, and the documented NA (see ``test_one_type_sample``);
- every feature it emits belongs to a family registered in the stage's ``FEATURES`` (the data
  dictionary), and every table it emits is named in :data:`metaniche.tables.SAMPLE_TABLES`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.compartments import ADJACENT, CORE
from metaniche.config import Config, SpotsParams
from metaniche.context import SampleContext, StageOutput
from metaniche.io._spots import SPOT_TYPE_PREFIX
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import SAMPLE_STAGES
from metaniche.tables import SAMPLE_TABLES

CONFIG = Config()
STAGES = {name: (run, families) for name, run, families in SAMPLE_STAGES}
SHIFT = (1234.5, -777.25)
#: Per-cell columns that number objects (compared as partitions of the cells).
LABEL_COLUMNS = ("aggregate_id", "unit_id", "hull_border_cluster")
#: Table columns holding those numbers.
ID_COLUMNS = {"aggregates": ("aggregate_id",), "aggregate_composition": ("aggregate_id",)}
#: Table columns holding row indices of the input (mapped through the permutation).
ROW_COLUMNS = {"cn_training": ("window", "cell_index")}
#: Monte-Carlo columns / features: reproducible per input, not across row orders.
MONTE_CARLO_COLUMNS = {"ligrec": ("p", "q", "n_permutations")}
MONTE_CARLO_FEATURES = ("ligrec.n_significant",)
COORDINATE_COLUMNS = ("centroid_x", "centroid_y")


@pytest.fixture(scope="module")
def cells() -> pd.DataFrame:
    sample = simulate_sample("c", n_cells=2500, seed=4, phenotype="inflamed", n_lesions=1,
                             with_tls=True)
    return sample.cells.reset_index(drop=True)


@pytest.fixture(scope="module")
def permutation(cells) -> np.ndarray:
    return np.random.default_rng(11).permutation(len(cells))


@pytest.fixture(scope="module")
def baseline(cells) -> dict[str, StageOutput]:
    context = build_context("c", cells, CONFIG)
    return {name: run(_spot_context("c", cells) if name == "spots" else context)
            for name, (run, _) in STAGES.items()}


#: The ``spots`` stage runs on spot samples only: it is checked on the cells as one-hot spots.
SPOT_CONFIG = dataclasses.replace(CONFIG, spots=SpotsParams(proportions="one-hot",
                                                            n_permutations=19))


def _spot_context(name: str, cells: pd.DataFrame) -> SampleContext:
    types = sorted(cells["cell_type"].unique())
    one_hot = pd.get_dummies(cells["cell_type"]).reindex(columns=types).astype(float)
    one_hot.columns = [SPOT_TYPE_PREFIX + t for t in types]
    return build_context(name, pd.concat([cells, one_hot], axis=1), SPOT_CONFIG)


def _run(name: str, cells: pd.DataFrame) -> StageOutput:
    if name == "spots":
        return STAGES[name][0](_spot_context("c", cells))
    return STAGES[name][0](build_context("c", cells, CONFIG))


def _canonical_labels(labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Renumber a labelling (0 = none) by the first row carrying each label."""
    labels = np.asarray(labels)
    out = np.zeros(len(labels), dtype=np.int64)
    present = labels != 0
    _, first = np.unique(labels[present], return_index=True)
    order = np.argsort(np.flatnonzero(present)[first])
    mapping = dict(zip(np.unique(labels[present])[order], range(1, len(order) + 1),
                       strict=True))
    out[present] = [mapping[v] for v in labels[present]]
    return out, mapping


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in a canonical order (by every column, floats rounded for the sort key only)."""
    key = pd.DataFrame({c: (table[c].round(6) if pd.api.types.is_float_dtype(table[c])
                            else table[c].astype(str)) for c in table.columns})
    order = key.sort_values(list(key.columns), kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _assert_tables(a: pd.DataFrame, b: pd.DataFrame, name: str, rtol: float) -> None:
    assert list(a.columns) == list(b.columns), name
    assert len(a) == len(b), name
    pd.testing.assert_frame_equal(_sorted(a), _sorted(b), check_exact=False, rtol=rtol,
                                  atol=rtol, obj=name)


def _assert_features(a: dict, b: dict, rtol: float) -> None:
    assert list(a) == list(b)
    for key, value in a.items():
        other = b[key]
        if isinstance(value, str) or value is None:
            assert value == other, key
        elif isinstance(value, float) and math.isnan(value):
            assert isinstance(other, float) and math.isnan(other), key
        else:
            assert other == pytest.approx(value, rel=rtol, abs=rtol), key


def _label_maps(output: StageOutput, back: np.ndarray | None) -> tuple[dict, dict]:
    """Per-cell label columns in original row order, canonical, and the id → canonical map."""
    columns, ids = {}, {}
    for column in LABEL_COLUMNS:
        if column in output.cell_columns:
            values = np.asarray(output.cell_columns[column])
            values = values if back is None else values[back]
            columns[column], mapping = _canonical_labels(values)
            for old, new in mapping.items():
                ids.setdefault(int(old), f"{column}:{new}")
    return columns, ids


def _comparable(output: StageOutput, back: np.ndarray | None = None,
                rows: np.ndarray | None = None, monte_carlo: bool = True,
                shift: tuple[float, float] = (0.0, 0.0)) -> tuple[dict, dict, dict]:
    """Tables, features and per-cell columns with ids canonical and everything in original
    row order: ``back`` reorders per-cell arrays, ``rows`` maps row-index columns."""
    labels, ids = _label_maps(output, back)
    tables = {}
    for name, table in output.tables.items():
        table = table.copy()
        for column in ID_COLUMNS.get(name, ()):
            table[column] = pd.Series([ids[int(v)] for v in table[column]], index=table.index,
                                      dtype=object)
        if rows is not None:
            for column in ROW_COLUMNS.get(name, ()):
                table[column] = rows[table[column].to_numpy()]
        if not monte_carlo:
            table = table.drop(columns=list(MONTE_CARLO_COLUMNS.get(name, ())))
        for column, offset in zip(COORDINATE_COLUMNS, shift, strict=True):
            if column in table:
                table[column] = table[column] - offset
        tables[name] = table
    features = dict(output.features)
    if not monte_carlo:
        features = {k: v for k, v in features.items() if k not in MONTE_CARLO_FEATURES}
    cell_columns = {}
    for column, values in output.cell_columns.items():
        values = np.asarray(values)
        cell_columns[column] = labels[column] if column in labels else (
            values if back is None else values[back])
    return tables, features, cell_columns


def _assert_same(a: tuple[dict, dict, dict], b: tuple[dict, dict, dict], rtol: float) -> None:
    tables_a, features_a, cells_a = a
    tables_b, features_b, cells_b = b
    assert set(tables_a) == set(tables_b)
    for name in tables_a:
        _assert_tables(tables_a[name], tables_b[name], name, rtol)
    _assert_features(features_a, features_b, rtol)
    assert set(cells_a) == set(cells_b)
    for column in cells_a:
        np.testing.assert_allclose(np.asarray(cells_a[column], float),
                                   np.asarray(cells_b[column], float), rtol=rtol, atol=rtol,
                                   err_msg=column)


@pytest.mark.parametrize("stage", list(STAGES))
def test_deterministic(stage, cells, baseline):
    _assert_same(_comparable(baseline[stage]), _comparable(_run(stage, cells)), rtol=0.0)


@pytest.mark.parametrize("stage", list(STAGES))
def test_invariant_to_cell_order(stage, cells, baseline, permutation):
    # row i of the permuted input is original row permutation[i]; ``back`` undoes it
    permuted = _run(stage, cells.iloc[permutation].reset_index(drop=True))
    back = np.empty_like(permutation)
    back[permutation] = np.arange(len(permutation))
    _assert_same(_comparable(baseline[stage], monte_carlo=False),
                 _comparable(permuted, back=back, rows=permutation, monte_carlo=False),
                 rtol=1e-9)


@pytest.mark.parametrize("stage", list(STAGES))
def test_invariant_to_translation(stage, cells, baseline):
    moved = cells.assign(x=cells["x"] + SHIFT[0], y=cells["y"] + SHIFT[1])
    _assert_same(_comparable(baseline[stage]), _comparable(_run(stage, moved), shift=SHIFT),
                 rtol=1e-7)


@pytest.fixture(scope="module")
def with_landmarks() -> dict[str, StageOutput]:
    """Every stage on a sample large enough to hold portal and central vein landmarks (the
    baseline's 2,500 cells hold none, so the zonation stage emits no feature there)."""
    sample = simulate_sample("z", n_cells=8000, seed=4, phenotype="inflamed", n_lesions=1)
    context = build_context("z", sample.cells.reset_index(drop=True), CONFIG)
    return {name: run(context) for name, (run, _) in STAGES.items()}


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_feature_is_in_the_dictionary(stage, baseline, with_landmarks):
    families = STAGES[stage][1]
    emitted = (with_landmarks if stage == "zonation" else baseline)[stage].features
    assert emitted, stage
    unregistered = {name for name in emitted if name.split(".")[0] not in families}
    assert not unregistered


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_table_is_registered(stage, baseline):
    assert set(baseline[stage].tables) <= set(SAMPLE_TABLES)


@pytest.fixture(scope="module")
def one_type(cells) -> dict[str, tuple[object, StageOutput]]:
    out = {}
    for label in ("Hepatocyte", "Tumor"):
        context = build_context(label, cells.assign(cell_type=label), CONFIG)
        out[label] = (context, {name: run(context) for name, (run, _) in STAGES.items()})
    return out


def test_one_type_sample(one_type):
    """One-type samples run through every stage and give the documented NA:

    - no tumour (all ``Hepatocyte``): NaN signed distances, every cell ``adjacent``
      (:func:`metaniche.analyses.compartments.compartment_codes`); all tumour: every cell
      ``core``;
    - composition: densities of a compartment without area NaN; effector densities NaN and
      phenotype ``undetermined`` without effector cells;
    - border: gradient slope, p, peak and borderline index NaN (no finite distance, no
      contrast), no lesion metrics without effector types;
    - relations: enrichment z NaN (zero variance with one type), no mixing without immune types,
      R_BC only for tumour types;
    - communities: no aggregate, TLS count 0 and fraction mature NaN.
    """
    for label, expected in (("Hepatocyte", ADJACENT), ("Tumor", CORE)):
        context, outputs = one_type[label]
        assert set(context.compartments.compartment) == {expected}
        assert np.isnan(context.compartments.signed_distance_um).all()
        features = {k: v for output in outputs.values() for k, v in output.features.items()}
        assert features["phenotype"] == "undetermined"
        assert np.isnan(features["effector_density.border"])
        assert np.isnan(features["density.border." + label])
        for family in ("gradient_slope", "gradient_p", "peak_um", "borderline_index"):
            assert np.isnan(features[f"{family}.{label}"])
        assert outputs["gradients"].tables["lesion_metrics"].empty
        assert np.isnan(features[f"enrichment_z.{label}.{label}"])
        assert outputs["relations"].tables["mixing"].empty
        assert ("border_cell_ratio." + label in features) == (label == "Tumor")
        assert outputs["communities"].tables["aggregates"].empty
        assert features["tls.count"] == 0 and np.isnan(features["tls.fraction_mature"])
        assert not (outputs["communities"].cell_columns["aggregate_id"]).any()


def test_tiny_sample_runs_every_stage(cells):
    """Two cells: every stage runs; statistics without data are NaN, never an exception."""
    context = build_context("tiny", cells.iloc[:2].reset_index(drop=True), CONFIG)
    outputs = {name: run(context) for name, (run, _) in STAGES.items()}
    assert outputs["composition"].features["n_cells"] == 2
    spots = STAGES["spots"][0](_spot_context("tiny", cells.iloc[:2].reset_index(drop=True)))
    assert spots.features["n_spots"] == 2
    assert outputs["communities"].tables["aggregates"].empty
