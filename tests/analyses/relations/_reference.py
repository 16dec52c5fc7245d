"""Shared by the relations tests that reproduce published peer numbers (REFERENCE.md)."""

from __future__ import annotations

import pytest

#: SPIAT's phenotype → cell-type mapping for its simulated images (REFERENCE.md).
SPIAT_TYPES = {
    "Tumour_marker": "Tumour",
    "Immune_marker1,Immune_marker2": "Immune1",
    "Immune_marker1,Immune_marker3": "Immune2",
    "Immune_marker1,Immune_marker2,Immune_marker4": "Immune3",
    "OTHER": "Others",
}


def sig4(value: float, expected: float) -> None:
    """Agreement to 4 significant digits."""
    assert value == pytest.approx(expected, rel=5e-5), (value, expected)
