"""Lispix ripple pairs (``.rpl`` text header + ``.raw`` binary), e.g. Bruker M6 exports.

The header is parsed by RosettaSciIO (``rsciio.ripple``); the ``.raw`` is memory-mapped with
numpy (rsciio drops axes of length 1 and would turn a one-row scan into 2-D data), so opening
reads nothing. ``record-by vector`` gives (rows, columns, channels) directly; ``record-by
image`` (channels, rows, columns) is transposed as a view.

Calibration: ``depth-scale`` / ``depth-origin`` in ``depth-units`` (HyperSpy's keys), else
``ev-per-chan`` (eV) with ``depth-origin`` (eV unless ``depth-units`` says keV). Real Bruker M6
exports carry neither, and their cubes open **uncalibrated**; no calibration is made up.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ._common import (
    check_small_counts,
    energy_factor_to_keV,
    head_text,
    length_factor_to_mm,
    never_raises,
    wrap_errors,
)

FORMATS = ("ripple",)

_REQUIRED = ("width", "height", "depth", "data-type", "record-by")


def _pair(path: Path) -> tuple[Path | None, Path | None]:
    """(.rpl, .raw) of a pair given either file; None for a missing member."""
    if path.suffix.lower() == ".raw":
        rpl = next((p for p in (path.with_suffix(".rpl"), path.with_suffix(".RPL")) if p.is_file()), None)
        return rpl, path
    raw = next((p for p in (path.with_suffix(".raw"), path.with_suffix(".RAW")) if p.is_file()), None)
    return path, raw


def _parse_header(rpl: Path) -> dict:
    """Ripple keys via rsciio's parser (handles Bruker's ``data-Length`` and INCA quirks)."""
    # lazy: rosettasciio is heavy
    from rsciio.ripple._api import parse_ripple

    text = head_text(rpl, 65536)
    if text is None:
        raise ValueError("the .rpl is not a text header")
    handle = io.StringIO(text)
    handle.name = str(rpl)
    return parse_ripple(handle)


def _looks_like_rpl(path: Path) -> bool:
    text = head_text(path, 8192)
    if not text:
        return False
    keys = {line.split("\t", 1)[0].strip().lower() for line in text.splitlines() if "\t" in line}
    return all(k in keys for k in _REQUIRED)


def _inspect(path: Path):
    """(info, None) when readable, (None, reason) for a broken ripple pair, (None, None) if
    the file is not ripple."""
    path = Path(path)
    rpl, raw = _pair(path)
    if rpl is None or not _looks_like_rpl(rpl):
        if rpl is None:
            return None, None  # a .raw alone is anybody's binary
        if path.suffix.lower() == ".rpl":
            return None, "not a ripple header (needs width, height, depth, data-type, record-by)"
        return None, None
    try:
        info = _parse_header(rpl)
    except Exception as exc:  # noqa: BLE001 - rsciio raises IOError/KeyError/ValueError
        # rsciio's text spans lines ("Wrong value for key data-length.\nValue read is ..."):
        # one line, in our words; the key it names is kept.
        key = re.search(r"key ([\w-]+)", str(exc))
        what = f"a wrong value for {key.group(1)}" if key else "a line that cannot be parsed"
        return None, f"bad ripple header {rpl.name}: {what}"
    if raw is None:
        return None, f"the binary data file {rpl.with_suffix('.raw').name} is missing"
    if info["record-by"] not in ("vector", "image"):
        return None, "record-by dont-care: a single image, not a spectrum image"
    dtype = _dtype(info)
    shape = (int(info["height"]), int(info["width"]), int(info["depth"]))
    if min(shape) < 1:
        return None, f"counts have a zero-sized axis: {shape[0]} x {shape[1]} x {shape[2]} in {rpl.name}"
    expected = int(info.get("offset", 0)) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = raw.stat().st_size
    if actual != expected:
        return None, (
            f"{raw.name} holds {actual} bytes but {rpl.name} describes {shape[0]} x {shape[1]} "
            f"x {shape[2]} values of {dtype.itemsize} byte(s)"
            f"{' after a ' + str(info['offset']) + '-byte offset' if info.get('offset') else ''}"
            f" = {expected} bytes"
        )
    info["_rpl"], info["_raw"], info["_dtype"], info["_shape"] = rpl, raw, dtype, shape
    return info, None


def _dtype(info: dict) -> np.dtype:
    kind = {"signed": "i", "unsigned": "u", "float": "f"}[info["data-type"]]
    dtype = np.dtype(f"{kind}{int(info['data-length'])}")
    order = info.get("byte-order", "dont-care")
    if order == "big-endian":
        dtype = dtype.newbyteorder(">")
    elif order == "little-endian":
        dtype = dtype.newbyteorder("<")
    return dtype


@never_raises
def sniff(path) -> str | None:
    """``"ripple"`` for a consistent .rpl/.raw pair (given either file), else None.
    Reads the .rpl header and the .raw's size only."""
    info, _ = _inspect(Path(path))
    return "ripple" if info else None


