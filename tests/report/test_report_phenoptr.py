"""Issue 5 on real tissue: the phenoptr field's CD8+ and CD68+ border profiles, in the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metaniche.config import load_config
from metaniche.pipeline import run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "phenoptr_akoya_sample.toml"


def test_phenoptr_cd8_and_cd68_profiles_are_computed_and_plotted(data_dir, tmp_path):
    cells_file = data_dir / "cells" / "phenoptr_akoya_sample.cells.csv.gz"
    result = run([cells_file], tmp_path, load_config(EXAMPLE))
    (sample,) = result.samples
    assert result.samples[sample].status == "ok"
    gradients = pd.read_parquet(tmp_path / "tables" / "gradients.parquet")
    whole = gradients[gradients["lesion_id"].isna()]
    cells = pd.read_parquet(tmp_path / "cells" / f"{result.samples[sample].file_name}.parquet")
    for cell_type in ("CD8+", "CD68+"):
        profile = whole[whole["cell_type"] == cell_type].sort_values("bin_start_um")
        assert len(profile) > 0 and profile["n_cells"].sum() > 0
        # Independent count: the type's cells binned by their signed distance.
        edges = np.append(profile["bin_start_um"].to_numpy(), profile["bin_end_um"].iloc[-1])
        distance = cells.loc[cells["cell_type"] == cell_type, "signed_distance_um"].to_numpy()
        counted = np.histogram(distance[np.isfinite(distance)], bins=edges)[0]
        np.testing.assert_array_equal(profile["n_cells"].to_numpy(), counted)
        with_area = profile["area_mm2"] > 0
        np.testing.assert_allclose(
            profile.loc[with_area, "density_per_mm2"],
            profile.loc[with_area, "n_cells"] / profile.loc[with_area, "area_mm2"])
    page = (tmp_path / "report" / f"{result.samples[sample].file_name}.html").read_text()
    start = page.index('id="gradients"')
    section = page[start:page.index("</section>", start)]
    assert "CD8+" in section and "CD68+" in section
