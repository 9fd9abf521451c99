"""A lazy (channels, rows, columns) view of a cube's counts for napari.

napari shows the last two axes of a layer and puts sliders on the others. Cubes are stored
``(rows, columns, channels)``, so napari gets them with the channel axis moved first: the image
plane is the scan and the slider walks through energy. numpy and dask arrays are simply
transposed (views, nothing read). Anything else (h5py datasets) is wrapped so that showing one
channel reads only a hyperslab of channels: a dask wrapper would read whole chunks of spectra
for every slider step.

Files chunked by spectrum (the usual, and what ``write_cube`` writes) must decompress every
chunk of the region shown to show any one channel, so the view reads a *band* of neighbouring
channels of that region in the same pass and keeps the last two bands: slider steps inside them
cost nothing. (For big cubes napari asks only for the region on screen: see the preview level in
``_reader.py``.)
"""

from __future__ import annotations

import threading

import numpy as np

# Memory for one band of channel images, the most channels a band holds, bands kept.
BAND_BYTES = 96 * 2**20
MAX_BAND = 64
KEPT_BANDS = 2


def energy_first(counts):
    """``counts`` (rows, columns, channels) as a lazy (channels, rows, columns) array."""
    if isinstance(counts, np.ndarray):
        return np.moveaxis(counts, 2, 0)
    if type(counts).__module__.startswith("dask"):
        return counts.transpose(2, 0, 1)
    return EnergyFirstView(counts)


def _split_key(key, ndim):
    """Expand an index into one entry per axis (Ellipsis filled with full slices)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is None for k in key):
        raise IndexError("np.newaxis is not supported on this view")
    n_ellipsis = sum(k is Ellipsis for k in key)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis")
    if n_ellipsis:
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}-D array")
    return key + (slice(None),) * (ndim - len(key))


def _read_and_post(k, size):
    """(what to ask the store for, what numpy applies after) for one axis."""
    if isinstance(k, (int, np.integer)):
        i = int(k)
        if not -size <= i < size:
            raise IndexError(f"index {i} is out of bounds for an axis of size {size}")
        return i % size, None
    if isinstance(k, slice):
        start, stop, step = k.indices(size)
        if step > 0:
            # h5py reads positive-step slices natively.
            return slice(start, max(start, stop), step), slice(None)
        # Negative steps: read the covered span forwards, reverse in numpy.
        n = len(range(start, stop, step))
        if n == 0:
            return slice(0, 0), slice(None)
        lo = start + step * (n - 1)
        return slice(lo, start + 1, -step), slice(None, None, -1)
    # Fancy indices (rare in napari): read the whole axis and let numpy index it.
    return slice(None), k


class EnergyFirstView:
    """Read-only ``(channels, rows, columns)`` view of a ``(rows, columns, channels)`` store.

    Implements what napari needs of layer data (``shape``, ``dtype``, ``ndim``, ``size``,
    ``__getitem__`` returning numpy arrays); only the indexed hyperslab is read.

    Parameters
    ----------
    counts : array-like, shape (rows, columns, channels)
        Anything indexable with integers and positive-step slices (e.g. an h5py dataset).
    band_bytes : int
        Memory for the band of channel images read around a requested channel and kept.
    """

    def __init__(self, counts, *, band_bytes: int = BAND_BYTES):
        rows, cols, chans = (int(s) for s in counts.shape)
        self.counts = counts
        self.shape = (chans, rows, cols)
        self.dtype = np.dtype(counts.dtype)
        self.band_bytes = band_bytes
        self._cached = []  # newest first: (region, first channel, ndarray (rows, columns, band))
        # napari may slice from a worker thread (async slicing).
        self._lock = threading.Lock()

    ndim = 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        store = type(self.counts).__name__
        return f"EnergyFirstView(shape={self.shape}, dtype={self.dtype}, of {store})"

    def __getitem__(self, key):
        if not isinstance(key, (tuple, int, np.integer, slice, type(Ellipsis))):
            # A whole-array mask or index array: nothing to gain from hyperslabs.
            return np.asarray(self)[np.asarray(key)]
        kc, kr, kx = _split_key(key, 3)
        (rc, pc), (rr, pr), (rx, px) = (
            _read_and_post(k, n) for k, n in zip((kc, kr, kx), self.shape)
        )
        if isinstance(rc, int) and isinstance(rr, slice) and isinstance(rx, slice):
            block = self._band_of(rc, rr, rx)
        else:
            block = np.asarray(self.counts[rr, rx, rc])
        # Axes left after integer indices, in the store's order (row, column, channel).
        kept = [
            name for name, read in (("r", rr), ("x", rx), ("c", rc)) if not isinstance(read, int)
        ]
        if "c" in kept:
            block = np.moveaxis(block, kept.index("c"), 0)
            kept = ["c"] + [name for name in kept if name != "c"]
        post = {"c": pc, "r": pr, "x": px}
        post_key = [post[name] for name in kept]
        if any(not (isinstance(p, slice) and p == slice(None)) for p in post_key):
            block = _apply_post(block, post_key)
        return block

    def _band_of(self, channel: int, rows: slice, cols: slice) -> np.ndarray:
        """Image of ``channel`` over the region ``rows`` x ``cols``, read with a band of
        neighbouring channels of that region that is kept for the next slider steps."""
        region = (rows.indices(self.shape[1]), cols.indices(self.shape[2]))
        with self._lock:
            for cached_region, first, band in self._cached:
                if cached_region == region and first <= channel < first + band.shape[2]:
                    return band[:, :, channel - first]
            n_pixels = len(range(*region[0])) * len(range(*region[1]))
            plane = max(1, n_pixels * self.dtype.itemsize)
            width = int(max(1, min(MAX_BAND, self.shape[0], self.band_bytes // plane)))
            # Centred on the request, so scrubbing either way stays inside it for a while.
            first = min(max(0, channel - width // 2), self.shape[0] - width)
            band = np.asarray(self.counts[rows, cols, first : first + width])
            self._cached = [(region, first, band), *self._cached[: KEPT_BANDS - 1]]
            return band[:, :, channel - first]

    def __array__(self, dtype=None, copy=None):
        data = np.moveaxis(np.asarray(self.counts[()]), 2, 0)
        return data.astype(dtype, copy=False) if dtype is not None else data


def _apply_post(block, post_key):
    # Apply per-axis numpy indices one axis at a time so fancy indices do not broadcast together.
    out = block
    axis = 0
    for p in post_key:
        if isinstance(p, slice):
            out = out[(slice(None),) * axis + (p,)]
            axis += 1
        else:
            p = np.asarray(p)
            if p.dtype == bool:
                p = np.flatnonzero(p)
            out = np.take(out, p, axis=axis)
            axis += p.ndim
    return out
