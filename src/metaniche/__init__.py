"""metaniche: spatial immune architecture of tumours from single-cell spatial data.

``import metaniche as mn``: ``mn.tl`` (analysis tools on AnnData / DataFrame / SpatialData),
``mn.pl`` (plots returning matplotlib Axes), ``mn.read_run`` and ``mn.read_features`` (a run
directory back as AnnData / a feature table). They are imported on first use, so
``import metaniche`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "pl", "read_features", "read_run", "tl"]

_LAZY = {"tl": ("metaniche.tl", None), "pl": ("metaniche.pl", None),
         "read_run": ("metaniche._api.readrun", "read_run"),
         "read_features": ("metaniche._api.readrun", "read_features")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'metaniche' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
