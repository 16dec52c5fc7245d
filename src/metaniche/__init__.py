"""metaniche: spatial immune architecture of tumours from single-cell spatial data."""

__version__ = "0.1.0"
__all__ = ["__version__"]
