"""Shapes as a napari Shapes layer's columns (plain data; the napari adapter applies the layer
transforms)."""

from __future__ import annotations

import numpy as np

from ..datasets.trainset import as_pigment_labels
from .shapes import LabelledShape, LabelsError, ShapeLabels, label_text


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
