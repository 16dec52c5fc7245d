"""Communities config section, and the cohort CN step of a pipeline run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from metaniche.config import DEFAULT_UNITS, load_config
from metaniche.errors import ConfigError
from metaniche.pipeline import run
from metaniche.simulate import simulate_sample


def _write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_units_and_sections_parse(tmp_path):
    config = load_config(_write(tmp_path, """
[units.angio]
types = ["Macrophage", "Endothelial"]
radius_um = 15
min_cells = 4
[aggregates]
tls_min_cells = 40
tls_min_b_fraction = 0.5
[neighbourhoods]
n_neighbourhoods = 6
[ligrec]
n_permutations = 0
"""))
    assert list(config.units) == ["angio"] and config.units["angio"].radius_um == 15.0
    assert config.aggregates.tls_min_cells == 40 and config.neighbourhoods.n_neighbourhoods == 6
    assert set(load_config().units) == set(DEFAULT_UNITS)


@pytest.mark.parametrize(("text", "message"), [
    ("[units.angio]\nradius_um = 10\n", r"`\[units\.angio\] types`"),
    ("[units.angio]\ntypes = ['A']\nwidth = 3\n", "unknown key 'units.angio.width'"),
    ("[units]\nangio = 3\n", r"\[units\] must hold one table per unit"),
    ("[units.angio]\ntypes = ['A']\nradius_um = -1\n", r"`\[units\.angio\] radius_um`"),
    ("[aggregates]\ntls_min_b_fraction = 1.5\n", "tls_min_b_fraction"),
    ("[neighbourhoods]\nk = 0\n", r"`\[neighbourhoods\] k`"),
])
def test_bad_sections_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_pipeline_labels_cells_with_cohort_neighbourhoods(tmp_path):
    inputs = []
    for index in range(2):
        cells = simulate_sample(f"S{index}", 3000, seed=index, with_tls=True).cells
        path = tmp_path / f"S{index}.parquet"
        cells.to_parquet(path)
        inputs.append(path)
    config_path = _write(tmp_path, "[neighbourhoods]\nn_neighbourhoods = 5\n"
                                   "[ligrec]\nn_permutations = 0\n")
    out = tmp_path / "out"
    result = run(inputs, out, load_config(config_path))
    assert not result.failed
    table = pd.read_parquet(out / "tables" / "neighbourhoods.parquet")
    features = pd.read_parquet(out / "features.parquet").set_index("sample")
    for index in range(2):
        cells = pd.read_parquet(out / "cells" / f"S{index}.parquet")
        assert cells["neighbourhood"].between(1, 5).all()
        counts = np.bincount(cells["neighbourhood"], minlength=6)[1:]
        whole = table.query(f"sample == 'S{index}' and table == 'abundance' and "
                            "compartment == 'all'")
        np.testing.assert_array_equal(whole["n_cells"], counts)
        fractions = [features.loc[f"S{index}", f"cn_fraction.CN{cn}"] for cn in range(1, 6)]
        np.testing.assert_allclose(fractions, counts / counts.sum())
        assert {"aggregate_id", "unit_id"} <= set(cells.columns)
    assert (out / "tables" / "aggregates.parquet").is_file()
