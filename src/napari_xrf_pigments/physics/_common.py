"""Stratigraphy -> plain numbers shared by the faithful and fast simulators (no PyMca)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidDataError
from ..pigments import Stratigraphy


@dataclass(frozen=True)
class ResolvedLayer:
    """A layer as the physics sees it.

    Attributes
    ----------
    components : tuple of str
        Library abbreviations (pigments and binder).
    fractions : tuple of float
        Mass fractions, sum 1.
    density : float
        g/cm3.
    thickness_cm : float
    """

    components: tuple[str, ...]
    fractions: tuple[float, ...]
    density: float
    thickness_cm: float

    @property
    def mass_thickness(self) -> float:
        """g/cm2."""
        return self.density * self.thickness_cm


def resolve_layers(stratigraphy, library) -> list[ResolvedLayer]:
    """Layers of a stratigraphy, top first, with compositions and densities resolved."""
    if not isinstance(stratigraphy, Stratigraphy):
        raise InvalidDataError(f"expected a Stratigraphy, got {type(stratigraphy).__name__}")
    out = []
    for layer in stratigraphy.layers:
        layer.check(library)
        fractions = layer.mass_fractions()
        out.append(ResolvedLayer(tuple(fractions), tuple(float(v) for v in fractions.values()),
                                 float(layer.density_g_cm3(library)),
                                 float(layer.thickness_um) * 1e-4))
    return out


def sin_angles(instrument) -> tuple[float, float]:
    return (float(np.sin(np.radians(instrument.incidence_deg))),
            float(np.sin(np.radians(instrument.takeoff_deg))))
