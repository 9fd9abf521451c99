"""Spectra as the pigment CNN sees them (paper section 2.2).

A model owns its energy grid (channel centres in keV, starting at the 2.80 keV crop). Any cube
or spectrum is brought onto it in four steps:

1. **Resample** from the input's own calibration onto the model grid by counts-conserving
   rebinning: each input channel is a bin between the midpoints to its neighbours, its counts
   are spread uniformly over that bin, and each model channel receives the counts of the part of
   every input bin it overlaps. Total counts in a range are kept, peaks stay at their energies
   whatever the offset or channel width (a Bruker M6 cube at -0.955 keV + 10 eV/ch and a
   10 eV ELIO grid give the same model input). Model channels outside the input's range get 0.
   Identical, aligned grids are sliced without rebinning.
2. **Crop** at 2.80 keV: the model grid starts there, so S K / Pb M / Hg M below are dropped.
3. **Count-level normalisation**: each spectrum is scaled to :data:`REFERENCE_COUNTS` total
   counts on the model grid. Eq. 1 is not scale invariant; without this, a 0.1 s and a 10 s
   pixel of the same paint (100x apart in counts) would give differently shaped inputs.
4. **Eq. 1**, ``X' = ln(1 + ln(1 + sqrt(X)))``, then division by the spectrum's maximum, so
   every input lies in [0, 1] with its largest channel at 1 (paper: "followed by
   normalization"). A spectrum with no counts on the grid stays all zero.

Steps 3-4 live here only: :func:`transform` in numpy (training, finetuning, checks) and
:func:`transform_ops` in ``keras.ops`` (inside the compiled inference graphs of
:mod:`.model.engine` and :mod:`.model.predictor`). This module imports no TensorFlow/Keras at
import time; :func:`transform_ops` loads ``keras.ops`` when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cube import EnergyAxis, XRFCube, check_counts
from .errors import CalibrationError, InvalidDataError

#: Bump when any step above changes; stored in model metadata and checked on load.
PREPROCESSING_VERSION = 1
#: Lower end of the model grid in keV (paper section 2.2).
CROP_KEV = 2.80
#: Total counts every spectrum is scaled to before Eq. 1 (about a 10 s ELIO point, as in the
#: paper's measurements).
REFERENCE_COUNTS = 1.0e5

#: Channels of the paper's input (3815 x 10 eV from 2.80 keV, i.e. a 4096-channel ELIO
#: spectrum without its first 281 channels).
PAPER_N_CHANNELS = 3815
PAPER_STEP_KEV = 0.010


def paper_grid() -> np.ndarray:
    """The paper's model grid: 3815 channel centres in keV, 2.80 to 40.94 keV in 10 eV steps."""
    return make_grid(CROP_KEV, PAPER_STEP_KEV, PAPER_N_CHANNELS)


def make_grid(start_keV: float, step_keV: float, n_channels: int) -> np.ndarray:
    """Uniform grid of ``n_channels`` channel centres (keV) from ``start_keV``, float64."""
    if step_keV <= 0 or n_channels < 2:
        raise ValueError("a grid needs a positive step and at least 2 channels")
    return float(start_keV) + float(step_keV) * np.arange(int(n_channels), dtype=np.float64)


def energies_of(energy, *, what: str = "input") -> np.ndarray:
    """Channel energies in keV of a cube, an energy axis or an array.

    Parameters
    ----------
    energy : XRFCube, EnergyAxis or array-like of shape (channels,)
    what : str
        Name used in error messages (e.g. the file name).

    Returns
    -------
    ndarray of float64, shape (channels,)

    Raises
    ------
    CalibrationError
        If the axis is uncalibrated, or the energies are not finite and increasing.
    """
    if isinstance(energy, XRFCube):
        what = energy.name if what == "input" else what
        energy = energy.energy
    if isinstance(energy, EnergyAxis):
        if not energy.calibrated:
            # Reuse the axis's own message: it says how to calibrate.
            try:
                energy.energies()
            except CalibrationError as exc:
                raise CalibrationError(
                    f"cannot prepare {what} for the pigment model: {exc}"
                ) from None
        return energy.energies()
    if energy is None:
        raise CalibrationError(f"cannot prepare {what} for the pigment model: no energy axis given")
    values = np.asarray(energy, dtype=np.float64).ravel()
    if values.size < 2 or not np.all(np.isfinite(values)) or not np.all(np.diff(values) > 0):
        raise CalibrationError(
            f"cannot prepare {what}: channel energies must be finite and strictly increasing (keV)"
        )
    return values


def channel_edges(energies: np.ndarray) -> np.ndarray:
    """Bin edges (keV), shape (channels + 1,): midpoints between centres, ends extrapolated."""
    e = np.asarray(energies, dtype=np.float64)
    mid = 0.5 * (e[1:] + e[:-1])
    return np.concatenate([[e[0] - (mid[0] - e[0])], mid, [e[-1] + (e[-1] - mid[-1])]])


