"""Element maps to an HDF5 maps file (the layout every maps file of the project shares).

Layout (:mod:`napari_xrf_pigments.io.maps`): one 2-D float32 dataset per map at
``/maps/<name>`` with attributes ``kind`` (``"element"``, ``"scatter"`` or
``"fit-statistic"``), ``unit`` and ``description``; provenance attributes on the root.
"""

from __future__ import annotations

import numpy as np

from ..atomic import check_output_path
from ..io.maps import write_maps
from ..progress import Progress
from ._engine import STATISTICS, FitResult, fit_cube_job


def _descriptions(result: FitResult) -> dict:
    out = {}
    for name, kind in result.kinds.items():
        if kind == "fit-statistic":
            out[name] = STATISTICS[name][1]
        elif kind == "scatter":
            out[name] = f"fitted area of {name} (scattered excitation), counts"
        else:
            out[name] = f"fitted peak area of the {name} lines (PyMca FastXRFLinearFit), counts"
    return out


def write_maps_file(path, result: FitResult, *, force: bool = False):
    """Write a :class:`FitResult` to an HDF5 maps file (:mod:`napari_xrf_pigments.io.maps`), atomically.

    Parameters
    ----------
    path : str or Path
    result : FitResult
    force : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    descriptions = _descriptions(result)
    maps = {
        name: (
            np.asarray(array, dtype=np.float32),
            {"kind": result.kinds[name], "unit": result.units[name], "description": descriptions[name]},
        )
        for name, array in result.maps.items()
    }
    return write_maps(path, maps, result.attrs, force=force)


def fit_to_file_job(cube, out, config=None, *, force: bool = False, **fit_kwargs):
    """Fit a cube and write its maps file; a cancellable job returning the :class:`FitResult`.

    The output path and the inputs are checked now (errors are raised here); the returned
    generator yields ``Progress`` and writes the file (atomically) only once the fit has
    finished: a cancelled or failed fit leaves no file. ``fit_kwargs`` go to
    :func:`fit_cube_job`.

    Raises
    ------
    OutputExistsError
        If ``out`` exists and ``force`` is false.
    """
    check_output_path(out, force=force)
    job = fit_cube_job(cube, config, **fit_kwargs)
    return _fit_and_write(job, cube, out, force)


def _fit_and_write(job, cube, out, force):
    result = yield from job
    n = cube.shape[0] * cube.shape[1]
    yield Progress(n, n, "writing maps")
    write_maps_file(out, result, force=force)
    return result
