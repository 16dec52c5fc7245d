"""Figures for the report, written as PNG files beside the HTML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from metaniche._atomic import atomic_path

if TYPE_CHECKING:
    from metaniche.pipeline import SampleAnalysis

__all__ = ["COMPARTMENT_COLOURS", "save_tissue_map"]

COMPARTMENT_COLOURS = {"core": "#c0392b", "border": "#f39c12", "adjacent": "#7f8c8d"}


def save_tissue_map(analysis: SampleAnalysis, title: str, path: str | Path) -> None:
    """Tissue map: cells coloured by compartment, tumour boundary and lesion ids drawn.

    Points are rasterised so the file stays small and fast at a million cells.
    """
    cells = analysis.cells
    result = analysis.compartments
    width = float(np.ptp(cells["x"])) or 1.0
    height = float(np.ptp(cells["y"])) or 1.0
    fig_w = 7.0
    fig, ax = plt.subplots(figsize=(fig_w, max(2.5, min(12.0, fig_w * height / width))))
    marker_size = float(np.clip(4e4 / max(len(cells), 1), 0.05, 4.0))
    for name, colour in COMPARTMENT_COLOURS.items():
        chosen = cells["compartment"].to_numpy() == name
        ax.scatter(cells["x"].to_numpy()[chosen], cells["y"].to_numpy()[chosen],
                   s=marker_size, c=colour, linewidths=0, rasterized=True,
                   label=f"{name} ({int(chosen.sum()):,})")
    if result.tumor.any():
        xs, ys = result.grid.pixel_centres()
        ax.contour(xs, ys, result.pixel_signed_distance_um, levels=[0.0], colors="black",
                   linewidths=0.8)
    for lesion in result.lesions.itertuples(index=False):
        ax.annotate(str(lesion.lesion_id), (lesion.centroid_x, lesion.centroid_y),
                    ha="center", va="center", fontsize=9, weight="bold", color="white",
                    bbox={"boxstyle": "circle", "fc": "black", "alpha": 0.6})
    ax.set_aspect("equal")
    ax.invert_yaxis()
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper right", fontsize=7, markerscale=max(1.0, 3 / marker_size**0.5))
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
