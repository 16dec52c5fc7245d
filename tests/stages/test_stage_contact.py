"""Stage ``contact``: config contract, the stage on planted truth, and real exports end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from metaniche import tables as T
from metaniche.analyses.contact import CONTACT_COLUMNS
from metaniche.config import (
    Config,
    ContactParams,
    RelationsParams,
    StateRule,
    StatesParams,
    load_config,
)
from metaniche.errors import ConfigError, InputError
from metaniche.features import feature_name
from metaniche.phenotype import resolve_marker
from metaniche.sample import build_context
from metaniche.simulate import CONTACT_EFFECT, CONTACT_RADIUS_UM, simulate_sample
from metaniche.stages import contact as stage

#: The output contract of issue 19 (extra columns may follow).
CONTRACT = ["sample", "cell_type", "marker", "partner_type", "exposure", "n_cells", "n_exposed",
            "effect", "ci_low", "ci_high", "p", "p_perm", "q", "adjusted_for"]


def test_config_contract_and_messages(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[contact]\nmarkers = ["GZMB", "PDL1_pos"]\ncell_types = ["CD8_T"]\n'
                    'partner_types = ["Macrophage"]\nradius_um = 20\n')
    params = load_config(path).contact
    assert params.markers == ("GZMB", "PDL1_pos") and params.radius_um == 20.0
    assert params.contact_radius(RelationsParams()) == 20.0
    # radius 0 (the default) means the contact radius of [relations]
    assert ContactParams().contact_radius(RelationsParams(contact_radius_um=25.0)) == 25.0
    with pytest.raises(ConfigError, match=r"`ContactParams.radius_um` must be zero or a "
                       r"positive number .*; got -5\."):
        ContactParams(radius_um=-5)
    path.write_text('[contact]\nexposure = "nearest"\nbogus = 1\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "unknown key 'contact.bogus'" in str(err.value)
    assert "[contact] exposure` must be one of count, log_distance" in str(err.value)


@pytest.fixture(scope="module")
def planted():
    return simulate_sample("s", n_cells=30_000, seed=3, phenotype="inflamed", contact="effect")


def test_stage_finds_the_planted_effect_with_detected_compartments(planted) -> None:
    config = Config(contact=ContactParams(markers=("GZMB",), cell_types=("CD8_T",),
                                          radius_um=CONTACT_RADIUS_UM, n_permutations=19))
    output = stage.run(build_context("s", planted.cells, config))
    table = output.tables[T.STATE_CHANGES]
    assert list(table.columns[:len(CONTRACT) - 1]) == CONTRACT[1:]
    assert list(table.columns) == CONTACT_COLUMNS
    row = table.set_index("partner_type").loc["Macrophage"]
    assert row["exposure"] == "count_within_20um" and row["p"] < 0.001
    assert abs(row["effect"] - CONTACT_EFFECT) <= 0.2 * abs(CONTACT_EFFECT)
    # n_cells and n_exposed against brute force on the input
    cells = planted.cells
    cd8 = cells["cell_type"].to_numpy() == "CD8_T"
    mac = cells["cell_type"].to_numpy() == "Macrophage"
    xy = cells[["x", "y"]].to_numpy()
    count = cKDTree(xy[mac]).query_ball_point(xy[cd8], CONTACT_RADIUS_UM, return_length=True)
    assert row["n_cells"] == cd8.sum() and row["n_exposed"] == (count > 0).sum()
    name = feature_name("contact_effect", "CD8_T", "GZMB", "Macrophage",
                        families=stage.FEATURES)
    assert output.features[name] == row["effect"]
    assert len(output.features) == len(table)
    profiles = output.tables[T.STATE_CHANGE_PROFILES]
    assert set(profiles["partner_type"]) <= set(table["partner_type"])


def test_states_are_logistic_outcomes_limited_to_their_types(planted) -> None:
    states = StatesParams(rules={"GZMB_low": StateRule(marker="GZMB", threshold=4.0,
                                                       cell_types=("CD8_T",))})
    config = Config(states=states, contact=ContactParams(
        markers=("GZMB_low",), partner_types=("Macrophage",), radius_um=CONTACT_RADIUS_UM,
        n_permutations=0))
    table = stage.run(build_context("s", planted.cells, config)).tables[T.STATE_CHANGES]
    assert set(table["cell_type"]) == {"CD8_T"} and set(table["model"]) == {"logistic"}
    # GZMB > 4 is rarer with macrophages around: a negative log odds ratio
    assert table["effect"].iloc[0] < 0 and table["p"].iloc[0] < 0.001


def test_unknown_marker_is_one_sentence(planted) -> None:
    config = Config(contact=ContactParams(markers=("NOPE",)))
    with pytest.raises(InputError, match=r"\[contact\] markers names 'NOPE'.*fix the name"):
        stage.run(build_context("s", planted.cells, config))


def _metaniche(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaniche", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["inform", "spiat"])
def test_real_exports_run_end_to_end(case: str, data_dir: Path, tmp_path: Path) -> None:
    """``metaniche run`` on the phenoptr inForm export and SPIAT's prostate image with marker
    intensities: the contract table, its counts against brute force on the raw file, the
    features and the report section."""
    if case == "inform":
        path = data_dir / "formats" / "inform_phenoptr_cell_seg_data.csv.gz"
        toml = ('[cell_types]\ntumor = ["CK+"]\n[states.PDL1_pos]\nmarker = "PDL1"\n'
                '[contact]\nmarkers = ["PDL1", "PD1", "PDL1_pos"]\nn_permutations = 19\n')
        raw_xy, raw_type, scale = ["Cell X Position", "Cell Y Position"], "Phenotype", 1.0
    else:
        path = data_dir / "cells" / "spiat_prostate_opal.cells.csv.gz"
        toml = ('um_per_unit = 0.5\n[columns]\nsample = "sample_id"\n[cell_types]\n'
                'tumor = ["Tumour"]\n[contact]\nmarkers = ["PDL-1", "CD8"]\n'
                'n_permutations = 19\n')
        raw_xy, raw_type, scale = ["x", "y"], "cell_type", 0.5
    if not path.exists():
        pytest.skip(f"{path} not found")
    config = tmp_path / "c.toml"
    config.write_text(toml)
    out = tmp_path / "out"
    done = _metaniche("run", str(path), "--out", str(out), "--config", str(config))
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_parquet(out / "tables" / "state_changes.parquet")
    assert list(table.columns[:len(CONTRACT)]) == CONTRACT
    assert len(table) > 10 and table["p"].between(0, 1).all()
    assert table["p_perm"].between(0.05, 1).all()
    raw = pd.read_csv(path)
    xy = raw[raw_xy].to_numpy(np.float64) * scale
    labels = raw[raw_type].astype(str).to_numpy()
    radius = RelationsParams().contact_radius_um
    tree = cKDTree(xy)
    for row in table.sample(8, random_state=0).itertuples(index=False):
        usable = labels == row.cell_type
        if row.model == "linear":   # cells whose log1p(marker) is finite
            with np.errstate(invalid="ignore", divide="ignore"):
                value = np.log1p(raw[resolve_marker(list(raw.columns), row.marker)].to_numpy(
                    np.float64))
            usable &= np.isfinite(value)
        focus = np.flatnonzero(usable)
        partner = labels == row.partner_type
        near = tree.query_ball_point(xy[focus], radius)
        exposed = sum(partner[[j for j in hits if j != i]].any()
                      for i, hits in zip(focus, near, strict=True))
        assert (row.n_cells, row.n_exposed) == (len(focus), exposed), row
    features = pd.read_parquet(out / "features.parquet")
    assert any(c.startswith("contact_effect.") for c in features.columns)
    assert (out / "cohort" / "state_changes.parquet").is_file()
    pages = list((out / "report").glob("*.html"))
    assert any("Does contact change state?" in page.read_text() for page in pages)
