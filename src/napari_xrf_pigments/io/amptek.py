"""Amptek PMCA spectra (``.mca`` text written by DppMCA / ADMCA for the X-123, DP5, PX5, MCA8000D).

Layout (Amptek's "Spectrum File Format", and the files DppMCA writes with firmware 6)::

    <<PMCA SPECTRUM>>
    TAG - live_data                     KEY - value header lines
    LIVE_TIME - 29.800000               s (0 when the software did not record it)
    REAL_TIME - 30.000000               s
    START_TIME - 12/04/2026 10:11:12
    SERIAL_NUMBER - 12345               often 0: the DPP STATUS block has the real one
    <<CALIBRATION>>                     optional
    LABEL - Channel                     the energy axis' label, sometimes its unit
    552.31 5.9                          (channel, energy) pairs; channel 0 = the first count
    <<ROI>>                             optional: start and end channel per line
    <<DATA>>
    0                                   one count per line
    ...
    <<END>>
    <<DP5 CONFIGURATION>>               optional, after <<END>>: "MCAC=2048;    MCA/MCS Channels"
    <<DP5 CONFIGURATION END>>           (firmware 5 wrote <<DPP CONFIGURATION>>; both are read)
    <<DPP STATUS>>                      optional: "Device Type: PX5", "Serial Number: 2524", ...
    <<DPP STATUS END>>

The cube is a 1 x 1 spectrum of uint32 counts (the devices' counters are 32-bit). The energy
axis comes from the calibration pairs (:func:`~napari_xrf_pigments.io._common.fit_pairs`: a
line, or a quadratic when the line misses a pair by more than a quarter channel and the
quadratic halves the miss); the fit and its largest residual are in ``metadata``. Energies are
keV unless the label says eV or they exceed 200 (no XRF line does in keV). The format holds no
X-ray tube settings (``HVSE`` and ``HV Volt`` are the detector's bias), so none are reported.

Refused with a reason: no ``<<DATA>>`` block, no ``<<END>>`` after it, fewer or more counts than
``MCAC`` says, a line of the data block that is not a whole count, negative counts, a
``<<CALIBRATION>>`` block with one pair or with energies that do not increase with the channel.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import CalibrationError, UnreadableFileError
from ._common import fit_pairs, head_text, never_raises, read_head, wrap_errors

FORMATS = ("amptek-mca",)

MAGIC = "<<PMCA SPECTRUM>>"
_SECTION = re.compile(r"^<<(.+)>>$")
_COUNT_LIMIT = 2**32  # the DPPs' 32-bit channel counters


@never_raises
def sniff(path) -> str | None:
    """``"amptek-mca"`` if the file starts with ``<<PMCA SPECTRUM>>``, else None (first 64 kB)."""
    text = head_text(path)
    if text and text.lstrip("\ufeff \t\r\n").upper().startswith(MAGIC):
        return "amptek-mca"
    return None


def explain(path) -> str | None:
    """Why a PMCA file cannot be read (cut short, text among the counts, a bad calibration
    block...); None if it can, or if it is not a PMCA file."""
    try:
        head = read_head(path)
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").upper().startswith(MAGIC.encode()) and b"\x00" in head:
            return "an Amptek PMCA file with binary zeros in its text (damaged data: a zeroed block?)"
        if sniff(path) is None:
            return None
        read(path)
    except UnreadableFileError as exc:
        return exc.reason
    except Exception:  # noqa: BLE001 - explain is advice; read() reports other failures
        return None
    return None


class _Pmca:
    """What a PMCA file holds, parsed (no validation of the calibration yet)."""

    def __init__(self):
        self.header: dict[str, str] = {}
        self.calibration_label: str | None = None
        self.calibration_lines: list[str] | None = None  # None: no <<CALIBRATION>> block
        self.rois: list[list[int]] = []
        self.counts: np.ndarray | None = None
        self.configuration: dict[str, str] = {}
        self.status: dict[str, str] = {}


def _parse(path: Path) -> _Pmca:
    """Parse a PMCA file; UnreadableFileError naming what is wrong with it."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # DppMCA writes the Windows code page (e.g. "Board Temp: 29°C")
        text = raw.decode("latin-1")
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff \t\n")
    if not text.upper().startswith(MAGIC):
        raise UnreadableFileError(path, "not an Amptek PMCA spectrum (no <<PMCA SPECTRUM>> first line)")
    start = text.find("\n<<DATA>>")
    if start < 0:
        raise UnreadableFileError(path, "the PMCA file has no <<DATA>> block (the file is cut short?)")
    body_start = text.find("\n", start + 1)
    end = text.find("\n<<END>>", start + 1)
    if end < 0 or body_start < 0:
        raise UnreadableFileError(
            path, "the <<DATA>> block does not end with <<END>>: the file is cut short"
        )
    pmca = _Pmca()
    _parse_header(path, text[:start].splitlines()[1:], pmca)
    pmca.counts = _parse_counts(path, text[body_start + 1:end + 1])
    _parse_trailer(text[end + len("\n<<END>>"):].splitlines(), pmca)

    n = pmca.counts.size
    declared = pmca.configuration.get("MCAC")
    if declared is not None:
        try:
            declared_n = int(declared)
        except ValueError:
            declared_n = None
        if declared_n is not None and declared_n != n:
            if n < declared_n:
                raise UnreadableFileError(
                    path, f"the <<DATA>> block holds {n} counts but MCAC={declared_n} channels "
                          "(the file is cut short?)"
                )
            raise UnreadableFileError(
                path, f"the <<DATA>> block holds {n} counts, more than MCAC={declared_n} channels"
            )
    return pmca


