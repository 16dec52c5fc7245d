"""Configuration: defaults, TOML loading, per-field constraints checked on every build, every
bad value collected and named with its section, analysis defaults taken from the Params."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, get_args, get_origin, get_type_hints

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import metaniche.config as config_module
from metaniche.config import (
    AggregateParams,
    CohortParams,
    CompartmentParams,
    Config,
    Each,
    GradientParams,
    Integer,
    Interval,
    LigrecParams,
    NeighbourhoodParams,
    NonEmpty,
    NonNegative,
    OneOf,
    Positive,
    RelationsParams,
    UnitParams,
    ZonationParams,
    load_config,
)
from metaniche.errors import ConfigError, MetanicheError

#: Every Params class with the TOML section it is read from.
SECTIONS: dict[type, str] = {
    Config: "", CompartmentParams: "compartments", config_module.PhenotypeParams: "phenotype",
    GradientParams: "gradients", ZonationParams: "zonation", RelationsParams: "relations",
    CohortParams: "cohort", NeighbourhoodParams: "neighbourhoods",
    AggregateParams: "aggregates", LigrecParams: "ligrec", UnitParams: "units.u",
}


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return repr(value)


def section_text(cls: type, key: str, value: Any) -> str:
    section = SECTIONS[cls]
    head = f"[{section}]\n" if section else ""
    extra = 'types = ["A"]\n' if cls is UnitParams and key != "types" else ""
    return f"{head}{extra}{key} = {toml_value(value)}\n"


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


# --- the cases of issue 14, by direct construction and from TOML --------------------------------

@pytest.mark.parametrize(("build", "message"), [
    (lambda: RelationsParams(graph="bogus"),
     "`RelationsParams.graph` must be one of radius, knn, delaunay; got 'bogus'."),
    (lambda: CompartmentParams(border_um=-5),
     "`CompartmentParams.border_um` must be a positive number; got -5."),
    (lambda: RelationsParams(count_within_um=(10.0, -10.0)),
     "`RelationsParams.count_within_um` must be a non-empty list of positive numbers; got -10."),
    (lambda: RelationsParams(contact_radius_um=0),
     "`RelationsParams.contact_radius_um` must be a positive number; got 0."),
    (lambda: RelationsParams(n_permutations=-5),
     "`RelationsParams.n_permutations` must be a non-negative integer (0 = analytic only); "
     "got -5."),
    (lambda: CohortParams(confidence=1.0),
     "`CohortParams.confidence` must be a number in (0, 1); got 1."),
])
def test_direct_construction_is_checked(build, message):
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value) == message
    assert isinstance(err.value, ValueError) and isinstance(err.value, MetanicheError)
    assert err.value.exit_code == 2


@pytest.mark.parametrize(("text", "message"), [
    ('[relations]\ngraph = "bogus"', "`[relations] graph` must be one of radius, knn, delaunay; "
                                     "got 'bogus'."),
    ("[compartments]\nborder_um = -5", "`[compartments] border_um` must be a positive number; "
                                       "got -5."),
    ("[relations]\ncount_within_um = -10", "`[relations] count_within_um` must be a non-empty "
                                           "list of positive numbers; got -10."),
    ("[relations]\ncontact_radius_um = 0", "`[relations] contact_radius_um` must be a positive "
                                           "number; got 0."),
    ("[relations]\nn_permutations = -5", "`[relations] n_permutations` must be a non-negative "
                                         "integer (0 = analytic only); got -5."),
    ("[cohort]\nconfidence = 1.0", "`[cohort] confidence` must be a number in (0, 1); got 1."),
])
def test_issue_cases_are_rejected_from_toml(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {message}"


@pytest.mark.parametrize(("text", "message"), [
    ("bogus = 1", "unknown key 'bogus'"),
    ("[compartments]\nborder = 5", "unknown key 'compartments.border'"),
    ("um_per_unit = -1", "`um_per_unit` must be a positive number; got -1."),
    ("um_per_unit = 'a'", "`um_per_unit` must be a number; got 'a'."),
    ("um_per_unit = nan", "`um_per_unit` must be a positive number; got nan."),
    ("[compartments]\nborder_um = 0", "`[compartments] border_um` must be a positive number"),
    ("[compartments]\nborder_um = inf", "`[compartments] border_um` must be a positive number"),
    ("[compartments]\ntumor_fraction = 1", "`[compartments] tumor_fraction` must be a number in "
                                           "[0, 1) (0 = automatic); got 1."),
    ("[cell_types]\ntumor = [1]", "`[cell_types] tumor` must be a list of strings"),
    ("[columns]\nx = 3", "`[columns] x` must be a string; got 3."),
    ("[relations]\nk = 2.5", "`[relations] k` must be an integer; got 2.5."),
    ("[relations]\nk = true", "`[relations] k` must be an integer; got true."),
    ("[gradients]\nmarkers = 1", "`[gradients] markers` must be true or false; got 1."),
    ("[cohort]\nanalyses = ['response', 'magic']", "`[cohort] analyses` must be a non-empty list "
                                                   "of response, survival, treatment, "
                                                   "prediction; got unknown 'magic'."),
    ("[cohort]\nn_folds = 1", "`[cohort] n_folds` must be an integer >= 2; got 1."),
    ("[zonation]\nportal_types = []", "`[zonation] portal_types` must be a non-empty list"),
    ("[units.angio]\nradius_um = 10\n", "`[units.angio] types` must be a non-empty list"),
    ("format = 'xlsx'", "`format` must be one of auto, table, inform"),
    ("[gating]\nmethod = 'kmeans'\nA = ['X+']", "'gating.method' must be one of"),
    ("um_per_unit = ", "not valid TOML"),
])
def test_bad_config_gives_one_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=r"c\.toml") as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value)
    assert len(str(err.value).splitlines()) == 1


def test_every_bad_value_is_collected_one_line_each(tmp_path):
    path = write(tmp_path, """
