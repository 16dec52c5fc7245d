"""Plots of the ``metaniche.tl`` results, returning matplotlib Axes (``mn.pl.tissue(adata)``);
see :mod:`metaniche._api.plots`."""

from metaniche._api.plots import (
    aggregates,
    co_occurrence,
    composition,
    gradients,
    nhood_enrichment,
    ripley,
    tissue,
)

__all__ = ["aggregates", "co_occurrence", "composition", "gradients", "nhood_enrichment",
           "ripley", "tissue"]
