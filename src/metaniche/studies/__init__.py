"""Planned studies: virtual biopsies, pre/post-treatment remodeling and power.

- :mod:`metaniche.studies.biopsy`: needle cores and punches cut from any cell table;
- :mod:`metaniche.studies.agreement`: per-biopsy features against the whole slide;
- :mod:`metaniche.studies.remodel`: patient-level pre/post simulator with named programs;
- :mod:`metaniche.studies.design`: the ``[design]`` TOML of ``metaniche power``;
- :mod:`metaniche.studies.power`: power of a planned study over a design grid.
"""

__all__: list[str] = []
