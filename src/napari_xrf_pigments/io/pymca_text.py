"""Single spectra in text formats, read with PyMca5 (``PyMca5.PyMcaIO.specfilewrapper``).

- ``spec``: SPEC files holding one MCA spectrum (``#@MCA`` / ``@A`` lines); calibration from
  ``#@CALIB a b c`` (keV), first channel from ``#@CHANN``, live time from ``#@CTIME``.
- ``iaea-spe``: IAEA/AXIL (and Ortec-style) ``.spe`` (``$SPEC_ID`` ... ``$DATA:``); calibration
  from ``$MCA_CAL`` when present (PyMca turns it into ``#@CALIB``), live time from
  ``$MEAS_TIM``. PyMca's ``Steel.spe`` has none: its calibration lives in a fit configuration
  (``Steel.cfg``), so it opens uncalibrated.
- ``ascii-spectrum``: a single column of counts, ``#`` comment lines allowed (PyMca's
  ``XRFSpectrum.mca``); never calibrated.

Each is a 1 x 1 cube of float64 counts (text carries no binary type; PyMca reads float64).
Files holding several spectra (SPEC scans with an MCA per point) are refused with a reason.
"""

from __future__ import annotations

import re

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ._common import check_small_counts, head_text, never_raises, plausible_calibration, wrap_errors

FORMATS = ("spec", "iaea-spe", "ascii-spectrum")

_IAEA_KEYS = ("$SPEC_ID", "$DATE_MEA", "$MEAS_TIM", "$SPEC_REM", "$DATA:", "$MCA_CAL")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_MIN_ASCII_CHANNELS = 64


@never_raises
def sniff(path) -> str | None:
    """``"iaea-spe"``, ``"spec"`` (with MCA data) or ``"ascii-spectrum"`` (one column of
    counts) from the first 64 kB of text; else None."""
    text = head_text(path)
    if not text:
        return None
    stripped = text.lstrip()
    if stripped.startswith(_IAEA_KEYS) and "$DATA:" in text:
        return "iaea-spe"
    lines = text.splitlines()
    if _is_spec(lines):
        # One spectrum only: a second "@A" line means a scan of several spectra.
        return "spec" if sum(line.startswith("@A") for line in lines) <= 1 else None
    complete = len(text) < 65536
    data = [ln.strip() for ln in (lines if complete else lines[:-1]) if ln.strip() and not ln.lstrip().startswith("#")]
    if len(data) >= _MIN_ASCII_CHANNELS and all(_NUMBER.match(ln) for ln in data):
        return "ascii-spectrum"
    return None


def _is_spec(lines) -> bool:
    return any(line.startswith("#S ") for line in lines) and any(
        line.startswith(("#@MCA", "@A")) for line in lines
    )


def explain(path) -> str | None:
    """Why a SPEC file with MCA data is not read (several spectra), else None."""
    try:
        text = head_text(path)
        lines = text.splitlines() if text else []
        n = sum(line.startswith("@A") for line in lines)
        if _is_spec(lines) and n > 1:
            return (
                f"SPEC file with several MCA spectra ({n}{'+' if len(text) >= 65536 else ''}; "
                "a scan of several points or detectors): only single-spectrum files are read; "
                "convert the scan to a NeXus HDF5 cube"
            )
    except Exception:  # noqa: BLE001
        return None
    return None


def _floats(line: str) -> list[float]:
    out = []
    for token in line.split()[1:]:
        try:
            out.append(float(token))
        except ValueError:
            break
    return out


@wrap_errors
def read(path) -> XRFCube:
    """Read a single-spectrum SPEC, IAEA .spe or one-column ASCII file with PyMca.

    Returns
    -------
    XRFCube
        counts float64 (1, 1, channels); energy from the file's calibration in keV, or
        uncalibrated; live time in s when recorded.
    """
    fmt = sniff(path)
    if fmt is None:
        raise UnreadableFileError(path, "not a SPEC, IAEA .spe or single-column spectrum file")
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaIO import specfilewrapper

    sf = specfilewrapper.Specfile(str(path))
    spectra = []
    for i in range(sf.scanno()):
        scan = sf[i]
        for j in range(scan.nbmca()):
            spectra.append((scan, j))
    if not spectra:
        raise UnreadableFileError(path, "no MCA spectrum in the file")
    if len(spectra) > 1:
        raise UnreadableFileError(
            path,
            f"it holds {len(spectra)} MCA spectra (a scan with several points or detectors); "
            "only single-spectrum files are read: convert the scan to a NeXus HDF5 cube",
        )
    scan, j = spectra[0]
    counts = np.asarray(scan.mca(j + 1), dtype=np.float64).ravel()
    if counts.size == 0:
        raise UnreadableFileError(path, "the spectrum has no channels")
    check_small_counts(counts, path)

    metadata = {}
    energy = EnergyAxis.uncalibrated(counts.size)
    first, step = 0.0, 1.0
    chann = scan.header("@CHANN")
    if chann:
        values = _floats(chann[min(j, len(chann) - 1)])
        if len(values) >= 2:
            first = values[1]
        if len(values) >= 4 and values[3] > 0:
            step = values[3]
    calib = scan.header("@CALIB")
    if calib:
        values = _floats(calib[min(j, len(calib) - 1)])
        cal = plausible_calibration(*(values + [0.0, 0.0, 0.0])[:3]) if len(values) >= 2 else None
        if cal is not None:
            zero, gain, quad = cal
            # Energy of stored channel i is E(first + step*i): re-expand the polynomial in i.
            energy = EnergyAxis.from_calibration(
                counts.size,
                zero + gain * first + quad * first**2,
                step * (gain + 2 * quad * first),
                quad * step**2,
            )
            metadata["calibration_from"] = "#@CALIB" if fmt == "spec" else "$MCA_CAL"
    live_time = None
    ctime = scan.header("@CTIME")
    if ctime:
        values = _floats(ctime[min(j, len(ctime) - 1)])
        if len(values) >= 2 and values[1] > 0:
            live_time = values[1]  # preset, live, real
    if not energy.calibrated and path.with_suffix(".cfg").is_file():
        metadata["hint"] = (
            f"{path.with_suffix('.cfg').name} beside it may hold the calibration (PyMca fit config)"
        )
    return XRFCube(
        counts.reshape(1, 1, -1),
        energy,
        live_time=live_time,
        source=str(path),
        format=fmt,
        metadata=metadata,
    )
