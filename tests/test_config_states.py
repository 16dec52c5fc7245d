"""The ``[states]`` section of the configuration: the issue's contract and one sentence per bad
key."""

from __future__ import annotations

import pytest

from metaniche import config as config_module
from metaniche.config import Config, StateRule, StatesParams, load_config
from metaniche.errors import ConfigError
from metaniche.phenotype import METHODS


def _load(tmp_path, text: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


def test_contract_example_loads(tmp_path):
    config = _load(tmp_path, """
[states]
ratios = [["CD8_T", "Treg"]]
pseudocount = 1
[states.PDL1_pos]
marker = "PDL1"
threshold = 0.5
cell_types = ["Macrophage", "Tumor"]
[states.PD1_pos]
marker = "PD1"
threshold = "valley"
[states.PDL1_call]
column = "Phenotype PDL1"
positive = "PDL1+"
[states.exhausted]
all_of = ["PDL1_pos", "PD1_pos"]
cell_types = ["CD8_T"]
""")
    rules = config.states.rules
    assert rules["PDL1_pos"] == StateRule(marker="PDL1", threshold=0.5,
                                          cell_types=("Macrophage", "Tumor"))
    assert rules["PD1_pos"].threshold == "valley"
    assert rules["PDL1_call"] == StateRule(column="Phenotype PDL1", positive=("PDL1+",))
    assert rules["exhausted"].all_of == ("PDL1_pos", "PD1_pos")
    assert config.states.ratios == (("CD8_T", "Treg"),)
    assert config.states.pseudocount == 1.0
    assert list(rules) == ["PDL1_pos", "PD1_pos", "PDL1_call", "exhausted"]
    assert Config().states == StatesParams()


@pytest.mark.parametrize(("text", "message"), [
    ('[states.a]\nmarker = "X"\nthreshold = "median"\n',
     "`[states.a] threshold` must be a number (in the column's units) or one of otsu, gmm, "
     "valley (per sample) or cohort:otsu, cohort:gmm, cohort:valley (per cohort); got "
     "'median'."),
    ('[states.a]\ncolumn = "X"\nthreshold = 2\n',
     "`[states.a] threshold` applies to marker states only"),
    ('[states.a]\nmarker = "X"\ncolumn = "Y"\n',
     "`[states.a] marker` must be the state's one source: give exactly one of marker, column, "
     "all_of; got marker and column."),
    ('[states.a]\ncell_types = ["T"]\n', "give exactly one of marker, column, all_of; got none"),
    ('[states.a]\nmarker = "X"\npositive = "X+"\n',
     "`[states.a] positive` must be given only with `column`"),
    ('[states.a]\nmarker = "X"\nbogus = 1\n', "unknown key 'states.a.bogus'"),
    ('[states.a]\nmarker = "X"\n[states.b]\nall_of = ["a", "zz"]\n',
     "`[states] b.all_of` must be a list of marker or column states (a); got 'zz'."),
    ('[states."x.y"]\nmarker = "X"\n', "state name 'x.y' must be letters, digits"),
    ('[states]\nfoo = 3\n', "unknown key 'states.foo'"),
    ('[states]\nratios = ["CD8_T"]\n', "`[states] ratios` must be a list of [numerator, "
                                       "denominator] label pairs"),
    ('[states]\nratios = [["A", "A"]]\n', "`[states] ratios` must be a list of pairs of two "
                                          "different labels"),
    ('[states]\npseudocount = 0\n', "`[states] pseudocount` must be a positive number; got 0."),
    ('[states.a]\nmarker = "X"\ntransform = "log"\n',
     "`[states.a] transform` must be one of log1p, none"),
])
def test_bad_values_give_one_sentence_each(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_every_bad_state_is_reported(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, '[states]\npseudocount = -1\n[states.a]\nmarker = "X"\n'
                        'threshold = "median"\n[states.b]\nmarker = "Y"\nbogus = 2\n')
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert any("pseudocount" in line for line in lines)


def test_direct_construction_validates():
    with pytest.raises(ConfigError, match="threshold"):
        StateRule(marker="X", threshold=float("nan"))
    with pytest.raises(ConfigError, match="ratios"):
        StatesParams(ratios=(("A", "A"),))


def test_threshold_methods_mirror_the_gating_methods():
    assert config_module.STATE_THRESHOLD_METHODS == METHODS


def test_marker_trend_settings_are_checked(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[states]\ngradient_markers = ["CD68", "PDL1"]\ntrend_block_um = 40\n')
    params = load_config(path).states
    assert (params.gradient_markers, params.trend_block_um) == (("CD68", "PDL1"), 40.0)
    path.write_text('[states]\ngradient_markers = "CD68"\n')
    with pytest.raises(ConfigError, match=r"`\[states\] gradient_markers` must be a list"):
        load_config(path)
    path.write_text('[states]\ntrend_block_um = 0\n')
    with pytest.raises(ConfigError, match=r"trend_block_um"):
        load_config(path)
