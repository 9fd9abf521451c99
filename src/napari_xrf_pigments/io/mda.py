"""EPICS saveData ``.mda`` scan files: recognised and refused with a reason.

MDA (XDR-encoded, versions 1.2-1.4) has no maintained Python reader on PyPI, and its
multi-element spectra need the beamline's detector layout to become a cube. Users are pointed
at an HDF5 conversion (XRF-Maps output, or NeXus written with ``io.write_cube``); when one sits
next to the file (``name.h5``, or ``derived/*name.h5`` beside or above it) it is named.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import UnreadableFileError
from ._common import read_head

FORMATS = ("epics-mda",)


def _header(path: Path):
    """(version, rank, dims) if the file starts like an MDA scan, else None."""
    head = read_head(path, 64)
    if len(head) < 16:
        return None
    version, _scan, rank = struct.unpack(">fii", head[:12])
    if not (1.15 < version < 1.45 and 1 <= rank <= 4) or len(head) < 12 + 4 * rank:
        return None
    dims = struct.unpack(f">{rank}i", head[12 : 12 + 4 * rank])
    if not all(0 < d < 10**7 for d in dims):
        return None
    return round(version, 2), rank, dims


def sniff(path) -> str | None:
    """Always None: MDA files are recognised only to explain why they are refused."""
    return None


def _alternatives(path: Path) -> list[Path]:
    stem = path.stem
    found = [p for p in (path.with_suffix(".h5"), path.with_suffix(".hdf5")) if p.is_file()]
    for folder in (path.parent / "derived", path.parent.parent / "derived"):
        if folder.is_dir():
            found += sorted(folder.glob(f"*{stem}.h5")) + sorted(folder.glob(f"*{stem}.hdf5"))
    return found


def explain(path) -> str | None:
    """The refusal reason for an MDA file (None for anything else)."""
    try:
        path = Path(path)
        header = _header(path)
        if header is None:
            return None
        version, rank, dims = header
        text = (
            f"EPICS MDA scan file (v{version}, rank {rank}, {' x '.join(map(str, dims))}): "
            "no maintained Python reader exists for it"
        )
        if rank < 3:
            text += f" (and a rank-{rank} scan holds scalers, not spectra)"
        alternatives = _alternatives(path)
        if alternatives:
            return text + f"; open its HDF5 conversion instead: {alternatives[0]}"
        return text + (
            "; convert it to HDF5 first (XRF-Maps writes /MAPS/Spectra/mca_arr, or save a "
            "NeXus cube with napari_xrf_pigments.io.write_cube) and open that"
        )
    except Exception:  # noqa: BLE001
        return None


def read(path):
    """Refuse: raises UnreadableFileError with :func:`explain`'s reason."""
    raise UnreadableFileError(path, explain(path) or "not an EPICS MDA file")
