"""Run configuration: one TOML file, every key optional with a documented default.

The model is a tree of frozen dataclasses that validate themselves. Every numeric or choice
field declares its rule beside it (``field(default=..., metadata={"check": Positive()})``,
see :class:`Interval`, :func:`Positive`, :func:`NonNegative`, :func:`Integer`,
:class:`OneOf`, :class:`Each`, :class:`NonEmpty`); cross-field rules are ``_cross_checks``
methods. ``__post_init__`` checks both, so a direct construction
(``CompartmentParams(border_um=-5)``), :func:`dataclasses.replace`, a notebook call and the
TOML loader all hit the same check and raise :class:`~metaniche.errors.ConfigError` (also a
``ValueError``) naming the key, the value and the allowed range.

:func:`load_config` reads a TOML file (stdlib ``tomllib``), rejects unknown keys by name,
coerces TOML values to the declared types and collects every bad value of the file into one
error, one line each. Defaults are the values documented below and in DESIGN.md;
``Config()`` is the all-defaults configuration, and the analysis functions take their keyword
defaults from these classes (e.g. ``ligand_receptor(max_permutations=
LigrecParams.max_permutations)``), so a notebook call and the pipeline agree.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from metaniche import _contract
from metaniche.errors import ConfigError

__all__ = [
    "GENE_NORMALISATIONS",
    "SPOT_KINDS",
    "AggregateParams",
    "CellTypeRoles",
    "ClinicalColumns",
    "CohortParams",
    "ColumnNames",
    "CompartmentParams",
    "Config",
    "ContactParams",
    "GradientParams",
    "InputParams",
    "LigrecParams",
    "NeighbourhoodParams",
    "PhenotypeParams",
    "RelationsParams",
    "SpotsParams",
    "StateRule",
    "StatesParams",
    "UnitParams",
    "Validated",
    "ZonationParams",
    "build_params",
    "load_config",
]

#: Input formats accepted by ``format`` / ``--format``: ``"auto"`` and the name of every
#: reader registered in :data:`metaniche.io.readers.READERS` (names kept in the leaf
#: :mod:`metaniche._contract`, so the config does not import the readers).
INPUT_FORMATS: tuple[str, ...] = _contract.INPUT_FORMATS
#: Default tumour labels: anything starting with "tumor"/"tumour", any case.
DEFAULT_TUMOR_PATTERN = r"^tumou?r"
#: Default immune labels, matched case-insensitively against the start of a label.
DEFAULT_IMMUNE_PATTERN = (
    r"^(cd8|cd4|cd3|t[_ ]?cell|t_|treg|tc_|th|b[_ ]?cell|b$|bc\d|plasma|nk|macrophage|mac|"
    r"mc\d|cd68|cd163|monocyte|cd14|neutrophil|dc|dendritic|mast|lymph|immune|myeloid|"
    r"gpnmb_macrophage|s100a12_neutrophil|foxp3|pd1)"
)


#: Sources of the tumour region, ``[compartments] region``: detected from the tumour cells, or
#: the export's own tissue segmentation (column ``tissue_category``).
TUMOR_REGION_SOURCES: tuple[str, ...] = ("cells", "tissue_category")
#: Contact graphs of ``[relations] graph`` (mirrors ``analyses.relations.GRAPH_KINDS``; a test
#: keeps the two equal, since config must not import the analyses).
RELATION_GRAPHS: tuple[str, ...] = ("radius", "knn", "delaunay")
#: Edge corrections of Ripley K/L/g, ``[relations] ripley_correction``: Ohser–Stoyan translation
#: (on any window) or Ripley's isotropic correction (spatstat / spicyR; rectangle window only).
RIPLEY_CORRECTIONS: tuple[str, ...] = ("translation", "isotropic")
#: Windows of Ripley K/L/g, ``[relations] ripley_window``: the tissue mask, or the image's
#: rectangle ``[0, max x] × [0, max y]`` (spicyR's ``ppp`` window).
RIPLEY_WINDOWS: tuple[str, ...] = ("mask", "rectangle")
#: Automatic threshold methods of a marker state, ``[states.<name>] threshold`` (mirrors
#: ``phenotype.METHODS``; a test keeps the two equal).
STATE_THRESHOLD_METHODS: tuple[str, ...] = ("otsu", "gmm", "valley")
#: Prefix of a per-cohort automatic threshold, ``threshold = "cohort:otsu"``: one threshold
#: over the cells of every sample of the run (:mod:`metaniche.cohort.state_thresholds`).
COHORT_THRESHOLD_PREFIX = "cohort:"
#: Default regulatory T labels of the default density ratio (``[states] ratios``): labels whose
#: start matches this, any case (``Treg``, ``FOXP3…``, ``FoxP3+``).
DEFAULT_REGULATORY_PATTERN = r"^(treg|foxp3)"
#: Names of states, units and other user-named things that become parts of feature names.
_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_]*"
#: Analyses of ``[cohort] analyses`` (mirrors ``cohort.run.ANALYSES``; a test keeps them equal).
COHORT_ANALYSES: tuple[str, ...] = ("response", "survival", "treatment", "prediction")
#: Exposures of the contact test, ``[contact] exposure``: B cells within the radius, or the log
#: distance to the nearest B (see :mod:`metaniche.analyses.contact`).
CONTACT_EXPOSURES: tuple[str, ...] = ("count", "log_distance")
#: Image weights of the mixed models, ``[cohort] mixed_model_weights``: none, or spicyR's
#: weights from a smooth of the squared residuals on the pair's two cell counts.
MIXED_MODEL_WEIGHTS: tuple[str, ...] = ("none", "counts")


# --- declarative constraints ------------------------------------------------------------------
#
# Every Params field that has a rule declares it beside the field, as
# ``field(default=..., metadata={"check": Positive()})``. ``__post_init__`` of every Params class
# (:class:`Validated`) checks the type and the constraint of every field, then the class's
# cross-field rules (method ``_cross_checks``), so a direct construction
# (``RelationsParams(graph="bogus")``), the TOML loader and a notebook call hit the same check.


def _show(value: Any) -> str:
    """A value as the user wrote it: 10 not 10.0, lists in brackets, strings quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class Constraint:
    """A rule on one field's value: :meth:`ok` decides, :attr:`allowed` says what is allowed."""

    #: What the value must be, completing "`key` must be …", e.g. "a positive number".
    allowed: str = ""

    def ok(self, value: Any) -> bool:  # pragma: no cover - every subclass overrides it
        """Return whether ``value`` satisfies the rule."""
        raise NotImplementedError

    def got(self, value: Any) -> str:
        """The offending part of ``value``, as shown after "got"."""
        return _show(value)


@dataclass(frozen=True)
class Interval(Constraint):
    """A finite number in ``[lo, hi]`` (either end optional or open); integers only if asked.

    ``note`` documents a special value, e.g. ``"0 = automatic"``.
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    note: str = ""

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` is a (whole) finite number inside the interval."""
        if not (_is_integer(value) if self.integer else _is_number(value)):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        """E.g. "a positive number", "an integer >= 2", "a number in (0, 1)"."""
        kind = "integer" if self.integer else "number"
        if self.lo is not None and self.hi is not None:
            text = (f"a{'n' if self.integer else ''} {kind} in {'(' if self.lo_open else '['}"
                    f"{_show(self.lo)}, {_show(self.hi)}{')' if self.hi_open else ']'}")
        elif self.lo == 0 and self.hi is None:
            text = f"a positive {kind}" if self.lo_open else (
                "a non-negative integer" if self.integer else "zero or a positive number")
        elif self.lo == 1 and self.integer and not self.lo_open:
            text = "a positive integer"
        elif self.lo is not None:
            text = (f"a{'n' if self.integer else ''} {kind} "
                    f"{'>' if self.lo_open else '>='} {_show(self.lo)}")
        elif self.hi is not None:
            text = (f"a{'n' if self.integer else ''} {kind} "
                    f"{'<' if self.hi_open else '<='} {_show(self.hi)}")
        else:
            text = f"a finite {kind}"
        return f"{text} ({self.note})" if self.note else text


def Positive(note: str = "") -> Interval:
    """A finite number > 0."""
    return Interval(0, None, lo_open=True, note=note)


def NonNegative(note: str = "") -> Interval:
    """A finite number >= 0."""
    return Interval(0, None, note=note)


def Integer(minimum: int, note: str = "") -> Interval:
    """An integer >= ``minimum``."""
    return Interval(minimum, None, integer=True, note=note)


@dataclass(frozen=True)
class OneOf(Constraint):
    """One of a fixed set of strings."""

    choices: tuple[str, ...]

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` is one of the choices."""
        return isinstance(value, str) and value in self.choices

    @property
    def allowed(self) -> str:  # type: ignore[override]
        """"one of a, b, c"."""
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class Each(Constraint):
    """A non-empty list whose every item satisfies ``item``; "got" shows the bad items."""

    item: Constraint
    #: Plural of the items in messages, e.g. "positive numbers"; default from ``item``.
    items: str = ""

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` is a non-empty list of good items."""
        return isinstance(value, tuple | list) and len(value) > 0 and all(
            self.item.ok(v) for v in value)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        """E.g. "a non-empty list of: a positive number"."""
        if isinstance(self.item, OneOf):
            return "a non-empty list of " + ", ".join(self.item.choices)
        if self.items:
            return f"a non-empty list of {self.items}"
        return f"a non-empty list, each {self.item.allowed}"

    def got(self, value: Any) -> str:
        """The bad items (prefixed "unknown" for a list of choices), or the empty list."""
        if not isinstance(value, tuple | list) or not value:
            return _show(value)
        bad = [v for v in value if not self.item.ok(v)]
        shown = ", ".join(_show(v) for v in bad)
        return f"unknown {shown}" if isinstance(self.item, OneOf) else shown


@dataclass(frozen=True)
class NonEmpty(Constraint):
    """A non-empty list (of labels)."""

    allowed: str = "a non-empty list of labels"

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` has at least one item."""
        return len(value) > 0


