"""Helpers shared by the format modules: safe sniffing, error wrapping, lazy arrays, units,
calibrations stated as (channel, energy) pairs."""

from __future__ import annotations

import functools
import struct
import threading
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError

import numpy as np

from ..cube import check_counts
from ..errors import CalibrationError, UnreadableFileError, XRFPigmentsError

# Counts smaller than this are checked for NaN / negative values when the file is opened
# (cheap); bigger cubes are checked block by block by XRFCube.iter_blocks.
CHECK_AT_OPEN_BYTES = 64 * 2**20


def read_head(path, n_bytes: int = 65536) -> bytes:
    """First ``n_bytes`` of a file (b"" if it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n_bytes)
    except OSError:
        return b""


def head_text(path, n_bytes: int = 65536) -> str | None:
    """First bytes of a file as text, or None if they look binary."""
    head = read_head(path, n_bytes)
    if not head or b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        return head.decode("latin-1")


def never_raises(sniff):
    """Make a sniffer return None instead of raising (sniffers run on arbitrary files)."""

    @functools.wraps(sniff)
    def wrapper(path):
        try:
            return sniff(Path(path))
        except Exception:  # noqa: BLE001 - a sniffer must never raise
            return None

    return wrapper


def describe(exc: BaseException) -> str:
    """What a third-party reader's exception says about the file, in the project's words.

    The library's own text (``ParseError: not well-formed``, ``Error -3 while decompressing
    data``...) stays on the exception chain, which ``xrf-pigments --debug`` prints.
    """
    text = str(exc)
    if isinstance(exc, MemoryError):
        return "not enough memory to read it (a damaged header may declare a huge size)"
    if isinstance(exc, zlib.error):
        return "damaged data: a compressed block does not decompress"
    if isinstance(exc, ParseError):
        return "its XML header is damaged (not well-formed XML)"
    if isinstance(exc, UnicodeError):
        return "its text header holds bytes that are not text"
    if isinstance(exc, (EOFError, struct.error)):
        return "the file ends before the data its header declares (cut short?)"
    if isinstance(exc, OverflowError):
        return "a number in its header is out of range"
    if isinstance(exc, KeyError):
        return f"an entry its format requires is missing or damaged ({text[:60]})"
    if isinstance(exc, ValueError):
        if "convert" in text or "invalid literal" in text:
            return "a number in its header or data is not a number"
        if "could not be read to its end" in text or "buffer size" in text or "buffer is smaller" in text:
            return "its data is cut short or does not match its header"
        return "its header or data is inconsistent (damaged file?)"
    if isinstance(exc, (IndexError, TypeError, AttributeError, AssertionError)):
        return "its structure is inconsistent (damaged file?)"
    if isinstance(exc, OSError):
        return "its content could not be read (damaged file?)"
    return "its content is damaged or not what its format says"


def wrap_errors(read):
    """Turn any exception of a reader into UnreadableFileError(path, reason).

    Third-party readers (h5py, PyMca, rsciio) raise all kinds of exceptions on damaged
    files; users get one line naming the file and the cause in the project's words instead of
    a traceback (the library's exception stays chained, for ``--debug``).
    """

    @functools.wraps(read)
    def wrapper(path, *args, **kwargs):
        try:
            return read(Path(path), *args, **kwargs)
        except UnreadableFileError:
            raise
        except XRFPigmentsError as exc:  # InvalidDataError, CalibrationError
            raise UnreadableFileError(path, str(exc)) from exc
        except Exception as exc:
            raise UnreadableFileError(path, describe(exc)) from exc

    return wrapper


def check_small_counts(counts, path) -> None:
    """Check NaN / negative counts now when the cube is small enough to read at once.

    Unsigned integer counts need no check and are never read here.
    """
    dtype = np.dtype(counts.dtype)
    if dtype.kind not in "fi":
        return
    nbytes = int(np.prod(counts.shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > CHECK_AT_OPEN_BYTES:
        return
    try:
        check_counts(np.asarray(counts))
    except UnreadableFileError:
        raise  # names the file already (damaged data read through io.hdf5's checked dataset)
    except XRFPigmentsError as exc:
        raise UnreadableFileError(path, str(exc)) from exc


def check_dtype(dtype, path) -> np.dtype:
    """Counts must be plain integers or floats."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        raise UnreadableFileError(path, f"counts have a non-numeric type ({dtype})")
    return dtype


class _Once:
    """Call ``loader`` once, keep its result (thread-safe)."""

    def __init__(self, loader):
        self._loader = loader
        self._lock = threading.Lock()
        self._value = None
        self._token = uuid.uuid4().hex  # one dask key per opened file

    def __dask_tokenize__(self):
        return self._token

    def __call__(self):
        with self._lock:
            if self._value is None:
                self._value = np.asarray(self._loader())
                self._loader = None
            return self._value


def parse_once_dask(loader, shape, dtype):
    """Dask array whose data comes from ``loader()`` the first time it is needed.

    For containers that can only be decoded whole (Bruker .bcf, EDF): opening stays cheap,
    and block-wise reading decodes the file once instead of once per block.
    """
    # lazy: dask is heavy
    import dask
    import dask.array as da

    once = _Once(loader)
    return da.from_delayed(dask.delayed(once, pure=True)(), shape=tuple(shape), dtype=dtype)


_LENGTH_TO_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "um": 1e-3,
    "µm": 1e-3,
    "μm": 1e-3,
    "micron": 1e-3,
    "microns": 1e-3,
    "micrometer": 1e-3,
    "nm": 1e-6,
    "cm": 10.0,
    "m": 1e3,
}


