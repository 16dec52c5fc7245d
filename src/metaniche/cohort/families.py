"""Primary and exploratory features: the two multiple-testing families of the cohort step.

A short list of primary features (``[cohort] primary_features``, glob patterns of the
literature's biomarkers) is tested as its own Benjamini–Hochberg family and reported first;
everything else is exploratory, with its own FDR, so that a handful of pre-specified
hypotheses do not compete with thousands of exploratory ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase

import numpy as np

__all__ = ["EXPLORATORY", "FAMILIES", "PRIMARY", "feature_families"]

#: Family of a feature that matches a ``[cohort] primary_features`` pattern.
PRIMARY = "primary"
#: Family of every other feature.
EXPLORATORY = "exploratory"
#: The families, in report order.
FAMILIES = (PRIMARY, EXPLORATORY)


def feature_families(features: Iterable[str], patterns: Sequence[str]) -> np.ndarray:
    """The family of each feature: :data:`PRIMARY` when it matches a pattern.

    Parameters
    ----------
    features
        Feature names.
    patterns
        Glob patterns (:func:`fnmatch.fnmatchcase` after lower-casing both sides: ``*``
        matches any text including dots, ``?`` one character, ``[…]`` a set).

    Returns
    -------
    numpy.ndarray
        Object array of :data:`PRIMARY` / :data:`EXPLORATORY`, one per feature.
    """
    lowered = [p.lower() for p in patterns]
    return np.array([PRIMARY if any(fnmatchcase(str(name).lower(), p) for p in lowered)
                     else EXPLORATORY for name in features], dtype=object)
