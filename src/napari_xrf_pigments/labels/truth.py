"""Labels from the mock-up simulator's ground-truth maps: per pixel, or as one shape per strip cell."""

from __future__ import annotations

import json

import numpy as np

from ..datasets.mockup import read_truth
from ..datasets.trainset import as_pigment_labels
from ..errors import InvalidDataError
from .shapes import LabelledShape, LabelsError, PixelLabels, ShapeLabels


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
        # lazy: h5py loads only where HDF5 is read or written
        import h5py


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
