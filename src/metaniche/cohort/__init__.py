"""Cohort outcomes: per-sample spatial features against response, survival and treatment.

One entry point, :func:`analyse_cohort` (pure, no I/O). The run-level steps of a pipeline run
(cohort neighbourhoods, lesion size vs exclusion, outcomes) are registered in
:data:`metaniche.cohort.steps.RUN_STEPS`; the outcome step writes :func:`analyse_cohort`'s result
as ``association.parquet``, ``prediction.json`` and ``tables/km_curves.parquet``.
"""

from metaniche.cohort.run import CohortResult, analyse_cohort

__all__ = ["CohortResult", "analyse_cohort"]
