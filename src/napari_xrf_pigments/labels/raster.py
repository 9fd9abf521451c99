"""Which pixels a shape covers, and per-pixel labels of a set of shapes.

A pixel belongs to a shape when its centre lies inside the shape or on its border (napari puts
pixel centres on integer coordinates).
"""

from __future__ import annotations

import numpy as np

from ..datasets.trainset import as_pigment_labels
from .shapes import LabelledShape, LabelsError, PixelLabels, ShapeLabels, label_text

# Tolerance (pixels) for "on the border": vertices typed as x.5 must not lose pixels to rounding.
_EPS = 1e-6


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
    # lazy: matplotlib is heavy
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
