"""Random instrument variations for training data that survives real scans.

A simulator caches one detector response per :class:`~.instrument.Readout`, so draw a pool of
readouts once (:func:`readout_pool`) and assign spectra to them, rather than a new readout per
spectrum. Counting time and background level are free per spectrum.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def jitter_readout(readout, rng, *, zero_sigma_keV: float = 0.01, gain_sigma: float = 0.002,
                   noise_sigma: float = 0.15, fano_sigma: float = 0.05):
    """A randomly perturbed copy of a readout.

    Parameters
    ----------
    readout : Readout
    rng : numpy.random.Generator
    zero_sigma_keV : float
        Standard deviation of the calibration offset, keV.
    gain_sigma : float
        Relative standard deviation of the gain.
    noise_sigma, fano_sigma : float
        Standard deviations of log(noise) and log(Fano): relative resolution spread.

    Returns
    -------
    Readout
    """
    return dataclasses.replace(
        readout,
        zero_keV=float(readout.zero_keV + rng.normal(0.0, zero_sigma_keV)),
        gain_keV=float(readout.gain_keV * (1.0 + rng.normal(0.0, gain_sigma))),
        noise_keV=float(readout.noise_keV * np.exp(rng.normal(0.0, noise_sigma))),
        fano=float(readout.fano * np.exp(rng.normal(0.0, fano_sigma))),
    )


def readout_pool(readout, rng, n: int, **sigmas) -> list:
    """``n`` readouts: the original, then ``n - 1`` jittered copies (:func:`jitter_readout`)."""
    return [readout] + [jitter_readout(readout, rng, **sigmas) for _ in range(max(0, n - 1))]


def random_live_times(rng, size, low_s: float = 0.1, high_s: float = 10.0) -> np.ndarray:
    """Counting times drawn log-uniformly in [low_s, high_s], shape ``size``."""
    return np.exp(rng.uniform(np.log(low_s), np.log(high_s), size))
