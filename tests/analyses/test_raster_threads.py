"""The parallel raster kernels of the compartments give the same bits on 1 thread as on all."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from metaniche.analyses._edt import distance_and_label, distance_to_features
from metaniche.analyses._nearest import nearest_other_distance
from metaniche.analyses._raster import disc_dilate, disc_erode
from metaniche.analyses._smoothing import gaussian_smooth


def _raster_outputs(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (300, 217)              # several row blocks of 64, a partial last one
    mask = rng.random(shape) < 0.02
    labels = np.where(mask, rng.integers(1, 4, shape), 0).astype(np.int32)
    image = (rng.random(shape) * (rng.random(shape) < 0.1)).astype(np.float32)
    x, y = rng.uniform(0, 1000, (2, 5000))
    return [gaussian_smooth(image, 4.0), gaussian_smooth(image.astype(np.float64), 2.5),
            distance_to_features(mask, 5.0), *distance_and_label(labels, 5.0),
            disc_dilate(mask, 6.3), disc_erode(~mask, 3.0),
            nearest_other_distance(x, y, np.arange(0, 5000, 7))]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="one Numba thread available")
def test_same_bits_for_any_thread_count():
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = _raster_outputs(0)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        parallel = _raster_outputs(0)
    finally:
        numba.set_num_threads(threads)
    for one, many in zip(single, parallel, strict=True):
        np.testing.assert_array_equal(one, many)
