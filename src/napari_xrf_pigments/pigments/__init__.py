"""Pigment library (Table 1 of the paper, its mock-up substitutes, binders) and stratigraphies.

Light to import: no PyMca. ``load_pigment_library()`` reads the built-in ``library.json``;
users extend it with files of the same form (``extra=``).
"""

from .library import (
    BUILTIN_PATH,
    Group,
    Mixture,
    Pigment,
    PigmentLibrary,
    PigmentLibraryError,
    load_pigment_library,
)
from .stratigraphy import (
    DEFAULT_BINDER,
    GROUND,
    Layer,
    Stratigraphy,
    ground_layer,
    stratigraphy_labels,
)

__all__ = [
    "BUILTIN_PATH",
    "DEFAULT_BINDER",
    "GROUND",
    "Group",
    "Layer",
    "Mixture",
    "Pigment",
    "PigmentLibrary",
    "PigmentLibraryError",
    "Stratigraphy",
    "ground_layer",
    "load_pigment_library",
    "stratigraphy_labels",
]
