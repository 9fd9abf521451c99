"""GSECARS / EPICS multi-element MCA ASCII files (``VERSION: 3.1``; ``.mca``, ``.xrf``).

Header lines ``KEY: value value ...`` (one value per detector element: ``CAL_OFFSET``,
``CAL_SLOPE``, ``CAL_QUAD`` in keV, ``REAL_TIME``, ``LIVE_TIME`` in s), then ``DATA:`` and one
row per channel with one column per element. A short parser: PyMca's specfilewrapper takes
these files for plain columns and loses the calibration.

The cube is a 1 x 1 spectrum. Detector elements are summed channel by channel only when their
calibrations agree to within half a channel everywhere (then the mean calibration applies);
otherwise summing would smear every peak, so element 0 is used alone and
``metadata["elements_note"]`` says why. Every element's spectrum and calibration stays in
``metadata["element_spectra"]`` / ``metadata["element_calibrations"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ._common import check_small_counts, head_text, never_raises, wrap_errors

FORMATS = ("gse-mca",)

# Elements are summed only if their channel energies differ by less than this many channels.
SUM_TOLERANCE_CHANNELS = 0.5


@never_raises
def sniff(path) -> str | None:
    """``"gse-mca"`` if the file starts with a GSECARS MCA header, else None."""
    text = head_text(path, 4096)
    if not text or not text.lstrip().upper().startswith("VERSION:"):
        return None
    upper = text.upper()
    if "CHANNELS:" in upper and "CAL_SLOPE:" in upper:
        return "gse-mca"
    return None


def _parse(path: Path) -> tuple[dict, np.ndarray]:
    header: dict[str, str] = {}
    rows = []
    in_data = False
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            if in_data:
                rows.append(line.split())
                continue
            key, _, value = line.partition(":")
            key = key.strip().upper()
            if key == "DATA":
                in_data = True
            elif key == "ENVIRONMENT":
                header.setdefault("ENVIRONMENT", "")
                header["ENVIRONMENT"] += value.strip() + "\n"
            else:
                header[key] = value.strip()
    if not in_data:
        raise UnreadableFileError(path, "no DATA: section")
    n_elements = int(header.get("ELEMENTS", "1").split()[0])
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise UnreadableFileError(path, f"DATA rows are not all numbers or not all {n_elements} wide") from exc
    if data.ndim != 2 or data.shape[1] != n_elements:
        raise UnreadableFileError(path, f"DATA rows should have {n_elements} columns (ELEMENTS), found {data.shape}")
    n_channels = int(header.get("CHANNELS", data.shape[0]).split()[0])
    if data.shape[0] != n_channels:
        raise UnreadableFileError(path, f"{data.shape[0]} DATA rows but CHANNELS: {n_channels} (file cut short?)")
    return header, data.T  # (elements, channels)


def _per_element(header: dict, key: str, n: int, default: float | None = None) -> np.ndarray | None:
    if key not in header:
        return None if default is None else np.full(n, default)
    values = np.array(header[key].split(), dtype=np.float64)
    if values.size == 1 and n > 1:
        values = np.repeat(values, n)
    if values.size != n:
        raise ValueError(f"{key} has {values.size} values for {n} elements")
    return values


@wrap_errors
def read(path) -> XRFCube:
    """Read a GSECARS MCA file as a 1 x 1 cube.

    Returns
    -------
    XRFCube
        counts float64 (1, 1, channels); energy from CAL_OFFSET/CAL_SLOPE/CAL_QUAD (keV) of
        element 0, or their mean when all elements agree and are summed; live time in s.
    """
    if sniff(path) is None:
        raise UnreadableFileError(path, "not a GSECARS MCA file (no VERSION:/CHANNELS:/CAL_SLOPE: header)")
    header, spectra = _parse(path)
    n_el, n_ch = spectra.shape
    offset = _per_element(header, "CAL_OFFSET", n_el, 0.0)
    slope = _per_element(header, "CAL_SLOPE", n_el)
    quad = _per_element(header, "CAL_QUAD", n_el, 0.0)
    live = _per_element(header, "LIVE_TIME", n_el, 0.0)
    real = _per_element(header, "REAL_TIME", n_el, 0.0)

    ch = np.arange(n_ch, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an absurd calibration: EnergyAxis says why
        energies = offset[:, None] + slope[:, None] * ch + quad[:, None] * ch**2
        spread_keV = float(np.max(np.abs(energies - energies[0]))) if n_el > 1 else 0.0
    tolerance_keV = SUM_TOLERANCE_CHANNELS * abs(slope[0])
    metadata = {
        "n_detector_elements": n_el,
        "element_calibrations": np.stack([offset, slope, quad], axis=1).tolist(),
        "element_live_time_s": live.tolist(),
        "element_real_time_s": real.tolist(),
        "element_spectra": spectra,
        "calibration_spread_keV": spread_keV,
    }
    for key in ("DATE", "TWO_THETA"):
        if key in header:
            metadata[key.lower()] = header[key]
    if n_el == 1:
        counts, zero, gain, q, live_time = spectra[0], offset[0], slope[0], quad[0], live[0]
        metadata["elements_used"] = [0]
    elif spread_keV <= tolerance_keV:
        counts = spectra.sum(axis=0)
        zero, gain, q = offset.mean(), slope.mean(), quad.mean()
        live_time = float(live.mean())  # summed counts ~ n_el detectors over the mean live time
        metadata["elements_used"] = list(range(n_el))
        metadata["elements_note"] = (
            f"{n_el} elements summed: calibrations agree within {spread_keV * 1000:.1f} eV"
        )
    else:
        counts, zero, gain, q, live_time = spectra[0], offset[0], slope[0], quad[0], live[0]
        metadata["elements_used"] = [0]
        metadata["elements_note"] = (
            f"element 0 only: the {n_el} elements' calibrations differ by up to "
            f"{spread_keV * 1000:.0f} eV (more than half a channel, {tolerance_keV * 1000:.1f} eV), "
            "so summing them would broaden every peak; all spectra are in metadata['element_spectra']"
        )
    check_small_counts(counts, path)
    return XRFCube(
        counts.reshape(1, 1, -1),
        EnergyAxis.from_calibration(n_ch, zero, gain, q),
        live_time=float(live_time) if live_time else None,
        source=str(path),
        format="gse-mca",
        metadata=metadata,
    )