class Resampler:
    """Counts-conserving rebinning from one energy grid onto another (precomputed).

    Parameters
    ----------
    source : ndarray, shape (n_source,)
        Input channel centres in keV.
    target : ndarray, shape (n_target,)
        Model channel centres in keV.
    what : str
        Name of the input, for error messages.

    Raises
    ------
    CalibrationError
        If the two energy ranges do not overlap.
    """

    def __init__(self, source, target, *, what: str = "input"):
        self.source = np.asarray(source, dtype=np.float64)
        self.target = np.asarray(target, dtype=np.float64)
        se, te = channel_edges(self.source), channel_edges(self.target)
        if se[-1] <= te[0] or se[0] >= te[-1]:
            raise CalibrationError(
                f"the energy range of {what} ({self.source[0]:.3f} to {self.source[-1]:.3f} keV) "
                f"does not overlap the model's ({self.target[0]:.3f} to {self.target[-1]:.3f} keV);"
                " check the energy calibration (keV, not eV) or use a model made for this range"
            )
        #: Fraction of the model's energy range that the input covers.
        self.coverage = float(
            (min(se[-1], te[-1]) - max(se[0], te[0])) / (te[-1] - te[0])
        )
        self._slice = self._aligned_slice()
        if self._slice is None:
            # Cumulative counts at each target edge = C[j] + frac * x[j], where source bin j
            # holds the edge and frac is how far into it the edge lies (uniform spread).
            j = np.searchsorted(se, te, side="right") - 1
            j = np.clip(j, 0, se.size - 2)
            frac = (te - se[j]) / (se[j + 1] - se[j])
            frac = np.clip(frac, 0.0, 1.0)
            self._j, self._frac = j, frac

    def _aligned_slice(self):
        n = self.target.size
        i0 = int(np.searchsorted(self.source, self.target[0] - 1e-9))
        if i0 + n > self.source.size:
            return None
        step = np.min(np.diff(self.target))
        if np.allclose(self.source[i0 : i0 + n], self.target, rtol=0, atol=1e-3 * step):
            return slice(i0, i0 + n)
        return None

    @property
    def is_slice(self) -> bool:
        """True when the grids are aligned and resampling is plain slicing (exact)."""
        return self._slice is not None

    def __call__(self, counts) -> np.ndarray:
        """Resample spectra.

        Parameters
        ----------
        counts : array-like, shape (..., n_source)
            Counts per input channel.

        Returns
        -------
        ndarray of float32, shape (..., n_target)
            Counts per model channel.
        """
        counts = np.asarray(counts)
        if counts.shape[-1] != self.source.size:
            raise InvalidDataError(
                f"spectra have {counts.shape[-1]} channels, the energy axis {self.source.size}"
            )
        if self._slice is not None:
            return np.array(counts[..., self._slice], dtype=np.float32)
        lead = counts.shape[:-1]
        x = counts.reshape(-1, counts.shape[-1])
        cum = np.zeros((x.shape[0], x.shape[1] + 1), dtype=np.float64)
        np.cumsum(x, axis=1, dtype=np.float64, out=cum[:, 1:])
        at_edges = cum[:, self._j] + self._frac * x[:, self._j]
        out = np.diff(at_edges, axis=1).astype(np.float32)
        return out.reshape(*lead, self.target.size)


def resample(counts, source, target) -> np.ndarray:
    """Rebin ``counts`` (..., n_source) from energies ``source`` onto ``target`` (keV), float32."""
    return Resampler(energies_of(source), energies_of(target, what="target grid"))(counts)


def eq1(x, *, out=None):
    """Paper Eq. 1: ``ln(1 + ln(1 + sqrt(x)))`` for counts ``x >= 0`` (any shape, numpy).

    Parameters
    ----------
    x : array-like
    out : ndarray, optional
        Where to write the result; ``out=x`` works in place (no copies of a training set).
    """
    y = np.sqrt(x, out=out)
    y = np.log1p(y, out=out)
    return np.log1p(y, out=out)


def transform(counts_on_grid, *, reference_counts: float = REFERENCE_COUNTS) -> np.ndarray:
    """Steps 3-4: scale to ``reference_counts`` total, Eq. 1, divide by the maximum.

    Parameters
    ----------
    counts_on_grid : array-like, shape (..., n_channels)
        Counts on the model grid (after :class:`Resampler`).

    Returns
    -------
    ndarray of float32, same shape, values in [0, 1]
    """
    x = np.array(counts_on_grid, dtype=np.float32)
    total = x.sum(axis=-1, keepdims=True, dtype=np.float64)
    scale = np.where(total > 0, reference_counts / np.where(total > 0, total, 1.0), 0.0)
    x *= scale.astype(np.float32)
    eq1(x, out=x)
    peak = x.max(axis=-1, keepdims=True)
    x /= np.where(peak > 0, peak, 1.0)
    return x


