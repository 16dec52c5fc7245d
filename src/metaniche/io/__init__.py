"""Reading and checking inputs: cell tables (one registry of readers), clinical tables."""

from metaniche.io.cells import SampleInput, read_samples
from metaniche.io.clinical import read_clinical
from metaniche.io.readers import READERS
from metaniche.io.validate import Problem, validate_clinical, validate_inputs

__all__ = ["READERS", "Problem", "SampleInput", "read_clinical", "read_samples",
           "validate_clinical", "validate_inputs"]
