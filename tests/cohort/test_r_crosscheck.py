"""Cross-check against R (``make test-r``): spatstat's isotropic ``Lcross`` on spicyR's window
and spicyR's count-weighted ``lmerTest::lmer`` on the melanoma cohort.

Skipped when ``Rscript`` is not on the PATH (R 4.2 with spatstat, lme4, lmerTest and mgcv:
``apt-get install r-base-core r-cran-spatstat r-cran-lme4 r-cran-lmertest r-cran-mgcv``).
The R side is ``scripts/r/spicyr_crosscheck.R``. The weights are mgcv's, computed in R, and
given to our model: the smooth itself differs by design
(:mod:`metaniche.cohort.count_weights`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metaniche.analyses.relations.isotropic import Rectangle, ripley_cross_isotropic
from metaniche.cohort.weighted_mixed import fit_weighted_mixed

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "r" / "spicyr_crosscheck.R"

pytestmark = pytest.mark.skipif(
    shutil.which("Rscript") is None,
    reason="Rscript not found: install R with spatstat, lme4, lmerTest and mgcv to run the "
           "R cross-check (make test-r)")


def _rscript(*args: str) -> None:
    done = subprocess.run(["Rscript", str(SCRIPT), *args], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def melanoma(data_dir):
    return pd.read_csv(data_dir / "cells" / "melanoma_responders_spicyR.cells.csv.gz",
                       dtype={"sample_id": str})


@pytest.fixture(scope="module")
def ours(melanoma):
    types = sorted(melanoma["cell_type"].unique())
    rows = []
    for sample, image in melanoma.groupby("sample_id", sort=False):
        xy = image[["x", "y"]].to_numpy(np.float64)
        codes = pd.Categorical(image["cell_type"], categories=types).codes.astype(np.int64)
        result = ripley_cross_isotropic(xy, codes, len(types), Rectangle.image_frame(xy))
        counts = np.bincount(codes, minlength=len(types))
        for a, from_type in enumerate(types):
            for b, to_type in enumerate(types):
                rows.append((sample, image["patient_id"].iloc[0], image["condition"].iloc[0],
                             from_type, to_type, result.l_minus_r_mean[a, b], counts[a],
                             counts[b]))
    return pd.DataFrame(rows, columns=["sample", "subject", "condition", "from", "to", "value",
                                       "count1", "count2"])


def test_isotropic_lcross_equals_spatstat(melanoma, ours, tmp_path):
    cells = tmp_path / "cells.csv"
    melanoma[["sample_id", "x", "y", "cell_type"]].to_csv(cells, index=False)
    _rscript("lcross", str(cells), str(tmp_path / "lcross.csv"))
    reference = pd.read_csv(tmp_path / "lcross.csv", dtype={"sample": str})
    merged = reference.merge(ours, on=["sample", "from", "to"], how="left")
    assert len(merged) == len(reference) and merged["value_y"].notna().sum() > 0
    finite = merged["value_x"].notna()
    np.testing.assert_allclose(merged.loc[finite, "value_y"], merged.loc[finite, "value_x"],
                               atol=1e-6)


def test_count_weighted_mixed_model_equals_lmertest(ours, tmp_path):
    table = ours.assign(pair=ours["from"] + "__" + ours["to"])
    table[["sample", "subject", "condition", "pair", "value", "count1", "count2"]].to_csv(
        tmp_path / "table.csv", index=False)
    _rscript("lmer", str(tmp_path / "table.csv"), str(tmp_path / "weights.csv"),
             str(tmp_path / "coef.csv"))
    weights = pd.read_csv(tmp_path / "weights.csv", dtype={"sample": str})
    coefficients = pd.read_csv(tmp_path / "coef.csv").set_index("pair")
    worst_df = 0.0
    for pair, part in table.groupby("pair"):
        w = weights[weights["pair"] == pair].set_index("sample")["weight"]
        rows = part.set_index("sample").loc[w.index]
        x = np.column_stack([np.ones(len(rows)),
                             (rows["condition"] == "Responders").to_numpy(float)])
        fit = fit_weighted_mixed(rows["value"].to_numpy(), x, rows["subject"].to_numpy(),
                                 w.to_numpy())
        expected = coefficients.loc[pair]
        np.testing.assert_allclose([fit.coef[1], fit.se[1], fit.p[1]],
                                   expected[["estimate", "se", "p"]].to_numpy(float),
                                   rtol=1e-4, err_msg=pair)
        # Satterthwaite df: both sides differentiate the REML deviance numerically (lmerTest
        # with numDeriv's Richardson extrapolation at lme4's optimum, we by central
        # differences at ours), so df agree to 1e-3 (seen: ≤ 2.6e-4) and p to 1e-4.
        np.testing.assert_allclose(fit.df[1], float(expected["df"]), rtol=1e-3, err_msg=pair)
        worst_df = max(worst_df, abs(fit.df[1] / float(expected["df"]) - 1))
    print(f"largest relative df difference from lmerTest: {worst_df:.2e}")
