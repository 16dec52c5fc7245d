"""The integer-pixel distance transform: bit for bit scipy's, and the compartments with it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from metaniche.analyses import _edt
from metaniche.analyses._edt import distance_to_features, exact_for
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
    np.testing.assert_array_equal(fast.pixel_lesion_id, reference.pixel_lesion_id)
    np.testing.assert_array_equal(fast.signed_distance_um, reference.signed_distance_um)
    assert fast.areas.equals(reference.areas)
