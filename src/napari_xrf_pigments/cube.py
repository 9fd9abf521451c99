"""The data model every stage shares: an XRF cube and its energy axis.

Axis order is fixed everywhere: ``counts[row, column, channel]``; a single spectrum is a
1 x 1 cube. Energies are in keV.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CalibrationError, InvalidDataError

HOW_TO_CALIBRATE = (
    "set it with the Energy calibration widget in napari (type zero/gain, or pick two peaks "
    "and name their lines), or in scripts with cube.with_calibration(zero_keV, gain_keV)"
)


#: Energies (keV) a channel of an XRF detector can have: a zero offset slightly below 0 (real
#: detectors: about -0.1..0 keV), and nothing above the hardest tube or synchrotron beam.
ENERGY_LIMITS_KEV = (-1.0, 200.0)


def _check_polynomial(n_channels, zero, gain, quad) -> None:
    """Refuse a calibration that is not increasing, or leaves ENERGY_LIMITS_KEV, on the channels."""
    last = n_channels - 1
    if not (gain > 0 and gain + 2 * quad * last > 0):
        if quad != 0 and (gain > 0 or gain + 2 * quad * last > 0):
            turn = -gain / (2 * quad)
            raise CalibrationError(
                f"the calibration (zero {zero:g} keV, gain {gain:g} keV/ch, quadratic {quad:g} "
                f"keV/ch^2) turns back at channel {turn:.0f} of 0-{last}: energy must increase "
                "with the channel; check the quadratic term"
            )
        raise CalibrationError(
            f"the calibration gain is {gain:g} keV/ch: energy must increase with the channel; "
            "check the sign of the gain"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # huge terms: an inf is reported below
        end = zero + gain * last + quad * last * last
    _check_range(zero, end, n_channels, f"the calibration (zero {zero:g} keV, gain {gain:g} keV/ch"
                 + (f", quadratic {quad:g} keV/ch^2)" if quad else ")"))


def _check_range(first, last, n_channels, what) -> None:
    """Refuse energies from ``first`` to ``last`` keV outside ENERGY_LIMITS_KEV; spot eV."""
    low, high = ENERGY_LIMITS_KEV
    if low <= first and last <= high:
        return
    span = f"{what} gives {first:.6g} to {last:.6g} keV over its {n_channels} channels"
    if not last <= high:  # also inf and nan
        if low <= first / 1000 and last / 1000 <= high:
            raise CalibrationError(f"{span}: that looks like eV; divide it by 1000 to get keV")
        raise CalibrationError(
            f"{span}: XRF energies stay below about {high:g} keV; check the calibration"
        )
    raise CalibrationError(
        f"{span}: a detector's zero lies near 0 keV (not below {low:g} keV); check the zero offset"
    )


@dataclass(frozen=True)
class EnergyAxis:
    """Energy of each detector channel.

    Either a calibration ``E = zero + gain*ch + quad*ch**2`` (keV, keV/ch, keV/ch^2), or an
    explicit array of channel energies, or explicitly uncalibrated (only a channel count).

    Attributes
    ----------
    n_channels : int
    zero, gain, quad : float or None
        Calibration coefficients; None when the axis is explicit or uncalibrated.
    values : ndarray of float64, shape (n_channels,), or None
        Explicit channel energies in keV.
    """

    n_channels: int
    zero: float | None = None
    gain: float | None = None
    quad: float = 0.0
    values: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.n_channels < 1:
            raise InvalidDataError(f"an energy axis needs at least one channel, got {self.n_channels}")
        if (self.zero is None) != (self.gain is None):
            raise CalibrationError("a calibration needs both zero and gain")
        if self.gain is not None:
            for name in ("zero", "gain", "quad"):
                if not np.isfinite(getattr(self, name)):
                    raise CalibrationError(f"calibration {name} is not finite")
            if self.gain == 0:
                raise CalibrationError("calibration gain is zero")
            _check_polynomial(self.n_channels, self.zero, self.gain, self.quad)
        if self.values is not None:
            values = np.asarray(self.values, dtype=np.float64)
            if values.shape != (self.n_channels,):
                raise CalibrationError(
                    f"energy array has shape {values.shape}, expected ({self.n_channels},)"
                )
            if not np.all(np.isfinite(values)) or (
                self.n_channels > 1 and not np.all(np.diff(values) > 0)
            ):
                raise CalibrationError("energy array must be finite and strictly increasing")
            _check_range(float(values[0]), float(values[-1]), self.n_channels, "the energy array")
            object.__setattr__(self, "values", values)

    @classmethod
    def from_calibration(cls, n_channels, zero, gain, quad=0.0) -> EnergyAxis:
        """Axis from a polynomial calibration (keV, keV/channel, keV/channel^2)."""
        return cls(int(n_channels), float(zero), float(gain), float(quad or 0.0))

    @classmethod
    def from_values(cls, values) -> EnergyAxis:
        """Axis from explicit channel energies in keV (strictly increasing)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        return cls(int(values.size), values=values)

    @classmethod
    def uncalibrated(cls, n_channels) -> EnergyAxis:
        """Axis that knows only its channel count."""
        return cls(int(n_channels))

    @property
    def calibrated(self) -> bool:
        return self.values is not None or self.gain is not None

    def energies(self) -> np.ndarray:
        """Channel energies in keV, shape (n_channels,).

        Raises
        ------
        CalibrationError
            If the axis is uncalibrated.
        """
        if self.values is not None:
            return self.values
        if self.gain is None:
            raise CalibrationError(f"the energy axis is not calibrated: {HOW_TO_CALIBRATE}")
        ch = np.arange(self.n_channels, dtype=np.float64)
        return self.zero + self.gain * ch + self.quad * ch * ch

    @property
    def range_keV(self) -> tuple[float, float] | None:
        """(first, last) channel energy in keV, or None when uncalibrated."""
        if not self.calibrated:
            return None
        e = self.energies()
        return float(e[0]), float(e[-1])

    def as_calibration(self) -> tuple[float, float, float]:
        """(zero, gain, quad) in keV; fitted by least squares for an explicit array."""
        if self.gain is not None:
            return float(self.zero), float(self.gain), float(self.quad)
        e = self.energies()
        if e.size < 3:
            gain = float(e[1] - e[0]) if e.size == 2 else 1.0
            return float(e[0]), gain, 0.0
        quad, gain, zero = np.polyfit(np.arange(e.size, dtype=np.float64), e, 2)
        return float(zero), float(gain), float(quad)