um_per_unit = -1
surprise = 2
[relations]
count_within_um = -10
contact_radius_um = 0
n_permutations = -5
graph = "bogus"
k = "ten"
[cohort]
confidence = 1.0
[compartments]
border_um = -5
[units.angio]
radius_um = 3
[gradients]
bin_um = 30
""")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    lines = str(err.value).splitlines()
    expected = ["unknown key 'surprise'", "`um_per_unit` must be", "`[relations] count_within_um`",
                "`[relations] contact_radius_um`", "`[relations] n_permutations`",
                "`[relations] graph`", "`[relations] k`", "`[cohort] confidence`",
                "`[compartments] border_um`", "`[units.angio] types`", "`[gradients] bin_um`"]
    assert len(lines) == len(expected) == len(err.value.problems)
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, fragment
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_default_roles_recognise_common_labels():
    roles = Config().cell_types
    labels = ["Tumor", "tumour_cells", "CD8_T", "Macrophage", "Hepatocyte", "B", "Endothelial"]
    assert roles.is_tumor(labels) == [True, True, False, False, False, False, False]
    assert roles.is_immune(labels) == [False, False, True, True, False, True, False]


# --- the constraint types ------------------------------------------------------------------

@pytest.mark.parametrize(("check", "good", "bad", "allowed"), [
    (Positive(), [1e-9, 3, 2.5, np.float64(4.0), np.int64(2)],
     [0, -1, math.nan, math.inf, True, "1", None], "a positive number"),
    (NonNegative(), [0, 0.0, 5], [-1e-9, -math.inf, math.nan, False], "zero or a positive number"),
    (NonNegative("0 = automatic"), [0], [-1], "zero or a positive number (0 = automatic)"),
    (Integer(0), [0, 7, np.int64(3)], [-1, 1.0, 0.5, True], "a non-negative integer"),
    (Integer(1), [1, 99], [0, -3, 2.0], "a positive integer"),
    (Integer(2), [2, 5], [1, 0], "an integer >= 2"),
    (Interval(0, 1), [0, 0.5, 1], [-0.1, 1.1, math.nan], "a number in [0, 1]"),
    (Interval(0, 1, lo_open=True, hi_open=True), [1e-12, 0.95], [0, 1, 1.0],
     "a number in (0, 1)"),
    (Interval(0, 1, hi_open=True), [0, 0.999], [1, -0.5], "a number in [0, 1)"),
    (Interval(hi=3, hi_open=True), [-100, 2.9], [3, 4], "a number < 3"),
    (Interval(), [-1e9, 0, 5.5], [math.inf, -math.inf, math.nan], "a finite number"),
    (OneOf(("a", "b")), ["a", "b"], ["c", "", 1, None], "one of a, b"),
    (Each(Positive(), "positive numbers"), [(1.0,), [2, 3]], [(), (1.0, 0.0), (-1,)],
     "a non-empty list of positive numbers"),
    (Each(Integer(0)), [(0, 1)], [(0, -1), []], "a non-empty list, each a non-negative integer"),
    (NonEmpty(), [("a",), ["b", "c"]], [(), []], "a non-empty list of labels"),
])
def test_constraint_accepts_and_rejects(check, good, bad, allowed):
    assert all(check.ok(v) for v in good)
    assert not any(check.ok(v) for v in bad)
    assert check.allowed == allowed


def test_each_names_the_offending_items():
    assert Each(Positive()).got((1.0, -2.0, 3.0, 0.0)) == "-2, 0"
    assert Each(OneOf(("x",))).got(("x", "y")) == "unknown 'y'"
    assert Each(Positive()).got(()) == "[]"


def _params_classes() -> list[type]:
    return [cls for cls in vars(config_module).values()
            if isinstance(cls, type) and dataclasses.is_dataclass(cls)
            and cls.__module__ == config_module.__name__ and issubclass(
                cls, config_module.Validated)]


def test_every_params_class_is_validated_and_every_number_has_a_constraint():
    classes = _params_classes()
    assert set(SECTIONS) <= set(classes)
    for cls in classes:
        hints = get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            hint = hints[spec.name]
            numeric = hint in (int, float) or (get_origin(hint) is tuple
                                               and get_args(hint)[0] is float)
            if numeric:
                assert "check" in spec.metadata, f"{cls.__name__}.{spec.name} has no constraint"


def _bad_values(check) -> list[Any]:
    """Values that violate ``check`` (and are valid TOML of the field's type)."""
    if isinstance(check, Interval):
        values = []
        if check.lo is not None:
            values.append(check.lo if check.lo_open else check.lo - 1)
        if check.hi is not None:
            values.append(check.hi if check.hi_open else check.hi + 1)
        if check.integer:
            values = [int(v) for v in values]
        return values or [math.nan]
    if isinstance(check, OneOf):
        return ["no-such-choice"]
    if isinstance(check, Each):
        return [[], *[[v] for v in _bad_values(check.item)]]
    if isinstance(check, NonEmpty):
        return [[]]
    raise AssertionError(f"no bad values for {check!r}")


def _declared() -> list[tuple[type, str, Any]]:
    cases = []
    for cls, section in SECTIONS.items():
        for spec in dataclasses.fields(cls):
            if "check" in spec.metadata and section is not None:
                cases.extend((cls, spec.name, value) for value in _bad_values(
                    spec.metadata["check"]))
    return cases


@pytest.mark.parametrize(("cls", "key", "value"), _declared(),
                         ids=lambda v: v.__name__ if isinstance(v, type) else repr(v))
def test_every_declared_constraint_is_enforced_on_construction_and_from_toml(tmp_path, cls,
                                                                            key, value):
    direct = tuple(value) if isinstance(value, list) else value
    extra = {"types": ("A",)} if cls is UnitParams and key != "types" else {}
    with pytest.raises(ConfigError, match=rf"`{cls.__name__}\.{key}` must be "):
        cls(**extra, **{key: direct})
    section = SECTIONS[cls]
    named = f"[{section}] {key}" if section else key
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, section_text(cls, key, value)))
    (line,) = str(err.value).splitlines()
    assert f"`{named}` must be " in line and "; got " in line


