"""The named remodeling programs of :mod:`metaniche.studies.remodel` (a leaf: the command
line lists them without importing the simulator)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APPLIES_TO", "PROGRAMS", "TLS_AREA_PER_FOLD", "Program"]

#: Which patients a program acts on.
APPLIES_TO: tuple[str, ...] = ("responders", "non_responders", "all")
#: Intratumoral TLS: share of the core area covered per unit of (effect − 1).
TLS_AREA_PER_FOLD = 0.02


@dataclass(frozen=True)
class Program:
    """A named remodeling program.

    Attributes
    ----------
    name : str
    quantity : str
        What ``effect`` multiplies, in biological units.
    applies_to : {'responders', 'non_responders', 'all'}
    cell_type, compartment : str
        The cell type and compartment of the planted quantity (its truth is the density of
        ``cell_type`` in ``compartment``, cells/mm²).
    features : tuple of str
        Feature names whose change the power analysis tests; the first is the primary one.
    """

    name: str
    quantity: str
    applies_to: str
    cell_type: str
    compartment: str
    features: tuple[str, ...]

    @property
    def primary_feature(self) -> str:
        """The feature whose cohort test defines the study's power."""
        return self.features[0]


#: The named remodeling programs, by name (``metaniche power --help`` lists them).
PROGRAMS: dict[str, Program] = {p.name: p for p in (
    Program("cd8_core_infiltration",
            "CD8_T probability inside tumour × effect (core CD8_T density × effect), after "
            "moving the inside profile shift_um deeper (border→core shift)",
            "responders", "CD8_T", "core",
            ("density.core.CD8_T", "density.border.CD8_T", "effector_core_border_ratio")),
    Program("spp1_macrophage_loss",
            "SPP1+/GPNMB+ macrophage (GPNMB_macrophage) probability × effect everywhere "
            "(effect < 1 is a loss)",
            "responders", "GPNMB_macrophage", "border",
            ("density.border.GPNMB_macrophage", "density.core.GPNMB_macrophage")),
    Program("tls_intratumoral",
            f"intratumoral TLS covering {TLS_AREA_PER_FOLD:.0%} × (effect − 1) of each "
            "lesion's core (TLS composition, radius 60–100 µm)",
            "responders", "B", "core", ("density.core.B", "density.core.CD4_T")),
    Program("periphery_restriction",
            "Treg and Macrophage probability in the core × effect in non-responders "
            "(effect < 1 restricts them to the periphery)",
            "non_responders", "Treg", "core", ("density.core.Treg", "density.core.Macrophage")),
    Program("size_exclusion",
            "CD8_T inside tumour × exp(−(effect − 1) |d| R / 90,000 µm²): exclusion that grows "
            "with depth |d| and lesion radius R",
            "all", "CD8_T", "core", ("density.core.CD8_T", "effector_core_border_ratio")),
)}
