"""ESRF Data Format (EDF) XRF stacks, read with PyMca5 (``PyMca5.PyMcaIO.EdfFile``).

Two layouts, as PyMca's ``EDFStack`` loads them:

- one EDF holding a 3-D array (Dim_1 = channels, Dim_2 = columns, Dim_3 = rows);
- a numbered series ``name_0000.edf, name_0001.edf, ...`` of 2-D "MCA" images, each one map
  row of spectra (Dim_1 = channels, Dim_2 = columns). Opening any file of the series reads
  the whole series, one row per file.

A 2-D EDF is taken as rows of spectra only when its header says it holds MCA data (``MCA a/b/c``,
``McaCalib`` or ``MCA start ch`` keys); other 2-D EDFs are detector images and are left to
other readers. Calibration: ``McaCalib`` or ``MCA a``/``MCA b``/``MCA c`` (keV, PyMca's
convention; PyMca's default [0, 1, 0] means none). Counts stay on disk until needed (dask).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ._common import (
    check_dtype,
    check_small_counts,
    describe,
    never_raises,
    parse_once_dask,
    plausible_calibration,
    read_head,
    wrap_errors,
)

FORMATS = ("edf",)

_MCA_KEYS = ("MCA a", "MCA b", "MCA c", "McaCalib", "MCA start ch")


def _header(path: Path) -> dict | None:
    """Key/value pairs of the first EDF header block, or None if not EDF."""
    head = read_head(path, 16384)
    if not head.lstrip()[:1] == b"{":
        return None
    end = head.find(b"}")
    if end < 0:
        return None
    text = head[: end].decode("latin-1")
    header = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            header[key.strip().lstrip("{").strip()] = value.strip()
    lower = {k.lower() for k in header}
    if not {"dim_1", "datatype", "byteorder"} <= lower:
        return None
    return header


def _get(header: dict, key: str):
    for k, v in header.items():
        if k.lower() == key.lower():
            return v
    return None


def _is_mca_image(header: dict) -> bool:
    return any(_get(header, k) is not None for k in _MCA_KEYS)


@never_raises
def sniff(path) -> str | None:
    """``"edf"`` for a 3-D EDF or a 2-D EDF flagged as MCA data; else None (header only)."""
    header = _header(Path(path))
    if header is None:
        return None
    if _get(header, "Dim_3") is not None and int(_get(header, "Dim_3")) > 1:
        return "edf"
    if _get(header, "Dim_2") is not None and _is_mca_image(header):
        return "edf"
    return None


def explain(path) -> str | None:
    """Why an EDF file is not read as an XRF stack (None if it is, or is not EDF)."""
    header = _header(Path(path))
    if header is None or sniff(path):
        return None
    return "EDF image without MCA keys (MCA a/b/c, McaCalib): a detector image, not spectra"


def _series(path: Path) -> list[Path]:
    """Files of the numbered series ``path`` belongs to (just ``path`` if none)."""
    match = re.match(r"^(.*?)(\d+)(\.[^.]*(?:\.gz)?)$", path.name)
    if not match:
        return [path]
    prefix, number, suffix = match.groups()
    width = len(number)
    pattern = re.compile(rf"^{re.escape(prefix)}(\d{{{width}}}){re.escape(suffix)}$")
    numbered = {}
    for sibling in path.parent.iterdir():
        m = pattern.match(sibling.name)
        if m:
            numbered[int(m.group(1))] = sibling
    # The contiguous run of numbers that contains this file.
    start = int(number)
    while start - 1 in numbered:
        start -= 1
    files = []
    while start in numbered:
        files.append(numbered[start])
        start += 1
    return files


def _calibration(header: dict) -> tuple | None:
    calib = _get(header, "McaCalib")
    if calib:
        values = [float(v) for v in re.split(r"[\s,\[\]]+", calib) if v]
        if len(values) >= 2:
            return plausible_calibration(*(values + [0.0])[:3])
    a, b, c = (_get(header, k) for k in ("MCA a", "MCA b", "MCA c"))
    if a is not None and b is not None:
        return plausible_calibration(float(a), float(b), float(c or 0.0))
    return None


def _check_size(path: Path, image, header: dict, dtype) -> None:
    """The data the header declares must fit in the file (before anything is allocated)."""
    dims = [image.Dim1, image.Dim2] + ([image.Dim3] if image.NumDim == 3 else [])
    if any(int(d) < 1 for d in dims):
        raise UnreadableFileError(path, f"its header declares an empty or negative size {dims}")
    need = 1
    for d in dims:
        need *= int(d)
    need *= dtype.itemsize
    compressed = path.suffix.lower() in (".gz", ".bz2") or str(
        _get(header, "Compression") or "none"
    ).strip().lower() not in ("none", "", "no")
    if compressed:
        return
    available = path.stat().st_size - int(image.DataPosition)
    if need > available:
        shape = " x ".join(str(int(d)) for d in reversed(dims))
        raise UnreadableFileError(
            path, f"its header declares {shape} values of {dtype.itemsize} bytes ({need:,} bytes) but "
                  f"only {max(available, 0):,} bytes of data follow: the file is cut short or its "
                  "header is damaged"
        )


def _load_image(filename: str):
    """First image of an EDF file as numpy (native byte order)."""
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaIO import EdfFile


    try:
        return EdfFile.EdfFile(filename, "rb").GetData(0)
    except Exception as exc:  # read when napari draws or a fit runs: one line
        raise UnreadableFileError(filename, f"damaged data: {describe(exc)}") from exc


@wrap_errors
def read(path) -> XRFCube:
    """Open an EDF XRF stack lazily.

    Returns
    -------
    XRFCube
        counts: dask array (rows, columns, channels) in the file's dtype.
    """
    from PyMca5.PyMcaIO import EdfFile

    path = Path(path)
    if sniff(path) is None:
        raise UnreadableFileError(path, explain(path) or "not an EDF file")
    edf = EdfFile.EdfFile(str(path), "rb")
    image = edf.Images[0]
    header = dict(edf.GetStaticHeader(0))
    header.update(edf.GetHeader(0))
    dtype = check_dtype(edf.GetDefaultNumpyType(image.DataType, index=0), path)
    metadata = {"edf_header": {k: str(v) for k, v in header.items()}}
    _check_size(path, image, header, dtype)

    if image.NumDim == 3:
        shape = (image.Dim3, image.Dim2, image.Dim1)
        counts = parse_once_dask(lambda: _load_image(str(path)), shape, dtype)
    elif image.NumDim == 2:
        import dask
        import dask.array as da

        files = _series(path)
        rows = []
        for file in files:
            other = EdfFile.EdfFile(str(file), "rb") if file != path else edf
            img = other.Images[0]
            if (img.NumDim, img.Dim1, img.Dim2) != (2, image.Dim1, image.Dim2):
                raise UnreadableFileError(
                    file, f"the series mixes image sizes ({img.Dim2} x {img.Dim1} vs {image.Dim2} x {image.Dim1})"
                )
            if file != path:
                _check_size(file, img, {}, dtype)
            load = dask.delayed(_load_image, pure=True)(str(file))
            rows.append(da.from_delayed(load, shape=(image.Dim2, image.Dim1), dtype=dtype))
        counts = da.stack(rows)
        metadata["series"] = [f.name for f in files]
    else:
        raise UnreadableFileError(path, "a 1-D EDF is a single spectrum without map geometry")

    check_small_counts(counts, path)
    cal = _calibration(header)
    n = counts.shape[2]
    energy = EnergyAxis.uncalibrated(n)
    if cal:
        zero, gain, quad = cal
        first = float(_get(header, "MCA start ch") or 0)  # index 0 is channel `first`
        energy = EnergyAxis.from_calibration(
            n, zero + gain * first + quad * first**2, gain + 2 * quad * first, quad
        )
    return XRFCube(counts, energy, source=str(path), format="edf", metadata=metadata)