@dataclass
class XRFCube:
    """An XRF spectrum image.

    Attributes
    ----------
    counts : array-like, shape (rows, columns, channels)
        Counts per channel: a numpy array, an h5py dataset or a dask array. Never read whole
        by the readers; use :meth:`iter_blocks` to stream it.
    energy : EnergyAxis
        Energy of each channel (may be uncalibrated).
    live_time : float or ndarray of shape (rows, columns) or None
        Detector live time in s, when the file records it.
    pixel_size : tuple of float (row, column) or None
        Step size in mm.
    positions : tuple of ndarray (y of shape (rows,), x of shape (columns,)) or None
        Stage positions in mm.
    source : str or None
        Path of the file the cube was read from.
    format : str
        Short name of the file format (e.g. ``"nexus"``, ``"bruker-bcf"``).
    metadata : dict
        Anything else the reader found (instrument, excitation, original attributes).
    """

    counts: Any
    energy: EnergyAxis
    live_time: Any = None
    pixel_size: tuple[float, float] | None = None
    positions: tuple[np.ndarray, np.ndarray] | None = None
    source: str | None = None
    format: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        shape = tuple(getattr(self.counts, "shape", ()))
        if len(shape) != 3:
            raise InvalidDataError(
                f"counts must be 3-D (rows, columns, channels), got shape {shape}"
            )
        if 0 in shape:
            raise InvalidDataError(f"counts have a zero-sized axis: shape {shape}")
        if shape[2] != self.energy.n_channels:
            raise InvalidDataError(
                f"counts have {shape[2]} channels but the energy axis has "
                f"{self.energy.n_channels}"
            )

    @classmethod
    def from_array(cls, counts, *, energy=None, zero=None, gain=None, quad=0.0, **kwargs):
        """Cube from an in-memory array; a 1-D spectrum becomes a 1 x 1 cube.

        Parameters
        ----------
        counts : array-like, shape (channels,), (rows, columns, channels)
        energy : EnergyAxis or array of keV, optional
        zero, gain, quad : float, optional
            Calibration in keV when ``energy`` is not given. Neither: uncalibrated.
        """
        counts = np.asarray(counts)
        if counts.ndim == 1:
            counts = counts.reshape(1, 1, -1)
        n = counts.shape[-1]
        if energy is None:
            if gain is None:
                axis = EnergyAxis.uncalibrated(n)
            else:
                axis = EnergyAxis.from_calibration(n, zero or 0.0, gain, quad)
        elif isinstance(energy, EnergyAxis):
            axis = energy
        else:
            axis = EnergyAxis.from_values(energy)
        return cls(counts, axis, **kwargs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.counts.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.counts.dtype)

    @property
    def n_channels(self) -> int:
        return self.shape[2]

    @property
    def calibrated(self) -> bool:
        return self.energy.calibrated

    @property
    def name(self) -> str:
        return Path(self.source).stem if self.source else "XRF cube"

    def with_calibration(self, zero, gain, quad=0.0) -> XRFCube:
        """The same counts with a new energy calibration (keV, keV/ch, keV/ch^2)."""
        axis = EnergyAxis.from_calibration(self.n_channels, zero, gain, quad)
        return dataclasses.replace(self, energy=axis)

    def to_dask(self, rows_per_chunk: int | None = None):
        """The counts as a dask array chunked by whole spectra (lazy, nothing is read)."""
        # lazy: dask is heavy
        import dask.array as da

        if isinstance(self.counts, da.Array):
            return self.counts
        rows = rows_per_chunk or default_rows_per_block(self.shape, self.dtype)
        return da.from_array(self.counts, chunks=(rows, -1, -1), lock=True, asarray=True)

    def iter_blocks(self, rows_per_block: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
        """Stream the counts block of rows by block of rows.

        Yields
        ------
        rows : slice
            Rows covered by the block.
        block : ndarray, shape (n_rows, columns, channels)
            Counts as read (original dtype), checked for NaN and negative values.
        """
        rows = rows_per_block or default_rows_per_block(self.shape, self.dtype)
        for start in range(0, self.shape[0], rows):
            sl = slice(start, min(start + rows, self.shape[0]))
            yield sl, self.read_rows(sl)

    def read_rows(self, rows: slice) -> np.ndarray:
        """One block of rows as :meth:`iter_blocks` gives it: counts (n_rows, columns,
        channels) as read, checked for NaN and negative values."""
        block = np.asarray(self.counts[rows])
        check_counts(block, where=f"rows {rows.start}-{rows.stop - 1}")
        return block

    def sum_spectrum(self) -> np.ndarray:
        """Sum of all spectra, float64 of shape (channels,), read block by block."""
        total = np.zeros(self.n_channels, dtype=np.float64)
        for _, block in self.iter_blocks():
            total += block.sum(axis=(0, 1), dtype=np.float64)
        return total

    def total_counts(self) -> np.ndarray:
        """Total counts per pixel, float64 of shape (rows, columns), read block by block."""
        image = np.empty(self.shape[:2], dtype=np.float64)
        for sl, block in self.iter_blocks():
            image[sl] = block.sum(axis=2, dtype=np.float64)
        return image


def default_rows_per_block(shape, dtype, target_bytes: int = 64 * 2**20) -> int:
    """Rows per block so that one block of counts is about ``target_bytes`` (at least 1)."""
    row_bytes = max(1, int(shape[1]) * int(shape[2]) * np.dtype(dtype).itemsize)
    return int(max(1, min(int(shape[0]), target_bytes // row_bytes)))


def sample_plan(shape, dtype, max_spectra) -> tuple[list[slice], int]:
    """Row slices to read and the column step: evenly spaced whole rows, at most max_spectra.

    Every row of a small cube (in contiguous blocks of ~64 MB); with more columns than
    ``max_spectra``, every n-th spectrum of the middle row.
    """
    rows, cols = int(shape[0]), int(shape[1])
    max_spectra = max(1, int(max_spectra))
    if cols > max_spectra:
        middle = rows // 2
        return [slice(middle, middle + 1)], -(-cols // max_spectra)
    n = min(rows, max(1, max_spectra // cols))
    if n == rows:
        step = default_rows_per_block(shape, dtype)  # contiguous blocks of ~64 MB
        return [slice(r, min(r + step, rows)) for r in range(0, rows, step)], 1
    picked = np.unique(np.round(np.linspace(0, rows - 1, n)).astype(int))
    return [slice(int(r), int(r) + 1) for r in picked], 1


def check_counts(block: np.ndarray, where: str = "") -> None:
    """Raise InvalidDataError if a block of counts holds NaN, infinite or negative values."""
    if block.dtype.kind == "f":
        if not np.all(np.isfinite(block)):
            raise InvalidDataError(
                f"counts contain NaN or infinite values{' in ' + where if where else ''}; "
                "replace them (e.g. by 0) before analysis"
            )
    if block.dtype.kind in "fi" and block.size and block.min() < 0:
        raise InvalidDataError(
            f"counts contain negative values{' in ' + where if where else ''}; "
            "XRF counts cannot be negative (was a background already subtracted?)"
        )