@dataclass(frozen=True)
class PositiveOrAuto(Interval):
    """A finite number > 0 (an :class:`Interval` ``(0, ∞)``), or the string ``"auto"`` (a
    value chosen per sample)."""

    lo: float | None = 0.0
    lo_open: bool = True

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` is ``"auto"`` or a positive finite number."""
        return value == "auto" or super().ok(value)

    @property
    def allowed(self) -> str:  # type: ignore[override]
        """"a positive number or "auto" (…)"."""
        text = 'a positive number or "auto"'
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Problem:
    """One bad value: the field (``key``), what is allowed and what was given."""

    key: str
    allowed: str
    got: str

    def render(self, owner: str) -> str:
        """"`<owner> key` must be <allowed>; got <got>." (``owner``: section or class)."""
        return f"`{owner}{self.key}` must be {self.allowed}; got {self.got}."


def _type_allowed(hint: Any, value: Any) -> str | None:
    """What a field of type ``hint`` must hold, when ``value`` is of the wrong kind; else None.

    The one type rule of the model, used on direct construction and after TOML coercion.
    Lists are accepted where tuples are declared (notebook convenience).
    """
    if hint is float:
        return None if _is_number(value) else "a number"
    if hint is int:
        return None if _is_integer(value) else "an integer"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if get_origin(hint) is tuple:
        (item_type, _) = get_args(hint)
        if get_origin(item_type) is tuple:  # tuple of label pairs
            if isinstance(value, tuple | list) and all(
                    isinstance(v, tuple | list) and len(v) == 2
                    and all(isinstance(x, str) for x in v) for v in value):
                return None
            return "a list of [label, label] pairs"
        good = _is_number if item_type is float else (lambda v: isinstance(v, str))
        if isinstance(value, tuple | list) and all(good(v) for v in value):
            return None
        return "a list of numbers" if item_type is float else "a list of strings"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else f"a {hint.__name__}"
    if get_origin(hint) is dict:
        return None if isinstance(value, dict) else "a table"
    return None


_HINTS: dict[str, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a Params class, computed once per class."""
    key = f"{cls.__module__}.{cls.__qualname__}"
    if key not in _HINTS:
        _HINTS[key] = get_type_hints(cls)
    return _HINTS[key]


class Validated:
    """Mixin of every Params class: check every field, then the cross-field rules, on build.

    Raises :class:`~metaniche.errors.ConfigError` listing every bad value, one per line; its
    ``problems`` attribute holds the :class:`Problem` objects so that :func:`load_config` can
    name them with their TOML section. Public so that other configuration files (e.g.
    :mod:`metaniche.studies.design`'s ``[design]``) declare their parameters the same way: a
    frozen dataclass whose fields carry a ``check`` constraint in their metadata.

    Examples
    --------
    >>> from dataclasses import dataclass, field
    >>> from metaniche.config import Positive, Validated
    >>> @dataclass(frozen=True)
    ... class Window(Validated):
    ...     side_um: float = field(default=500.0, metadata={"check": Positive()})
    >>> Window(side_um=-1.0)
    Traceback (most recent call last):
    ...
    metaniche.errors.ConfigError: `Window.side_um` must be a positive number; got -1.
    """

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            owner = f"{type(self).__name__}."
            raise ConfigError("\n".join(p.render(owner) for p in problems), problems=problems)

    def problems(self) -> list[Problem]:
        """Every bad value of this object (nested sections are checked when they are built)."""
        hints = _hints(type(self))
        found = []
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            kind = _type_allowed(hints[spec.name], value)
            check = spec.metadata.get("check")
            if kind is not None:
                found.append(Problem(spec.name, kind, _show(value)))
            elif check is not None and not check.ok(value):
                found.append(Problem(spec.name, check.allowed, check.got(value)))
        if not found:
            found.extend(self._cross_checks())
        return found

    def _cross_checks(self) -> list[Problem]:
        """Rules between fields; checked only when every field is valid on its own."""
        return []

@dataclass(frozen=True)
class ColumnNames(Validated):
    """Input column names (section ``[columns]``).

    Each is matched exactly, else case-insensitively when unique. ``sample`` and ``cell_id``
    are optional (absent: the file stem, and row numbers); ``x``, ``y`` and ``cell_type`` are
    required. ``patient`` (default ``patient``, used when present, like ``sample``) names the
    patient id of each cell: every row of a sample must carry the same id (or none); it
    becomes the ``patient`` column of ``features.parquet``, through which a clinical table
    with one row per patient (``[clinical] patient``) is joined, and it groups the images of
    one patient in the cohort analyses (e.g. ``patient = "patient_id"``).
    """

    sample: str = "sample"
    cell_id: str = "cell_id"
    x: str = "x"
    y: str = "y"
    cell_type: str = "cell_type"
    patient: str = "patient"


@dataclass(frozen=True)
class CellTypeRoles(Validated):
    """Roles of cell-type labels (section ``[cell_types]``).

    ``tumor`` and ``immune`` list exact labels. When a list is empty the defaults apply:
    tumour labels match ``^tumou?r`` (any case); immune labels are the non-tumour labels whose
    start matches :data:`DEFAULT_IMMUNE_PATTERN` (any case): CD8/CD4/CD3, ``T cell``/``T_``/
    ``Tc_``/``Th…``/Treg, ``B cell``/``B``/``BC<n>``, plasma, NK, macrophage/``mac``/``MC<n>``/
    CD68/CD163, monocyte/CD14, neutrophil, DC/dendritic, mast, ``lymph…``, immune, myeloid,
    FOXP3, PD1 — a bare ``T`` is *not* matched. ``lineage`` (TOML table
    ``[cell_types.lineage]``, e.g. ``T = ["TC_CD4", "TC_CD8"]``, ``B = ["BC1"]``,
    ``myeloid = ["MC1"]``, ``NK = [...]``) names the immune lineage of exact labels; its
    labels are immune too (immune = ``immune`` ∪ lineage labels; the default pattern applies
    only when both are empty).
    """

    tumor: tuple[str, ...] = ()
    immune: tuple[str, ...] = ()
    lineage: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def lineage_of(self, labels: list[str]) -> list[str | None]:
        """Return, per label, its immune lineage (a key of ``lineage``), or ``None``."""
        owner = {label: name for name, members in self.lineage.items() for label in members}
        return [owner.get(str(label)) for label in labels]

    def is_tumor(self, labels: list[str]) -> list[bool]:
        """Return, per label, whether it names tumour cells."""
        if self.tumor:
            return [label in self.tumor for label in labels]
        return [bool(re.match(DEFAULT_TUMOR_PATTERN, str(label), re.IGNORECASE))
                for label in labels]

    def is_immune(self, labels: list[str]) -> list[bool]:
        """Return, per label, whether it names immune cells."""
        listed = set(self.immune).union(*self.lineage.values()) if self.lineage else set(
            self.immune)
        if listed:
            return [label in listed for label in labels]
        tumor = self.is_tumor(labels)
        return [not t and bool(re.match(DEFAULT_IMMUNE_PATTERN, str(label), re.IGNORECASE))
                for label, t in zip(labels, tumor, strict=True)]


@dataclass(frozen=True)
class CompartmentParams(Validated):
    """Tumour-region detection and compartment parameters (section ``[compartments]``).

    Attributes
    ----------
    border_um
        Half-width w of the invasive border band, µm: border is ``|d| <= w``. Default 100
        (Immunoscore's invasive margin uses 500). A sample whose border holds most of its
        cells gets a warning.
    grid_um
        Raster pixel size used for the tissue and tumour masks, µm. Default 0 = automatic:
        5 µm scaled by the cell spacing (see below).
    smoothing_um
        Gaussian kernel sigma for the local cell-type densities, µm. Default 0 = automatic:
        20 µm scaled by the cell spacing.
    tumor_fraction
        A pixel is tumour when the weighted local tumour fraction exceeds this. Default 0:
        chosen per sample by the isodata method, clipped to [0.2, 0.6].
    immune_weight
        Weight of immune cells in the denominator of the tumour fraction, so that immune
        infiltrate inside a lesion does not carve it up. Default 0.25.
    min_lesion_area_um2
        Tumour regions smaller than this are dropped, µm². Default 0 = automatic: 20,000
        (≈160 µm across) scaled by the square of the cell-spacing factor.
    min_hole_area_um2
        Non-tumour holes inside a lesion smaller than this are filled, µm²; larger holes
        (necrosis, stroma) stay non-tumour. Default 0 = automatic: 20,000 scaled like
        ``min_lesion_area_um2`` (to fill no hole, set a tiny value such as 1e-6).
    tissue_radius_um
        Tissue mask = union of discs of this radius around cells, then closed with
        ``tissue_closing_um``. Default 0, meaning half the median nearest-neighbour distance.
    tissue_closing_um
        Radius of the morphological closing that fills gaps in the tissue mask, µm. Default
        0 = automatic: 30 µm scaled by the cell spacing.
    region
        Where the tumour region comes from: ``"cells"`` (default; detected from the tumour
        cells) or ``"tissue_category"`` (the export's own tissue segmentation, column
        ``tissue_category``: inForm ``Tissue Category``, HALO/QuPath classification). An
        annotation (``annotations``) overrides both.
    tumor_categories
        Tissue categories (any case) that mean tumour, for ``region = "tissue_category"`` and
        for the agreement reported whenever the cells carry a category. Default
        ``("Tumor", "Tumour")``.
    annotations
        Path to a GeoJSON file or a folder of ``<sample>.geojson`` tumour annotations (as
        QuPath exports, in input coordinate units) that override detection. Default none.

    Notes
    -----
    Automatic scales: with s the sample's median nearest-neighbour distance, each scale left
    at 0 is its reference value times ``f = clip(s / 13 µm, 0.1, 1)`` (areas times ``f²``),
    so a dense mIF field gets proportionally finer scales and tissue at 3,000 cells/mm² or
    sparser keeps the reference values. The rule, its reasoning and the reference values
    live in :mod:`metaniche.analyses.compartments` (``REFERENCE_SCALES``); the values used
    are columns of the ``compartments`` table.
    """

    border_um: float = field(default=100.0, metadata={"check": Positive()})
    grid_um: float = field(default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    smoothing_um: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    tumor_fraction: float = field(
        default=0.0, metadata={"check": Interval(0, 1, hi_open=True, note="0 = automatic")})
    immune_weight: float = field(default=0.25, metadata={"check": NonNegative()})
    min_lesion_area_um2: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    min_hole_area_um2: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    tissue_radius_um: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    tissue_closing_um: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})
    region: str = field(default="cells",
                        metadata={"check": OneOf(TUMOR_REGION_SOURCES)})
    tumor_categories: tuple[str, ...] = field(default=("Tumor", "Tumour"),
                                              metadata={"check": NonEmpty()})
    annotations: str = ""


@dataclass(frozen=True)
class PhenotypeParams(Validated):
    """Immune phenotype rules (section ``[phenotype]``); see :mod:`metaniche.analyses.composition`.

    Attributes
    ----------
    effector_types
        Labels whose densities decide the phenotype. Default empty: labels matching ``CD8``.
    desert_max_per_mm2
        Desert when effector density is below this in both core and border. Default 50.
    inflamed_min_core_border_ratio
        Inflamed when core density / border density is at least this; otherwise excluded.
        Default 0.3.
    """

    effector_types: tuple[str, ...] = ()
    desert_max_per_mm2: float = field(default=50.0, metadata={"check": NonNegative()})
    inflamed_min_core_border_ratio: float = field(default=0.3, metadata={"check": NonNegative()})


@dataclass(frozen=True)
class GradientParams(Validated):
    """Distance-to-border gradient profiles (section ``[gradients]``).

    See :mod:`metaniche.analyses.gradients`.

    Attributes
    ----------
    bin_um
        Width of the signed-distance bins, µm; bins are ``[a, a + bin_um)``. Default 10.
    min_um, max_um
        Range of the bins, µm (negative inside tumour); ``max_um - min_um`` must be a
        multiple of ``bin_um``. Defaults -500 and 500.
    window_um
        Trend, peak and borderline statistics use the bins whose centre satisfies
        ``|d| <= window_um``. Default 300.
    markers
        Also profile the mean of every marker / gene column per bin. Default true.
    marker_columns
        Marker columns to profile; default empty: every numeric non-contract column.
    infiltration_types
        Labels whose infiltration depth and per-lesion densities are reported. Default empty:
        labels containing ``CD8`` (any case).
    """

    bin_um: float = field(default=10.0, metadata={"check": Positive()})
    min_um: float = field(default=-500.0, metadata={"check": Interval()})
    max_um: float = field(default=500.0, metadata={"check": Interval()})
    window_um: float = field(default=300.0, metadata={"check": Positive()})
    markers: bool = True
    marker_columns: tuple[str, ...] = ()
    infiltration_types: tuple[str, ...] = ()

    def _cross_checks(self) -> list[Problem]:
        """``max_um > min_um``; ``max_um - min_um`` a whole number of bins (the rule of
        :func:`metaniche.analyses.gradients.bin_edges_um`); some bin centre within the window."""
        span = self.max_um - self.min_um
        if span <= 0:
            return [Problem("max_um", f"greater than min_um = {_show(self.min_um)}",
                            _show(self.max_um))]
        n_bins = round(span / self.bin_um)
        if abs(n_bins * self.bin_um - span) > 1e-6 * self.bin_um:
            return [Problem("bin_um", f"a divisor of max_um - min_um = {_show(span)} (a whole "
                            f"number of bins)", _show(self.bin_um))]
        nearest = min(abs(self.min_um + self.bin_um * (i + 0.5)) for i in range(n_bins))
        if nearest > self.window_um + 1e-9:
            return [Problem("window_um", f"at least {_show(nearest)}, the distance of the "
                            f"nearest bin centre (trend statistics use the bins with "
                            f"|centre| <= window_um)", _show(self.window_um))]
        return []


@dataclass(frozen=True)
class ZonationParams(Validated):
    """Liver zonation along the portal-central axis (section ``[zonation]``).

    See :mod:`metaniche.analyses.zonation`.

    Attributes
    ----------
    portal_types
        Labels of portal landmark cells (portal vein, bile duct). Default ``("Portal_vein",)``.
    central_types
        Labels of central-vein landmark cells. Default ``("Central_vein",)``.
    n_bins
        Number of equal-width bins of the zonation coordinate eta on [0, 1]. Default 10.
    beyond_um
        The restricted analysis keeps cells and tissue with signed distance greater than this,
        µm. Default 0: the border half-width ``[compartments] border_um``.
    """

    portal_types: tuple[str, ...] = field(default=("Portal_vein",), metadata={"check": NonEmpty()})
    central_types: tuple[str, ...] = field(
        default=("Central_vein",), metadata={"check": NonEmpty()})
    n_bins: int = field(default=10, metadata={"check": Integer(1)})
    beyond_um: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = the border half-width")})


@dataclass(frozen=True)
class RelationsParams(Validated):
    """Cell–cell relation parameters (section ``[relations]``); see ``analyses/relations``.

    Attributes
    ----------
    contact_radius_um
        Radius (µm, ``<=``) of the contact graph for neighbourhood enrichment, mixing scores and
        neighbourhood entropy. Default 30.
    graph
        Contact graph for enrichment: ``"radius"`` (default), ``"knn"`` or ``"delaunay"``.
    k
        Neighbours of the kNN graph. Default 10.
    n_permutations
        Monte Carlo permutations for enrichment p-values; 0 (default) uses only the exact
        analytic null moments.
    seed
        Seed of permutations and simulations. Default 0.
    count_within_um
        Radii (µm) of phenoptr-style counts within radius. Default (10, 25, 50).
    ripley_max_um, ripley_step_um
        Radius grid of Ripley K/L/g: ``step, 2·step, …, max``. Defaults 100 and 10.
        ``ripley_max_um = "auto"`` gives spatstat's default grid per sample and target type
        instead (``ripley_step_um`` is then not used): 513 radii from 0 to
        ``min(shorter side of the rectangle / 4, sqrt(1000 / (π λ_b)))``, λ_b the target
        type's cells per µm² (spatstat's ``rmax.rule``; a quarter of the shorter side unless
        the target type is dense).
    ripley_correction
        Edge correction of Ripley K/L/g (and ``ripley_l_mean``): ``"translation"`` (default,
        Ohser–Stoyan, symmetric, on the window's set covariance) or ``"isotropic"`` (Ripley's,
        spatstat's ``Lcross(correction = "isotropic")``, asymmetric: ``ripley_l_mean.A.B`` and
        ``.B.A`` are both features; needs ``ripley_window = "rectangle"``).
    ripley_window
        Window of Ripley K/L/g: ``"mask"`` (default, the tissue mask) or ``"rectangle"`` (the
        image frame ``[0, max x] × [0, max y]``, spicyR's window). spicyR mode is
        ``ripley_correction = "isotropic"``, ``ripley_window = "rectangle"``,
        ``ripley_max_um = "auto"``: ``ripley_l_mean.<A>.<B>`` is then spicyR's per-image
        statistic (mean of L_AB(r) − r over the grid, µm).
    ripley_simulations
        CSR envelope simulations per type pair in the stage (0 = none, the default); for the
        translation correction on a numeric grid only.
    cooccurrence_max_um, cooccurrence_bins
        Co-occurrence thresholds: ``bins`` equal steps up to ``max``. Defaults 100 and 10.
    max_types
        Per-pair features are emitted for at most this many of the most abundant types.
        Default 30.
    border_alpha_um
        Ball radius (µm) of the α-hull whose bordering cells give SPIAT's border-cell ratio
        R_BC of each tumour type. Default 40 (SPIAT's ``R_BC``).
    border_max_edges
        SPIAT's arc walk costs about 0.1 ms per α-shape edge (a loop over arcs); a tumour type
        with more α-shape edges than this (scattered cells, not lesions) gets the geometric
        border definition instead (``alphashape.border_cells``), named in the table's
        ``definition`` column. Default 20,000.
    """

    contact_radius_um: float = field(default=30.0, metadata={"check": Positive()})
    graph: str = field(default="radius", metadata={"check": OneOf(RELATION_GRAPHS)})
    k: int = field(default=10, metadata={"check": Integer(1)})
    n_permutations: int = field(default=0, metadata={"check": Integer(0, note="0 = analytic only")})
    seed: int = field(default=0, metadata={"check": Integer(0)})
    count_within_um: tuple[float, ...] = field(
        default=(10.0, 25.0, 50.0), metadata={"check": Each(Positive(), "positive numbers")})
    ripley_max_um: float | str = field(
        default=100.0, metadata={"check": PositiveOrAuto(note="auto: spatstat's rule per sample")})
    ripley_step_um: float = field(default=10.0, metadata={"check": Positive()})
    ripley_simulations: int = field(default=0, metadata={"check": Integer(0, note="0 = none")})
    cooccurrence_max_um: float = field(default=100.0, metadata={"check": Positive()})
    cooccurrence_bins: int = field(default=10, metadata={"check": Integer(1)})
    max_types: int = field(default=30, metadata={"check": Integer(1)})
    border_alpha_um: float = field(default=40.0, metadata={"check": Positive()})
    border_max_edges: int = field(default=20_000, metadata={"check": Integer(1)})
    ripley_correction: str = field(default="translation",
                                   metadata={"check": OneOf(RIPLEY_CORRECTIONS)})
    ripley_window: str = field(default="mask", metadata={"check": OneOf(RIPLEY_WINDOWS)})

    def _cross_checks(self) -> list[Problem]:
        """The Ripley grid ``step, 2·step, …, max`` holds at least one radius; the isotropic
        correction needs the rectangle window (spatstat has it for rectangles and polygons,
        not for masks)."""
        if not isinstance(self.ripley_max_um, str) and self.ripley_max_um < self.ripley_step_um:
            return [Problem("ripley_max_um", f"at least ripley_step_um = "
                            f"{_show(self.ripley_step_um)}", _show(self.ripley_max_um))]
        if self.ripley_correction == "isotropic" and self.ripley_window != "rectangle":
            return [Problem("ripley_window", '"rectangle" with ripley_correction = "isotropic" '
                            "(the isotropic correction is exact on a rectangle only)",
                            _show(self.ripley_window))]
        if self.ripley_simulations > 0 and (self.ripley_correction != "translation"
                                            or self.ripley_max_um == "auto"):
            return [Problem("ripley_simulations", '0 with ripley_correction = "isotropic" or '
                            'ripley_max_um = "auto" (CSR envelopes are simulated for the '
                            "translation estimator on a shared radius grid)",
                            _show(self.ripley_simulations))]
        return []


@dataclass(frozen=True)
class ClinicalColumns(Validated):
    """Outcome column names of the clinical table (section ``[clinical]``).

    Attributes
    ----------
    sample, patient, response, os_time, os_event
        Column names of the sample id, patient id, response label, overall-survival time and
        event indicator (1 = death/event, 0 = censored).
    responder_values
        Response labels that mean "responder" (case-insensitive); every other non-missing label
        is a non-responder. Default empty: a 0/1 or boolean column uses 1/true, and a
        two-label column uses the label among responder(s), yes, true, 1, r, cr, pr, crpr.
    timepoint
        Column of the biopsy time point for paired pre/post-treatment designs. Default
        ``timepoint`` (ignored when absent).
    pre, post
        Labels of the pre- and post-treatment time points. Defaults ``pre`` and ``post``;
        response, survival and prediction use only the ``pre`` samples when the time-point
        column exists.
    covariates
        Extra numeric columns adjusted for in the Cox models (e.g. age, stage). Default none.
    condition
        Column of an unpaired grouping with two or more groups (treatment arm vs sham,
        primary vs metastasis, …), compared feature by feature (outcome ``condition``, see
        :func:`metaniche.cohort.groups.compare_groups`). Default empty: no such analysis.
        Labels are compared case-insensitively after stripping spaces.
    condition_reference
        The reference label of ``condition``: effects are for each other group relative to
        it. Default empty: the first label in sorted (lower-case) order.
    time_unit
        Unit of the ``os_time`` values, shown on the time axis of the survival figures.
        Default empty: the unit the ``os_time`` column's name gives (``survival_days`` →
        days; any of day, week, month, year as a word of the name, :func:`time_unit_of`),
        else none is claimed and the axis says "unit of the clinical table". (The default
        was ``months``, which labelled the NSCLC example's days as months.)
    timepoint_order
        Labels of the ``timepoint`` column in time order (three or more, e.g.
        ``["pre", "on", "post"]``): each feature's monotone trend over them is tested with
        Page's L test on the patients with a value at every time point (outcome
        ``timepoint_trend``, :mod:`metaniche.cohort.timepoints`). Default empty: no trend
        test.
    """

    sample: str = "sample"
    patient: str = "patient"
    response: str = "response"
    os_time: str = "os_time"
    os_event: str = "os_event"
    responder_values: tuple[str, ...] = ()
    timepoint: str = "timepoint"
    pre: str = "pre"
    post: str = "post"
    covariates: tuple[str, ...] = ()
    condition: str = ""
    condition_reference: str = ""
    time_unit: str = ""
    timepoint_order: tuple[str, ...] = ()

    def resolved_time_unit(self) -> str:
        """:func:`time_unit_of` this section's ``time_unit`` and ``os_time``."""
        return time_unit_of(self.time_unit, self.os_time)


#: Units a survival time column's name may give (a word of the name, singular or plural).
_TIME_UNITS = {"day": "days", "days": "days", "week": "weeks", "weeks": "weeks",
               "month": "months", "months": "months", "mo": "months", "year": "years",
               "years": "years", "yr": "years", "yrs": "years"}


def time_unit_of(time_unit: str, os_time: str) -> str:
    """The unit of the survival times: ``time_unit`` when set, else the one the column
    name ``os_time`` gives as a word (split on ``_``, ``-``, ``.``, spaces and brackets:
    ``survival_days`` → ``days``, ``OS (months)`` → ``months``), else ``""`` (unknown).

    Examples
    --------
    >>> time_unit_of("", "survival_days"), time_unit_of("weeks", "os_days")
    ('days', 'weeks')
    >>> time_unit_of("", "os_time")
    ''
    """
    if time_unit.strip():
        return time_unit.strip()
    words = re.split(r"[_\-.\s()\[\]]+", os_time.lower())
    found = {_TIME_UNITS[w] for w in words if w in _TIME_UNITS}
    return found.pop() if len(found) == 1 else ""


@dataclass(frozen=True)
class CohortParams(Validated):
    """Cohort outcome analyses (section ``[cohort]``); see :mod:`metaniche.cohort`.

    Attributes
    ----------
    analyses
        Which analyses to run when their columns exist: any of ``response``, ``survival``,
        ``treatment``, ``prediction``. Default all four.
    min_group
        Fewest units with a finite value of the feature per compared group (response or
        ``[clinical] condition``; patients for the mixed models), and fewest pairs per group
        for the treatment interaction, for a test to be run; a test short of it has NaN
        statistics and does not count towards the q-values. Default 3.
    min_events
        Fewest events for the survival analysis. Default 5.
    min_non_missing
        Features finite in fewer than this fraction of the analysed units are left out of the
        multivariable prediction model (which imputes the rest). The per-feature tests use
        every feature, each on the units where it is finite (``n`` in the association table),
        and need ``min_group`` finite units per group. Default 0.8.
    min_variance
        Features whose variance is at most this are dropped (0 drops constants). Default 0.
    max_levels
        String features (e.g. ``phenotype``) with at most this many levels become 0/1
        indicator features ``<name>.<level>``; others are dropped. Default 10.
    n_folds
        Outer cross-validation folds of the prediction (reduced to the smaller class size
        when needed). Default 5.
    n_inner_folds
        Inner folds used to choose the penalty. Default 3.
    n_repeats
        Repeats of the outer cross-validation (different fold splits). Default 5.
    l1_ratio
        Elastic-net mixing of the penalised logistic regression: 0 ridge (default), 1 lasso.
    n_bootstrap
        Bootstrap resamples for the prediction AUC confidence intervals. Default 1000.
    confidence
        Confidence level of every interval. Default 0.95.
    seed
        Root seed of the fold splits and bootstrap. Default 0.
    primary_features
        Case-insensitive glob patterns (``fnmatch``: ``*`` matches any text, dots included)
        of the primary features, the literature's biomarkers tested as their own
        Benjamini–Hochberg family and reported first; every other feature is exploratory,
        with its own FDR (column ``family`` of the association table). Default: effector
        density in core and border (``effector_density.core``, ``effector_density.border``),
        immune phenotype (``phenotype.*``), infiltration depth (``infiltration_depth_um.*``),
        CD8–tumour nearest distance (``nn_dist_um.*cd8*.tumo*``: mean distance from a CD8
        cell to its nearest tumour cell) and TLS count, overall and per compartment
        (``tls.count*``). An empty list makes every feature exploratory.
    mixed_model_weights
        Image weights of the mixed model (patients with several images): ``"none"``
        (default; the z-scored feature, unweighted) or ``"counts"``: the ``ripley_l_mean``
        pair features are fitted as spicyR fits them — raw values, each image weighted by a
        smooth of the squared residuals on its two cell counts, lmerTest's Satterthwaite
        degrees of freedom (:mod:`metaniche.cohort.count_weights`,
        :mod:`metaniche.cohort.weighted_mixed`); column ``weighting`` of the rows.
    curve_permutations
        Label permutations of the whole-curve tests across the response and condition
        groups: the Ripley curves (``tables/ripley``; :mod:`metaniche.cohort.curves`, rows
        ``curve_permutation``) and the shape of each cell type's gradient across the border
        (band × group; :mod:`metaniche.cohort.gradient_shape`, rows
        ``gradient_shape_permutation``) in ``association.parquet``. Default 999; 0 = neither
        test (the pooled gradients per group are still written).
    """

    analyses: tuple[str, ...] = field(
        default=COHORT_ANALYSES, metadata={"check": Each(OneOf(COHORT_ANALYSES))})
    min_group: int = field(default=3, metadata={"check": Integer(1)})
    min_events: int = field(default=5, metadata={"check": Integer(1)})
    min_non_missing: float = field(default=0.8, metadata={"check": Interval(0, 1)})
    min_variance: float = field(default=0.0, metadata={"check": NonNegative()})
    max_levels: int = field(default=10, metadata={"check": Integer(1)})
    n_folds: int = field(default=5, metadata={"check": Integer(2)})
    n_inner_folds: int = field(default=3, metadata={"check": Integer(2)})
    n_repeats: int = field(default=5, metadata={"check": Integer(1)})
    l1_ratio: float = field(default=0.0, metadata={"check": Interval(0, 1)})
    n_bootstrap: int = field(default=1000, metadata={"check": Integer(1)})
    confidence: float = field(
        default=0.95, metadata={"check": Interval(0, 1, lo_open=True, hi_open=True)})
    seed: int = field(default=0, metadata={"check": Integer(0)})
    primary_features: tuple[str, ...] = (
        "effector_density.core", "effector_density.border", "phenotype.*",
        "infiltration_depth_um.*", "nn_dist_um.*cd8*.tumo*", "tls.count*")
    mixed_model_weights: str = field(default="none",
                                     metadata={"check": OneOf(MIXED_MODEL_WEIGHTS)})
    curve_permutations: int = field(
        default=999, metadata={"check": Integer(0, note="0 = no whole-curve test")})


@dataclass(frozen=True)
class NeighbourhoodParams(Validated):
    """Cellular neighbourhoods (section ``[neighbourhoods]``).

    See :mod:`metaniche.analyses.communities.neighbourhoods`.

    Attributes
    ----------
    k
        Window size: each cell and its k - 1 nearest cells (Schürch et al. 2020). Default 10.
    n_neighbourhoods
        Number of CNs fitted across the cohort; 0 (default) chooses 4–12 by the mean
        silhouette.
    n_training
        Windows kept per sample (seeded random subsample) for the cohort fit. Default 5000.
    seed
        Seed of the subsample and of mini-batch k-means. Default 0.
    """

    k: int = field(default=10, metadata={"check": Integer(1)})
    n_neighbourhoods: int = field(default=0, metadata={"check": Integer(0, note="0 = automatic")})
    n_training: int = field(default=5000, metadata={"check": Integer(1)})
    seed: int = field(default=0, metadata={"check": Integer(0)})


@dataclass(frozen=True)
class AggregateParams(Validated):
    """B/T-cell aggregates and tertiary lymphoid structures (section ``[aggregates]``).

    See :mod:`metaniche.analyses.communities.aggregates`.

    Attributes
    ----------
    radius_um
        Neighbour radius of the density clustering, µm (``<=``). Default 30.
    min_neighbours
        Other B/T cells within the radius that make a B/T cell a core point. Default 4.
    min_cells
        Smallest B + T cluster listed (kind ``lymphoid_cluster`` below the TLS rule). Default 10.
    b_types, t_types
        B- and T-cell labels. Defaults: empty, meaning labels of ``[cell_types.lineage]`` B / T
        when given, else labels matching ``^(b|b[_ ]?cells?|bc\\d+|cd20.*)$`` and
        ``^(cd8|cd4|cd3|t[_ ]|tc_|treg|th|t$|t[_ ]?cells?)`` (any case).
    tls_min_cells
        A TLS has at least this many B + T cells. Default 50.
    tls_min_b_fraction
        ... and a B fraction (B / (B + T)) of at least this. Default 0.3.
    fdc_types, fdc_markers
        Labels / markers of CCL19+ fibroblasts and follicular dendritic cells (follicular
        stroma). Defaults ``("CCL19_fibroblast", "FDC")`` and ``("CD21", "CD35", "CD23")``.
    gc_types, gc_markers
        Labels of germinal-centre B cells; markers that make a B cell germinal-centre.
        Defaults ``("GC_B", "Germinal_center_B")`` and ``("BCL6", "AICDA")``.
    plasma_types, plasma_markers
        Labels / markers of plasma cells. Defaults ``("Plasma", "Plasma_cell")`` and
        ``("CD138", "IgG")``.
    min_fdc_cells, min_fdc_fraction
        Follicular stroma present when at least ``max(min_fdc_cells, min_fdc_fraction ·
        n_cells)`` such cells are in the TLS. Defaults 2 and 0.02.
    min_gc_cells
        Germinal centre present with at least this many GC B or plasma cells. Default 5.
    marker_threshold
        Absolute marker positivity threshold; 0 (default) is automatic (see
        :func:`~metaniche.analyses.communities.aggregates.marker_positive`).
    """

    radius_um: float = field(default=30.0, metadata={"check": Positive()})
    min_neighbours: int = field(default=4, metadata={"check": Integer(1)})
    min_cells: int = field(default=10, metadata={"check": Integer(1)})
    b_types: tuple[str, ...] = ()
    t_types: tuple[str, ...] = ()
    tls_min_cells: int = field(default=50, metadata={"check": Integer(1)})
    tls_min_b_fraction: float = field(default=0.3, metadata={"check": Interval(0, 1)})
    fdc_types: tuple[str, ...] = ("CCL19_fibroblast", "FDC")
    fdc_markers: tuple[str, ...] = ("CD21", "CD35", "CD23")
    gc_types: tuple[str, ...] = ("GC_B", "Germinal_center_B")
    gc_markers: tuple[str, ...] = ("BCL6", "AICDA")
    plasma_types: tuple[str, ...] = ("Plasma", "Plasma_cell")
    plasma_markers: tuple[str, ...] = ("CD138", "IgG")
    min_fdc_cells: int = field(default=2, metadata={"check": Integer(0)})
    min_fdc_fraction: float = field(default=0.02, metadata={"check": Interval(0, 1)})
    min_gc_cells: int = field(default=5, metadata={"check": Integer(0)})
    marker_threshold: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = automatic")})


@dataclass(frozen=True)
class UnitParams(Validated):
    """One user-defined multicellular unit (TOML table ``[units.<name>]``).

    Attributes
    ----------
    types
        Cell-type labels that make up the unit (required).
    radius_um
        Neighbour radius, µm (``<=``). Default 20.
    min_cells
        Fewest cells of ``types`` in a unit. Default 6.
    min_neighbours
        Other unit cells within the radius that make a cell core; 1 (default) is plain graph
        components.
    require_all
        A unit must contain at least one cell of every listed type. Default true.
    """

    types: tuple[str, ...] = field(default=(), metadata={"check": NonEmpty()})
    radius_um: float = field(default=20.0, metadata={"check": Positive()})
    min_cells: int = field(default=6, metadata={"check": Integer(1)})
    min_neighbours: int = field(default=1, metadata={"check": Integer(1)})
    require_all: bool = True


#: The review's example units, used when the config has no ``[units]`` section.
DEFAULT_UNITS: dict[str, UnitParams] = {
    "angiogenic_unit": UnitParams(types=("Macrophage", "Endothelial")),
    "premetastatic_cluster": UnitParams(types=("HPC", "Fibroblast")),
}


@dataclass(frozen=True)
class LigrecParams(Validated):
    """Spatial ligand–receptor co-localisation (section ``[ligrec]``).

    See :mod:`metaniche.analyses.communities.ligrec`.

    Attributes
    ----------
    pairs
        CSV of ``ligand,receptor`` pairs; default empty: the shipped table.
    radius_um
        Neighbouring cells are within this distance, µm (``<=``). Default 30.
    n_permutations
        Permutations of the null for every row (0 disables the analysis). Default 999.
    min_edges
        Fewest neighbouring pairs for a sender/receiver/compartment row. Default 10.
    seed
        Seed of the permutations. Default 0.
    max_permutations
        Sequential Monte Carlo refinement: rows with fewer than ``min_exceedances``
        exceedances get more permutations (stages 9,999, 99,999, …) up to this many, so the
        smallest p is 1 / (max_permutations + 1). Default 9,999 (p floor 1e-4, enough for
        q <= 0.05 over a few hundred rows at ~0.5x the stage-1 cost); 0 (or <= n_permutations)
        disables refinement.
    min_exceedances
        ``h`` of the refinement: a row stops once it has this many exceedances. Default 10.
    normal_min_edges
        Rows with at least this many neighbouring pairs take the normal p from the exact
        permutation moments instead of Monte Carlo (whole slides: Monte Carlo over 10⁵–10⁶
        pairs per row dominates the run and the null is normal there). Default 5,000; 0 keeps
        Monte Carlo for every row.
    """

    pairs: str = ""
    radius_um: float = field(default=30.0, metadata={"check": Positive()})
    n_permutations: int = field(default=999, metadata={"check": Integer(0, note="0 = off")})
    min_edges: int = field(default=10, metadata={"check": Integer(1)})
    seed: int = field(default=0, metadata={"check": Integer(0)})
    max_permutations: int = field(
        default=9_999, metadata={"check": Integer(0, note="0 = no refinement")})
    min_exceedances: int = field(default=10, metadata={"check": Integer(1)})
    normal_min_edges: int = field(
        default=5_000, metadata={"check": Integer(0, note="0 = Monte Carlo for every row")})


@dataclass(frozen=True)
class _ThresholdSpec(Constraint):
    """A finite number (column units) or the name of an automatic method."""

    allowed: str = ("a number (in the column's units) or one of "
                    + ", ".join(STATE_THRESHOLD_METHODS) + " (per sample) or "
                    + ", ".join(COHORT_THRESHOLD_PREFIX + m for m in STATE_THRESHOLD_METHODS)
                    + " (per cohort)")

    def ok(self, value: Any) -> bool:
        """Return whether ``value`` is a finite number or a (per-cohort) method name."""
        if _is_number(value):
            return math.isfinite(value)
        if isinstance(value, str) and value.startswith(COHORT_THRESHOLD_PREFIX):
            value = value[len(COHORT_THRESHOLD_PREFIX):]
        return isinstance(value, str) and value in STATE_THRESHOLD_METHODS


@dataclass(frozen=True)
class StateRule(Validated):
    """One named cell state (TOML table ``[states.<name>]``); see :mod:`metaniche.analyses.states`.

    A state is carried beside the lineage label: a cell keeps its ``cell_type`` and may carry
    any number of states. Exactly one source is given: ``marker``, ``column`` or ``all_of``.

    Attributes
    ----------
    marker
        Marker whose intensity decides the state: a column name, or a marker name found as the
        gating panel finds it (:func:`metaniche.phenotype.resolve_marker`: ``PDL1`` finds
        inForm's ``Entire Cell PDL1 (Opal 520) Mean``). A cell is positive when its value is
        ``> threshold``.
    threshold
        For ``marker``: a number in the column's units, or ``"otsu"`` (default), ``"gmm"`` or
        ``"valley"``: chosen per sample over all its cells by
        :func:`metaniche.phenotype.auto_threshold` (as ``[gating]`` does); or
        ``"cohort:otsu"``, ``"cohort:gmm"``, ``"cohort:valley"``: one threshold chosen the same
        way over the cells of every sample of the run, before the samples are analysed
        (:mod:`metaniche.cohort.state_thresholds`; ``[states] cohort_thresholds``).
    transform
        Transform before an automatic threshold: ``"log1p"`` (default) or ``"none"``.
    column
        A column already holding the call (e.g. inForm's ``Phenotype PDL1``): boolean, 0/1, or
        text whose ``positive`` values (default: values ending in ``+``, such as ``PDL1+``)
        mean positive. A ``[gating]`` rule's matches are such a column (``gate.<rule>``),
        so a gated subset can be a state of a broader lineage.
    positive
        For ``column``: the values meaning positive (compared after stripping spaces).
    all_of
        A combination: positive when every named state is positive (e.g.
        ``["GZMB_pos", "PD1_pos"]``); the named states must be marker or column states.
    cell_types
        Lineages that can carry the state (rows of the state tables); default every type.
        Other cells never carry it.
    """

    marker: str = ""
    threshold: float | str = field(default="otsu", metadata={"check": _ThresholdSpec()})
    transform: str = field(default="log1p", metadata={"check": OneOf(("log1p", "none"))})
    column: str = ""
    positive: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()
    cell_types: tuple[str, ...] = ()

    def _cross_checks(self) -> list[Problem]:
        """Exactly one of ``marker``, ``column``, ``all_of``; ``positive`` needs ``column``."""
        given = [name for name in ("marker", "column", "all_of") if getattr(self, name)]
        if len(given) != 1:
            return [Problem("marker", "the state's one source: give exactly one of marker, "
                            "column, all_of", " and ".join(given) or "none of them")]
        if self.positive and not self.column:
            return [Problem("positive", "given only with `column`", _show(self.positive))]
        return []


@dataclass(frozen=True)
class StatesParams(Validated):
    """Cell states and density ratios (section ``[states]``); see :mod:`metaniche.analyses.states`.

    Each table ``[states.<name>]`` declares one state (:class:`StateRule`); ``<name>`` is
    letters, digits and underscores (it becomes part of feature names), and ``ratios`` /
    ``pseudocount`` are settings, not states. Example::

        [states]
        ratios = [["CD8_T", "Treg"]]
        [states.PDL1_pos]
        marker = "PDL1"
        threshold = "otsu"
        cell_types = ["Macrophage", "Tumor"]
        [states.PDL1_call]
        column = "Phenotype PDL1"
        positive = "PDL1+"

    Attributes
    ----------
    rules
        State name → :class:`StateRule`. Default none.
    ratios
        ``[A, B]`` label pairs whose density ratio ``ratio.<compartment>.<A>.<B>`` is reported
        per compartment. Default empty: every effector label (``[phenotype] effector_types``,
        default labels containing CD8) over every regulatory label
        (:data:`DEFAULT_REGULATORY_PATTERN`: ``Treg``, ``FOXP3…``) present in the sample.
    pseudocount
        Cells added to both counts of a ratio, ``(n_A + c) / (n_B + c)`` (the two densities
        share the compartment's area), so a compartment without B cells gives a finite ratio;
        NaN when neither type has a cell there. Default 0.5 (the Haldane–Anscombe correction).
    gradient_markers
        Markers whose intensity along the border is tested
        (:mod:`metaniche.analyses.marker_trends`) per cell type and pooled, besides the
        markers of the marker states (tested on the types each state is limited to). Names
        are found as a state's ``marker`` is. Default empty: the state markers only.
    trend_block_um
        Width of the contiguous blocks of signed-distance bands that are the clusters of the
        marker trend test's cluster-robust standard error, µm. Default 50.
    cohort_thresholds
        State name → threshold (column units) of the states with a per-cohort threshold
        (``threshold = "cohort:…"``). ``metaniche run`` fills in the missing ones over all
        its samples before analysing them (and records them in run.json and
        ``cohort/state_thresholds.parquet``); given ones are used as they are, e.g. the
        thresholds of a training cohort applied to a validation cohort. Default empty.
    """

    rules: dict[str, StateRule] = field(default_factory=dict)
    ratios: tuple[tuple[str, str], ...] = ()
    pseudocount: float = field(default=0.5, metadata={"check": Positive()})
    gradient_markers: tuple[str, ...] = ()
    trend_block_um: float = field(default=50.0, metadata={"check": Positive()})
    cohort_thresholds: dict[str, float] = field(default_factory=dict)

    def _cross_checks(self) -> list[Problem]:
        """Names are feature-name parts; ``all_of`` names marker/column states; pairs differ."""
        found = []
        for name, rule in self.rules.items():
            if not re.fullmatch(_NAME_PATTERN, name) or name in _STATES_SETTINGS:
                found.append(Problem(f"{name}", "a state name of letters, digits and "
                                     "underscores, starting with a letter (not "
                                     f"{', '.join(_STATES_SETTINGS)})", repr(name)))
            for part in rule.all_of:
                other = self.rules.get(part)
                if other is None or other.all_of:
                    known = sorted(n for n, r in self.rules.items() if not r.all_of)
                    found.append(Problem(f"{name}.all_of", "a list of marker or column states "
                                         f"({', '.join(known) or 'none declared'})",
                                         repr(part)))
        for name, value in self.cohort_thresholds.items():
            given = self.rules.get(name)
            if given is None or not str(given.threshold).startswith(COHORT_THRESHOLD_PREFIX):
                found.append(Problem(f"cohort_thresholds.{name}", "the name of a state with "
                                     "threshold = \"cohort:…\"", repr(name)))
            elif not (_is_number(value) and not isinstance(value, bool)
                      and not math.isnan(value)):
                found.append(Problem(f"cohort_thresholds.{name}", "a number (the column's "
                                     "units)", _show(value)))
        for pair in self.ratios:
            if pair[0] == pair[1]:
                found.append(Problem("ratios", "a list of pairs of two different labels",
                                     _show(list(pair))))
        return found


#: Keys of ``[states]`` that are settings, not state tables (every field but ``rules``).
_STATES_SETTINGS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(StatesParams) if f.name != "rules")


@dataclass(frozen=True)
class ContactParams(Validated):
    """Does contact change state? (section ``[contact]``); see :mod:`metaniche.analyses.contact`.

    For every focus type A, outcome m and partner type B ≠ A: the effect on m in A cells of
    exposure to B, adjusted for compartment, a spline of the signed distance to the border,
    lesion and local density, with spatially clustered standard errors and two nulls.

    Attributes
    ----------
    markers
        Outcomes: marker columns (linear model on ``transform``-ed intensities) or state names
        of ``[states.<name>]`` (logistic model); a marker is found as the gating panel finds
        it (``GZMB`` finds inForm's ``Entire Cell GZMB (Opal 570) Mean``). Default empty: every
        numeric marker column and every state.
    cell_types
        Focus types A. Default empty: every label with at least ``min_cells`` cells.
    partner_types
        Partner types B. Default empty: every label with at least ``min_cells`` cells.
    radius_um
        Contact radius (µm, ``<=``) of the exposure count. 0 (default) = ``[relations]
        contact_radius_um`` (30 µm).
    exposure
        ``"count"`` (default): B cells within the radius; ``"log_distance"``: log of the
        distance (µm) to the nearest B cell.
    transform
        Intensity transform before the linear model: ``"log1p"`` (default) or ``"none"``.
    adjust
        Adjust for place (default true); false fits the unadjusted ``m ~ exposure``, for
        contrast only.
    spline_knots
        Knots of the natural cubic spline of the signed distance to the border. Default 5.
    density_radius_um
        Radius (µm) of the local density covariate (all cells per mm²). Default 50.
    block_um
        Side (µm) of the square spatial blocks on which standard errors are clustered.
        Default 200.
    band_um
        Width (µm) of the signed-distance bands within which the shuffle null permutes
        labels (with the compartment). Default 50.
    min_cells
        Fewest cells of a focus or partner type (and of A cells with a finite outcome).
        Default 30.
    min_exposed
        Fewest A cells with at least one B within the radius for a pair to be tested.
        Default 10.
    n_permutations
        Draws of each null (stratified shuffle, toroidal shift). Default 99; 0 = none.
    seed
        Seed of the null draws. Default 0.
    top_profiles
        Pairs (smallest p) whose outcome-by-exposure profiles per compartment are kept for
        the report (``tables/state_change_profiles``). Default 6.
    """

    markers: tuple[str, ...] = ()
    cell_types: tuple[str, ...] = ()
    partner_types: tuple[str, ...] = ()
    radius_um: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = [relations] contact_radius_um")})
    exposure: str = field(default="count", metadata={"check": OneOf(CONTACT_EXPOSURES)})
    transform: str = field(default="log1p", metadata={"check": OneOf(("log1p", "none"))})
    adjust: bool = True
    spline_knots: int = field(default=5, metadata={"check": Integer(3)})
    density_radius_um: float = field(default=50.0, metadata={"check": Positive()})
    block_um: float = field(default=200.0, metadata={"check": Positive()})
    band_um: float = field(default=50.0, metadata={"check": Positive()})
    min_cells: int = field(default=30, metadata={"check": Integer(2)})
    min_exposed: int = field(default=10, metadata={"check": Integer(1)})
    n_permutations: int = field(default=99, metadata={"check": Integer(0, note="0 = none")})
    seed: int = field(default=0, metadata={"check": Integer(0)})
    top_profiles: int = field(default=6, metadata={"check": Integer(0)})

    def contact_radius(self, relations: RelationsParams) -> float:
        """The radius used: ``radius_um``, or ``relations.contact_radius_um`` when 0."""
        return self.radius_um if self.radius_um > 0 else relations.contact_radius_um


#: ``[input] gene_normalisation`` values (:func:`metaniche.genes.normalise_expression`).
GENE_NORMALISATIONS: tuple[str, ...] = ("none", "log1p_cp10k")


@dataclass(frozen=True)
class InputParams(Validated):
    """Side inputs read with the cell tables (section ``[input]``).

    Attributes
    ----------
    cell_types
        Path of a CSV/TSV table of cell-type labels joined to the cells of every sample by
        cell id, for any format (imaging-ST outputs carry their clusters elsewhere): columns
        ``cell_id`` and ``cell_type`` (or ``label``) when present, else the first two columns
        (10x's ``Barcode,Cluster`` exports). It replaces the input's own labels; cells
        without a row are labelled ``"Unlabeled"`` with a warning giving their count. Checked
        when the cells are read (see :mod:`metaniche.io.cell_types`). Default empty: none.
    gene_normalisation
        Per-cell normalisation of an expression matrix read with the cells (Xenium, CosMx,
        MERSCOPE, Visium outputs; an AnnData's or SpatialData table's ``X``), applied once
        when it is read, before gating, ``[states]``, gradients, the contact test or any
        other use (:func:`metaniche.genes.normalise_expression`): ``"none"`` (default:
        values as stored) or ``"log1p_cp10k"``: ``log1p(count / total × 10,000)`` with the
        total over all genes of the cell, as scanpy's ``normalize_total(target_sum=1e4)``
        then ``log1p`` and Seurat's ``LogNormalize``. Marker columns of a cell table
        (imaging intensities) are never normalised.
    """

    cell_types: str = ""
    gene_normalisation: str = field(default="none",
                                    metadata={"check": OneOf(GENE_NORMALISATIONS)})


#: ``[spots] kind`` values: what the numbers of the deconvolution table are.
SPOT_KINDS: tuple[str, ...] = ("proportion", "abundance")


@dataclass(frozen=True)
class SpotsParams(Validated):
    """Spot-based samples (section ``[spots]``): Visium-type spots with deconvolved types.

    A sample is a spot sample when ``proportions`` is set: each row of the input is a spot
    (one row per spot in ``cells/<sample>.parquet``) and its cell types are the columns of
    the deconvolution table; see :mod:`metaniche.io._spots` (reading) and
    :mod:`metaniche.analyses.spots` (analyses).

    Attributes
    ----------
    proportions
        Deconvolution result: an ``obsm`` key of the input ``.h5ad`` (a DataFrame, or an
        array whose type names are in ``uns["<key>_names"]``), or the path of a CSV/TSV/Parquet
        table with the spot id in its first column (or ``cell_id`` / ``barcode`` /
        ``spot_id``) and one column per cell type. Default empty: no spot sample.
    kind
        ``"proportion"`` (rows sum to 1: stereoscope, RCTD, CARD) or ``"abundance"`` (cells
        per spot: cell2location, Tangram counts). Default ``"proportion"``.
    diameter_um
        Spot diameter in µm: 55 for 10x Visium, 100 for legacy ST, 10 for Slide-seq beads,
        the bin side for Visium HD. Each spot covers ``pi * (diameter_um / 2)**2`` µm²
        (a square bin ``diameter_um**2`` when ``square`` is true). Default 55.
    pitch_um
        Centre-to-centre spot spacing in µm. 0 (default) = coordinates are used as given
        (times ``um_per_unit``; Visium folders are converted with their scale factors).
        When > 0, coordinates are rescaled so that the median nearest-neighbour spacing of
        the spots equals ``pitch_um`` (legacy ST arrays and h5ad files in array or image
        units: 200 for legacy ST, 100 for Visium).
    square
        Spots are square bins (Visium HD) rather than discs. Default false.
    hd_bin_um
        Bin size chosen in a Visium HD ``binned_outputs`` folder (``square_008um`` for 8).
        Default 8.
    cells_per_spot
        For ``kind = "proportion"``: the assumed number of cells per spot, turning
        proportions into densities (cells/mm² = proportion × cells_per_spot / spot area).
        Default 0 = no assumption: densities are NA and only proportions are reported.
    region
        A per-spot region column (e.g. a pathologist label). Default empty.
    tumor_regions
        Values of ``region`` (any case) that mean tumour. With both set, the agreement of the
        tumour region with these labels is reported (``region_agreement.kappa``); with
        ``[compartments] region = "tissue_category"`` the tumour region is built from these
        spots instead of the tumour types' proportions. Default empty.
    immune_weight
        Weight of the immune types' proportion in the denominator of the spot tumour fraction
        (the spot counterpart of ``[compartments] immune_weight``). Default 1: no
        down-weighting, because a spot's immune share is measured beside its tumour share
        rather than displacing it (on the HER2 section, 0.25 made plasma-rich stroma tumour:
        kappa with the pathologist 0.35 against 0.61 at 1).
    n_permutations
        Spot permutations of the co-localisation null (0 = closed-form expectation only).
        Default 199.
    seed
        Seed of the co-localisation permutations. Default 0.
    """

    proportions: str = ""
    kind: str = field(default="proportion", metadata={"check": OneOf(SPOT_KINDS)})
    diameter_um: float = field(default=55.0, metadata={"check": Positive()})
    pitch_um: float = field(default=0.0, metadata={"check": NonNegative(note="0 = as given")})
    square: bool = False
    hd_bin_um: int = field(default=8, metadata={"check": Integer(1)})
    cells_per_spot: float = field(
        default=0.0, metadata={"check": NonNegative(note="0 = proportions only")})
    region: str = ""
    tumor_regions: tuple[str, ...] = ()
    immune_weight: float = field(default=1.0, metadata={"check": NonNegative()})
    n_permutations: int = field(default=199, metadata={"check": Integer(0)})
    seed: int = field(default=0, metadata={"check": Integer(0)})

    def _cross_checks(self) -> list[Problem]:
        """``tumor_regions`` needs ``region``; ``cells_per_spot`` applies to proportions."""
        found = []
        if self.tumor_regions and not self.region:
            found.append(Problem("region", "the per-spot region column that tumor_regions "
                                 "refers to", "''"))
        if self.cells_per_spot and self.kind != "proportion":
            found.append(Problem("cells_per_spot", "0 when kind = 'abundance' (abundances "
                                 "are cells already)", _show(self.cells_per_spot)))
        return found


@dataclass(frozen=True)
class Config(Validated):
    """The whole run configuration.

    Attributes
    ----------
    um_per_unit
        Micrometres per input coordinate unit (0.39 for a 0.39 µm/px image). Default 1.
    min_cells
        Samples with fewer cells are rejected as too small to analyse. Default 20.
    format
        Input format: ``"auto"`` (detected from the file's columns), ``"table"`` (the
        generic cell-table contract with ``[columns]``), ``"inform"``, ``"halo"``,
        ``"codex"``, ``"cellprofiler"``, ``"mcmicro"``, ``"scimap"``, ``"squidpy"``,
        ``"spatialdata"``, ``"xenium"``, ``"cosmx"`` or ``"merscope"``; see
        :mod:`metaniche.io.formats`. Default ``"auto"``.
    phenotype_map
        CODEX phenotype map (two columns: cluster id, label, no header). Default empty:
        a file ``<stem>_phenotypes.txt[.gz]`` beside the cell table, when present.
    gating
        Marker gating panel (section ``[gating]``), kept as plain data and validated by
        :func:`metaniche.phenotype.parse_panel`; empty (default) means no gating.
    input
        Side inputs (section ``[input]``): a cell-type table joined by cell id.
    """

    um_per_unit: float = field(default=1.0, metadata={"check": Positive()})
    min_cells: int = field(default=20, metadata={"check": Integer(1)})
    format: str = field(default="auto", metadata={"check": OneOf(INPUT_FORMATS)})
    phenotype_map: str = ""
    gating: dict[str, Any] = field(default_factory=dict)
    input: InputParams = field(default_factory=InputParams)
    columns: ColumnNames = field(default_factory=ColumnNames)
    cell_types: CellTypeRoles = field(default_factory=CellTypeRoles)
    compartments: CompartmentParams = field(default_factory=CompartmentParams)
    phenotype: PhenotypeParams = field(default_factory=PhenotypeParams)
    gradients: GradientParams = field(default_factory=GradientParams)
    zonation: ZonationParams = field(default_factory=ZonationParams)
    clinical: ClinicalColumns = field(default_factory=ClinicalColumns)
    relations: RelationsParams = field(default_factory=RelationsParams)
    cohort: CohortParams = field(default_factory=CohortParams)
    neighbourhoods: NeighbourhoodParams = field(default_factory=NeighbourhoodParams)
    aggregates: AggregateParams = field(default_factory=AggregateParams)
    units: dict[str, UnitParams] = field(default_factory=lambda: dict(DEFAULT_UNITS))
    ligrec: LigrecParams = field(default_factory=LigrecParams)
    states: StatesParams = field(default_factory=StatesParams)
    contact: ContactParams = field(default_factory=ContactParams)
    spots: SpotsParams = field(default_factory=SpotsParams)

    def _cross_checks(self) -> list[Problem]:
        """The gating panel is valid: :func:`metaniche.phenotype.parse_panel` raises its own
        :class:`~metaniche.errors.ConfigError` naming the rule (the loader checks ``[gating]``
        first, with the file name)."""
        if self.gating:
            from metaniche.phenotype import parse_panel

            parse_panel(self.gating, "Config.gating")
        return []

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain data (for run.json and the report)."""
        return dataclasses.asdict(self)




def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read a TOML configuration file and return a validated :class:`Config`.

    Every value is checked (type, the constraint declared beside its field, the cross-field
    rules of its section) and every problem is collected before one :class:`ConfigError` is
    raised, listing them one per line as ``<file>: `[section] key` must be <allowed>; got
    <value>.``

    Parameters
    ----------
    path
        TOML file; ``None`` gives the defaults.
    **overrides
        Top-level keys applied after the file (e.g. ``um_per_unit=0.39``).

    Raises
    ------
    ConfigError
        On unreadable TOML, unknown keys (named with their section), wrong types or values.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found; check the --config path."
                              ) from None
        except IsADirectoryError:
            raise ConfigError(f"{source}: is a folder, not a TOML file; check the --config "
                              f"path.") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: not valid TOML ({err}); fix the syntax.") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    lines: list[str] = []
    config = build_params(Config, data, source, "", lines)
    if lines or config is None:
        raise ConfigError("\n".join(lines), problems=tuple(lines))
    return config


def _owner(section: str) -> str:
    """How a key of ``section`` is named in messages: ``[relations] k`` or ``um_per_unit``."""
    return f"[{section}] " if section else ""


def build_params(cls: type, data: Any, source: str, section: str, lines: list[str]) -> Any:
    """Build ``cls`` from a TOML table, appending every problem to ``lines``.

    Bad values are left out (their defaults stand in) so that the remaining values and the
    other sections are still checked; returns None when the object cannot be built at all.

    Parameters
    ----------
    cls
        A :class:`Validated` dataclass.
    data
        The parsed TOML table of its section.
    source
        The file name, for messages.
    section
        The section's dotted name (``""`` for the top level), for messages.
    lines
        Collects one sentence per problem (file, key, what is allowed, what was given).

    Returns
    -------
    object or None
        The built parameters, or None when ``data`` is not a table or a cross-field rule fails.

    Examples
    --------
    >>> from metaniche.config import CompartmentParams, build_params
    >>> problems = []
    >>> build_params(CompartmentParams, {"border_um": 50.0}, "run.toml", "compartments",
    ...              problems).border_um
    50.0
    >>> _ = build_params(CompartmentParams, {"border_width": 50}, "run.toml", "compartments",
    ...                  problems)
    >>> problems[0].startswith("run.toml: unknown key 'compartments.border_width'")
    True
    """
    if not isinstance(data, dict):
        lines.append(f"{source}: [{section}] must be a table of keys; got {_show(data)}.")
        return None
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{section}.{key}" if section else key
        if key not in names:
            lines.append(f"{source}: unknown key '{where}'; known keys here: "
                         f"{', '.join(sorted(names))}.")
            continue
        before = len(lines)
        coerced = _coerce(hints[key], value, source, section, key, lines)
        if len(lines) == before and coerced is not None:
            kwargs[key] = coerced
    try:
        return cls(**kwargs)
    except ConfigError as err:
        problems = getattr(err, "problems", ())
        if problems and all(isinstance(p, Problem) for p in problems):
            lines.extend(f"{source}: {p.render(_owner(section))}" for p in problems)
        else:
            lines.append(f"{source}: {err}")
        return None


def _units(value: Any, source: str, lines: list[str]) -> dict[str, UnitParams] | None:
    """``[units.<name>]`` tables → named :class:`UnitParams` (replacing the examples)."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        lines.append(f"{source}: [units] must hold one table per unit, e.g. "
                     f"[units.angiogenic_unit] types = [\"Macrophage\", \"Endothelial\"]; "
                     f"got {value!r}.")
        return None
    units = {}
    for name, table in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
            lines.append(f"{source}: unit name '{name}' must be letters, digits and "
                         f"underscores, starting with a letter.")
            continue
        unit = build_params(UnitParams, table, source, f"units.{name}", lines)
        if unit is not None:
            units[str(name)] = unit
    return units


def _states(value: Any, source: str, lines: list[str]) -> StatesParams | None:
    """``[states]``: settings (``ratios``, ``pseudocount``) and one table per state."""
    if not isinstance(value, dict):
        lines.append(f"{source}: [states] must hold one table per state, e.g. "
                     f"[states.PDL1_pos] marker = \"PDL1\"; got {value!r}.")
        return None
    before = len(lines)
    settings = {k: v for k, v in value.items() if k in _STATES_SETTINGS}
    rules: dict[str, StateRule] = {}
    for name, table in value.items():
        if name in settings:
            continue
        if not isinstance(table, dict):
            lines.append(f"{source}: unknown key 'states.{name}'; a state is a table "
                         f"[states.{name}] with marker = \"…\" (or column, or all_of), and the "
                         f"settings here are {', '.join(sorted(_STATES_SETTINGS))}.")
            continue
        if not re.fullmatch(_NAME_PATTERN, str(name)):
            lines.append(f"{source}: state name '{name}' must be letters, digits and "
                         f"underscores, starting with a letter.")
            continue
        if "threshold" in table and "marker" not in table:
            lines.append(f"{source}: `[states.{name}] threshold` applies to marker states "
                         f"only; remove it or give marker = \"…\".")
            continue
        if isinstance(table.get("threshold"), int) and not isinstance(table["threshold"], bool):
            table = {**table, "threshold": float(table["threshold"])}
        rule = build_params(StateRule, table, source, f"states.{name}", lines)
        if rule is not None:
            rules[str(name)] = rule
    if "ratios" in settings:
        pairs = settings["ratios"]
        if not (isinstance(pairs, list) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                for p in pairs)):
            lines.append(f"{source}: `[states] ratios` must be a list of [numerator, "
                         f"denominator] label pairs, e.g. [[\"CD8_T\", \"Treg\"]]; got "
                         f"{_show(pairs)}.")
            return None
        settings["ratios"] = tuple(tuple(p) for p in pairs)
    for key in ("pseudocount", "trend_block_um"):
        if key in settings and _is_integer(settings[key]):
            settings[key] = float(settings[key])
    if "cohort_thresholds" in settings:
        given = settings["cohort_thresholds"]
        if not isinstance(given, dict):
            lines.append(f"{source}: `[states] cohort_thresholds` must be a table of state "
                         f"name = threshold, e.g. {{PDL1_pos = 1.5}}; got {_show(given)}.")
            return None
        settings["cohort_thresholds"] = {
            str(k): float(v) if _is_integer(v) else v for k, v in given.items()}
    if "gradient_markers" in settings:
        names = settings["gradient_markers"]
        if not (isinstance(names, list) and all(isinstance(x, str) and x for x in names)):
            lines.append(f"{source}: `[states] gradient_markers` must be a list of marker "
                         f"names, e.g. [\"PDL1\", \"CD68\"]; got {_show(names)}.")
            return None
        settings["gradient_markers"] = tuple(names)
    if len(lines) > before:  # still check the settings, with the states that built alone
        rules = {name: rule for name, rule in rules.items() if not rule.all_of}
    try:
        params = StatesParams(rules=rules, **settings)
        return params if len(lines) == before else None
    except ConfigError as err:
        lines.extend(f"{source}: {p.render(_owner('states'))}" for p in err.problems)
        return None


def _coerce(hint: Any, value: Any, source: str, section: str, key: str,
            lines: list[str]) -> Any:
    """A TOML value → the field's type (int → float, scalar → one-item list, list → tuple).

    Appends a line to ``lines`` (and returns None) when the value is of the wrong kind;
    constraints are checked afterwards, when the object is built.
    """
    where = f"{section}.{key}" if section else key
    if where == "gating":
        from metaniche.phenotype import parse_panel

        try:
            parse_panel(value, source)
        except ConfigError as err:
            lines.append(str(err))
            return None
        return value
    if where == "units":
        return _units(value, source, lines)
    if where == "states":
        return _states(value, source, lines)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build_params(hint, value, source, where, lines)
    if get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v)
                for v in value.values()):
            lines.append(f"{source}: [{where}] must be a table of lists of labels, e.g. "
                         f"T = [\"CD8_T\", \"CD4_T\"]; got {value!r}.")
            return None
        return {str(k): tuple(v) for k, v in value.items()}
    if get_origin(hint) is tuple:
        (item_type, _) = get_args(hint)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if item_type is float and isinstance(value, list):
            value = [float(v) if _is_integer(v) else v for v in value]
        if isinstance(value, list):
            value = tuple(value)
    elif hint is float and _is_integer(value):
        value = float(value)
    kind = _type_allowed(hint, value)
    if kind is not None:
        lines.append(f"{source}: {Problem(key, kind, _show(value)).render(_owner(section))}")
        return None
    return value
