"""Configuration: defaults, TOML loading, clear errors for unknown keys and bad values."""

from __future__ import annotations

import pytest

from metaniche.config import Config, load_config
from metaniche.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_design():
    config = load_config(None)
    assert config == Config()
    assert config.um_per_unit == 1.0
    assert config.compartments.border_um == 100.0
    assert config.columns.x == "x"


def test_values_and_nested_sections_are_read(tmp_path):
    config = load_config(write(tmp_path, """
um_per_unit = 0.39
[columns]
sample = "sample_id"
[cell_types]
tumor = ["CK+"]
[compartments]
border_um = 500
"""))
    assert config.um_per_unit == 0.39
    assert config.columns.sample == "sample_id"
    assert config.cell_types.tumor == ("CK+",)
    assert config.compartments.border_um == 500.0
    assert config.cell_types.is_tumor(["CK+", "Tumor"]) == [True, False]


@pytest.mark.parametrize(("text", "message"), [
    ("bogus = 1", "unknown key 'bogus'"),
    ("[compartments]\nborder = 5", "unknown key 'compartments.border'"),
    ("um_per_unit = -1", "'um_per_unit' must be a positive number"),
    ("um_per_unit = 'a'", "'um_per_unit' must be a number"),
    ("[compartments]\nborder_um = 0", "'compartments.border_um' must be a positive number"),
    ("[cell_types]\ntumor = [1]", "'cell_types.tumor' must be a list of strings"),
    ("[columns]\nx = 3", "'columns.x' must be a string"),
    ("um_per_unit = ", "not valid TOML"),
])
def test_bad_config_gives_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=r"c\.toml") as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_default_roles_recognise_common_labels():
    roles = Config().cell_types
    labels = ["Tumor", "tumour_cells", "CD8_T", "Macrophage", "Hepatocyte", "B", "Endothelial"]
    assert roles.is_tumor(labels) == [True, True, False, False, False, False, False]
    assert roles.is_immune(labels) == [False, False, True, True, False, True, False]
