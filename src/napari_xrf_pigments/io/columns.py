"""Two-column text spectra (energy, counts): the CSV / TXT export of many instruments.

One row per channel: the channel's energy, then its counts, separated by a comma, a semicolon,
a tab or spaces (with a semicolon or tab, a decimal comma is read too: ``1,234;56``). Up to
three header lines may come first (e.g. ``Energy (keV),Counts``), and ``#`` lines are comments.

Energy unit: the first header field's unit when it names one (``keV``, ``eV``); otherwise keV,
unless some energy exceeds 200, which can only be eV (no XRF line lies above 200 keV). The
calibration is fitted to the energy column (:func:`~napari_xrf_pigments.io._common.fit_pairs`,
channel = row), so the cube carries a polynomial calibration and its largest residual.

Refused with a reason (these files are not claimed, so other napari plugins may read them): an
energy column that does not increase, or is not uniform (a step outside 0.5-1.5 times the
median step: missing rows or a jump, or a column no quadratic fits within half a channel), a
first column of channel numbers (0, 1, 2, ...: no energies; save the counts alone, one per
line, to open it uncalibrated), negative counts, a row that is not two numbers.

The cube is a 1 x 1 spectrum of float64 counts (text has no binary type).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import CalibrationError, UnreadableFileError
from ._common import fit_pairs, head_text, never_raises, wrap_errors

FORMATS = ("two-column",)

# A spectrum has at least this many channels (as pymca_text's one-column files).
MIN_ROWS = 64
MAX_HEADER_LINES = 3
# Each energy step must lie within these multiples of the median step.
STEP_RANGE = (0.5, 1.5)
HEAD_BYTES = 65536  # what sniff and explain read
_FOREIGN_STARTS = ("<<PMCA", "VERSION:", "$")  # Amptek, GSECARS and IAEA files have their readers


class _Rows:
    """Rows of a two-column text: values, their line numbers, header lines, the first bad line."""

    def __init__(self):
        self.header: list[str] = []
        self.values: list[tuple[float, float]] = []
        self.lines: list[int] = []
        self.bad: tuple[int, str] | None = None  # (line number, text) of the first non-row

    def energies(self) -> np.ndarray:
        return np.array([v[0] for v in self.values], dtype=np.float64)

    def counts(self) -> np.ndarray:
        return np.array([v[1] for v in self.values], dtype=np.float64)


def _fields(line: str) -> list[str]:
    for delimiter in ("\t", ";", ","):
        if delimiter in line:
            fields = [f.strip() for f in line.split(delimiter)]
            if delimiter != ",":  # decimal commas are only unambiguous beside ; or tab
                fields = [f.replace(",", ".") if "." not in f else f for f in fields]
            while fields and not fields[-1]:
                fields.pop()  # a trailing delimiter
            return fields
    return line.split()


def _pair(line: str) -> tuple[float, float] | None:
    fields = _fields(line)
    if len(fields) != 2:
        return None
    try:
        return float(fields[0]), float(fields[1])
    except ValueError:
        return None


def scan_pairs(lines, first_line: int = 1) -> _Rows:
    """Rows of two numbers (up to MAX_HEADER_LINES header lines first; ``#`` lines and blank
    lines skipped); stops at the first other line (``rows.bad``). Also reads positions files."""
    rows = _Rows()
    for number, raw in enumerate(lines, start=first_line):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pair = _pair(line)
        if pair is None:
            if not rows.values and len(rows.header) < MAX_HEADER_LINES:
                rows.header.append(line)
                continue
            rows.bad = (number, line)
            break
        rows.values.append(pair)
        rows.lines.append(number)
    return rows


def _looks_foreign(text: str) -> bool:
    stripped = text.lstrip("\ufeff \t\r\n").upper()
    if stripped.startswith(_FOREIGN_STARTS):
        return True
    # SPEC files (scans of counters are columns too): PyMca's territory, never energies.
    return bool(re.search(r"^#[SF] ", text, re.MULTILINE))


def _unit(header: list[str]) -> str | None:
    """``"keV"``, ``"eV"`` or ``"channel"`` from the last header line's first field, else None."""
    if not header:
        return None
    fields = _fields(header[-1])
    words = [w.lower() for w in re.findall(r"[a-zA-Z]+", fields[0] if fields else "")]
    if "kev" in words:
        return "keV"
    if "ev" in words:
        return "eV"
    if any(w in ("channel", "channels", "chan", "ch") for w in words):
        return "channel"
    return None


