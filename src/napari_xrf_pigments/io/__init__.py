"""Reading XRF cubes from the files instruments write, and writing map files.

Each supported format family is one module in this package exposing

- ``FORMATS``: short names of the formats it reads,
- ``sniff(path) -> str | None``: the format name if the file's *content* (headers only, never
  the counts) says it is one of this module's formats, else None; never raises,
- ``read(path) -> XRFCube``: lazy where the format allows; raises
  :class:`~napari_xrf_pigments.errors.UnreadableFileError` with a reason,
- optionally ``explain(path) -> str | None``: why a file of this family cannot be read
  (truncated, inconsistent, refused format); used for the error message when no module
  claims a file.

Formats and where their calibration comes from: ``docs/formats.md``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UnreadableFileError, XRFPigmentsError

# Order matters only where two sniffers could both claim a file: most specific first.
# (gse and amptek before pymca_text: `.mca` names GSECARS, Amptek and PyMca's one-column files,
# and PyMca would read a GSECARS file as plain columns and lose its per-element calibration;
# columns last of the text formats: it claims only what no other reader does.)
_FORMAT_MODULES = ("hdf5", "bruker", "ripple", "edf", "gse", "amptek", "pymca_text", "columns", "mda")

__all__ = ["formats", "sniff", "explain", "open_cube", "write_cube"]


def _modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in _FORMAT_MODULES]


def formats() -> list[str]:
    """Names of every format the readers know."""
    return [fmt for module in _modules() for fmt in module.FORMATS]


def sniff(path) -> str | None:
    """Name of the XRF format of ``path``, or None if no reader recognises its content."""
    path = Path(path)
    if not path.is_file():
        return None
    for module in _modules():
        fmt = module.sniff(path)
        if fmt:
            return fmt
    return None


def explain(path) -> str:
    """Why ``path`` cannot be opened, in one sentence (for files :func:`sniff` rejects)."""
    path = Path(path)
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a file"
    if path.stat().st_size == 0:
        return "the file is empty"
    for module in _modules():
        reason = getattr(module, "explain", lambda p: None)(path)
        if reason:
            return reason
    return "not a supported XRF file format (see docs/formats.md)"


def unsupported_xrf(path) -> str | None:
    """Why a file that holds XRF data of a kind no reader here handles (EPICS MDA scans, raw
    APS fly-scan HDF5) cannot be opened; None for anything else (other files are not ours to
    explain: napari offers them to other plugins)."""
    # here: the format modules load on first use
    from . import hdf5, mda

    path = Path(path)
    if not path.is_file():
        return None
    reason = mda.explain(path)
    if reason is None and hdf5.explain(path) == hdf5.RAW_FLY_SCAN:
        reason = hdf5.RAW_FLY_SCAN
    return reason


def open_cube(path):
    """Open an XRF file as an :class:`~napari_xrf_pigments.cube.XRFCube` (lazily if possible).

    Raises
    ------
    UnreadableFileError
        If the file is missing, not a supported XRF format, truncated or inconsistent.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError(path, "no such file")
    if not path.is_file():
        raise UnreadableFileError(path, "not a file")
    for module in _modules():
        if module.sniff(path):
            try:
                return module.read(path)
            except UnreadableFileError:
                raise
            except XRFPigmentsError as exc:
                raise UnreadableFileError(path, str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - a reader bug must still not crash a viewer
                from ._common import describe

                raise UnreadableFileError(path, describe(exc)) from exc
    raise UnreadableFileError(path, explain(path))


def write_cube(path, cube, *, force: bool = False, **kwargs):
    """Write ``cube`` as a NeXus HDF5 file; see :func:`napari_xrf_pigments.io.hdf5.write_cube`."""
    from .hdf5 import write_cube as _write_cube

    return _write_cube(path, cube, force=force, **kwargs)
