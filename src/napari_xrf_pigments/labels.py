"""Labelled regions of a cube: shapes with pigment labels, their file, and the labelled spectra.

Finetuning (paper sections 2.4, 4.1) needs spectra whose pigments are known. Users draw shapes
over a scanned mock-up and label each one: which pigments are in the paint stack ("present")
and which of them are in the top layer. A pixel belongs to a shape when its centre lies inside
the shape or on its border (napari puts pixel centres on integer coordinates).

Labels file (JSON, format ``napari-xrf-pigments/labels``, version 1)::

    {
      "format": "napari-xrf-pigments/labels",
      "format_version": 1,
      "pigments": [{"abbreviation": "VM", "name": "Vermilion"}, ...],
      "coordinates": "cube pixels (row, column); pixel centres on integers",
      "cube": {"source": "mockup.h5", "shape": [39, 57]},
      "shapes": [
        {"type": "rectangle", "vertices": [[2.5, 2.5], [2.5, 8.5], [8.5, 8.5], [8.5, 2.5]],
         "present": ["LW", "VM"], "top": ["VM"], "note": "Top 4 over Bottom 1A"},
        {"type": "polygon", "vertices": [[r, c], ...], "present": [], "top": []},
        ...
      ]
    }

- ``pigments`` is the label vocabulary: a labelled shape says, for each of them, whether it is
  present; pigments not listed in ``present`` are absent. ``present: []`` is bare ground.
  ``present: null`` marks a shape not labelled yet (kept in the file, refused by extraction).
- ``type`` is ``rectangle`` (4 corners, may be rotated), ``polygon`` (>= 3 vertices) or
  ``ellipse`` (the 4 corners of its bounding box, as napari stores it).
- ``top`` must be a subset of ``present``. ``cube`` is optional; when it records a shape,
  extraction from a cube of another size is refused.

The ground-truth file of the mock-up simulator (``/present/<ABBR>``, ``/top/<ABBR>`` boolean
(rows, columns) maps) is read as per-pixel labels of every pixel (:func:`labels_from_truth`);
:func:`read_labels` tells the two apart by content. Core module: no napari, no Qt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidDataError, UnreadableFileError
from .trainset import PigmentLabel, TrainingSet, as_pigment_labels

LABELS_FORMAT = "napari-xrf-pigments/labels"
LABELS_VERSION = 1
SHAPE_TYPES = ("rectangle", "polygon", "ellipse")
#: Shape kinds napari can draw that enclose no area.
_OPEN_SHAPES = ("line", "path")
#: Largest amount of labelled spectra (float32 bytes) extracted into memory.
MAX_EXTRACT_BYTES = 4 * 2**30
# Tolerance (pixels) for "on the border": vertices typed as x.5 must not lose pixels to rounding.
_EPS = 1e-6


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
    present: tuple | None = None
    top: tuple = ()
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

    pigments: tuple
    shapes: list = field(default_factory=list)
    cube: dict = field(default_factory=dict)
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

    pigments: tuple
    present: np.ndarray
    top: np.ndarray | None
    mask: np.ndarray
    shape_index: np.ndarray | None = None
    source: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

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


# -- rasterising -------------------------------------------------------------------------------


def _window(vertices, image_shape):
    """Row and column ranges (slices) of the pixel centres the shape's bounding box can hold."""
    lo = np.ceil(vertices.min(axis=0) - _EPS).astype(int)
    hi = np.floor(vertices.max(axis=0) + _EPS).astype(int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(image_shape) - 1)
    return slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1)


