"""Reading XRF cubes from the files instruments write, and writing map files.

Each supported format family is one module in this package exposing

- ``FORMATS``: short names of the formats it reads,
- ``sniff(path) -> str | None``: the format name if the file's *content* (headers only, never
  the counts) says it is one of this module's formats, else None; never raises,
- ``read(path) -> XRFCube``: lazy where the format allows; raises
  :class:`~napari_xrf_pigments.errors.UnreadableFileError` with a reason.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UnreadableFileError

# Order matters only where two sniffers could both claim a file: most specific first.
_FORMAT_MODULES = ()


def _modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in _FORMAT_MODULES]


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
            return module.read(path)
    raise UnreadableFileError(path, "not a supported XRF file format (see docs/formats.md)")
