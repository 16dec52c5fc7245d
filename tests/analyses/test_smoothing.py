"""gaussian_smooth: bit for bit scipy.ndimage.gaussian_filter (what the masks used before)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from metaniche.analyses._smoothing import gaussian_smooth


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_scipy_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    for _ in range(60):     # shapes below, around and far above the kernel radius
        shape = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        sigma = float(rng.choice([0.3, 1.0, 2.5, 4.0, 4.7, 10.0, 25.0]))
        image = ((rng.random(shape) < 0.3) * rng.integers(0, 6, shape)).astype(dtype)
        expected = ndimage.gaussian_filter(image, sigma)
        result = gaussian_smooth(image, sigma)
        assert result.dtype == expected.dtype
        np.testing.assert_array_equal(result, expected)


def test_compartment_raster_and_fallbacks():
    rng = np.random.default_rng(4)
    counts = (rng.random((220, 414)) < 0.1).astype(np.float32) * 3
    np.testing.assert_array_equal(gaussian_smooth(counts, 4.0),
                                  ndimage.gaussian_filter(counts, 4.0))
    view = counts[::2, 1::3]                                  # not contiguous
    np.testing.assert_array_equal(gaussian_smooth(view, 2.0),
                                  ndimage.gaussian_filter(view, 2.0))
    for image, sigma in ((counts, 0.0), (counts.astype(np.int32), 2.0),
                         (np.zeros((0, 5), np.float32), 2.0), (counts[0], 2.0)):
        np.testing.assert_array_equal(gaussian_smooth(image, sigma),
                                      ndimage.gaussian_filter(image, sigma))
