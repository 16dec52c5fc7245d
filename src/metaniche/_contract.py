"""Names of the cell-table contract, shared by every module (imports nothing from metaniche).

The standardised cell table that :func:`metaniche.io.read_samples` returns starts with the
:data:`CONTRACT_COLUMNS`; every other column is carried through from the input under its own
name, except the export's own tissue segmentation, which is carried under
:data:`TISSUE_CATEGORY`. :data:`READER_NAMES` lists the registered input readers (the
registry itself, with labels, signatures and mappers, is :data:`metaniche.io.readers.READERS`,
which checks at import that its names are exactly these, in this order); the configuration
validates ``format`` against :data:`INPUT_FORMATS` without importing the readers.
"""

from __future__ import annotations

__all__ = [
    "AUTO_FORMAT",
    "CELL_ID",
    "CELL_TYPE",
    "CONTRACT_COLUMNS",
    "INPUT_FORMATS",
    "READER_NAMES",
    "SAMPLE",
    "TISSUE_CATEGORY",
    "X",
    "Y",
]

#: Sample id column (str).
SAMPLE = "sample"
#: Cell id column (str, unique within a sample).
CELL_ID = "cell_id"
#: Centroid x in µm (float64).
X = "x"
#: Centroid y in µm (float64).
Y = "y"
#: Phenotype label column (str).
CELL_TYPE = "cell_type"
#: Leading columns of every standardised cell table, in this order; never marker columns.
CONTRACT_COLUMNS: tuple[str, ...] = (SAMPLE, CELL_ID, X, Y, CELL_TYPE)

#: Column holding the export's own tissue class per cell (inForm ``Tissue Category``, HALO
#: ``Classifier Label``), text as in the file (e.g. ``Tumor``/``Stroma``); absent when the
#: export has none. Carried through unchanged; no analysis uses it yet.
TISSUE_CATEGORY = "tissue_category"

#: Registered input readers, in the order ``--format auto`` tries their signatures.
READER_NAMES: tuple[str, ...] = ("table", "inform", "halo", "codex", "cellprofiler",
                                 "mcmicro", "scimap", "squidpy", "spatialdata", "xenium",
                                 "cosmx", "merscope", "visium")
#: ``format`` / ``--format`` value that detects the reader from the file.
AUTO_FORMAT = "auto"
#: Every accepted ``format`` value.
INPUT_FORMATS: tuple[str, ...] = (AUTO_FORMAT, *READER_NAMES)