def shape_mask(shape: LabelledShape, image_shape) -> np.ndarray:
    """Pixels whose centre lies inside ``shape`` or on its border.

    Parameters
    ----------
    shape : LabelledShape
        Vertices in pixel coordinates (row, column).
    image_shape : (rows, columns)

    Returns
    -------
    ndarray of bool, shape (rows, columns)
        Pixels outside the image are dropped.
    """
    rows, cols = (int(s) for s in image_shape)
    out = np.zeros((rows, cols), dtype=bool)
    v = shape.vertices
    rs, cs = _window(v, (rows, cols))
    if rs.stop <= rs.start or cs.stop <= cs.start:
        return out
    rr, cc = np.meshgrid(np.arange(rs.start, rs.stop), np.arange(cs.start, cs.stop), indexing="ij")
    points = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.float64)
    if shape.shape_type == "ellipse":
        inside = _in_ellipse(v, points)
    elif shape.shape_type == "rectangle" and _axis_aligned(v):
        # The bounding-box test above already is the whole answer.
        inside = np.ones(points.shape[0], dtype=bool)
    else:
        inside = _in_polygon(v, points)
    out[rs, cs] = inside.reshape(rr.shape)
    return out


def _axis_aligned(v) -> bool:
    return all(np.unique(np.round(v[:, k] / _EPS)).size == 2 for k in (0, 1))


def _in_polygon(v, points) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    path = MplPath(v, closed=False)
    # contains_points grows the polygon for one sign of ``radius`` and shrinks it for the other
    # (depending on the vertex order): either way, one of the two counts the border as inside.
    return path.contains_points(points, radius=_EPS) | path.contains_points(points, radius=-_EPS)


def _in_ellipse(v, points) -> np.ndarray:
    # napari stores an ellipse as the 4 corners of its (possibly rotated) bounding box.
    centre = v.mean(axis=0)
    a_vec, b_vec = (v[1] - v[0]) / 2.0, (v[2] - v[1]) / 2.0
    a, b = np.linalg.norm(a_vec), np.linalg.norm(b_vec)
    if a < _EPS or b < _EPS:
        return np.zeros(points.shape[0], dtype=bool)
    d = points - centre
    u = d @ (a_vec / a) / a
    w = d @ (b_vec / b) / b
    return u * u + w * w <= 1.0 + _EPS


def _describe(i: int, shape: LabelledShape) -> str:
    lo, hi = shape.vertices.min(axis=0), shape.vertices.max(axis=0)
    return (
        f"shape {i} ({shape.shape_type}, rows {lo[0]:g}..{hi[0]:g}, columns {lo[1]:g}..{hi[1]:g}, "
        f"{label_text(shape.present, shape.top)})"
    )


