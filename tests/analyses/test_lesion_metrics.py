"""Borderline index and lesion outlines against closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from metaniche.analyses.lesion_metrics import borderline_index, lesion_perimeters_um


def test_borderline_index_closed_form():
    start = np.arange(-300.0, 300.0, 50.0)
    end = start + 50
    area = np.full(start.size, 0.1)
    density = np.where((start >= -100) & (end <= 100), 30.0, np.where(start < 0, 10.0, 20.0))
    counts = density * area
    assert borderline_index(start, end, counts, area, 100.0, 300.0) == pytest.approx(30 / 15)
    no_host = area.copy()
    no_host[start >= 100] = 0
    assert borderline_index(start, end, counts, no_host, 100.0, 300.0) == pytest.approx(3.0)


def test_perimeter_of_a_disc_and_a_square():
    pixel = 5.0
    yy, xx = np.mgrid[0:200, 0:200]
    disc = (np.hypot(xx + 0.5 - 100, yy + 0.5 - 100) * pixel < 300).astype(np.int32)
    square = np.zeros((200, 200), np.int32)
    square[50:130, 60:140] = 2  # 400 µm sides
    labels = disc.copy()
    tissue = np.ones_like(disc, bool)
    assert lesion_perimeters_um(labels, tissue, pixel, 1)[0] == pytest.approx(
        2 * np.pi * 300, rel=0.01)
    # Smoothing rounds the four corners: about (4 - pi) * sigma * 2 shorter, ~1 %.
    assert lesion_perimeters_um(np.where(square > 0, 1, 0), tissue, pixel, 1)[0] == (
        pytest.approx(1600, rel=0.02))
    # A cell-free (non-tissue) hole is necrosis, not an outline; a tissue hole is.
    holed = disc.copy()
    holed[np.hypot(xx + 0.5 - 100, yy + 0.5 - 100) * pixel < 100] = 0
    gap = ~((np.hypot(xx + 0.5 - 100, yy + 0.5 - 100) * pixel) < 100)
    assert lesion_perimeters_um(holed, gap, pixel, 1)[0] == pytest.approx(2 * np.pi * 300,
                                                                          rel=0.01)
    assert lesion_perimeters_um(holed, tissue, pixel, 1)[0] == pytest.approx(
        2 * np.pi * 400, rel=0.015)
