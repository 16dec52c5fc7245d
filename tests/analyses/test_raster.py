"""Disc dilation / erosion: equal to their Euclidean-distance definitions at every radius."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from metaniche.analyses._raster import _disc_by_rows, disc_dilate, disc_erode


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("radius_px", [0.0, 0.6, 1.0, 1.34, 2.5, 6.0, 7.3, 32.0, 40.0])
def test_disc_morphology_matches_distance_transform(radius_px, dense):
    rng = np.random.default_rng(int(radius_px * 10))
    mask = ndimage.binary_dilation(rng.random((300, 260)) < 0.01, iterations=4)
    if dense:                              # mostly True, with holes and a False edge column
        mask = ~mask
        mask[:, -1] = False
    mask[:, :3] = True                     # True pixels touching the raster edge
    mask[:2, 100:110] = False              # False pixels on the top edge
    # Brute-force definition from the distance to the nearest True / False pixel.
    to_true = ndimage.distance_transform_edt(~mask)
    to_false = ndimage.distance_transform_edt(mask)
    np.testing.assert_array_equal(disc_dilate(mask, radius_px),
                                  to_true <= radius_px if radius_px > 0 else mask)
    np.testing.assert_array_equal(disc_erode(mask, radius_px),
                                  to_false > radius_px if radius_px > 0 else mask)
    if radius_px > 0:   # the row decomposition both ways, whichever one the API uses
        np.testing.assert_array_equal(_disc_by_rows(mask, radius_px, erode=False),
                                      to_true <= radius_px)
        np.testing.assert_array_equal(_disc_by_rows(mask, radius_px, erode=True),
                                      to_false > radius_px)