def rasterise(labels: ShapeLabels, image_shape, *, pigments=None) -> PixelLabels:
    """Turn labelled shapes into per-pixel labels, checking them.

    Parameters
    ----------
    labels : ShapeLabels
    image_shape : (rows, columns)
        Pixels of the cube.
    pigments : sequence, optional
        Label columns to produce (default: the labels' vocabulary). Every one must be in the
        vocabulary.

    Returns
    -------
    PixelLabels
        Shapes partly outside the cube are clipped (with a note).

    Raises
    ------
    LabelsError
        Listing every problem: unlabelled shapes, shapes outside the cube or covering no pixel
        centre, and overlapping shapes with different labels.
    """
    rows, cols = (int(s) for s in image_shape)
    vocab = labels.abbreviations
    pigments = labels.pigments if pigments is None else as_pigment_labels(pigments)
    missing = [p.abbreviation for p in pigments if p.abbreviation not in vocab]
    if missing:
        raise LabelsError(
            f"the labels do not say whether {', '.join(missing)} is present (their pigments: "
            f"{', '.join(vocab)}); label with the model's pigment list"
        )
    if not labels.shapes:
        raise LabelsError("the labels hold no shapes")
    column = {p.abbreviation: j for j, p in enumerate(pigments)}
    present = np.zeros((rows, cols, len(pigments)), dtype=bool)
    top = np.zeros_like(present)
    owner = np.full((rows, cols), -1, dtype=np.int32)
    problems, notes = [], []
    for i, s in enumerate(labels.shapes):
        if not s.labelled:
            problems.append(f"{_describe(i, s)} has no label yet: label it or delete it")
            continue
        lo, hi = s.vertices.min(axis=0), s.vertices.max(axis=0)
        if hi[0] < -0.5 or hi[1] < -0.5 or lo[0] > rows - 0.5 or lo[1] > cols - 0.5:
            problems.append(
                f"{_describe(i, s)} lies outside the cube (rows 0..{rows - 1}, columns "
                f"0..{cols - 1}); was it drawn on another layer or image?"
            )
            continue
        m = shape_mask(s, (rows, cols))
        if not m.any():
            problems.append(f"{_describe(i, s)} covers no pixel centre: draw it larger")
            continue
        if lo[0] < -0.5 or lo[1] < -0.5 or hi[0] > rows - 0.5 or hi[1] > cols - 0.5:
            notes.append(
                f"{_describe(i, s)} extends beyond the cube; only its {int(m.sum())} pixels "
                "inside are used"
            )
        taken = m & (owner >= 0)
        for o in np.unique(owner[taken]):
            other = labels.shapes[o]
            if other.key != s.key:
                n = int(np.sum(taken & (owner == o)))
                problems.append(
                    f"shapes {o} and {i} overlap on {n} pixel{'s' if n != 1 else ''} with different "
                    f"labels ({label_text(other.present, other.top)} vs "
                    f"{label_text(s.present, s.top)}): move them apart or give them one label"
                )
        new = m & (owner < 0)
        owner[new] = i
        for a in s.present:
            if a in column:
                present[new, column[a]] = True
        for a in s.top:
            if a in column:
                top[new, column[a]] = True
    if problems:
        head = f"{len(problems)} problem{'s' if len(problems) > 1 else ''} with the labelled shapes"
        if labels.path:
            head += f" of {labels.path}"
        raise LabelsError(head + ":\n  " + "\n  ".join(problems))
    source = {"kind": "shapes", "path": labels.path, "n_shapes": len(labels.shapes)}
    return PixelLabels(pigments, present, top, owner >= 0, owner, source, notes)


# -- ground-truth maps --------------------------------------------------------------------------


