"""Cell roles: the one place where cell-type labels are resolved to tumour, immune, effector,
B and T roles.

Every rule takes the sample's distinct labels and the configuration and returns the labels
with that role (in the order of ``cell_types``); :class:`metaniche.context.SampleContext` turns
them once per sample into per-cell boolean masks (``is_tumor``, ``is_immune``, ``is_effector``,
``is_infiltration``, ``is_b``, ``is_t``). A configured list always wins; the pattern defaults
apply only when it is empty:

- tumour / immune: ``[cell_types] tumor`` / ``immune`` (+ lineage labels), else
  :data:`metaniche.config.DEFAULT_TUMOR_PATTERN` / ``DEFAULT_IMMUNE_PATTERN`` (see
  :class:`metaniche.config.CellTypeRoles`);
- effector (immune phenotype): ``[phenotype] effector_types``, else labels containing ``cd8``
  (any case), :data:`EFFECTOR_SUBSTRING`;
- infiltration (gradients, lesion metrics): ``[gradients] infiltration_types`` present in the
  sample, else the same CD8 rule;
- B / T (lymphoid aggregates, TLS): ``[aggregates] b_types`` / ``t_types``, else lineage
  ``B`` / ``T`` of ``[cell_types.lineage]``, else :data:`B_PATTERN` / :data:`T_PATTERN`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from metaniche.config import Config

__all__ = [
    "B_PATTERN",
    "EFFECTOR_SUBSTRING",
    "T_PATTERN",
    "b_and_t_types",
    "effector_types",
    "immune_types",
    "infiltration_types",
    "mask_of",
    "tumour_types",
    "tumour_types_by_position",
]

#: Default effector labels: any label containing this (case-insensitive), e.g. ``CD8_T``.
EFFECTOR_SUBSTRING = "cd8"
#: Default B labels (full match, any case): ``B``, ``B cell(s)``, ``BC<n>``, ``CD20…``.
B_PATTERN = r"^(b|b[_ ]?cells?|bc\d+|cd20.*)$"
#: Default T labels (start of label, any case): CD8/CD4/CD3…, ``T_``/``T ``, ``Tc_``, Treg,
#: ``Th``/``Th<n>`` (whole label), ``T``, ``T cell(s)``.
T_PATTERN = r"^(cd8|cd4|cd3|t[_ ]|tc_|treg|th\d*$|t$|t[_ ]?cells?)"


def tumour_types(cell_types: Sequence[str], config: Config) -> list[str]:
    """Labels naming tumour cells (``[cell_types] tumor``, else ``^tumou?r``)."""
    flags = config.cell_types.is_tumor(list(cell_types))
    return [t for t, yes in zip(cell_types, flags, strict=True) if yes]


def immune_types(cell_types: Sequence[str], config: Config) -> list[str]:
    """Labels naming immune cells (see :meth:`metaniche.config.CellTypeRoles.is_immune`)."""
    flags = config.cell_types.is_immune(list(cell_types))
    return [t for t, yes in zip(cell_types, flags, strict=True) if yes]


def _cd8(cell_types: Sequence[str]) -> list[str]:
    return [t for t in cell_types if EFFECTOR_SUBSTRING in t.lower()]


def effector_types(cell_types: Sequence[str], config: Config) -> list[str]:
    """Effector labels of the immune phenotype: ``[phenotype] effector_types`` as configured
    (present or not), else the labels containing ``cd8``."""
    return list(config.phenotype.effector_types) or _cd8(cell_types)


def infiltration_types(cell_types: Sequence[str], config: Config) -> list[str]:
    """Labels whose infiltration depth is measured: ``[gradients] infiltration_types`` present
    in the sample, else the labels containing ``cd8``."""
    configured = config.gradients.infiltration_types
    if configured:
        return [t for t in configured if t in cell_types]
    return _cd8(cell_types)


def b_and_t_types(cell_types: Sequence[str], config: Config) -> tuple[list[str], list[str]]:
    """B and T labels: ``[aggregates] b_types/t_types``, else lineage B/T, else the patterns."""
    params, lineage = config.aggregates, config.cell_types.lineage
    b = list(params.b_types) or list(lineage.get("B", ())) or [
        t for t in cell_types if re.match(B_PATTERN, t, re.IGNORECASE)]
    t_labels = list(params.t_types) or list(lineage.get("T", ())) or [
        t for t in cell_types if re.match(T_PATTERN, t, re.IGNORECASE)]
    return [t for t in cell_types if t in b], [t for t in cell_types if t in t_labels]


def mask_of(type_codes: np.ndarray, cell_types: Sequence[str], selected: Sequence[str]
            ) -> np.ndarray:
    """Per-cell boolean: the cell's label (``cell_types[type_codes[i]]``) is in ``selected``.

    A lookup on the type codes, O(n_cells), no string comparison per cell.
    """
    wanted = set(selected)
    lookup = np.array([t in wanted for t in cell_types], dtype=bool)
    return lookup[np.asarray(type_codes, dtype=np.intp)] if len(lookup) else np.zeros(
        len(type_codes), dtype=bool)


def tumour_types_by_position(type_codes: np.ndarray, cell_types: Sequence[str],
                             signed_distance_um: np.ndarray, fraction: float = 0.8,
                             ) -> list[str]:
    """Labels guessed to be tumour from where their cells lie, for a run without its config.

    A label is tumour when more than ``fraction`` (default 0.8) of its cells have a negative
    signed distance (inside tumour). Empty when no distance is finite.
    """
    sd = np.asarray(signed_distance_um, dtype=np.float64)
    if not np.isfinite(sd).any():
        return []
    n_types = len(cell_types)
    inside = np.bincount(type_codes, weights=(sd < 0).astype(float), minlength=n_types)
    total = np.bincount(type_codes, minlength=n_types)
    return [t for t, a, b in zip(cell_types, inside, total, strict=True)
            if b and a / b > fraction]
