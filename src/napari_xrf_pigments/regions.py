"""Spectra of single pixels and of pixel regions of a cube.

``counts`` is anything an :class:`~napari_xrf_pigments.cube.XRFCube` holds (numpy, h5py
dataset, dask), axis order ``(rows, columns, channels)``. Region sums read only the bounding
box of the region, block of rows by block of rows, and follow the progress protocol of
:mod:`napari_xrf_pigments.progress` so widgets can run them in a thread and stop them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cube import check_counts, default_rows_per_block
from .errors import InvalidDataError
from .progress import Progress, ProgressJob, run


@dataclass(frozen=True)
class RegionSpectrum:
    """Result of a region reduction.

    Attributes
    ----------
    spectrum : ndarray of float64, shape (channels,)
        Mean or sum of the region's spectra.
    n_pixels : int
    reduce : {"mean", "sum"}
    """

    spectrum: np.ndarray
    n_pixels: int
    reduce: str


def pixel_spectrum(counts, row: int, column: int) -> np.ndarray:
    """Spectrum of one pixel as float64 of shape (channels,).

    Raises
    ------
    IndexError
        If the pixel is outside the cube.
    """
    rows, cols = counts.shape[:2]
    if not (0 <= row < rows and 0 <= column < cols):
        raise IndexError(f"pixel ({row}, {column}) is outside the {rows} x {cols} cube")
    return np.asarray(counts[int(row), int(column)], dtype=np.float64).reshape(-1)


def region_bytes(counts, mask) -> int:
    """Bytes read to reduce ``mask``'s region (its bounding box of spectra)."""
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return 0
    itemsize = np.dtype(counts.dtype).itemsize
    return int((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1) * counts.shape[2] * itemsize)


def region_spectrum_job(
    counts, mask, *, reduce: str = "mean", rows_per_block: int | None = None
) -> ProgressJob:
    """Mean or sum spectrum of the pixels where ``mask`` is true (a progress job).

    Parameters
    ----------
    counts : array-like, shape (rows, columns, channels)
    mask : array-like of bool, shape (rows, columns)
    reduce : {"mean", "sum"}
    rows_per_block : int, optional
        Rows read at a time (default: about 64 MB of counts).

    Yields
    ------
    Progress
        Rows of the bounding box done / total.

    Returns
    -------
    RegionSpectrum

    Raises
    ------
    InvalidDataError
        If the mask is empty or of the wrong shape, or the counts hold NaN or negative values.
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', not {reduce!r}")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(counts.shape[:2]):
        raise InvalidDataError(
            f"the region mask has shape {mask.shape}, the cube has {tuple(counts.shape[:2])} pixels"
        )
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise InvalidDataError("the region is empty (it covers no pixel of the cube)")
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    box = (r1 - r0, c1 - c0, counts.shape[2])
    step = rows_per_block or default_rows_per_block(box, counts.dtype)
    total = np.zeros(counts.shape[2], dtype=np.float64)
    n_pixels = 0
    yield Progress(0, r1 - r0, "reading region spectra")
    for start in range(r0, r1, step):
        stop = min(start + step, r1)
        block_mask = mask[start:stop, c0:c1]
        if block_mask.any():
            block = np.asarray(counts[start:stop, c0:c1])
            spectra = block[block_mask]
            check_counts(spectra, where=f"rows {start}-{stop - 1}")
            total += spectra.sum(axis=0, dtype=np.float64)
            n_pixels += int(block_mask.sum())
        yield Progress(stop - r0, r1 - r0, "reading region spectra")
    spectrum = total / n_pixels if reduce == "mean" else total
    return RegionSpectrum(spectrum, n_pixels, reduce)


def region_spectrum(counts, mask, *, reduce: str = "mean", rows_per_block: int | None = None):
    """:func:`region_spectrum_job` run to completion; returns a :class:`RegionSpectrum`."""
    return run(region_spectrum_job(counts, mask, reduce=reduce, rows_per_block=rows_per_block))
