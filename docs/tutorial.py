"""metaniche in a notebook: real MIBI-TOF breast cancer (Keren et al., Cell 2018) → compartments,
densities, gradients, neighbourhood enrichment and plots in a dozen calls.

Run from the repository root (the shared data directory as in the tests):
    METANICHE_DATA=../shared/data python docs/tutorial.py
Its printed output is in docs/tutorial.md; figures go to docs/figures/.
"""

import os
from pathlib import Path

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import pandas as pd

import metaniche as mn
from metaniche.config import CompartmentParams, Config

DATA = Path(os.environ.get("METANICHE_DATA", "../shared/data"))
FIGURES = Path(__file__).parent / "figures"
pd.set_option("display.width", 110, "display.max_columns", 10, "display.precision", 2)

# 1. Two patients of the Keren 2018 TNBC cohort as one AnnData (pixels; 0.39 µm per pixel).
cells = pd.read_csv(DATA / "cells" / "keren2018_mibi_tnbc_funkycells.cells.csv.gz")
cells = cells[cells["sample_id"].isin([4, 5])]
adata = ad.AnnData(obs=pd.DataFrame({
    "cell_type": pd.Categorical(cells["cell_type"]),
    "patient": cells["sample_id"].astype(str).to_numpy()},
    index=cells["cell_id"].astype(str).to_numpy()))
adata.obsm["spatial"] = cells[["x", "y"]].to_numpy()
# One configuration for every call: 0.39 µm per pixel, a 50 µm invasive-border half-width.
config = Config(um_per_unit=0.39, compartments=CompartmentParams(border_um=50))
print(adata)

# 2. Tumour lesions and compartments, each patient on its own (library_key).
mn.tl.compartments(adata, "cell_type", library_key="patient", config=config)
print(pd.crosstab(adata.obs["patient"], adata.obs["compartment"]))

# 3. Densities (cells/mm²) per compartment, and the immune phenotype with its reason.
composition = mn.tl.composition(adata, "cell_type", library_key="patient", config=config)
whole = composition[composition["lesion_id"].isna()]
print(whole.pivot_table(index="cell_type", columns=["sample", "compartment"],
                        values="density_per_mm2").round(0).loc[["CD8T", "CD4T", "Macrophage"]])
calls = mn.tl.immune_phenotype(adata, "cell_type", library_key="patient",
                               effector_types=["CD8T"], config=config)
print(calls[["sample", "phenotype", "reason"]].to_string(index=False))

# 4. Gradients: density against distance to the tumour edge, and the trend test.
mn.tl.gradients(adata, "cell_type", library_key="patient", config=config)
stats = adata.uns["metaniche"]["gradient_stats"]
print(stats[stats["lesion_id"].isna() & stats["cell_type"].isin(["CD8T", "Macrophage"])]
      [["sample", "cell_type", "slope_per_100um", "p", "peak_um"]].to_string(index=False))

# 5. Neighbourhood enrichment (exact z, squidpy layout) and nearest distances.
mn.tl.nhood_enrichment(adata, "cell_type", library_key="patient", config=config)
z = adata.uns["cell_type_nhood_enrichment"]["4"]["zscore"]
types = list(adata.obs["cell_type"].cat.categories)
print(pd.DataFrame(z, index=types, columns=types).loc[["Tumor", "CD8T"], ["Tumor", "CD8T"]])
mn.tl.nearest_distances(adata, "cell_type", library_key="patient", config=config)
print(adata.obsm["nn_dist_um"].groupby(adata.obs["cell_type"], observed=True)["Tumor"]
      .median().loc[["CD8T", "Macrophage", "Tumor"]].round(1))

# 6. Plots (matplotlib Axes).
one = adata[adata.obs["patient"] == "4"].copy()
mn.tl.compartments(one, "cell_type", config=config)
mn.tl.co_occurrence(one, "cell_type", config=config)
for name, ax in {
    "tissue": mn.pl.tissue(one, "cell_type"),
    "composition": mn.pl.composition(adata, sample="4"),
    "gradients": mn.pl.gradients(adata, sample="4", cell_types=["CD8T", "Macrophage", "B"]),
    "nhood_enrichment": mn.pl.nhood_enrichment(adata, "cell_type", sample="4"),
    "co_occurrence": mn.pl.co_occurrence(one, "cell_type", clusters="CD8T"),
}.items():
    ax.figure.savefig(FIGURES / f"{name}.png", dpi=80)
    print(f"{name}: {ax.get_xlabel()!r} vs {ax.get_ylabel()!r}")
