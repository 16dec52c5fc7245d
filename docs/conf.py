"""Sphinx configuration of the API reference (``make docs``; warnings are errors)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import metaniche  # noqa: E402

project = "metaniche"
version = release = metaniche.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.autosummary"]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autosummary_generate = False
exclude_patterns = ["_build", "tutorial.md", "figures"]
html_theme = "alabaster"
nitpicky = False
