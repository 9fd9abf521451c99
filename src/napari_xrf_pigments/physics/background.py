"""Spectral background from measured data (SNIP), to add to simulated spectra.

The simulator gives fluorescence and scatter only; real spectra also carry a continuum from
multiple scattering, incomplete charge collection and the electronics. As the paper does
(section 2.2), estimate it with SNIP from the mean spectrum of a measured cube and add it,
scaled, to simulated spectra.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidDataError
from ..preprocess import resample


def snip_background(spectrum, width_channels: int = 30, *, smooth_channels: int = 0) -> np.ndarray:
    """SNIP background of one or more spectra (PyMca's ``SpecfitFuns.snip1d``).

    Parameters
    ----------
    spectrum : array-like, shape (n_channels,) or (n_spectra, n_channels)
    width_channels : int
        SNIP window, about 2-3 peak FWHM (PyMca's default 30 suits ~10 eV channels).
    smooth_channels : int
        Savitzky-Golay smoothing width applied first (0: none), for noisy spectra.

    Returns
    -------
    ndarray of float64, same shape as ``spectrum``
    """
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaMath.fitting import SpecfitFuns

    y = np.array(spectrum, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[-1] < 3:
        raise InvalidDataError(
            f"expected spectra of shape (channels,) or (n, channels), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InvalidDataError("spectrum holds NaN or infinite values")
    rows = y.reshape(-1, y.shape[-1])
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        if smooth_channels > 2:
            row = np.asarray(SpecfitFuns.SavitskyGolay(row, int(smooth_channels)), dtype=np.float64)
        out[i] = SpecfitFuns.snip1d(np.ascontiguousarray(row), int(width_channels))
    return out.reshape(y.shape)


def estimate_background(cube, readout, *, width_channels: int = 30, live_time_s=None) -> np.ndarray:
    """Background count rate on a readout's axis from the mean spectrum of a measured cube.

    Parameters
    ----------
    cube : XRFCube
        A calibrated measurement (read block by block).
    readout : Readout
        Axis of the simulated spectra.
    width_channels : int
        SNIP window in the cube's channels.
    live_time_s : float, optional
        Live time per pixel of the cube; default the cube's mean ``live_time``, else 1 (the
        result is then background per spectrum rather than per second).

    Returns
    -------
    ndarray of float64, shape (readout.n_channels,)
        Background counts per second per channel; multiply by a simulated spectrum's live time
        (and, for variety, a random level) before adding it.
    """
    rows, cols, _ = cube.shape
    mean = cube.sum_spectrum() / (rows * cols)
    if live_time_s is None:
        live = cube.live_time
        live_time_s = float(np.mean(live)) if live is not None else 1.0
    if not live_time_s > 0:
        raise InvalidDataError(f"live time must be > 0 s, got {live_time_s}")

    background = snip_background(mean, width_channels)
    # Counts-conserving rebinning, the same the model's preprocessing uses.
    return resample(background, cube.energy.energies(), readout.energies()).astype(np.float64) / live_time_s
