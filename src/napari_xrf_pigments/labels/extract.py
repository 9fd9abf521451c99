"""Labelled spectra of a cube: the training set that finetuning reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import check_counts, default_rows_per_block
from ..datasets.trainset import TrainingSet, as_pigment_labels
from ..errors import CalibrationError
from ..io import open_cube
from .files import read_labels
from .raster import rasterise
from .shapes import LabelsError, PixelLabels, ShapeLabels

#: Largest amount of labelled spectra (float32 bytes) extracted into memory.
MAX_EXTRACT_BYTES = 4 * 2**30


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