def _check(rows: _Rows, n_min: int) -> tuple[str | None, dict]:
    """(reason, facts): why the rows are not an energy spectrum (None if they are), and the
    energy unit, factor and calibration fit when they are."""
    energies, counts = rows.energies(), rows.counts()
    n = energies.size
    if n < n_min:
        return f"{n} rows of (energy, counts): too few for a spectrum (at least {n_min})", {}
    if not (np.all(np.isfinite(energies)) and np.all(np.isfinite(counts))):
        i = int(np.flatnonzero(~(np.isfinite(energies) & np.isfinite(counts)))[0])
        return f"line {rows.lines[i]} holds a value that is not a finite number", {}
    unit = _unit(rows.header)
    steps = np.diff(energies)
    if unit == "channel" or (
        unit is None and energies[0] in (0.0, 1.0) and np.all(steps == 1.0)
    ):
        return ("its first column holds channel numbers (0, 1, 2, ...), not energies: export "
                "the energy column (keV or eV), or save the counts alone, one per line, to open "
                "the spectrum uncalibrated"), {}
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        return (f"the energy column is not increasing: line {rows.lines[i + 1]} "
                f"({energies[i + 1]:g}) follows line {rows.lines[i]} ({energies[i]:g})"), {}
    median = float(np.median(steps))
    odd = np.flatnonzero((steps < STEP_RANGE[0] * median) | (steps > STEP_RANGE[1] * median))
    if odd.size:
        i = int(odd[0])
        return (f"the energy column is not uniform: a step of {steps[i]:g} between lines "
                f"{rows.lines[i]} and {rows.lines[i + 1]} where the steps are about {median:g} "
                "(missing rows or a jump)"), {}
    if np.any(counts < 0):
        i = int(np.flatnonzero(counts < 0)[0])
        return (f"negative counts ({counts[i]:g}) on line {rows.lines[i]}: XRF counts cannot "
                "be negative (was a background already subtracted?)"), {}
    if unit is None:
        factor, unit_from = (1e-3, "values above 200 (eV)") if np.max(np.abs(energies)) > 200 else (
            1.0, "values up to 200 (keV)")
        unit = "eV" if factor != 1.0 else "keV"
    else:
        factor, unit_from = (1.0 if unit == "keV" else 1e-3), "header"
    keV = energies * factor
    try:
        fit = fit_pairs(np.arange(n), keV, n, what="the energy column")
    except CalibrationError as exc:  # pragma: no cover - monotonic rows were checked above
        return str(exc), {}
    if fit.residual_keV > 0.5 * fit.gain:
        return (f"the energy column is not uniform: no quadratic calibration follows it within "
                f"half a channel (off by {fit.residual_keV * 1000:.1f} eV)"), {}
    try:
        axis = EnergyAxis.from_calibration(n, fit.zero, fit.gain, fit.quad)
    except CalibrationError as exc:
        return str(exc), {}
    return None, {"unit": unit, "unit_from": unit_from, "fit": fit, "axis": axis}


def _head_lines(path) -> list[str] | None:
    """Lines of the first 64 kB (without a last line the head may cut), None for binary or
    foreign files."""
    text = head_text(path, HEAD_BYTES)
    if not text or _looks_foreign(text):
        return None
    lines = text.splitlines()
    if Path(path).stat().st_size > HEAD_BYTES:
        lines = lines[:-1]
    return lines


@never_raises
def sniff(path) -> str | None:
    """``"two-column"`` if the first 64 kB are an (energy, counts) spectrum, else None."""
    lines = _head_lines(path)
    if lines is None:
        return None
    rows = scan_pairs(lines)
    if rows.bad is not None:
        return None
    reason, _ = _check(rows, MIN_ROWS)
    return "two-column" if reason is None else None


def explain(path) -> str | None:
    """Why a text file of two numeric columns is not an energy spectrum; None for other files."""
    try:
        lines = _head_lines(path)
        if lines is None:
            return None
        rows = scan_pairs(lines)
        if len(rows.values) < MIN_ROWS:
            return None  # not two columns of numbers: not ours to explain
        if rows.bad is not None:
            return f"two-column spectrum whose line {rows.bad[0]} is not two numbers: {rows.bad[1][:30]!r}"
        reason, _ = _check(rows, MIN_ROWS)
        return f"two-column text, but {reason}" if reason else None
    except Exception:  # noqa: BLE001 - explain is advice
        return None


@wrap_errors
def read(path) -> XRFCube:
    """Read a two-column (energy, counts) text spectrum as a 1 x 1 cube.

    Returns
    -------
    XRFCube
        counts float64 (1, 1, rows); energy from the fitted calibration of the energy column
        (keV); ``metadata``: ``energy_unit``, ``energy_unit_from``, ``calibration_fit``,
        ``calibration_residual_keV``, ``header``.
    """
    with open(path, encoding="latin-1") as fh:
        text = fh.read()
    if _looks_foreign(text):
        raise UnreadableFileError(path, "not a two-column spectrum (an Amptek, GSECARS, IAEA or SPEC file)")
    rows = scan_pairs(text.splitlines())
    if rows.bad is not None:
        number, line = rows.bad
        raise UnreadableFileError(path, f"line {number} is not two numbers (energy, counts): {line[:30]!r}")
    reason, facts = _check(rows, 2)
    if reason:
        raise UnreadableFileError(path, reason)
    fit = facts["fit"]
    metadata = {
        "energy_unit": facts["unit"],
        "energy_unit_from": facts["unit_from"],
        "calibration_fit": fit.describe().replace("(channel, energy) pairs", "rows of the energy column"),
        "calibration_residual_keV": fit.residual_keV,
    }
    if rows.header:
        metadata["header"] = rows.header
    return XRFCube(
        rows.counts().reshape(1, 1, -1),
        facts["axis"],
        source=str(Path(path)),
        format="two-column",
        metadata=metadata,
    )
