"""Ripley options of the relations stage: spicyR mode (isotropic, rectangle, auto grid) and the
other combinations, against the estimators called directly; the default is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from metaniche.analyses.relations.isotropic import Rectangle, ripley_cross_isotropic
from metaniche.analyses.relations.pointpattern import Window, ripley_cross
from metaniche.analyses.relations.ripley_modes import ripley_sample
from metaniche.config import Config, RelationsParams, load_config
from metaniche.errors import ConfigError
from metaniche.sample import build_context
from metaniche.simulate import simulate_sample
from metaniche.stages import relations

SPICYR = {"ripley_correction": "isotropic", "ripley_window": "rectangle",
          "ripley_max_um": "auto"}


@pytest.fixture(scope="module")
def sample():
    return simulate_sample("s1", n_cells=3000, seed=5).cells


def _context(cells, **relations_keys):
    return build_context("s1", cells, Config(relations=RelationsParams(**relations_keys)))


def test_spicyr_mode_features_are_directed_spatstat_statistics(sample):
    context = _context(sample, **SPICYR)
    output = relations.run(context)
    types, coords = context.cell_types, context.coordinates
    direct = ripley_cross_isotropic(coords, context.type_codes, len(types),
                                    Rectangle.image_frame(coords))
    names = [n for n in output.features if n.startswith("ripley_l_mean.")]
    pairs = {tuple(n.split(".")[1:]) for n in names}
    assert ("CD8_T", "Tumor") in pairs and ("Tumor", "CD8_T") in pairs   # both orders
    for a, b in pairs:
        expected = direct.l_minus_r_mean[types.index(a), types.index(b)]
        assert output.features[f"ripley_l_mean.{a}.{b}"] == pytest.approx(expected, rel=1e-12)
    assert (output.features["ripley_l_mean.CD8_T.Tumor"]
            != pytest.approx(output.features["ripley_l_mean.Tumor.CD8_T"]))
    table = output.tables["ripley"]
    first = table[(table.type_a == "CD8_T") & (table.type_b == "Tumor")]
    assert len(first) == 513 and first["r_um"].iloc[0] == 0.0
    assert first["l_minus_r_um"].mean() == pytest.approx(
        output.features["ripley_l_mean.CD8_T.Tumor"])


def test_default_is_translation_on_mask_and_unchanged(sample):
    context = _context(sample)
    output = relations.run(context)
    grid = context.compartments.grid
    window = Window(context.compartments.tissue, grid.x0, grid.y0, grid.pixel_um)
    radii = np.arange(10.0, 100.0 + 1e-9, 10.0)
    direct = ripley_cross(context.coordinates, context.type_codes, len(context.cell_types),
                          radii, window)
    types = context.cell_types
    a, b = types.index("CD8_T"), types.index("Tumor")
    assert output.features["ripley_l_mean.CD8_T.Tumor"] == pytest.approx(
        direct.l_minus_r_mean[a, b], rel=1e-12)
    assert "ripley_l_mean.Tumor.CD8_T" not in output.features   # symmetric: once


def test_translation_on_rectangle_with_auto_grid(sample):
    context = _context(sample)
    coords, codes = context.coordinates, context.type_codes
    n_types = len(context.cell_types)
    mask = Window(np.ones((2, 2), bool), 0.0, 0.0, 5.0)
    result = ripley_sample(coords, codes, n_types, mask, correction="translation",
                           window="rectangle", max_um="auto")
    frame = Rectangle.image_frame(coords)
    rectangle = Window.rectangle(frame.xmin, frame.ymin, frame.xmax - frame.xmin,
                                 frame.ymax - frame.ymin, pixel_um=5.0)
    b = context.cell_types.index("Tumor")
    grid = result.radii[b]
    assert grid[0] == 0 and len(grid) == 513
    direct = ripley_cross(coords, codes, n_types, grid, rectangle)
    np.testing.assert_allclose(result.k[:, b], direct.k[:, b], rtol=1e-12)


def test_config_contract_names_and_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[relations]\nripley_correction = "isotropic"\nripley_window = "rectangle"\n'
                    'ripley_max_um = "auto"\n')
    params = load_config(path).relations
    assert (params.ripley_correction, params.ripley_window, params.ripley_max_um) == (
        "isotropic", "rectangle", "auto")
    assert Config().relations.ripley_correction == "translation"
    assert Config().relations.ripley_window == "mask"
    with pytest.raises(ConfigError, match=r'`RelationsParams\.ripley_window` must be "rectangle"'
                                          r' with ripley_correction = "isotropic"'):
        RelationsParams(ripley_correction="isotropic")
    with pytest.raises(ConfigError, match=r'ripley_max_um` must be a positive number or "auto"'):
        RelationsParams(ripley_max_um="max")
    with pytest.raises(ConfigError, match=r"`RelationsParams\.ripley_simulations` must be 0"):
        RelationsParams(ripley_simulations=9, **SPICYR)