def test_documented_special_values_are_accepted():
    assert CompartmentParams(tumor_fraction=0.0, tissue_radius_um=0.0).tumor_fraction == 0
    assert RelationsParams(n_permutations=0, ripley_simulations=0).n_permutations == 0
    assert LigrecParams(n_permutations=0, max_permutations=0, normal_min_edges=0)
    assert LigrecParams(n_permutations=999, max_permutations=500)  # <= n: no refinement
    assert NeighbourhoodParams(n_neighbourhoods=0).n_neighbourhoods == 0
    assert AggregateParams(marker_threshold=0.0, min_fdc_cells=0, min_gc_cells=0)
    assert CohortParams(l1_ratio=1.0, min_non_missing=0.0, min_variance=0.0)
    assert ZonationParams(beyond_um=0.0).beyond_um == 0
    assert RelationsParams(count_within_um=[5, 7.5]).count_within_um == [5, 7.5]


# --- cross-field rules ---------------------------------------------------------------------

@pytest.mark.parametrize(("params", "message"), [
    (dict(min_um=100.0, max_um=100.0), "`GradientParams.max_um` must be greater than min_um = "
                                       "100; got 100."),
    (dict(min_um=-20.0, max_um=25.0, bin_um=10.0), "`GradientParams.bin_um` must be a divisor "
                                                    "of max_um - min_um = 45"),
    (dict(bin_um=20.0, window_um=5.0), "`GradientParams.window_um` must be at least 10, the "
                                       "distance of the nearest bin centre"),
])
def test_gradient_range_rules(params, message):
    with pytest.raises(ConfigError) as err:
        GradientParams(**params)
    assert str(err.value).startswith(message)


