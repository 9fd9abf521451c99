"""npe2 reader: XRF files -> a cube layer (energy slider) and a total-counts layer.

Cubes bigger than :data:`EAGER_TOTAL_BYTES` open as two-level multiscale layers: the full cube,
of which napari reads only the region on screen, and a *preview* of evenly spaced spectra
(at most :data:`PREVIEW_BYTES`) read while opening. The layers start locked on the preview, so
the first view reads a bounded amount whatever the cube's size; with the layer's resolution set
to Auto, napari reads the full resolution of the region on screen.
"""

from __future__ import annotations

import functools
import math
import os

import napari
import numpy as np
from napari.utils.notifications import show_info, show_warning

from ..errors import UnreadableFileError
from ..io import open_cube, sniff, unsupported_xrf
from ._layers import CUBE_KEY, ROLE_KEY, energy_geometry, show_energy_on_slider
from ._lazy import energy_first

# Cubes up to this size get their total-counts image computed while opening (one pass over
# the file); bigger ones open as a preview plus the full cube read where it is shown.
EAGER_TOTAL_BYTES = 1 << 30
# Most bytes of spectra in the preview of a big cube. Chunks of whole spectra make the bytes
# read a bounded multiple of this (the spectra per chunk).
PREVIEW_BYTES = 64 << 20
# Bytes of spectra per tile of the full-resolution total counts of a big cube.
TILE_BYTES = 16 << 20
# Spectra sampled (a grid of at most this many per side) to set contrast limits without
# reading the whole cube.
_SAMPLE_SIDE = 12


def _single_path(path):
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        return None
    return os.fspath(path)


def get_reader(path):
    """Return :func:`read_xrf` if ``path`` is an XRF file this plugin reads, a reader that
    raises the reason for XRF data it recognises but cannot read (EPICS MDA, raw APS
    fly-scans), else None.

    Parameters
    ----------
    path : str or list of str
        One path (a list of exactly one is accepted).
    """
    path = _single_path(path)
    if path is None:
        return None
    try:
        if sniff(path):
            return read_xrf
        # XRF data of a kind the plugin knows but cannot read: its explanation, not napari's
        # generic "no reader"; anything else is left to other plugins.
        reason = unsupported_xrf(path)
    except Exception:  # noqa: BLE001 - a sniffer must never break napari's reader choice
        return None
    return functools.partial(_refuse, reason=reason) if reason else None


def _refuse(path, *, reason: str):
    """A reader for a recognised file no reader here handles: napari shows the reason."""
    raise UnreadableFileError(_single_path(path), reason)


def read_xrf(path) -> list[tuple]:
    """Read an XRF file into napari LayerDataTuples (cube layer, total-counts layer).

    Raises
    ------
    UnreadableFileError
        With the reason, if the file cannot be read; napari shows it as an error message.
    """
    path = _single_path(path)
    layers = cube_layer_data(open_cube(path))
    show_energy_on_slider(napari.current_viewer())  # the viewer opening the file, if any
    return layers


