"""Reading and checking inputs: cell tables, clinical tables."""

from metaniche.io.cells import SampleInput, read_samples
from metaniche.io.clinical import read_clinical
from metaniche.io.validate import Problem, validate_inputs

__all__ = ["Problem", "SampleInput", "read_clinical", "read_samples", "validate_inputs"]