def labels_from_truth(truth, *, pigments=None) -> PixelLabels:
    """Per-pixel labels from mock-up ground truth: every pixel is labelled.

    Parameters
    ----------
    truth : dict or str or Path
        ``{"present": {abbr: (rows, columns) bool}, "top": {...}}`` as returned by
        :func:`~napari_xrf_pigments.datasets.mockup.simulate_mockup` /
        :func:`~napari_xrf_pigments.datasets.mockup.read_truth`, or the path of a truth file.
    pigments : sequence, optional
        Label columns (default: the truth's pigments, in file order).

    Returns
    -------
    PixelLabels
        A pixel where every map is false is bare ground.
    """
    path = None
    names = {}
    if not isinstance(truth, dict):
        from .datasets.mockup import read_truth

        path = str(truth)
        names = _truth_names(truth)
        truth = read_truth(truth)
    maps = truth.get("present") or {}
    if not maps:
        raise LabelsError(f"the ground truth{' ' + path if path else ''} has no /present maps")
    shapes = {np.shape(m) for m in maps.values()} | {np.shape(m) for m in (truth.get("top") or {}).values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise LabelsError(f"the ground-truth maps must all be 2-D of one shape, got {sorted(shapes)}")
    if pigments is None:
        # The file's pigment list gives the order (HDF5 groups list their members sorted).
        order = [a for a in names if a in maps] + [a for a in maps if a not in names]
        pigments = [(a, names.get(a, a)) for a in order]
    pigments = as_pigment_labels(pigments)
    missing = [p.abbreviation for p in pigments if p.abbreviation not in maps]
    if missing:
        raise LabelsError(
            f"the ground truth has no map for {', '.join(missing)} (it has {', '.join(maps)})"
        )
    present = np.stack([np.asarray(maps[p.abbreviation], dtype=bool) for p in pigments], axis=-1)
    top = None
    tops = truth.get("top") or {}
    if tops and all(p.abbreviation in tops for p in pigments):
        top = np.stack([np.asarray(tops[p.abbreviation], dtype=bool) for p in pigments], axis=-1)
        if np.any(top & ~present):
            raise LabelsError("the ground truth marks top-layer pigments that are not present")
    mask = np.ones(present.shape[:2], dtype=bool)
    return PixelLabels(pigments, present, top, mask, None, {"kind": "truth", "path": path})


def _runs(index) -> list[tuple[int, int]]:
    """(start, stop) of the runs of equal values along a 1-D array."""
    edges = np.flatnonzero(np.diff(index)) + 1
    bounds = np.concatenate([[0], edges, [index.size]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def strip_shapes(truth, *, inset: int = 0, pigments=None) -> ShapeLabels:
    """Rectangles over every uniform region of a crossed-strip mock-up, labelled from its truth.

    What a user who knows a mock-up's recipes draws: one rectangle per strip intersection, per
    stretch of exposed bottom strip, of top strip over the ground, and of bare ground.

    Parameters
    ----------
    truth : dict or str or Path
        From :func:`~napari_xrf_pigments.datasets.mockup.simulate_mockup` (``present``, ``top``,
        ``top_index``, ``bottom_index``), or a ground-truth file (with ``/strips``).
    inset : int
        Pixels left out along every edge of a region (a cautious labeller's margin); regions
        too small for it get no shape.
    pigments : sequence, optional
        Label vocabulary (default the truth's pigments).

    Returns
    -------
    ShapeLabels
    """
    if not isinstance(truth, dict):
        import h5py

        from .datasets.mockup import read_truth

        path = truth
        truth = read_truth(path)
        with h5py.File(path, "r") as h5:
            if "strips" in h5:
                truth["top_index"] = h5["strips/top_index"][()]
                truth["bottom_index"] = h5["strips/bottom_index"][()]
        names = _truth_names(path)
        if pigments is None and names:
            pigments = [(a, names[a]) for a in names if a in truth["present"]]
    for key in ("top_index", "bottom_index", "present"):
        if key not in truth:
            raise LabelsError(f"the ground truth lacks {key!r}: it is not a crossed-strip mock-up")
    top_index, bottom_index = np.asarray(truth["top_index"]), np.asarray(truth["bottom_index"])
    px = labels_from_truth(truth, pigments=pigments)
    abbrs = px.abbreviations
    shapes = []
    # Top strips run along rows, bottom strips along columns: the regions are a grid of cells.
    for r0, r1 in _runs(top_index[:, 0]):
        for c0, c1 in _runs(bottom_index[0]):
            r0i, r1i, c0i, c1i = r0 + inset, r1 - 1 - inset, c0 + inset, c1 - 1 - inset
            if r1i < r0i or c1i < c0i:
                continue
            cell = (slice(r0i, r1i + 1), slice(c0i, c1i + 1))
            first = px.present[r0i, c0i]
            if not (px.present[cell] == first).all():
                raise LabelsError(
                    f"the ground truth is not uniform over rows {r0}-{r1 - 1}, columns {c0}-{c1 - 1}"
                )
            present = tuple(a for a, on in zip(abbrs, first) if on)
            top = () if px.top is None else tuple(a for a, on in zip(abbrs, px.top[r0i, c0i]) if on)
            top_row, bottom_row, left, right = r0i - 0.5, r1i + 0.5, c0i - 0.5, c1i + 0.5
            v = [[top_row, left], [top_row, right], [bottom_row, right], [bottom_row, left]]
            shapes.append(LabelledShape("rectangle", v, present, top))
    return ShapeLabels(px.pigments, shapes, {"shape": list(top_index.shape)})


def _truth_names(path) -> dict:
    """Abbreviation -> full name from a truth file's ``pigments`` attribute (best effort)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("pigments")
        raw = raw.decode() if isinstance(raw, bytes) else raw
        return {p.abbreviation: p.name for p in as_pigment_labels(json.loads(raw))} if raw else {}
    except (OSError, ValueError, TypeError, InvalidDataError):
        return {}


# -- files --------------------------------------------------------------------------------------


def _shape_to_json(s: LabelledShape) -> dict:
    return {
        "type": s.shape_type,
        "vertices": [[float(r), float(c)] for r, c in s.vertices],
        "present": None if s.present is None else list(s.present),
        "top": list(s.top),
        "note": s.note,
    }


def labels_to_json(labels: ShapeLabels) -> dict:
    """The labels file content as a JSON-ready dict (layout in the module docstring)."""
    out = {
        "format": LABELS_FORMAT,
        "format_version": LABELS_VERSION,
        "pigments": [p._asdict() for p in labels.pigments],
        "coordinates": "cube pixels (row, column); pixel centres on integers",
    }
    if labels.cube:
        out["cube"] = dict(labels.cube)
    out["shapes"] = [_shape_to_json(s) for s in labels.shapes]
    return out


def labels_from_json(content: dict, *, path=None) -> ShapeLabels:
    """Inverse of :func:`labels_to_json`; raises :class:`LabelsError` for a malformed content."""
    where = f"{path}: " if path else ""
    if not isinstance(content, dict) or content.get("format") != LABELS_FORMAT:
        raise LabelsError(f"{where}not a napari-xrf-pigments labels file (format {LABELS_FORMAT!r})")
    version = content.get("format_version")
    if not isinstance(version, int) or version > LABELS_VERSION:
        raise LabelsError(f"{where}labels format version {version!r} is newer than this package reads")
    try:
        pigments = as_pigment_labels(content["pigments"])
        shapes = []
        for i, entry in enumerate(content.get("shapes", [])):
            try:
                shapes.append(
                    LabelledShape(
                        entry["type"], entry["vertices"], entry.get("present"),
                        entry.get("top") or (), str(entry.get("note") or ""),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise LabelsError(f"shape {i}: {exc}") from None
            except LabelsError as exc:
                raise LabelsError(f"shape {i}: {exc}") from None
        cube = content.get("cube") or {}
        if not isinstance(cube, dict):
            raise LabelsError("'cube' must be an object")
        return ShapeLabels(pigments, shapes, cube, None if path is None else str(path))
    except KeyError as exc:
        raise LabelsError(f"{where}the labels file lacks {exc}") from None
    except LabelsError as exc:
        raise LabelsError(f"{where}{exc}") from None
    except InvalidDataError as exc:
        raise LabelsError(f"{where}{exc}") from None


def write_labels(path, labels: ShapeLabels, *, force: bool = False) -> Path:
    """Write a labels file (JSON, atomic).

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    from .atomic import atomic_output

    text = json.dumps(labels_to_json(labels), indent=1, allow_nan=False)
    with atomic_output(path, force=force) as tmp:
        Path(tmp).write_text(text + "\n", encoding="utf-8")
    return Path(path)


def read_labels(path, *, pigments=None):
    """Read labels, deciding by content: a labels file or a mock-up ground-truth file.

    Parameters
    ----------
    path : str or Path
    pigments : sequence, optional
        For a ground-truth file: the label columns (default all of its maps).

    Returns
    -------
    ShapeLabels
        For a JSON labels file.
    PixelLabels
        For an HDF5 ground-truth file (``/present/<ABBR>`` maps): every pixel labelled.

    Raises
    ------
    UnreadableFileError
        Missing file, or neither kind of file.
    LabelsError
        A labels file with malformed content.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        import h5py

        with h5py.File(path, "r") as h5:
            is_truth = isinstance(h5.get("present"), h5py.Group)
        if not is_truth:
            raise UnreadableFileError(
                path, "an HDF5 file without /present maps is not a ground-truth file"
            )
        return labels_from_truth(path, pigments=pigments)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UnreadableFileError(
            path,
            "neither a labels file (JSON) nor a ground-truth file (HDF5 with /present maps)",
        ) from None
    return labels_from_json(content, path=path)


# -- extraction ---------------------------------------------------------------------------------


def to_pixel_labels(labels, image_shape, *, pigments=None) -> PixelLabels:
    """Per-pixel labels of ``labels`` (ShapeLabels, PixelLabels or a file) over ``image_shape``.

    Raises
    ------
    LabelsError
        Problems with the shapes, or per-pixel labels of another size than the cube, or labels
        recorded for a cube of another size.
    """
    if isinstance(labels, (str, Path)):
        labels = read_labels(labels, pigments=pigments)
    rows, cols = (int(s) for s in image_shape)
    if isinstance(labels, ShapeLabels):
        drawn = labels.cube.get("shape") if labels.cube else None
        if drawn is not None and tuple(int(s) for s in drawn) != (rows, cols):
            raise LabelsError(
                f"the shapes were drawn on a {drawn[0]} x {drawn[1]} cube"
                f"{' (' + str(labels.cube.get('source')) + ')' if labels.cube.get('source') else ''}"
                f", this cube is {rows} x {cols}"
            )
        return rasterise(labels, (rows, cols), pigments=pigments)
    if not isinstance(labels, PixelLabels):
        raise TypeError(f"expected ShapeLabels, PixelLabels or a path, got {type(labels).__name__}")
    if labels.shape != (rows, cols):
        raise LabelsError(
            f"the labels cover {labels.shape[0]} x {labels.shape[1]} pixels, the cube "
            f"{rows} x {cols}: they belong to another cube"
        )
    if pigments is not None:
        pigments = as_pigment_labels(pigments)
        have = labels.abbreviations
        missing = [p.abbreviation for p in pigments if p.abbreviation not in have]
        if missing:
            raise LabelsError(
                f"the labels do not say whether {', '.join(missing)} is present (they label "
                f"{', '.join(have)})"
            )
        cols_ = [have.index(p.abbreviation) for p in pigments]
        labels = PixelLabels(
            pigments, labels.present[..., cols_],
            None if labels.top is None else labels.top[..., cols_],
            labels.mask, labels.shape_index, labels.source, list(labels.notes),
        )
    if not labels.mask.any():
        raise LabelsError("no pixel is labelled")
    return labels


def read_pixels(cube, rows, cols) -> np.ndarray:
    """Spectra of the pixels (rows[i], cols[i]), reading only the rows that hold them.

    Parameters
    ----------
    cube : XRFCube
    rows, cols : array of int, shape (n,)

    Returns
    -------
    ndarray of float32, shape (n, channels)
    """
    from .cube import check_counts, default_rows_per_block

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty((rows.size, cube.n_channels), dtype=np.float32)
    if rows.size == 0:
        return out
    per_block = default_rows_per_block(cube.shape, cube.dtype)
    wanted = np.unique(rows)
    start = 0
    while start < wanted.size:
        # Consecutive rows are read in one slice (h5py/dask read contiguous blocks best).
        stop = start + 1
        while (stop < wanted.size and wanted[stop] == wanted[stop - 1] + 1
               and wanted[stop] - wanted[start] < per_block):
            stop += 1
        r0, r1 = int(wanted[start]), int(wanted[stop - 1]) + 1
        block = np.asarray(cube.counts[r0:r1])
        check_counts(block, where=f"rows {r0}-{r1 - 1}")
        sel = np.nonzero((rows >= r0) & (rows < r1))[0]
        out[sel] = block[rows[sel] - r0, cols[sel]]
        start = stop
    return out


def extract_training_set(cube, labels, *, pigments=None, labels_path=None) -> TrainingSet:
    """Labelled spectra of a cube: one example per labelled pixel.

    Parameters
    ----------
    cube : XRFCube or str or Path
        Calibrated cube (opened with :func:`~napari_xrf_pigments.io.open_cube` if a path).
    labels : ShapeLabels, PixelLabels, str or Path
        Shapes (rasterised and checked here) or per-pixel labels (e.g. ground truth).
    pigments : sequence, optional
        Label columns, e.g. a model's pigments (default: the labels' vocabulary).
    labels_path : str, optional
        Recorded in the provenance when ``labels`` is an in-memory object.

    Returns
    -------
    TrainingSet
        ``spectra`` (n, channels) counts on the cube's energy axis, ``present``/``top``
        (n, n_pigments), ``params`` ``row``, ``col`` (int32) and ``shape`` (int32, -1 when not
        from shapes), and ``provenance`` (cube, labels, notes). Pixels without counts are
        dropped (with a note).

    Raises
    ------
    LabelsError, CalibrationError
    """
    from .errors import CalibrationError
    from .io import open_cube

    if isinstance(labels, (str, Path)):
        labels_path = str(labels)
    if isinstance(cube, (str, Path)):
        cube = open_cube(cube)
    if not cube.calibrated:
        raise CalibrationError(
            f"{cube.name} has no energy calibration; calibrate it (xrf-pigments info shows the "
            "axis) before extracting spectra"
        )
    px = to_pixel_labels(labels, cube.shape[:2], pigments=pigments)
    rows, cols = np.nonzero(px.mask)
    need = rows.size * cube.n_channels * 4
    if need > MAX_EXTRACT_BYTES:
        # Every labelled spectrum is held in memory (float32): a whole large scan is too much.
        raise LabelsError(
            f"{rows.size} labelled pixels x {cube.n_channels} channels need "
            f"{need / 2**30:.1f} GB in memory (limit {MAX_EXTRACT_BYTES / 2**30:.0f} GB); label "
            "fewer pixels: smaller shapes, or a cropped ground truth"
        )
    spectra = read_pixels(cube, rows, cols)
    notes = list(px.notes)
    empty = spectra.sum(axis=1) <= 0
    if empty.all():
        raise LabelsError(f"all {rows.size} labelled pixels of {cube.name} have no counts")
    if empty.any():
        notes.append(f"{int(empty.sum())} labelled pixels without counts were left out")
        keep = ~empty
        rows, cols, spectra = rows[keep], cols[keep], spectra[keep]
    present = px.present[rows, cols]
    top = None if px.top is None else px.top[rows, cols]
    shape = px.shape_index[rows, cols] if px.shape_index is not None else np.full(rows.size, -1)
    source = dict(px.source)
    if labels_path is not None:
        source["path"] = labels_path
    provenance = {
        "generator": "napari_xrf_pigments.labels.extract_training_set",
        "cube": {"source": cube.source, "shape": list(cube.shape), "format": cube.format},
        "labels": source,
        "n_pixels": int(rows.size),
        "notes": notes,
    }
    return TrainingSet(
        spectra,
        cube.energy.energies(),
        present,
        top,
        px.pigments,
        provenance,
        {
            "row": rows.astype(np.int32),
            "col": cols.astype(np.int32),
            "shape": np.asarray(shape, dtype=np.int32),
        },
        labels_path,
    )


# -- napari shapes-layer columns (plain data; the napari adapter applies the layer transforms) --


def feature_columns(pigments) -> list[str]:
    """Feature column names of a shapes layer holding labels for ``pigments``.

    ``labelled``, ``present_<ABBR>`` and ``top_<ABBR>`` (bool) for each pigment, ``label`` (the
    :func:`label_text`) and ``note`` (str).
    """
    pigments = as_pigment_labels(pigments)
    return (
        ["labelled"]
        + [f"present_{p.abbreviation}" for p in pigments]
        + [f"top_{p.abbreviation}" for p in pigments]
        + ["label", "note"]
    )


def to_layer_columns(labels: ShapeLabels) -> tuple[list, list, dict]:
    """Shapes-layer data of ``labels``.

    Returns
    -------
    data : list of ndarray, each (k, 2) (row, column) in cube pixels
    shape_types : list of str
    features : dict of column name -> list (one entry per shape), see :func:`feature_columns`
    """
    columns = {name: [] for name in feature_columns(labels.pigments)}
    for s in labels.shapes:
        present, top = set(s.present or ()), set(s.top)
        columns["labelled"].append(s.labelled)
        for a in labels.abbreviations:
            columns[f"present_{a}"].append(a in present)
            columns[f"top_{a}"].append(a in top)
        columns["label"].append(label_text(s.present, s.top))
        columns["note"].append(s.note)
    return [s.vertices.copy() for s in labels.shapes], [s.shape_type for s in labels.shapes], columns


def from_layer_columns(data, shape_types, features, pigments, *, cube=None) -> ShapeLabels:
    """Labels from shapes-layer data (inverse of :func:`to_layer_columns`).

    Parameters
    ----------
    data : sequence of array, each (k, 2)
        Vertices (row, column) in cube pixels (already transformed from the layer).
    shape_types : sequence of str
    features : mapping of column name -> sequence (a pandas DataFrame works)
        ``present_<ABBR>``/``top_<ABBR>`` booleans (a missing column: false); ``labelled``
        (a missing column: every shape is labelled if any ``present_`` column exists, none
        otherwise); ``note`` optional.
    pigments : sequence
        The label vocabulary, in order.
    cube : dict, optional
        ``source``/``shape`` of the cube.
    """
    pigments = as_pigment_labels(pigments)
    n = len(data)
    if len(shape_types) != n:
        raise LabelsError(f"{n} shapes but {len(shape_types)} shape types")

    def col(name, default):
        if name in features:
            values = list(features[name])
            if len(values) != n:
                raise LabelsError(f"feature column {name!r} has {len(values)} rows for {n} shapes")
            return values
        return [default] * n

    # Without a "labelled" column, shapes count as labelled only on a layer that has label
    # columns at all: shapes drawn on a plain Shapes layer must not become "bare ground".
    has_labels = any(f"present_{p.abbreviation}" in features for p in pigments)
    labelled = [bool(v) for v in col("labelled", has_labels)]
    notes = [("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)) for v in col("note", "")]
    present = {p.abbreviation: [bool(v) for v in col(f"present_{p.abbreviation}", False)] for p in pigments}
    top = {p.abbreviation: [bool(v) for v in col(f"top_{p.abbreviation}", False)] for p in pigments}
    shapes = []
    for i in range(n):
        pres = tuple(a for a in present if present[a][i]) if labelled[i] else None
        tp = tuple(a for a in top if top[a][i]) if labelled[i] else ()
        try:
            shapes.append(LabelledShape(shape_types[i], np.asarray(data[i])[:, -2:], pres, tp, notes[i]))
        except LabelsError as exc:
            raise LabelsError(f"shape {i}: {exc}") from None
    return ShapeLabels(pigments, shapes, dict(cube or {}))


__all__ = [
    "LABELS_FORMAT",
    "LabelledShape",
    "LabelsError",
    "PigmentLabel",
    "PixelLabels",
    "ShapeLabels",
    "extract_training_set",
    "feature_columns",
    "from_layer_columns",
    "label_text",
    "labels_from_json",
    "labels_from_truth",
    "labels_to_json",
    "rasterise",
    "read_labels",
    "read_pixels",
    "shape_mask",
    "strip_shapes",
    "to_layer_columns",
    "to_pixel_labels",
    "write_labels",
]
