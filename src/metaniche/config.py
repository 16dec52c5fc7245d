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
    "CellTypeRoles",
    "ClinicalColumns",
    "ColumnNames",
    "CompartmentParams",
    "Config",
    "PhenotypeParams",
    "load_config",
]

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
    tumour labels match ``^tumou?r`` (any case); immune labels match a pattern of common
    lineage names (CD8/CD4/T/B/NK/macrophage/neutrophil/DC/...).
    """

    tumor: tuple[str, ...] = ()
    immune: tuple[str, ...] = ()

    def is_tumor(self, labels: list[str]) -> list[bool]:
        """Return, per label, whether it names tumour cells."""
        if self.tumor:
            return [label in self.tumor for label in labels]
        return [bool(re.match(DEFAULT_TUMOR_PATTERN, str(label), re.IGNORECASE))
                for label in labels]

    def is_immune(self, labels: list[str]) -> list[bool]:
        """Return, per label, whether it names immune cells."""
        if self.immune:
            return [label in self.immune for label in labels]
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
class ClinicalColumns:
    """Outcome column names of the clinical table (section ``[clinical]``)."""

    sample: str = "sample"
    patient: str = "patient"
    response: str = "response"
    os_time: str = "os_time"
    os_event: str = "os_event"


@dataclass(frozen=True)
class Config:
    """The whole run configuration.

    Attributes
    ----------
    um_per_unit
        Micrometres per input coordinate unit (0.39 for a 0.39 µm/px image). Default 1.
    min_cells
        Samples with fewer cells are rejected as too small to analyse. Default 20.
    """

    um_per_unit: float = 1.0
    min_cells: int = 20
    columns: ColumnNames = field(default_factory=ColumnNames)
    cell_types: CellTypeRoles = field(default_factory=CellTypeRoles)
    compartments: CompartmentParams = field(default_factory=CompartmentParams)
    phenotype: PhenotypeParams = field(default_factory=PhenotypeParams)
    clinical: ClinicalColumns = field(default_factory=ClinicalColumns)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain data (for run.json and the report)."""
        return dataclasses.asdict(self)


_POSITIVE = {
    "um_per_unit", "border_um", "grid_um", "smoothing_um", "min_lesion_area_um2",
    "tissue_closing_um", "min_cells",
}
_NON_NEGATIVE = {"min_hole_area_um2", "tissue_radius_um", "immune_weight",
                 "desert_max_per_mm2", "inflamed_min_core_border_ratio"}
_FRACTION = {"tumor_fraction"}


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


def _coerce(hint: Any, value: Any, source: str, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, where)
    if get_origin(hint) is tuple:
        (item_type, _) = get_args(hint)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
            raise ConfigError(f"{source}: '{where}' must be a list of strings; got {value!r}.")
        return tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: '{where}' must be a number; got {value!r}.")
        value = float(value)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{where}' must be an integer; got {value!r}.")
    elif hint is str and not isinstance(value, str):
        raise ConfigError(f"{source}: '{where}' must be a string; got {value!r}.")
    name = where.rsplit(".", 1)[-1]
    if name in _POSITIVE and not value > 0:
        raise ConfigError(f"{source}: '{where}' must be a positive number; got {value!r}.")
    if name in _NON_NEGATIVE and not value >= 0:
        raise ConfigError(f"{source}: '{where}' must be zero or positive; got {value!r}.")
    if name in _FRACTION and not 0 <= value < 1:
        raise ConfigError(f"{source}: '{where}' must lie in [0, 1) (0 = automatic); got {value!r}.")
    return value