def explain(path) -> str | None:
    """Why a ripple pair cannot be read (None when it can, or when it is not ripple)."""
    try:
        return _inspect(Path(path))[1]
    except Exception:  # noqa: BLE001
        return None


@wrap_errors
def read(path) -> XRFCube:
    """Memory-map a ripple pair.

    Returns
    -------
    XRFCube
        counts: numpy memmap viewed as (rows, columns, channels); energy calibrated only if
        the header has one.

    Raises
    ------
    UnreadableFileError
        Missing .raw, size mismatch with the header, not a spectrum image.
    """
    info, reason = _inspect(Path(path))
    if info is None:
        raise UnreadableFileError(path, reason or "not a ripple .rpl/.raw pair")
    rows, cols, depth = info["_shape"]
    offset = int(info.get("offset", 0))
    if info["record-by"] == "vector":
        counts = np.memmap(info["_raw"], dtype=info["_dtype"], mode="r", offset=offset, shape=(rows, cols, depth))
    else:  # one image per channel
        stack = np.memmap(info["_raw"], dtype=info["_dtype"], mode="r", offset=offset, shape=(depth, rows, cols))
        counts = stack.transpose(1, 2, 0)
    check_small_counts(counts, path)

    notes = []
    energy = _energy(info, depth, notes)
    pixel_size = None
    h_factor = length_factor_to_mm(info.get("height-units"))
    w_factor = length_factor_to_mm(info.get("width-units"))
    if h_factor and w_factor and info.get("height-scale") and info.get("width-scale"):
        pixel_size = (float(info["height-scale"]) * h_factor, float(info["width-scale"]) * w_factor)
    live_time = float(info["live-time"]) if info.get("live-time") else None
    metadata = {k: v for k, v in info.items() if not k.startswith("_")}
    if notes:
        metadata["reader_notes"] = notes
    return XRFCube(
        counts,
        energy,
        live_time=live_time,
        pixel_size=pixel_size,
        source=str(info["_rpl"]),
        format="ripple",
        metadata=metadata,
    )


def _energy(info: dict, depth: int, notes: list) -> EnergyAxis:
    units = info.get("depth-units")
    factor = energy_factor_to_keV(units)
    origin = float(info.get("depth-origin", 0.0) or 0.0)
    scale = info.get("depth-scale")
    if scale:
        if factor is None:
            # HyperSpy writes the units; without them, keV/ch vs eV/ch is told by magnitude.
            factor = 1.0 if float(scale) < 0.5 else 1e-3
            notes.append(f"depth-units missing; depth-scale read as {'keV' if factor == 1 else 'eV'}")
        return EnergyAxis.from_calibration(depth, origin * factor, float(scale) * factor)
    ev_per_chan = float(info.get("ev-per-chan", 0) or 0)
    if ev_per_chan > 0:
        origin_factor = factor if factor is not None else 1e-3
        return EnergyAxis.from_calibration(depth, origin * origin_factor, ev_per_chan * 1e-3)
    notes.append("no ev-per-chan / depth-scale in the header: uncalibrated")
    return EnergyAxis.uncalibrated(depth)