def length_factor_to_mm(units) -> float | None:
    """Factor converting a length in ``units`` to mm, None if the unit is unknown."""
    if units is None:
        return None
    if isinstance(units, bytes):
        units = units.decode("utf-8", "replace")
    return _LENGTH_TO_MM.get(str(units).strip().lower().replace("\u00b5", "µ"))


def energy_factor_to_keV(units) -> float | None:
    """Factor converting an energy in ``units`` to keV, None if unknown or missing."""
    if units is None:
        return None
    if isinstance(units, bytes):
        units = units.decode("utf-8", "replace")
    units = str(units).strip().lower()
    return {"kev": 1.0, "ev": 1e-3, "mev": 1e3}.get(units)


# Plausible channel widths in keV per channel.
GAIN_RANGE_KEV = (1e-5, 0.5)


def plausible_calibration(zero, gain, quad=0.0, units=None) -> tuple[float, float, float] | None:
    """(zero, gain, quad) in keV from coefficients in ``units`` (keV, eV or unknown).

    Without a unit the coefficients are keV unless the gain is only plausible in eV per
    channel (>= 0.5). Returns None for PyMca's "no calibration" (0, 1, 0), non-finite values or
    an implausible gain.
    """
    try:
        zero, gain, quad = float(zero), float(gain), float(quad or 0.0)
    except (TypeError, ValueError):
        return None
    if (zero, gain, quad) == (0.0, 1.0, 0.0):
        return None
    factor = energy_factor_to_keV(units)
    if factor is None:
        factor = 1.0 if abs(gain) < GAIN_RANGE_KEV[1] else 1e-3
    zero, gain, quad = zero * factor, gain * factor, quad * factor
    if not (np.all(np.isfinite([zero, gain, quad])) and GAIN_RANGE_KEV[0] < gain < GAIN_RANGE_KEV[1]):
        return None
    return zero, gain, quad