def _parse_header(path: Path, lines: list[str], pmca: _Pmca) -> None:
    section = "PMCA SPECTRUM"
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        match = _SECTION.match(stripped)
        if match:
            section = match.group(1).strip().upper()
            if section == "CALIBRATION":
                pmca.calibration_lines = []
            continue
        if section == "PMCA SPECTRUM":
            key, sep, value = stripped.partition(" - ")
            if not sep:
                key, sep, value = stripped.partition("-")
            if sep:
                pmca.header[key.strip().upper()] = value.strip()
        elif section == "CALIBRATION":
            if stripped.upper().startswith("LABEL"):
                pmca.calibration_label = stripped.partition("-")[2].strip()
            else:
                pmca.calibration_lines.append(stripped)
        elif section == "ROI":
            values = stripped.split()
            if len(values) == 2 and all(v.lstrip("-").isdigit() for v in values):
                pmca.rois.append([int(values[0]), int(values[1])])
    if pmca.calibration_lines is not None and pmca.calibration_label is None:
        pmca.calibration_label = ""


def _parse_counts(path: Path, block: str) -> np.ndarray:
    """The counts of a data block (one whole number per line, blank lines ignored)."""
    lines = block.split("\n")
    try:
        values = [int(line) for line in lines if line.strip()]
    except ValueError:
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                int(line)
            except ValueError:
                shown = line.strip()
                shown = shown if len(shown) <= 30 else shown[:27] + "..."
                raise UnreadableFileError(
                    path, f"line {i} of the <<DATA>> block is not a whole count: {shown!r}"
                ) from None
        raise  # pragma: no cover - some line failed above
    if not values:
        raise UnreadableFileError(path, "the <<DATA>> block holds no counts")
    low, high = min(values), max(values)
    if low < 0:
        raise UnreadableFileError(
            path, f"negative count {low} in channel {values.index(low)} of the <<DATA>> block: XRF "
                  "counts cannot be negative (was a background already subtracted?)"
        )
    if high >= _COUNT_LIMIT:
        raise UnreadableFileError(
            path, f"count {high} in channel {values.index(high)} is more than the device's 32-bit "
                  "counters hold (damaged data?)"
        )
    return np.array(values, dtype=np.uint32)


