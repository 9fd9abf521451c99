"""npe2 reader: XRF files -> a cube layer (energy slider) and a total-counts layer."""

from __future__ import annotations

import functools
import os

import numpy as np
from napari.utils.notifications import show_warning

from ..errors import UnreadableFileError
from ..io import open_cube, sniff, unsupported_xrf
from ._layers import CUBE_KEY, ROLE_KEY, energy_geometry, show_energy_on_slider
from ._lazy import energy_first

# Cubes up to this size get their total-counts image computed while opening (one pass over
# the file); bigger ones get a lazy dask sum that napari computes when it first draws it.
EAGER_TOTAL_BYTES = 1 << 30
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
    import napari

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


def _total_counts(cube, sample):
    """(total counts image, contrast limits or None); lazy for big cubes."""
    nbytes = int(np.prod(cube.shape)) * cube.dtype.itemsize
    if nbytes <= EAGER_TOTAL_BYTES:
        return cube.total_counts(), None
    total = cube.to_dask().sum(axis=2, dtype=np.float64)
    # napari would compute the whole sum just to set contrast limits; the sample is enough.
    sample_totals = sample.sum(axis=2, dtype=np.float64)
    low, high = float(sample_totals.min()), float(sample_totals.max())
    return total, [low, high if high > low else low + 1.0]


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
    sample = _sample(cube)
    total, total_limits = _total_counts(cube, sample)
    cube_kwargs = {
        "name": name,
        "metadata": {CUBE_KEY: cube, ROLE_KEY: "cube"},
        "scale": (step, *pixel),
        "translate": (first, 0.0, 0.0),
        "units": (energy_unit, pixel_unit, pixel_unit),
        "rgb": False,
        "multiscale": False,
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
        "multiscale": False,
        "axis_labels": ("row", "column"),
        "colormap": "gray",
    }
    if total_limits is not None:
        total_kwargs["contrast_limits"] = total_limits
    if not cube.calibrated:
        # Short enough for napari's pop-up, which elides long messages.
        show_warning(
            f"{name}: energy calibration is missing. Set it with Plugins > XRF Pigments > "
            "Energy calibration (zero/gain or two named peaks); until then energies are channels."
        )
    return [
        (energy_first(cube.counts), cube_kwargs, "image"),
        (total, total_kwargs, "image"),
    ]