def transform_ops(counts_on_grid, *, reference_counts: float = REFERENCE_COUNTS):
    """:func:`transform` in ``keras.ops``, for compiled inference graphs (any Keras backend).

    The same steps on float32 tensors, except that the totals are summed in float32 (numpy sums
    them in float64): the two agree to float32 rounding, not bit for bit.

    Parameters
    ----------
    counts_on_grid : tensor or ndarray, shape (batch, n_channels)
        Counts on the model grid.

    Returns
    -------
    tensor of float32, same shape, values in [0, 1]
    """
    # lazy: keras loads TensorFlow/JAX
    from keras import ops

    ref = float(reference_counts)
    x = ops.cast(counts_on_grid, "float32")
    total = ops.sum(x, axis=1, keepdims=True)
    x = x * ops.where(total > 0, ref / ops.maximum(total, 1e-30), 0.0)
    x = ops.log1p(ops.log1p(ops.sqrt(x)))  # Eq. 1
    peak = ops.max(x, axis=1, keepdims=True)
    return x / ops.where(peak > 0, peak, 1.0)


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """How a model turns spectra into its input; stored in the model's metadata.

    Attributes
    ----------
    grid : ndarray of float64, shape (n_channels,)
        Model channel centres in keV, strictly increasing, starting at or above ``crop_keV``.
    crop_keV : float
    reference_counts : float
    version : int
    """

    grid: np.ndarray
    crop_keV: float = CROP_KEV
    reference_counts: float = REFERENCE_COUNTS
    version: int = PREPROCESSING_VERSION
    _resamplers: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        grid = energies_of(self.grid, what="the model grid")
        if grid[0] < self.crop_keV - 0.5 * (grid[1] - grid[0]):
            raise CalibrationError(
                f"the model grid starts at {grid[0]:.3f} keV, below the {self.crop_keV} keV crop"
            )
        if self.version != PREPROCESSING_VERSION:
            raise InvalidDataError(
                f"preprocessing version {self.version} is not supported by this version of "
                f"napari-xrf-pigments (it knows version {PREPROCESSING_VERSION}); upgrade it"
            )
        if not self.reference_counts > 0:
            raise InvalidDataError("reference_counts must be positive")
        object.__setattr__(self, "grid", grid)

    @classmethod
    def from_energies(cls, energies, *, crop_keV: float = CROP_KEV, **kwargs) -> Preprocessing:
        """Model grid = the channels of ``energies`` (keV) at or above ``crop_keV``."""
        e = energies_of(energies)
        kept = e[e >= crop_keV - 1e-9]
        if kept.size < 2:
            raise CalibrationError(
                f"the energy axis has fewer than 2 channels above {crop_keV} keV"
            )
        return cls(kept, crop_keV=crop_keV, **kwargs)

    @classmethod
    def paper(cls) -> Preprocessing:
        """The paper's grid (3815 channels of 10 eV from 2.80 keV)."""
        return cls(paper_grid())

    @property
    def n_channels(self) -> int:
        return int(self.grid.size)

    @property
    def range_keV(self) -> tuple[float, float]:
        return float(self.grid[0]), float(self.grid[-1])

    def resampler(self, energy, *, what: str = "input") -> Resampler:
        """Cached :class:`Resampler` from ``energy`` (cube, axis or keV array) onto the grid."""
        source = energies_of(energy, what=what)
        key = (source.size, source.tobytes())
        res = self._resamplers.get(key)
        if res is None:
            res = Resampler(source, self.grid, what=what)
            if len(self._resamplers) > 8:
                self._resamplers.clear()
            self._resamplers[key] = res
        return res

    def counts_on_grid(self, counts, energy, *, what: str = "input") -> np.ndarray:
        """Steps 1-2: resample ``counts`` (..., channels) onto the grid; float32 counts."""
        counts = np.asarray(counts)
        check_counts(counts, where=what if what != "input" else "")
        return self.resampler(energy, what=what)(counts)

    def __call__(self, counts, energy, *, what: str = "input") -> np.ndarray:
        """All steps: model input of shape (..., n_channels), float32 in [0, 1].

        Parameters
        ----------
        counts : array-like, shape (..., channels)
            Counts of one or more spectra on their own energy axis.
        energy : XRFCube, EnergyAxis or array of keV, shape (channels,)
        """
        return self.transform(self.counts_on_grid(counts, energy, what=what))

    def transform(self, counts_on_grid) -> np.ndarray:
        """Steps 3-4 on counts already on the grid."""
        return transform(counts_on_grid, reference_counts=self.reference_counts)

    def to_dict(self) -> dict:
        """JSON-ready description (energies rounded to 1e-9 keV)."""
        return {
            "version": int(self.version),
            "crop_keV": float(self.crop_keV),
            "reference_counts": float(self.reference_counts),
            "resampling": "counts-conserving rebinning (uniform within input channels)",
            "transform": "scale to reference_counts total, ln(1+ln(1+sqrt(x))), divide by max",
            "energy_keV": [round(float(v), 9) for v in self.grid],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`; raises InvalidDataError for missing or unknown fields."""
        try:
            return cls(
                np.asarray(d["energy_keV"], dtype=np.float64),
                crop_keV=float(d["crop_keV"]),
                reference_counts=float(d["reference_counts"]),
                version=int(d["version"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidDataError(f"preprocessing description is incomplete: {exc}") from None
