"""Stage ``contact``: does proximity change state? (``[contact]``).

Table ``state_changes`` (one row per focus type × outcome × partner type: the place-adjusted
contact effect, its interval, the model p, the two structure-respecting null p-values and the
BH q) and ``state_change_profiles`` (mean outcome by number of partners within the radius, per
compartment, for the top pairs). Feature ``contact_effect.<cell_type>.<marker>.<partner_type>``.
Methods in :mod:`metaniche.analyses.contact`; states come from ``[states.<name>]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from metaniche import tables as T
from metaniche.analyses.contact import contact_effects
from metaniche.analyses.states import call_states
from metaniche.config import Config
from metaniche.context import SampleContext, StageOutput
from metaniche.errors import InputError
from metaniche.features import feature_namer
from metaniche.phenotype import resolve_marker

__all__ = ["FEATURES", "contact_outcomes", "run"]

FEATURES: dict[str, tuple[str, str]] = {
    "contact_effect": ("per partner cell", "place-adjusted effect on a marker (change of "
                       "log1p intensity, [contact] transform) or state (log odds ratio) of a "
                       "cell type per partner cell within [contact] radius_um (or per e-fold "
                       "distance to the nearest partner with exposure = log_distance); "
                       "adjusted for compartment, a spline of the signed distance to the "
                       "border, lesion and local density"),
}
_name = feature_namer(FEATURES)


def contact_outcomes(context: SampleContext, config: Config,
                     ) -> tuple[pd.DataFrame, dict[str, tuple[str, ...] | None]]:
    """The outcome columns of ``[contact] markers`` (default: every marker column and state).

    Returns the outcomes (n_cells rows; numeric marker columns under the name given in the
    config, boolean state columns under the state's name) and, per state, the labels that may
    carry it.

    Raises
    ------
    InputError
        A declared marker is neither a state of ``[states]`` nor a column of the cell table.
    """
    params = config.contact
    rules = config.states.rules
    wanted = list(params.markers)
    columns = context.marker_columns()
    if not wanted:
        wanted = list(columns) + list(rules)
    states = [name for name in wanted if name in rules]
    out: dict[str, np.ndarray] = {}
    state_types: dict[str, tuple[str, ...] | None] = {}
    if states:
        calls = call_states(
            context.with_genes([rule.marker for rule in rules.values() if rule.marker]),
            context.labels, rules, context.name, config.states.cohort_thresholds)
        for name in states:
            out[name] = calls.positive[:, calls.names.index(name)].copy()
            state_types[name] = calls.cell_types[name]
    for name in wanted:
        if name in rules:
            continue
        try:
            column = resolve_marker(list(context.cells.columns) + context.gene_names, name)
        except InputError:
            raise InputError(f"sample '{context.name}': [contact] markers names '{name}', which "
                             f"is neither a state of [states] ({', '.join(rules) or 'none'}) "
                             "nor a marker column of the cell table (markers: "
                             f"{', '.join(columns[:12]) or 'none'}); fix the name or declare "
                             f"the state [states.{name}].") from None
        values = pd.to_numeric(context.marker_frame([column])[column], errors="coerce")
        out[name] = values.to_numpy(np.float64)
    return pd.DataFrame(out, index=pd.RangeIndex(len(context.cells))), state_types


def run(context: SampleContext) -> StageOutput:
    """Contact effects of every declared (or every) focus type × outcome × partner type."""
    config = context.config
    params = config.contact
    outcomes, state_types = contact_outcomes(context, config)
    if outcomes.shape[1] == 0:
        return StageOutput()
    result = context.compartments
    contact = contact_effects(
        context.coordinates, context.labels, outcomes, result.signed_distance_um,
        result.compartment, result.lesion_id, state_types=state_types,
        cell_types=params.cell_types, partner_types=params.partner_types,
        radius_um=params.contact_radius(config.relations), exposure=params.exposure,
        transform=params.transform, adjust=params.adjust, spline_knots=params.spline_knots,
        density_radius_um=params.density_radius_um, block_um=params.block_um,
        band_um=params.band_um, min_cells=params.min_cells, min_exposed=params.min_exposed,
        n_permutations=params.n_permutations, seed=params.seed,
        confidence=config.cohort.confidence, top_profiles=params.top_profiles)
    features = {_name("contact_effect", row.cell_type, row.marker, row.partner_type):
                float(row.effect) for row in contact.table.itertuples(index=False)}
    tables = {T.STATE_CHANGES: contact.table, T.STATE_CHANGE_PROFILES: contact.profiles}
    return StageOutput(tables=tables, features=features, warnings=list(contact.warnings))
