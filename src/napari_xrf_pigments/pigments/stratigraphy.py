"""Paint layers and stratigraphies (top layer first), and the labels derived from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidDataError

DEFAULT_BINDER = "linseed_oil"
GROUND = "CC"


@dataclass(frozen=True, init=False)
class Layer:
    """One paint layer: a mixture of library pigments, optional binder, density, thickness.

    Parameters
    ----------
    pigments : mapping of str to float
        Library abbreviation to relative mass (normalised to sum 1 over the pigments; percent
        values are fine).
    thickness_um : float
        Layer thickness in micrometres, > 0.
    binder : str, optional
        Library abbreviation of the binder (default ``"linseed_oil"``), used when
        ``binder_fraction > 0``.
    binder_fraction : float, optional
        Mass fraction of binder in the layer, in [0, 1). The paper's mock-ups use 0.25
        (pigment:binder 3:1).
    density : float, optional
        Layer density in g/cm3. Default: volume-additive mixture of the components,
        ``1/rho = sum(w_k / rho_k)``.

    Attributes
    ----------
    pigments : tuple of (str, float)
        Normalised pigment fractions, in the order given.
    """

    pigments: tuple[tuple[str, float], ...]
    thickness_um: float
    binder: str
    binder_fraction: float
    density: float | None

    def __init__(self, pigments, thickness_um, binder=DEFAULT_BINDER, binder_fraction=0.0,
                 density=None):
        if isinstance(pigments, Mapping):
            items = list(pigments.items())
        else:
            items = [tuple(p) for p in pigments]
        if not items:
            raise InvalidDataError("a layer needs at least one pigment")
        try:
            values = np.array([float(v) for _, v in items])
        except (TypeError, ValueError):
            raise InvalidDataError(f"pigment fractions must be numbers: {items!r}") from None
        if not np.all(np.isfinite(values)) or np.any(values < 0) or not values.sum() > 0:
            raise InvalidDataError(f"pigment fractions must be >= 0 with a positive sum: {items!r}")
        values = values / values.sum()
        merged: dict[str, float] = {}
        for (abbr, _), v in zip(items, values):
            merged[str(abbr)] = merged.get(str(abbr), 0.0) + float(v)
        thickness_um = float(thickness_um)
        if not (np.isfinite(thickness_um) and thickness_um > 0):
            raise InvalidDataError(f"layer thickness must be > 0 um, got {thickness_um}")
        binder_fraction = float(binder_fraction)
        if not (0.0 <= binder_fraction < 1.0):
            raise InvalidDataError(f"binder fraction must be in [0, 1), got {binder_fraction}")
        if density is not None:
            density = float(density)
            if not (np.isfinite(density) and density > 0):
                raise InvalidDataError(f"layer density must be > 0 g/cm3, got {density}")
        object.__setattr__(self, "pigments", tuple(merged.items()))
        object.__setattr__(self, "thickness_um", thickness_um)
        object.__setattr__(self, "binder", str(binder))
        object.__setattr__(self, "binder_fraction", binder_fraction)
        object.__setattr__(self, "density", density)

    def mass_fractions(self) -> dict[str, float]:
        """Mass fraction of every component (pigments and binder) in the layer, sum 1."""
        scale = 1.0 - self.binder_fraction
        out = {abbr: frac * scale for abbr, frac in self.pigments}
        if self.binder_fraction > 0:
            out[self.binder] = out.get(self.binder, 0.0) + self.binder_fraction
        return out

    def density_g_cm3(self, library) -> float:
        """The layer density: given, or volume-additive from the library densities."""
        if self.density is not None:
            return self.density
        return 1.0 / sum(w / library[abbr].density for abbr, w in self.mass_fractions().items())

    def mass_thickness_g_cm2(self, library) -> float:
        """Density times thickness, g/cm2."""
        return self.density_g_cm3(library) * self.thickness_um * 1e-4

    def classes(self, library) -> set[str]:
        """Label classes of the pigments in this layer (verdigris counts as EG)."""
        return {library[a].label for a, f in self.pigments if f > 0 and library[a].label}

    def check(self, library) -> None:
        """Raise if a component is unknown to the library or the binder is not a binder."""
        for abbr, _ in self.pigments:
            if abbr not in library:
                raise InvalidDataError(
                    f"layer pigment {abbr!r} is not in the pigment library "
                    f"(known: {', '.join(library.abbreviations)})"
                )
        if self.binder_fraction > 0:
            if self.binder not in library:
                raise InvalidDataError(f"binder {self.binder!r} is not in the pigment library")

    def to_dict(self) -> dict[str, Any]:
        return {
            "pigments": dict(self.pigments),
            "thickness_um": self.thickness_um,
            "binder": self.binder,
            "binder_fraction": self.binder_fraction,
            "density": self.density,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Layer:
        return cls(d["pigments"], d["thickness_um"], d.get("binder", DEFAULT_BINDER),
                   d.get("binder_fraction", 0.0), d.get("density"))


def ground_layer(thickness_um: float = 150.0, *, binder_fraction: float = 0.0,
                 binder: str = DEFAULT_BINDER) -> Layer:
    """The calcium-carbonate ground of the paper's mock-ups (150-200 um)."""
    return Layer({GROUND: 1.0}, thickness_um, binder=binder, binder_fraction=binder_fraction)


