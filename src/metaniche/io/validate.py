"""Check cell-table inputs and list every problem (``metaniche validate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metaniche.config import Config
from metaniche.io.cells import read_samples

__all__ = ["Problem", "validate_inputs"]


@dataclass(frozen=True)
class Problem:
    """One problem found in the inputs.

    Attributes
    ----------
    severity
        ``"error"`` (the sample or file cannot be analysed) or ``"warning"``.
    file
        The file (or directory) as given or found, as a string.
    sample
        The sample concerned; ``None`` when the problem concerns the whole file.
    message
        One sentence naming the file, the column or row and the fix.
    """

    severity: str
    file: str
    sample: str | None
    message: str


def validate_inputs(paths: Sequence[str | Path], config: Config,
                    format: str | None = None) -> list[Problem]:
    """Read the inputs with :func:`~metaniche.io.read_samples` and list their problems.

    Returns one :class:`Problem` per error and per distinct warning, in input order;
    a warning that applies to a whole file (and so repeats for each of its samples) is
    listed once, with ``sample`` set to ``None``. An empty list means every sample can be
    analysed. ``format`` overrides ``config.format`` (see :func:`read_samples`).
    """
    problems: list[Problem] = []
    counts: dict[tuple[str, str], int] = {}
    samples = read_samples(paths, config, format=format)
    for s in samples:
        for message in s.warnings:
            key = (str(s.source), message)
            counts[key] = counts.get(key, 0) + 1
    shown: set[tuple[str, str]] = set()
    for s in samples:
        file = str(s.source)
        if s.error is not None:
            problems.append(Problem("error", file, None if s.file_error else s.name, s.error))
        for message in s.warnings:
            key = (file, message)
            if key in shown:
                continue
            shown.add(key)
            repeated = counts[key] > 1
            problems.append(Problem("warning", file, None if repeated else s.name, message))
    return problems
