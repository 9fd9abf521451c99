"""Instrument model and PyMca fundamental-parameter simulation of layered paint.

Light to import: the instrument classes load no PyMca; the simulators (and everything that
needs PyMca) load on first use through lazy attributes.

Main entry points
-----------------
Instrument, Tube, Beam, Detector, Readout, Filter
    The scanner (default: XGLab-ELIO-like Rh tube at 40 kV). JSON save/load, PyMca .cfg import.
FastSimulator
    Batches of stratigraphies to counts per channel (cached physics, >2000 spectra/s).
FaithfulSimulator, simulate_faithful
    PyMca's own McaTheory/ConcentrationsTool computation (slow reference).
snip_background, estimate_background
    Measured background for simulated spectra.
jitter_readout, readout_pool, random_live_times
    Randomised instruments for training sets.
"""

import importlib

from .instrument import Beam, Detector, Excitation, Filter, Instrument, Readout, Tube
from .variation import jitter_readout, random_live_times, readout_pool

_LAZY = {
    "FastSimulator": "fast",
    "Row": "fast",
    "poisson": "fast",
    "FaithfulSimulator": "faithful",
    "simulate_faithful": "faithful",
    "snip_background": "background",
    "estimate_background": "background",
    "compton_dcs": "scatter",
    "rayleigh_dcs": "scatter",
}

__all__ = [
    "Beam",
    "Detector",
    "Excitation",
    "Filter",
    "Instrument",
    "Readout",
    "Tube",
    "jitter_readout",
    "random_live_times",
    "readout_pool",
    *_LAZY,
]


def __getattr__(name):
    # PyMca loads only when a simulator or helper is first used.
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
