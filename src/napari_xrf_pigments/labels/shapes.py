"""Labelled shapes and per-pixel labels: the label model (no geometry, no files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datasets.trainset import PigmentLabel, as_pigment_labels
from ..errors import InvalidDataError

SHAPE_TYPES = ("rectangle", "polygon", "ellipse")


#: Shape kinds napari can draw that enclose no area.
_OPEN_SHAPES = ("line", "path")


class LabelsError(InvalidDataError):
    """Shapes or labels that cannot give labelled spectra (the message says which and why)."""


@dataclass(frozen=True, eq=False)
class LabelledShape:
    """One shape and its label.

    Attributes
    ----------
    shape_type : {"rectangle", "polygon", "ellipse"}
    vertices : ndarray of float64, shape (k, 2)
        (row, column) in cube pixels.
    present : tuple of str or None
        Abbreviations of the pigments in the paint stack; ``()`` is bare ground, None means
        "not labelled yet".
    top : tuple of str
        Abbreviations of the pigments in the top layer (a subset of ``present``).
    note : str
    """

    shape_type: str
    vertices: np.ndarray
    present: tuple[str, ...] | None = None
    top: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self):
        kind = str(self.shape_type).lower()
        if kind in _OPEN_SHAPES:
            raise LabelsError(
                f"a {kind} shape encloses no pixels; label regions with rectangles, polygons or "
                "ellipses"
            )
        if kind not in SHAPE_TYPES:
            raise LabelsError(f"unknown shape type {self.shape_type!r} (use {', '.join(SHAPE_TYPES)})")
        v = np.asarray(self.vertices, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != 2:
            raise LabelsError(f"a {kind}'s vertices must be (row, column) pairs, got shape {v.shape}")
        need = 3 if kind == "polygon" else 4
        if v.shape[0] < need or (kind != "polygon" and v.shape[0] != 4):
            need_text = "at least 3" if need == 3 else "4"
            raise LabelsError(f"a {kind} needs {need_text} vertices, got {v.shape[0]}")
        if not np.all(np.isfinite(v)):
            raise LabelsError(f"a {kind} has NaN or infinite vertices")
        object.__setattr__(self, "shape_type", kind)
        object.__setattr__(self, "vertices", v)
        present = None if self.present is None else tuple(str(a) for a in self.present)
        top = tuple(str(a) for a in (self.top or ()))
        if present is None and top:
            raise LabelsError("a shape without a 'present' label cannot have top-layer pigments")
        if present is not None:
            extra = [a for a in top if a not in present]
            if extra:
                raise LabelsError(
                    f"top-layer pigments must also be present: {', '.join(extra)} "
                    f"(present: {', '.join(present) or 'none'})"
                )
        object.__setattr__(self, "present", present)
        object.__setattr__(self, "top", top)

    @property
    def labelled(self) -> bool:
        return self.present is not None

    @property
    def key(self):
        """What the label says, comparable between shapes (None when unlabelled)."""
        if self.present is None:
            return None
        return frozenset(self.present), frozenset(self.top)


def label_text(present, top=()) -> str:
    """Short human-readable label: ``"LW, VM (top VM)"``, ``"bare ground"``, ``"unlabelled"``."""
    if present is None:
        return "unlabelled"
    if not present:
        return "bare ground"
    text = ", ".join(present)
    return f"{text} (top {', '.join(top)})" if top else text


@dataclass(eq=False)
class ShapeLabels:
    """Labelled shapes over one cube (the content of a labels file).

    Attributes
    ----------
    pigments : tuple of PigmentLabel
        The label vocabulary.
    shapes : list of LabelledShape
    cube : dict
        Optional ``source`` (path) and ``shape`` ([rows, columns]) of the cube they were drawn on.
    path : str or None
        File they were read from.
    """

    pigments: tuple[PigmentLabel, ...]
    shapes: list[LabelledShape] = field(default_factory=list)
    cube: dict[str, Any] = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self):
        self.pigments = as_pigment_labels(self.pigments)
        self.shapes = list(self.shapes)
        known = set(self.abbreviations)
        for i, s in enumerate(self.shapes):
            unknown = sorted({a for a in (s.present or ()) + s.top if a not in known})
            if unknown:
                raise LabelsError(
                    f"shape {i} is labelled with {', '.join(unknown)}, which the labels' pigment "
                    f"list ({', '.join(self.abbreviations)}) does not have"
                )

    @property
    def abbreviations(self) -> list[str]:
        return [p.abbreviation for p in self.pigments]


@dataclass(eq=False)
class PixelLabels:
    """Per-pixel labels over a cube's (rows, columns).

    Attributes
    ----------
    pigments : tuple of PigmentLabel
        Column order of ``present``/``top``.
    present, top : ndarray of bool, shape (rows, columns, n_pigments)
        ``top`` is None when unknown.
    mask : ndarray of bool, shape (rows, columns)
        Labelled pixels (everything else carries no label).
    shape_index : ndarray of int32, shape (rows, columns) or None
        Shape that labelled each pixel (the first, where equally labelled shapes overlap); -1
        elsewhere. None for labels that do not come from shapes.
    source : dict
        Where the labels came from (``kind``: "shapes" or "truth", ``path``...).
    notes : list of str
        Things the user should know (e.g. shapes clipped at the cube's edge).
    """

    pigments: tuple[PigmentLabel, ...]
    present: np.ndarray
    top: np.ndarray | None
    mask: np.ndarray
    shape_index: np.ndarray | None = None
    source: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.pigments = as_pigment_labels(self.pigments)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(s) for s in self.mask.shape)

    @property
    def abbreviations(self) -> list[str]:
        return [p.abbreviation for p in self.pigments]

    @property
    def n_pixels(self) -> int:
        return int(self.mask.sum())
