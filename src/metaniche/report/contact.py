"""Report sections of the contact test (does proximity change state?).

Sample page: the ranked ``state_changes`` rows of the sample and, for its top pairs, the mean
marker (or state fraction) of the focus cells by number of partner cells within the radius,
one panel per compartment (``state_change_profiles``). Cohort page: the ranked
``cohort/state_changes`` rows and the same profiles pooled over samples (cell-weighted).
Each builder returns None when its table is absent or empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

from metaniche import tables as T
from metaniche.analyses.compartments import COMPARTMENTS
from metaniche.report import svg
from metaniche.report.rundata import RunData
from metaniche.report.sections import Section, Table, inline_svg, save_svg

__all__ = ["contact_cohort_section", "contact_sample_section"]

#: Rows of the ranked tables.
MAX_ROWS = 20
#: Pairs drawn as exposure profiles.
MAX_PAIRS = 3
_PAIR = ["cell_type", "marker", "partner_type"]
_SAMPLE_COLUMNS = ["cell_type", "marker", "partner_type", "n_cells", "n_exposed", "effect",
                   "ci_low", "ci_high", "p", "p_perm", "p_shift", "q"]
_COHORT_COLUMNS = ["cell_type", "marker", "partner_type", "term", "contrast", "model",
                   "effect", "ci_low", "ci_high", "p", "q", "n_samples", "n_patients"]


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "–" if np.isnan(value) else svg.fmt(float(value))
    return "–" if value is None else str(value)


def _ranked(rows: pd.DataFrame, columns: list[str]) -> Table:
    ranked = rows.sort_values("p", na_position="last").head(MAX_ROWS)
    shown = [c for c in columns if c in ranked.columns]
    return Table(shown, [[_cell(v) for v in row] for row in ranked[shown].itertuples(
        index=False)], sortable=True)


def _profile_chart(profiles: pd.DataFrame, pairs: pd.DataFrame, report_dir: Path | None,
                   stem: str) -> tuple[Markup, str] | None:
    """Small multiples: one panel per (top pair, compartment), mean outcome vs partners."""
    panels = []
    for pair in pairs.itertuples(index=False):
        part = profiles[(profiles["cell_type"] == pair.cell_type)
                        & (profiles["marker"] == pair.marker)
                        & (profiles["partner_type"] == pair.partner_type)]
        for compartment in COMPARTMENTS:
            rows = part[part["compartment"] == compartment]
            if rows.empty:
                continue
            pooled = rows.groupby("n_partners").apply(
                lambda g: pd.Series({"mean": np.average(g["mean"], weights=g["n_cells"]),
                                     "n": g["n_cells"].sum()}), include_groups=False)
            # two lines: the pair, then the compartment (one line cut off the compartment,
            # which is what tells a row's three panels apart)
            panels.append((f"{pair.marker} in {pair.cell_type} · {pair.partner_type}\n"
                           f"{compartment}", pooled.index.to_numpy(np.float64),
                           pooled["mean"].to_numpy(np.float64)))
    if not panels:
        return None
    chart = svg.small_multiples(panels, title="Marker vs partners within the contact radius",
                                xlabel="partner cells within the radius (3 = three or more)",
                                ylabel="mean marker (log1p) or state fraction", ncols=3)
    # a sample's chart lives once, inline in its page; the cohort's is also a file
    return save_svg(chart, report_dir, stem) if report_dir is not None else inline_svg(
        chart, stem)


def contact_sample_section(run: RunData, sample: str, stem: str,
                           report_dir: Path) -> Section | None:
    """Ranked contact effects of one sample and the exposure profiles of its top pairs."""
    rows = run.sample_rows(T.STATE_CHANGES, sample)
    if rows is None or rows.empty:
        return None
    profiles = run.sample_rows(T.STATE_CHANGE_PROFILES, sample)
    top = rows.sort_values("p").head(MAX_PAIRS)[_PAIR]
    drawn = (None if profiles is None or profiles.empty
             else _profile_chart(profiles, top, None, f"{stem}.contact"))
    first = rows.iloc[0]
    caption = (f"Does contact change state? Effect of each partner type on a marker or state "
               f"of a cell type, per partner cell ({first['exposure']}), adjusted for "
               f"{first['adjusted_for']}; linear model for intensities (change of the "
               "transformed marker), logistic for states (log odds ratio); 95 % intervals "
               "from standard errors clustered on spatial blocks. p: the model; p_perm: "
               "partner labels shuffled within compartment × distance band; p_shift: the "
               "partner pattern shifted on the torus (– where the tissue does not fill its "
               "box); q: Benjamini–Hochberg over the sample. Ranked by p; full table: "
               "tables/state_changes.parquet. Panels: the top pairs' mean outcome by number "
               "of partners within the radius, in each compartment.")
    section = Section("contact", "Does contact change state?", caption=caption,
                      table=_ranked(rows, _SAMPLE_COLUMNS))
    if drawn is not None:
        section.svg, section.download = drawn
    return section


def contact_cohort_section(run: RunData, report_dir: Path) -> Section | None:
    """Ranked cohort contact effects (mixed model over samples) and pooled profiles."""
    table = run.cohort_table(T.STATE_CHANGES)
    if table is None or table.empty:
        return None
    section = Section(
        "contact", "Does contact change state? (cohort)", table=_ranked(table,
                                                                        _COHORT_COLUMNS),
        caption="Per pair, term contact: the mean of the per-sample place-adjusted contact "
                "effects from a linear mixed model with a patient random intercept (t on "
                "patients − 1 df; a one-sample t-test when no patient has two samples); "
                "term contact:response: their difference between response groups in SDs "
                "of the per-sample effects (mixed model; Student's t-test when no patient "
                "has two samples; column model). q: Benjamini–Hochberg within each term. "
                "Full table: cohort/state_changes.parquet.")
    profiles = run.table(T.STATE_CHANGE_PROFILES)
    contact_rows = table[table["term"] == "contact"].sort_values("p")
    if profiles is not None and not profiles.empty and not contact_rows.empty:
        drawn = _profile_chart(profiles, contact_rows.head(MAX_PAIRS)[_PAIR], report_dir,
                               "cohort.contact")
        if drawn is not None:
            section.svg, path = drawn
            section.files = [path]
    return section
