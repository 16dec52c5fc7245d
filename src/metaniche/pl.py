"""Plots of the ``metaniche.tl`` results and of runs read back, returning matplotlib Axes
(``mn.pl.tissue(adata)``); drawn by the same functions as the report's figures
(:mod:`metaniche.plotting`); see :mod:`metaniche._api.plots`."""

from metaniche._api.plots import (
    aggregates,
    co_occurrence,
    composition,
    effector_density,
    effector_gradient,
    gradients,
    kaplan_meier,
    nhood_enrichment,
    ripley,
    tissue,
    volcano,
)

__all__ = ["aggregates", "co_occurrence", "composition", "effector_density", "effector_gradient",
           "gradients", "kaplan_meier", "nhood_enrichment", "ripley", "tissue", "volcano"]