def _parse_trailer(lines: list[str], pmca: _Pmca) -> None:
    """The configuration and status blocks after <<END>>."""
    target = None
    for line in lines:
        stripped = line.strip()
        match = _SECTION.match(stripped)
        if match:
            name = match.group(1).strip().upper()
            if name.endswith(" END"):
                target = None
            elif name.endswith("CONFIGURATION"):
                target = pmca.configuration
            elif name.endswith("STATUS"):
                target = pmca.status
            else:
                target = None
            continue
        if target is None or not stripped:
            continue
        if target is pmca.configuration:
            key, sep, rest = stripped.partition("=")
            if sep:
                target[key.strip().upper()] = rest.partition(";")[0].strip()
        else:
            key, sep, value = stripped.partition(":")
            if sep:
                target[key.strip()] = value.strip()


def _energy_unit(label: str, energies: np.ndarray) -> float:
    """Factor to keV for the calibration energies: the label's unit, else their magnitude."""
    words = re.findall(r"[a-zA-Z]+", label or "")
    lowered = [w.lower() for w in words]
    if "kev" in lowered:
        return 1.0
    if "ev" in lowered:
        return 1e-3
    return 1e-3 if np.nanmax(np.abs(energies)) > 200 else 1.0


def _calibration(path: Path, pmca: _Pmca, n_channels: int, metadata: dict) -> EnergyAxis:
    if pmca.calibration_lines is None:
        return EnergyAxis.uncalibrated(n_channels)
    pairs = []
    for line in pmca.calibration_lines:
        values = line.replace(",", " ").split()
        try:
            if len(values) != 2:
                raise ValueError
            pairs.append((float(values[0]), float(values[1])))
        except ValueError:
            shown = line if len(line) <= 30 else line[:27] + "..."
            raise UnreadableFileError(
                path, f"the <<CALIBRATION>> block holds {shown!r}, not a (channel, energy) pair"
            ) from None
    if not pairs:
        metadata.setdefault("reader_notes", []).append("empty <<CALIBRATION>> block: uncalibrated")
        return EnergyAxis.uncalibrated(n_channels)
    pairs = np.array(pairs, dtype=np.float64)
    factor = _energy_unit(pmca.calibration_label, pairs[:, 1])
    try:
        fit = fit_pairs(pairs[:, 0], pairs[:, 1] * factor, n_channels, what="the <<CALIBRATION>> block")
    except CalibrationError as exc:
        raise UnreadableFileError(path, str(exc)) from None
    metadata["calibration_pairs"] = [[float(c), float(e) * factor] for c, e in pairs]
    metadata["calibration_label"] = pmca.calibration_label
    metadata["calibration_unit"] = "keV" if factor == 1.0 else "eV"
    metadata["calibration_fit"] = fit.describe()
    metadata["calibration_residual_keV"] = fit.residual_keV
    return EnergyAxis.from_calibration(n_channels, fit.zero, fit.gain, fit.quad)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if np.isfinite(seconds) and seconds > 0 else None