def test_gradient_rules_agree_with_the_bin_edges():
    from metaniche.analyses.gradients import bin_edges_um

    for lo, hi, width in [(-500.0, 500.0, 10.0), (-20.0, 20.0, 10.0), (-0.3, 0.6, 0.1),
                          (-20.0, 25.0, 10.0), (0.0, 1.0, 0.3)]:
        try:
            edges = bin_edges_um(lo, hi, width)
        except ConfigError:
            with pytest.raises(ConfigError):
                GradientParams(min_um=lo, max_um=hi, bin_um=width, window_um=hi - lo)
        else:
            assert GradientParams(min_um=lo, max_um=hi, bin_um=width, window_um=hi - lo)
            assert len(edges) == round((hi - lo) / width) + 1


def test_ripley_grid_needs_one_radius(tmp_path):
    assert RelationsParams(ripley_max_um=10.0, ripley_step_um=10.0)
    with pytest.raises(ConfigError, match=r"`RelationsParams\.ripley_max_um` must be at least "
                                          r"ripley_step_um = 20; got 10\."):
        RelationsParams(ripley_max_um=10.0, ripley_step_um=20.0)
    with pytest.raises(ConfigError, match=r"`\[relations\] ripley_max_um` must be at least"):
        load_config(write(tmp_path, "[relations]\nripley_step_um = 200\n"))


