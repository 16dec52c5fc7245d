"""Mixing scores and entropy: SPIAT's published numbers (both conventions) + brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _reference import SPIAT_TYPES, sig4
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from metaniche.analyses.relations import (
    mixing_score,
    neighbour_graph,
    neighbourhood_entropy,
    shannon_entropy,
)


@pytest.fixture(scope="module")
def simulated(data_dir):
    cells = pd.read_csv(data_dir / "cells" / "spiat_simulated_image.SIMULATED.cells.csv.gz")
    cells["cell_type"] = cells["phenotype_raw"].map(SPIAT_TYPES)
    return cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy()


def test_spiat_1_mixing_scores_unordered(simulated):
    xy, types = simulated
    result = mixing_score(xy, types == "Tumour", types == "Immune1", 50)
    assert (result.reference_target, result.reference_reference) == (80, 2513)
    sig4(result.score, 0.03183446)
    assert round(result.normalised, 4) == 0.0385
    result = mixing_score(xy, types == "Immune1", types == "Immune2", 100)
    assert (result.reference_target, result.reference_reference) == (583, 592)
    sig4(result.score, 0.9847973)
    sig4(result.normalised, 0.9322379)


def test_spiat_04_mixing_score_ordered_prostate(data_dir):
    cells = pd.read_csv(data_dir / "cells" / "spiat_prostate_opal.cells.csv.gz")
    xy, types = cells[["x", "y"]].to_numpy(), cells["cell_type"].to_numpy()
    result = mixing_score(xy, types == "T_helper", types == "T_cyto", 100, convention="ordered")
    assert (result.reference_target, result.reference_reference) == (1646, 8082)
    sig4(result.score, 0.2036625)
    sig4(result.normalised, 0.7570931)
    unordered = mixing_score(xy, types == "T_helper", types == "T_cyto", 100)
    assert unordered.reference_reference == 4041


def test_entropy_published(simulated):
    _, types = simulated
    counts = [np.sum(types == "Immune1"), np.sum(types == "Immune2")]
    sig4(float(shannon_entropy(counts)), 0.9294873)          # SPIAT >= 1.0: log2
    sig4(float(shannon_entropy([513, 138], base=10)), 0.2243436)  # SPIAT 0.4: log10


def test_entropy_closed_forms():
    assert shannon_entropy([5, 5, 5, 5]) == pytest.approx(2.0)
    assert shannon_entropy([7, 0]) == 0.0
    assert shannon_entropy([0, 0]) == 0.0


def test_mixing_score_brute_force_and_boundary():
    rng = np.random.default_rng(0)
    xy = np.round(rng.uniform(0, 60, (150, 2)))  # integer grid: many pairs exactly at r
    ref = rng.random(150) < 0.4
    target = ~ref & (rng.random(150) < 0.5)
    d = cdist(xy, xy)
    rt = int((d[np.ix_(ref, target)] <= 5).sum())
    rr = int(((d[np.ix_(ref, ref)] <= 5).sum() - ref.sum()) // 2)
    result = mixing_score(xy, ref, target, 5)
    assert (result.reference_target, result.reference_reference) == (rt, rr)
    assert result.normalised == pytest.approx(rt / rr * (ref.sum() - 1) / (2 * target.sum()))


def test_neighbourhood_entropy_brute_force():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (200, 2))
    codes = rng.integers(0, 3, 200)
    edges = neighbour_graph(xy, cKDTree(xy), "radius", 15.0)
    entropy = neighbourhood_entropy(edges, codes, 3)
    d = cdist(xy, xy)
    np.fill_diagonal(d, np.inf)
    for cell in range(0, 200, 17):
        neighbours = codes[d[cell] <= 15.0]
        expected = shannon_entropy(np.bincount(neighbours, minlength=3))
        assert entropy[cell] == pytest.approx(expected)