@dataclass(frozen=True, init=False)
class Stratigraphy:
    """Layers from the top (first, facing the instrument) to the bottom (usually the ground).

    Parameters
    ----------
    layers : sequence of Layer
        Top first. The physics treats the last layer like any other (finite thickness).
    """

    layers: tuple[Layer, ...]

    def __init__(self, layers: Sequence[Layer]):
        layers = tuple(layers)
        if not layers:
            raise InvalidDataError("a stratigraphy needs at least one layer")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise InvalidDataError(f"expected Layer objects, got {type(layer).__name__}")
        object.__setattr__(self, "layers", layers)

    @classmethod
    def with_ground(cls, *layers: Layer, ground_um: float = 150.0) -> Stratigraphy:
        """Paint layers (top first) over a CaCO3 ground of ``ground_um`` micrometres."""
        return cls((*layers, ground_layer(ground_um)))

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def check(self, library) -> None:
        for layer in self.layers:
            layer.check(library)

    def present_classes(self, library) -> set[str]:
        """Label classes present in any layer."""
        out: set[str] = set()
        for layer in self.layers:
            out |= layer.classes(library)
        return out

    def top_classes(self, library) -> set[str]:
        """Label classes present in the top layer."""
        return self.layers[0].classes(library)

    def labels(self, library,
               classes: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Multi-hot labels.

        Parameters
        ----------
        library : PigmentLibrary
        classes : sequence of str, optional
            Label order, classes or groups (a group counts where any member does); default
            ``library.classes``.

        Returns
        -------
        present, top : ndarray of bool, shape (n_classes,)
            Class in any layer; class in the top layer.
        """
        classes = library.classes if classes is None else tuple(classes)
        anywhere = self.present_classes(library)
        top = self.top_classes(library)
        members = [library.members_of(c) for c in classes]
        return (np.array([any(m in anywhere for m in ms) for ms in members], dtype=bool),
                np.array([any(m in top for m in ms) for ms in members], dtype=bool))

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [layer.to_dict() for layer in self.layers]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Stratigraphy:
        return cls([Layer.from_dict(x) for x in d["layers"]])


def stratigraphy_labels(stratigraphies, library, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot labels of many stratigraphies.

    Parameters
    ----------
    stratigraphies : sequence of Stratigraphy
    library : PigmentLibrary
    classes : sequence of str, optional
        Class order; default ``library.classes`` (verdigris and sodium arsenite count as EG).

    Returns
    -------
    present, top : ndarray of bool, shape (n_stratigraphies, n_classes)
        Class in any layer; class in the top layer.
    """
    classes = library.classes if classes is None else tuple(classes)
    pairs = [s.labels(library, classes) for s in stratigraphies]
    if not pairs:
        empty = np.zeros((0, len(classes)), dtype=bool)
        return empty, empty.copy()
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