def _sample(cube) -> np.ndarray:
    """Spectra on a coarse grid of pixels, shape (n_rows, n_cols, channels).

    One strided read: HDF5 and dask touch each needed chunk once.
    """
    rows, cols = cube.shape[:2]
    row_step = max(1, -(-rows // _SAMPLE_SIDE))
    col_step = max(1, -(-cols // _SAMPLE_SIDE))
    return np.asarray(cube.counts[::row_step, ::col_step])


def _limits(values) -> list[float]:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [0.0, 1.0]
    low = min(0.0, float(finite.min()))
    high = float(np.percentile(finite, 99.9))
    if high <= low:
        high = low + 1.0
    return [low, high]


def _preview(cube) -> tuple[np.ndarray, int]:
    """Spectra of every ``step``-th row and column, (rows/step, columns/step, channels), of
    at most :data:`PREVIEW_BYTES`, and ``step`` (>= 2)."""
    rows, cols, chans = cube.shape
    spectrum_bytes = chans * cube.dtype.itemsize
    step = max(2, math.ceil(math.sqrt(rows * cols * spectrum_bytes / PREVIEW_BYTES)))
    return np.asarray(cube.counts[::step, ::step]), step


def _big_cube_levels(cube):
    """(cube levels, total-counts levels, preview spectra, preview step) for napari's
    multiscale layers.

    Level 0 is the full cube (channels first) and a lazy dask sum of it: napari reads them only
    for the region on screen once zoomed in. Level 1 is the preview, read here.
    """
    # lazy: dask is heavy
    import dask.array as da

    preview, step = _preview(cube)
    preview_total = preview.sum(axis=2, dtype=np.float64)
    counts = cube.counts
    if not isinstance(counts, da.Array):
        # Square tiles of whole spectra: a zoomed-in view reads the tiles it shows, not
        # whole rows of the scan.
        side = max(16, math.isqrt(TILE_BYTES // (cube.n_channels * cube.dtype.itemsize)))
        counts = da.from_array(counts, chunks=(side, side, -1), lock=True, asarray=True)
    full_total = counts.sum(axis=2, dtype=np.float64)
    return ([energy_first(cube.counts), np.moveaxis(preview, 2, 0)],
            [full_total, preview_total], preview, step)


def cube_layer_data(cube) -> list[tuple]:
    """LayerDataTuples showing ``cube``: the counts with an energy slider, and total counts.

    The cube layer's data is ``(channels, rows, columns)`` (lazy: napari reads the channels
    it shows) so that napari shows the scan and puts a slider on energy;
    ``metadata["xrf_cube"]`` holds ``cube``.
    Warns (napari notification) when the energy axis is not calibrated.
    """
    name = cube.name
    step, first, energy_label, energy_unit = energy_geometry(cube)
    pixel = tuple(cube.pixel_size) if cube.pixel_size else (1.0, 1.0)
    pixel_unit = "mm" if cube.pixel_size else "pixel"
    nbytes = math.prod(cube.shape) * cube.dtype.itemsize
    multiscale = nbytes > EAGER_TOTAL_BYTES
    if multiscale:
        counts, total, sample, every = _big_cube_levels(cube)
        show_info(f"{name} is {nbytes / 2**30:.1f} GiB: showing a preview of every {every}th "
                  "row and column. For full resolution, zoom in, then set the layer's "
                  "'resolution' to Auto (only the region on screen is read)")
    else:
        counts, total, sample = energy_first(cube.counts), cube.total_counts(), _sample(cube)
    cube_kwargs = {
        "name": name,
        "metadata": {CUBE_KEY: cube, ROLE_KEY: "cube"},
        "scale": (step, *pixel),
        "translate": (first, 0.0, 0.0),
        "units": (energy_unit, pixel_unit, pixel_unit),
        "rgb": False,
        "multiscale": multiscale,
        "axis_labels": (energy_label, "row", "column"),
        "contrast_limits": _limits(sample),
        "colormap": "inferno",
    }
    total_kwargs = {
        "name": f"{name} total counts",
        "metadata": {ROLE_KEY: "total_counts", "xrf_source": cube.source},
        "scale": pixel,
        "units": (pixel_unit, pixel_unit),
        "rgb": False,
        "multiscale": multiscale,
        "axis_labels": ("row", "column"),
        "colormap": "gray",
    }
    if multiscale:
        # From the preview: napari would otherwise compute the lazy full sum to set them.
        low, high = float(total[1].min()), float(total[1].max())
        total_kwargs["contrast_limits"] = [low, high if high > low else low + 1.0]
        # napari's automatic level wants a data pixel per screen pixel, which for a whole big
        # cube on screen means reading most of it: start on the preview instead.
        cube_kwargs["locked_data_level"] = total_kwargs["locked_data_level"] = 1
    if not cube.calibrated:
        # Short enough for napari's pop-up, which elides long messages.
        show_warning(
            f"{name}: energy calibration is missing. Set it with Plugins > XRF Pigments > "
            "Energy calibration (zero/gain or two named peaks); until then energies are channels."
        )
    return [
        (counts, cube_kwargs, "image"),
        (total, total_kwargs, "image"),
    ]