@wrap_errors
def read(path) -> XRFCube:
    """Read an Amptek PMCA ``.mca`` file as a 1 x 1 cube.

    Returns
    -------
    XRFCube
        counts uint32 (1, 1, channels); energy from the ``<<CALIBRATION>>`` pairs (keV), or
        uncalibrated without them; live time in s (``LIVE_TIME``, None when 0). ``metadata``:
        ``real_time_s``, ``start_time`` (as written), ``serial_number``, ``device``,
        ``firmware``, ``calibration_pairs`` ([channel, keV]), ``calibration_fit``,
        ``calibration_residual_keV``, ``rois``, ``dpp_configuration``, ``dpp_status``.

    Raises
    ------
    UnreadableFileError
        Not a PMCA file, cut short, text or negative numbers among the counts, counts that do
        not match ``MCAC``, a calibration block with one pair or non-monotonic pairs.
    """
    pmca = _parse(path)
    counts = pmca.counts
    header = pmca.header
    metadata: dict = {}
    for key in ("TAG", "DESCRIPTION", "START_TIME", "GAIN", "THRESHOLD", "LIVE_MODE", "PRESET_TIME"):
        if header.get(key):
            metadata[key.lower()] = header[key]
    real_time = _seconds(header.get("REAL_TIME"))
    if real_time is not None:
        metadata["real_time_s"] = real_time
    serial = header.get("SERIAL_NUMBER", "").strip()
    status_serial = pmca.status.get("Serial Number", "").strip()
    if serial in ("", "0") and status_serial:
        serial = status_serial  # DppMCA writes 0 in the header, the device's number in the status
    if serial and serial != "0":
        metadata["serial_number"] = serial
    for key, name in (("Device Type", "device"), ("Firmware", "firmware")):
        if pmca.status.get(key):
            metadata[name] = pmca.status[key]
    if pmca.rois:
        metadata["rois"] = pmca.rois
    if pmca.configuration:
        metadata["dpp_configuration"] = pmca.configuration
    if pmca.status:
        metadata["dpp_status"] = pmca.status
    energy = _calibration(path, pmca, counts.size, metadata)
    return XRFCube(
        counts.reshape(1, 1, -1),
        energy,
        live_time=_seconds(header.get("LIVE_TIME")),
        source=str(path),
        format="amptek-mca",
        metadata=metadata,
    )


def write_pmca(path, counts, *, calibration=None, live_time=None, real_time=None,
               start_time: str = "", serial_number: str = "0", tag: str = "live_data",
               configuration: dict | None = None, status: dict | None = None) -> Path:
    """Write one spectrum as an Amptek PMCA ``.mca`` file (the layout DppMCA writes).

    For tests, benchmarks and exchange with Amptek's software; not atomic (a point file).

    Parameters
    ----------
    path : str or Path
    counts : array-like of non-negative integers, shape (channels,)
    calibration : sequence of (channel, energy keV) pairs, optional
        Written as a ``<<CALIBRATION>>`` block labelled ``keV``.
    live_time, real_time : float, optional
        Seconds.
    start_time, serial_number, tag : str
        Header values as written.
    configuration : dict, optional
        ``<<DP5 CONFIGURATION>>`` entries (``MCAC`` is added: the channel count).
    status : dict, optional
        ``<<DPP STATUS>>`` entries (e.g. ``{"Device Type": "DP5", "Serial Number": "12345"}``).
    """
    counts = np.asarray(counts).ravel()
    lines = [
        MAGIC, f"TAG - {tag}", "DESCRIPTION - ", "GAIN - 2", "THRESHOLD - 0", "LIVE_MODE - 0",
        "PRESET_TIME - 0", f"LIVE_TIME - {float(live_time or 0):.6f}",
        f"REAL_TIME - {float(real_time or 0):.6f}", f"START_TIME - {start_time}",
        f"SERIAL_NUMBER - {serial_number}",
    ]
    if calibration is not None:
        lines += ["<<CALIBRATION>>", "LABEL - keV"]
        lines += [f"{float(c):g} {float(e):g}" for c, e in calibration]
    lines.append("<<DATA>>")
    lines += [str(int(c)) for c in counts]
    lines.append("<<END>>")
    config = {"MCAC": str(counts.size), **(configuration or {})}
    lines.append("<<DP5 CONFIGURATION>>")
    lines += [f"{key}={value};    " for key, value in config.items()]
    lines.append("<<DP5 CONFIGURATION END>>")
    if status:
        lines.append("<<DPP STATUS>>")
        lines += [f"{key}: {value}" for key, value in status.items()]
        lines.append("<<DPP STATUS END>>")
    path = Path(path)
    path.write_text("\r\n".join(lines) + "\r\n", encoding="latin-1", newline="")
    return path
