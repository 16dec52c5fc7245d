"""The integer-pixel distance transform: bit for bit scipy's, and the compartments with it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from metaniche.analyses import _edt
from metaniche.analyses._edt import distance_and_label, distance_to_features, exact_for
from metaniche.analyses.compartments import assign_compartments
from metaniche.simulate import simulate_sample


def test_equals_scipy_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(200):       # 1-px lines up to 60 px, sparse to dense, blobs
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        features = rng.random(shape) < float(rng.choice([0.001, 0.01, 0.1, 0.5, 0.9]))
        if trial % 3 == 0:
            features = ndimage.binary_dilation(features, iterations=2)
        features[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = True
        pixel = float(rng.choice([1.0, 3.0, 5.0, 7.0]))
        np.testing.assert_array_equal(
            distance_to_features(features, pixel),
            ndimage.distance_transform_edt(~features, sampling=pixel))


def test_labels_are_of_a_nearest_pixel_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(80):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        labels = np.where(rng.random(shape) < float(rng.choice([0.02, 0.1, 0.4])),
                          rng.integers(1, 5, shape), 0).astype(np.int32)
        labels[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = 3
        distance, nearest = distance_and_label(labels, 5.0)
        np.testing.assert_array_equal(distance,
                                      ndimage.distance_transform_edt(labels == 0, sampling=5.0))
        rows, cols = np.indices(shape)
        fr, fc = np.nonzero(labels)
        d2 = (rows[..., None] - fr) ** 2 + (cols[..., None] - fc) ** 2   # pixel x feature
        best = d2.min(axis=-1)
        # the label given is one held by a feature pixel at the minimum distance
        tied = (d2 == best[..., None]) & (labels[fr, fc] == nearest[..., None])
        assert tied.any(axis=-1).all()
        np.testing.assert_array_equal(distance, np.sqrt(best * 25.0))


def test_exact_only_for_integer_pixels():
    assert exact_for(5.0, (300, 400)) and exact_for(1, (10, 10))
    assert not exact_for(4.37, (300, 400)) and not exact_for(0.0, (3, 3))
    assert not exact_for(5.0, (300, 400, 2)) and not exact_for(5.0, (2**26, 2**26))


@pytest.mark.parametrize("n_lesions", [1, 3])
def test_compartments_same_with_scipy_transform(monkeypatch, n_lesions):
    cells = simulate_sample("s", n_cells=12_000, seed=n_lesions, n_lesions=n_lesions).cells
    args = (cells["x"].to_numpy(), cells["y"].to_numpy(),
            (cells["cell_type"] == "Tumor").to_numpy(),
            cells["cell_type"].isin(["CD8_T", "CD4_T", "B", "Macrophage"]).to_numpy())
    fast = assign_compartments(*args)
    assert fast.grid.pixel_um == 5.0 and int(fast.lesion_labels.max()) == n_lesions
    monkeypatch.setattr(_edt, "exact_for", lambda pixel_um, shape: False)
    reference = assign_compartments(*args)
    np.testing.assert_array_equal(fast.pixel_signed_distance_um,
                                  reference.pixel_signed_distance_um)
    # A pixel equally near two lesions may be given either (distance_and_label): where the
    # two differ, both lesions are at the same distance.
    differ = fast.pixel_lesion_id != reference.pixel_lesion_id
    if differ.any():
        pixel = fast.grid.pixel_um
        to_lesion = {k: ndimage.distance_transform_edt(fast.lesion_labels != k, sampling=pixel)
                     for k in range(1, n_lesions + 1)}
        for k in range(1, n_lesions + 1):
            for j in range(1, n_lesions + 1):
                where = differ & (fast.pixel_lesion_id == k) & (reference.pixel_lesion_id == j)
                np.testing.assert_array_equal(to_lesion[k][where], to_lesion[j][where])
    assert differ.mean() < 0.01
    np.testing.assert_array_equal(fast.signed_distance_um, reference.signed_distance_um)
    np.testing.assert_array_equal(fast.lesion_id == reference.lesion_id,
                                  ~differ[fast.grid.cell_index(*args[:2])])
    whole = fast.areas["lesion_id"] == 0
    assert fast.areas[whole].equals(reference.areas[whole])
