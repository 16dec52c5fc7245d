"""Run configuration: one TOML file, every key optional with a documented default.

The model is a tree of frozen dataclasses. :func:`load_config` reads a TOML file (stdlib
``tomllib``), rejects unknown keys by name, checks every value against its declared type and
constraints, and returns a :class:`Config`. Defaults are the values documented below and in
DESIGN.md; ``Config()`` is the all-defaults configuration.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from metaniche.errors import ConfigError

__all__ = [
    "AggregateParams",
    "CellTypeRoles",
    "ClinicalColumns",
    "CohortParams",
    "ColumnNames",
    "CompartmentParams",
    "Config",
    "GradientParams",
    "LigrecParams",
    "NeighbourhoodParams",
    "PhenotypeParams",
    "UnitParams",
    "ZonationParams",
    "load_config",
]

#: Input formats accepted by ``format`` / ``--format`` (see :mod:`metaniche.io.formats`).
INPUT_FORMATS: tuple[str, ...] = ("auto", "table", "inform", "halo", "codex", "cellprofiler",
                                  "mcmicro", "scimap", "squidpy", "spatialdata")
#: Default tumour labels: anything starting with "tumor"/"tumour", any case.
DEFAULT_TUMOR_PATTERN = r"^tumou?r"
#: Default immune labels, matched case-insensitively against the start of a label.
DEFAULT_IMMUNE_PATTERN = (
    r"^(cd8|cd4|cd3|t[_ ]?cell|t_|treg|tc_|th|b[_ ]?cell|b$|bc\d|plasma|nk|macrophage|mac|"
    r"mc\d|cd68|cd163|monocyte|cd14|neutrophil|dc|dendritic|mast|lymph|immune|myeloid|"
    r"gpnmb_macrophage|s100a12_neutrophil|foxp3|pd1)"
)


@dataclass(frozen=True)
class ColumnNames:
    """Input column names (section ``[columns]``)."""

    sample: str = "sample"
    cell_id: str = "cell_id"
    x: str = "x"
    y: str = "y"
    cell_type: str = "cell_type"


@dataclass(frozen=True)
class CellTypeRoles:
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
class CompartmentParams:
    """Tumour-region detection and compartment parameters (section ``[compartments]``).

    Attributes
    ----------
    border_um
        Half-width w of the invasive border band, µm: border is ``|d| <= w``. Default 100
        (Immunoscore's invasive margin uses 500).
    grid_um
        Raster pixel size used for the tissue and tumour masks, µm. Default 5.
    smoothing_um
        Gaussian kernel sigma for the local cell-type densities, µm. Default 20.
    tumor_fraction
        A pixel is tumour when the weighted local tumour fraction exceeds this. Default 0:
        chosen per sample by the isodata method, clipped to [0.2, 0.6].
    immune_weight
        Weight of immune cells in the denominator of the tumour fraction, so that immune
        infiltrate inside a lesion does not carve it up. Default 0.25.
    min_lesion_area_um2
        Tumour regions smaller than this are dropped, µm². Default 20,000 (≈160 µm across).
    min_hole_area_um2
        Non-tumour holes inside a lesion smaller than this are filled, µm²; larger holes
        (necrosis, stroma) stay non-tumour. Default 20,000.
    tissue_radius_um
        Tissue mask = union of discs of this radius around cells, then closed with
        ``tissue_closing_um``. Default 0, meaning half the median nearest-neighbour distance.
    tissue_closing_um
        Radius of the morphological closing that fills gaps in the tissue mask, µm. Default 30.
    annotations
        Path to a GeoJSON file or a folder of ``<sample>.geojson`` tumour annotations (as
        QuPath exports, in input coordinate units) that override detection. Default none.
    """

    border_um: float = 100.0
    grid_um: float = 5.0
    smoothing_um: float = 20.0
    tumor_fraction: float = 0.0
    immune_weight: float = 0.25
    min_lesion_area_um2: float = 20_000.0
    min_hole_area_um2: float = 20_000.0
    tissue_radius_um: float = 0.0
    tissue_closing_um: float = 30.0
    annotations: str = ""


@dataclass(frozen=True)
class PhenotypeParams:
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
    desert_max_per_mm2: float = 50.0
    inflamed_min_core_border_ratio: float = 0.3


@dataclass(frozen=True)
class GradientParams:
    """Distance-to-border gradient profiles (section ``[gradients]``).

    See :mod:`metaniche.analyses.border`.

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

    bin_um: float = 10.0
    min_um: float = -500.0
    max_um: float = 500.0
    window_um: float = 300.0
    markers: bool = True
    marker_columns: tuple[str, ...] = ()
    infiltration_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZonationParams:
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

    portal_types: tuple[str, ...] = ("Portal_vein",)
    central_types: tuple[str, ...] = ("Central_vein",)
    n_bins: int = 10
    beyond_um: float = 0.0


@dataclass(frozen=True)
class RelationsParams:
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
    ripley_simulations
        CSR envelope simulations per type pair in the stage (0 = none, the default).
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

    contact_radius_um: float = 30.0
    graph: str = "radius"
    k: int = 10
    n_permutations: int = 0
    seed: int = 0
    count_within_um: tuple[float, ...] = (10.0, 25.0, 50.0)
    ripley_max_um: float = 100.0
    ripley_step_um: float = 10.0
    ripley_simulations: int = 0
    cooccurrence_max_um: float = 100.0
    cooccurrence_bins: int = 10
    max_types: int = 30
    border_alpha_um: float = 40.0
    border_max_edges: int = 20_000


@dataclass(frozen=True)
class ClinicalColumns:
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


@dataclass(frozen=True)
class CohortParams:
    """Cohort outcome analyses (section ``[cohort]``); see :mod:`metaniche.cohort`.

    Attributes
    ----------
    analyses
        Which analyses to run when their columns exist: any of ``response``, ``survival``,
        ``treatment``, ``prediction``. Default all four.
    min_group
        Fewest samples (patients) per response group, and fewest pairs per group for the
        treatment interaction, for a test to be run. Default 3.
    min_events
        Fewest events for the survival analysis. Default 5.
    min_non_missing
        Features finite in fewer than this fraction of the analysed units are dropped.
        Default 0.8.
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
    """

    analyses: tuple[str, ...] = ("response", "survival", "treatment", "prediction")
    min_group: int = 3
    min_events: int = 5
    min_non_missing: float = 0.8
    min_variance: float = 0.0
    max_levels: int = 10
    n_folds: int = 5
    n_inner_folds: int = 3
    n_repeats: int = 5
    l1_ratio: float = 0.0
    n_bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class NeighbourhoodParams:
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

    k: int = 10
    n_neighbourhoods: int = 0
    n_training: int = 5000
    seed: int = 0


@dataclass(frozen=True)
class AggregateParams:
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

    radius_um: float = 30.0
    min_neighbours: int = 4
    min_cells: int = 10
    b_types: tuple[str, ...] = ()
    t_types: tuple[str, ...] = ()
    tls_min_cells: int = 50
    tls_min_b_fraction: float = 0.3
    fdc_types: tuple[str, ...] = ("CCL19_fibroblast", "FDC")
    fdc_markers: tuple[str, ...] = ("CD21", "CD35", "CD23")
    gc_types: tuple[str, ...] = ("GC_B", "Germinal_center_B")
    gc_markers: tuple[str, ...] = ("BCL6", "AICDA")
    plasma_types: tuple[str, ...] = ("Plasma", "Plasma_cell")
    plasma_markers: tuple[str, ...] = ("CD138", "IgG")
    min_fdc_cells: int = 2
    min_fdc_fraction: float = 0.02
    min_gc_cells: int = 5
    marker_threshold: float = 0.0


@dataclass(frozen=True)
class UnitParams:
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

    types: tuple[str, ...] = ()
    radius_um: float = 20.0
    min_cells: int = 6
    min_neighbours: int = 1
    require_all: bool = True


#: The review's example units, used when the config has no ``[units]`` section.
DEFAULT_UNITS: dict[str, UnitParams] = {
    "angiogenic_unit": UnitParams(types=("Macrophage", "Endothelial")),
    "premetastatic_cluster": UnitParams(types=("HPC", "Fibroblast")),
}


@dataclass(frozen=True)
class LigrecParams:
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
    radius_um: float = 30.0
    n_permutations: int = 999
    min_edges: int = 10
    seed: int = 0
    max_permutations: int = 9_999
    min_exceedances: int = 10
    normal_min_edges: int = 5_000


@dataclass(frozen=True)
class Config:
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
        ``"codex"``, ``"cellprofiler"``, ``"mcmicro"``, ``"scimap"``, ``"squidpy"`` or
        ``"spatialdata"``; see :mod:`metaniche.io.formats`. Default ``"auto"``.
    phenotype_map
        CODEX phenotype map (two columns: cluster id, label, no header). Default empty:
        a file ``<stem>_phenotypes.txt[.gz]`` beside the cell table, when present.
    gating
        Marker gating panel (section ``[gating]``), kept as plain data and validated by
        :func:`metaniche.phenotype.parse_panel`; empty (default) means no gating.
    """

    um_per_unit: float = 1.0
    min_cells: int = 20
    format: str = "auto"
    phenotype_map: str = ""
    gating: dict[str, Any] = field(default_factory=dict)
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

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain data (for run.json and the report)."""
        return dataclasses.asdict(self)


_POSITIVE = {
    "um_per_unit", "border_um", "grid_um", "smoothing_um", "min_lesion_area_um2",
    "tissue_closing_um", "min_cells", "min_exceedances",
    "min_group", "min_events", "max_levels", "n_folds", "n_inner_folds", "n_repeats",
    "n_bootstrap",
    "bin_um", "window_um", "n_bins",
    "k", "n_training", "radius_um", "min_neighbours", "tls_min_cells", "min_edges",
    "border_alpha_um", "border_max_edges",
}
_NON_NEGATIVE = {"min_hole_area_um2", "tissue_radius_um", "immune_weight",
                 "desert_max_per_mm2", "inflamed_min_core_border_ratio", "min_variance",
                 "beyond_um", "max_permutations", "normal_min_edges"}
_FRACTION = {"tumor_fraction"}
_UNIT_INTERVAL = {"tls_min_b_fraction", "min_fdc_fraction", "min_non_missing", "l1_ratio",
                  "confidence"}


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read a TOML configuration file and return a validated :class:`Config`.

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
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: not valid TOML ({err}); fix the syntax.") from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(Config, data, source, section="")


def _build(cls: type, data: dict[str, Any], source: str, section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{section}] must be a table of keys; got {data!r}.")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{section}.{key}" if section else key
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown key '{where}'; known keys here: {known}.")
        kwargs[key] = _coerce(hints[key], value, source, where)
    return cls(**kwargs)


def _units(value: Any, source: str) -> dict[str, UnitParams]:
    """``[units.<name>]`` tables → named :class:`UnitParams` (replacing the examples)."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{source}: [units] must hold one table per unit, e.g. "
                          f"[units.angiogenic_unit] types = [\"Macrophage\", \"Endothelial\"]; "
                          f"got {value!r}.")
    units = {}
    for name, table in value.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)):
            raise ConfigError(f"{source}: unit name '{name}' must be letters, digits and "
                              f"underscores, starting with a letter.")
        unit = _build(UnitParams, table, source, f"units.{name}")
        if not unit.types:
            raise ConfigError(f"{source}: 'units.{name}.types' is required: list the cell "
                              f"types of the unit, e.g. types = [\"Macrophage\", "
                              f"\"Endothelial\"].")
        units[str(name)] = unit
    return units


def _coerce(hint: Any, value: Any, source: str, where: str) -> Any:
    if where == "gating":
        from metaniche.phenotype import parse_panel

        parse_panel(value, source)  # raises ConfigError naming the bad key
        return value
    if where == "format" and value not in INPUT_FORMATS:
        raise ConfigError(f"{source}: 'format' must be one of {', '.join(INPUT_FORMATS)}; "
                          f"got {value!r}.")
    if where == "units":
        return _units(value, source)
    if get_origin(hint) is dict:
        if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v)
                for v in value.values()):
            raise ConfigError(f"{source}: [{where}] must be a table of lists of labels, e.g. "
                              f"T = [\"CD8_T\", \"CD4_T\"]; got {value!r}.")
        return {str(k): tuple(v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, where)
    if get_origin(hint) is tuple:
        (item_type, _) = get_args(hint)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            value = [value]
        if item_type is float and isinstance(value, list):
            value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                     for v in value]
        if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
            kind = "numbers" if item_type is float else "strings"
            raise ConfigError(f"{source}: '{where}' must be a list of {kind}; got {value!r}.")
        return tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: '{where}' must be a number; got {value!r}.")
        value = float(value)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{where}' must be an integer; got {value!r}.")
    elif hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{where}' must be true or false; got {value!r}.")
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{source}: '{where}' must be a string; got {value!r}.")
    name = where.rsplit(".", 1)[-1]
    if name in _POSITIVE and not value > 0:
        raise ConfigError(f"{source}: '{where}' must be a positive number; got {value!r}.")
    if name in _NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{source}: '{where}' must be zero or positive; got {value!r}.")
    if name in _UNIT_INTERVAL and not 0 <= value <= 1:
        raise ConfigError(f"{source}: '{where}' must lie in [0, 1]; got {value!r}.")
    if name in _FRACTION and not 0 <= value < 1:
        raise ConfigError(f"{source}: '{where}' must lie in [0, 1) (0 = automatic); got {value!r}.")
    return value