def test_replace_and_nested_objects_are_checked():
    with pytest.raises(ConfigError, match="border_um"):
        dataclasses.replace(CompartmentParams(), border_um=-1.0)
    with pytest.raises(ConfigError, match=r"`Config\.relations` must be a RelationsParams"):
        Config(relations={"graph": "knn"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Config\.gating"):
        Config(gating={"method": "kmeans", "A": ["X+"]})


def test_choice_lists_mirror_the_analyses():
    from metaniche.analyses.relations import GRAPH_KINDS
    from metaniche.cohort.run import ANALYSES

    assert tuple(GRAPH_KINDS) == config_module.RELATION_GRAPHS
    assert tuple(ANALYSES) == config_module.COHORT_ANALYSES


def test_shipped_example_configs_load():
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        load_config(path)


# --- analysis defaults come from the Params --------------------------------------------------

def _covered() -> list[tuple[Any, str, Any]]:
    from metaniche.analyses import zonation
    from metaniche.analyses.communities import aggregates, ligrec, neighbourhoods
    from metaniche.analyses.relations import _graph, alphashape, enrichment

    lig, agg, nbh, rel = LigrecParams(), AggregateParams(), NeighbourhoodParams(), \
        RelationsParams()
    return [
        (ligrec.ligand_receptor, "n_permutations", lig.n_permutations),
        (ligrec.ligand_receptor, "seed", lig.seed),
        (ligrec.ligand_receptor, "min_edges", lig.min_edges),
        (ligrec.ligand_receptor, "max_permutations", lig.max_permutations),
        (ligrec.ligand_receptor, "min_exceedances", lig.min_exceedances),
        (ligrec.ligand_receptor, "normal_min_edges", lig.normal_min_edges),
        (aggregates.grade_tls, "min_fdc_cells", agg.min_fdc_cells),
        (aggregates.grade_tls, "min_fdc_fraction", agg.min_fdc_fraction),
        (aggregates.grade_tls, "min_gc_cells", agg.min_gc_cells),
        (aggregates.marker_positive, "threshold", agg.marker_threshold),
        (neighbourhoods.neighbourhood_composition, "k", nbh.k),
        (neighbourhoods.training_windows, "seed", nbh.seed),
        (neighbourhoods.fit_neighbourhoods, "n_neighbourhoods", nbh.n_neighbourhoods),
        (neighbourhoods.fit_neighbourhoods, "seed", nbh.seed),
        (_graph.neighbour_graph, "kind", rel.graph),
        (_graph.neighbour_graph, "radius_um", rel.contact_radius_um),
        (_graph.neighbour_graph, "k", rel.k),
        (enrichment.neighbourhood_enrichment, "n_permutations", rel.n_permutations),
        (enrichment.neighbourhood_enrichment, "seed", rel.seed),
        (alphashape.border_cells, "alpha", rel.border_alpha_um),
        (alphashape.spiat_border_cells, "alpha", rel.border_alpha_um),
        (zonation.zonation, "n_bins", ZonationParams().n_bins),
    ]


def test_analysis_signature_defaults_equal_the_params_defaults():
    for function, name, expected in _covered():
        default = inspect.signature(function).parameters[name].default
        assert default == expected and type(default) is type(expected), (
            f"{function.__name__}({name}={default!r}) but the config default is {expected!r}")


def test_ligrec_notebook_call_equals_the_config_default():
    """A call with the function's defaults gives the pipeline's p-values (config defaults).

    The example has rows above ``normal_min_edges`` (normal p) and a planted row whose p
    needs refinement past 999 permutations, so both disputed defaults matter: under the old
    function defaults (99,999 permutations, no normal rows) the tables differ.
    """
    from metaniche.analyses.communities import ligand_receptor, neighbour_pairs

    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 700, (4000, 2))
    codes = rng.integers(0, 2, len(xy))
    compartment = np.where(xy[:, 0] < 120, "border", "core")
    patch = 1.0 + 4.0 * (xy[:, 1] < 350)  # both genes high on one half: co-localised
    ligand = patch * rng.exponential(size=len(xy))
    receptor = patch * rng.exponential(size=len(xy))
    pair = [("VEGFA", "KDR", "VEGFA", "KDR")]
    params = Config().ligrec
    pairs = neighbour_pairs(cKDTree(xy), params.radius_um)
    args = (pairs.i, pairs.j, {"VEGFA": ligand, "KDR": receptor}, pair, codes, ["M", "E"],
            compartment)
    notebook = ligand_receptor(*args)
    pipeline = ligand_receptor(*args, params.n_permutations, params.seed, params.min_edges,
                               params.max_permutations, params.min_exceedances,
                               params.normal_min_edges)
    pd.testing.assert_frame_equal(notebook, pipeline)
    normal = notebook["n_permutations"] == 0
    assert normal.any() and (notebook.loc[normal, "n_edges"] >= params.normal_min_edges).all()
    assert (notebook["n_permutations"] > params.n_permutations).any()
    old = ligand_receptor(*args, max_permutations=99_999, normal_min_edges=0)
    assert not np.array_equal(old["p"].to_numpy(), notebook["p"].to_numpy())


def test_survival_time_unit_from_the_setting_or_the_column_name():
    from metaniche.config import ClinicalColumns, time_unit_of

    assert ClinicalColumns().time_unit == ""             # no unit assumed
    assert ClinicalColumns(os_time="survival_days").resolved_time_unit() == "days"
    assert ClinicalColumns(os_time="survival_days", time_unit="months").resolved_time_unit() \
        == "months"
    for name, unit in [("OS_months", "months"), ("os.time.yrs", "years"), ("pfs weeks", "weeks"),
                       ("time[day]", "days"), ("os_time", ""), ("dayside_score", ""),
                       ("days_to_months", "")]:                  # two units: none claimed
        assert time_unit_of("", name) == unit, name
