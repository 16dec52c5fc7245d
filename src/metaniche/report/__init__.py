"""HTML report of a run directory."""

from metaniche.report.html import render_report

__all__ = ["render_report"]
