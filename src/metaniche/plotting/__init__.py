"""Drawing shared by the report and the notebook API (``metaniche.pl``).

One drawing function per figure kind, below both callers in the one-way layering
(analyses → features → cohort → plotting → report; ``metaniche._api`` is a facade over it):

- :mod:`metaniche.plotting.style`: colours, number formatting, ticks and log axes;
- :mod:`metaniche.plotting.prepare`: the data each figure shows, prepared once (minimum band
  area per gradient bin, bin merging, whole-sample rows, orderings, effector densities,
  pooled gradient profiles), used by the report's SVG charts and by ``mn.pl`` alike;
- :mod:`metaniche.plotting.tissue`: the tissue map drawer;
- :mod:`metaniche.plotting.cohort`: the cohort figure drawers (effector strip, gradient
  overlay, volcano panel, Kaplan–Meier panel).

The drawers are axes-level matplotlib functions: they take plain tables and arrays and an
``ax``, draw with the object-oriented API only (no pyplot) and return the Axes. The report
builds a figure, calls a drawer and saves; ``mn.pl`` pulls the tables out of an AnnData and
calls the same drawer on the user's Axes.
"""

__all__ = ["cohort", "prepare", "style", "tissue"]