def as_str(value) -> str:
    """HDF5 / header attribute as str."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return as_str(value[()])
    return str(value)


# --------------------------------------------------------------------------- stated calibrations


@dataclass(frozen=True)
class PairFit:
    """A calibration fitted to (channel, energy) pairs a file states.

    Attributes
    ----------
    zero, gain, quad : float
        ``E = zero + gain*ch + quad*ch^2`` in keV, keV/ch, keV/ch^2 (``quad`` 0 when linear).
    kind : str
        ``"linear"`` or ``"quadratic"``.
    residual_keV : float
        Largest absolute difference (keV) between a stated energy and the fitted one; 0 when the
        fit passes exactly through the pairs (2 pairs, or a quadratic through 3).
    n_pairs : int
    """

    zero: float
    gain: float
    quad: float
    kind: str
    residual_keV: float
    n_pairs: int

    def describe(self) -> str:
        """One phrase for ``xrf-pigments info``: the fit and its residual in eV."""
        exact = self.n_pairs == (2 if self.kind == "linear" else 3)
        how = "through" if exact else "least-squares fit of"
        return (f"{self.kind} {how} {self.n_pairs} (channel, energy) pairs, largest residual "
                f"{self.residual_keV * 1000:.2f} eV" + (" (exact: nothing left to check it)" if exact else ""))


def fit_pairs(channels, energies_keV, n_channels: int, *, what: str = "the calibration") -> PairFit:
    """Fit ``E(ch)`` to stated (channel, energy) pairs; the rule is the one in docs/formats.md.

    A straight line by least squares (exact through 2 pairs). With 3 or more pairs, a quadratic
    replaces it only when the line misses some pair by more than a quarter of a channel (less
    is within what peak positions are known to) *and* the quadratic at least halves the largest
    miss *and* still increases over all ``n_channels`` channels; otherwise the line stays (a
    quadratic can always bend through a wrong pair).

    Parameters
    ----------
    channels, energies_keV : array-like of float, shape (n_pairs,)
        Channel positions (0 = the first channel; fractional allowed) and their energies in keV.
    n_channels : int
        Channels of the spectrum, for the monotonicity check.
    what : str
        What states the pairs, to begin error messages (``"the <<CALIBRATION>> block"``).

    Raises
    ------
    CalibrationError
        Fewer than two pairs, a channel given twice, energies that do not increase with the
        channel, non-finite values.
    """
    ch = np.asarray(channels, dtype=np.float64).ravel()
    e = np.asarray(energies_keV, dtype=np.float64).ravel()
    if ch.size < 2:
        raise CalibrationError(
            f"{what}: {ch.size} (channel, energy) pair{'' if ch.size == 1 else 's'}; "
            "a calibration needs at least two"
        )
    if not (np.all(np.isfinite(ch)) and np.all(np.isfinite(e))):
        raise CalibrationError(f"{what}: a value is not a finite number")
    order = np.argsort(ch, kind="stable")
    ch, e = ch[order], e[order]
    if np.any(np.diff(ch) == 0):
        dup = ch[1:][np.diff(ch) == 0][0]
        raise CalibrationError(f"{what}: channel {dup:g} is given twice")
    if np.any(np.diff(e) <= 0):
        i = int(np.flatnonzero(np.diff(e) <= 0)[0])
        raise CalibrationError(
            f"{what}: not monotonic, channel {ch[i]:g} is at {e[i]:g} keV but channel "
            f"{ch[i + 1]:g} at {e[i + 1]:g} keV (energy must increase with the channel)"
        )

    # Absurd values (a damaged file's 1e308) overflow or make the fit ill-conditioned: the
    # result is then non-finite or implausible, which EnergyAxis refuses with a reason.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            gain, zero = np.polyfit(ch, e, 1)
        except (np.linalg.LinAlgError, ValueError):
            raise CalibrationError(f"{what}: its values cannot be fitted (absurdly large?)") from None
        residual = float(np.max(np.abs(zero + gain * ch - e)))
        fit = PairFit(float(zero), float(gain), 0.0, "linear", residual, int(ch.size))
        if ch.size >= 3 and residual > abs(gain) / 4:
            try:
                q, g, z = np.polyfit(ch, e, 2)
            except (np.linalg.LinAlgError, ValueError):
                q, g, z = 0.0, gain, zero
            q_residual = float(np.max(np.abs(z + g * ch + q * ch * ch - e)))
            last = max(int(n_channels) - 1, 0)
            increasing = g > 0 and g + 2 * q * last > 0
            if q_residual <= residual / 2 and increasing:
                fit = PairFit(float(z), float(g), float(q), "quadratic", q_residual, int(ch.size))
    return fit
