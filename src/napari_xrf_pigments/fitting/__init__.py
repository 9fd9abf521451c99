"""Element maps from XRF cubes with PyMca's fast linear fit (``FastXRFLinearFit``).

Public API (loaded lazily: importing this package loads neither numpy nor PyMca):

- :func:`fit_cube_job` / :func:`fit_cube`: batch fit of a cube, chunk by chunk, in parallel;
- :func:`fit_to_file_job`, :func:`write_maps_file`: the same, written to an HDF5 maps file;
- :func:`build_config`, :func:`load_config`, :func:`choose_lines`, :func:`parse_elements`:
  PyMca configurations from elements or a user's ``.cfg``;
- :func:`suggest_elements`: elements whose lines explain the peaks of a sum spectrum.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FitResult": "_engine",
    "FitError": "_engine",
    "fit_cube_job": "_engine",
    "fit_cube": "_engine",
    "build_model": "_engine",
    "resolve_setup": "_engine",
    "FitSetup": "_config",
    "build_config": "_config",
    "load_config": "_config",
    "prepare_config": "_config",
    "choose_lines": "_config",
    "parse_elements": "_config",
    "config_text": "_config",
    "fit_to_file_job": "_output",
    "write_maps_file": "_output",
    "ElementSuggestion": "_suggest",
    "suggest_elements": "_suggest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # Lazy: the worker processes import napari_xrf_pigments.fitting._worker and must be able
    # to do so without loading numpy (see _worker.init_worker).
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__():
    return __all__
