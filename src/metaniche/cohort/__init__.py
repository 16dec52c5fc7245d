"""Cohort outcomes: per-sample spatial features against response, survival and treatment.

One entry point, :func:`analyse_cohort` (pure, no I/O); the pipeline writes its result as
``association.parquet``, ``prediction.json`` and ``tables/km_curves.parquet``.
"""

from metaniche.cohort.run import CohortResult, analyse_cohort

__all__ = ["CohortResult", "analyse_cohort"]
