"""The study design of ``metaniche power``: the ``[design]`` TOML table, validated.

Every key is declared once on :class:`DesignParams` with its rule (the configuration's
constraint machinery, :mod:`metaniche.config`), so a bad value gives the same one-line
message as the run configuration (``design.toml: `[design] n_studies` must be a positive
integer; got 0.``) and the command exits 2.

Example::

    [design]
    program = "cd8_core_infiltration"   # a named remodeling program
    effects = [1.0, 1.5]                # fold change of the program's quantity; 1.0 = none
    n_patients = [10, 20]
    cores_per_patient = [0, 3]          # 0 = the whole slide
    core_diameter_um = 1000.0
    core_length_um = 10000.0
    n_studies = 100
    seed = 0

    [design.remodel]                    # optional: metaniche.studies.remodel.RemodelParams
    n_cells = 10000
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaniche.config import Each, Integer, Interval, OneOf, Positive, Validated, build_params
from metaniche.errors import ConfigError
from metaniche.studies.biopsy import KINDS, TARGETS
from metaniche.studies.remodel import PROGRAMS, RemodelParams

__all__ = ["MIN_PATIENTS", "DesignParams", "load_design"]

#: Fewest patients of a design: the cohort step's paired test needs 2 × ``[cohort] min_group``
#: (default 3) pairs.
MIN_PATIENTS = 6


@dataclass(frozen=True)
class DesignParams(Validated):
    """A power design (TOML table ``[design]``).

    Attributes
    ----------
    program
        The remodeling program (:data:`metaniche.studies.remodel.PROGRAMS`).
    effects
        Fold changes of the program's quantity to simulate; 1.0 = no change (its power is
        the false-positive rate). Default ``[1.0, 1.5]``.
    n_patients
        Cohort sizes (patients, each biopsied before and after treatment), each >= 6.
        Default ``[10, 20]``.
    cores_per_patient
        Cores per patient and time point; 0 = the whole slide. Default ``[0, 3]``.
    core_diameter_um
        Needle width (punch diameter), µm: one number or a list (a grid of core sizes).
        Default 1000.
    core_length_um
        Needle length, µm (a punch uses the diameter). Default 10,000.
    core_kind
        ``needle`` or ``punch``. Default ``needle``.
    core_target
        ``random`` or ``edge`` (cores centred within half a diameter of the tumour edge).
        Default ``random``.
    n_studies
        Simulated studies per grid cell. Default 100.
    alpha
        Significance level of a study's test. Default 0.05.
    confidence
        Level of the binomial (Clopper–Pearson) interval of the power. Default 0.95.
    seed
        Root seed. Default 0.
    remodel
        Simulator parameters (``[design.remodel]``, :class:`RemodelParams`).
    """

    program: str = field(default="cd8_core_infiltration",
                         metadata={"check": OneOf(tuple(PROGRAMS))})
    effects: tuple[float, ...] = field(default=(1.0, 1.5),
                                       metadata={"check": Each(Positive())})
    n_patients: tuple = field(default=(10, 20),
                              metadata={"check": Each(Integer(MIN_PATIENTS),
                                                      f"integers >= {MIN_PATIENTS}")})
    cores_per_patient: tuple = field(default=(0, 3), metadata={"check": Each(
        Integer(0), "non-negative integers (0 = the whole slide)")})
    core_diameter_um: tuple = field(default=(1000.0,), metadata={"check": Each(
        Positive(), "positive numbers")})
    core_length_um: float = field(default=10_000.0, metadata={"check": Positive()})
    core_kind: str = field(default="needle", metadata={"check": OneOf(KINDS)})
    core_target: str = field(default="random", metadata={"check": OneOf(TARGETS)})
    n_studies: int = field(default=100, metadata={"check": Integer(1)})
    alpha: float = field(default=0.05, metadata={"check": Interval(
        0, 1, lo_open=True, hi_open=True)})
    confidence: float = field(default=0.95, metadata={"check": Interval(
        0, 1, lo_open=True, hi_open=True)})
    seed: int = field(default=0, metadata={"check": Integer(0)})
    remodel: RemodelParams = field(default_factory=RemodelParams)

    def __post_init__(self) -> None:
        for name in ("n_patients", "cores_per_patient", "effects", "core_diameter_um"):
            value = getattr(self, name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = (value,)
            if isinstance(value, list):
                value = tuple(value)
            if name == "core_diameter_um" and isinstance(value, tuple):
                value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool)
                              else v for v in value)
            object.__setattr__(self, name, value)
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        """The design as plain data (for ``design.json``)."""
        import dataclasses

        return dataclasses.asdict(self)


def load_design(path: str | Path) -> DesignParams:
    """Read and validate a design TOML file (one ``[design]`` table).

    Raises
    ------
    ConfigError
        Unreadable or invalid TOML, a missing ``[design]`` table, an unknown key (named with
        its section) or a bad value; every problem of the file is listed, one per line.
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{source}: design file not found; check the --config path.") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a TOML file; check the --config "
                          f"path.") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err}); fix the syntax.") from None
    lines = [f"{source}: unknown key '{key}'; a design file holds one [design] table."
             for key in data if key != "design"]
    if "design" not in data:
        lines.append(f"{source}: no [design] table; add one (see `metaniche power --help`).")
        raise ConfigError("\n".join(lines), problems=tuple(lines))
    table = dict(data["design"]) if isinstance(data["design"], dict) else data["design"]
    if isinstance(table, dict):
        for key in ("n_patients", "cores_per_patient", "core_diameter_um"):
            if isinstance(table.get(key), int | float) and not isinstance(table[key], bool):
                table[key] = [table[key]]
    design = build_params(DesignParams, table, source, "design", lines)
    if lines or design is None:
        raise ConfigError("\n".join(lines), problems=tuple(lines))
    return design
