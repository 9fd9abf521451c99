"""Synthetic, easily separable data for the model tests (not collected by pytest).

Four "pigments", each a Gaussian peak pair at its own energies; every spectrum has one top-layer
pigment (strong peaks) and usually one other pigment below (weak peaks), on a small 40 eV grid
from 2.0 keV, with Poisson noise. A tiny network learns it in a few epochs.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

PIGMENTS = [
    ("AA", "Alpha"),
    ("BB", "Beta"),
    ("CC", "Gamma"),
    ("DD", "Delta"),
]
PEAKS_KEV = {0: (4.0, 4.4), 1: (6.4, 7.06), 2: (8.05, 8.9), 3: (10.55, 12.6)}
ENERGY = 2.0 + 0.04 * np.arange(300)  # 2.00 .. 13.96 keV
TINY_ARCH = {"filters": (8, 8, 8, 8, 16), "post_filters": 16, "norm_momentum": 0.8}


def spectrum_shape(energy, pigment, sigma=0.09):
    """Expected counts shape (sum 1 per peak pair) of one pigment on channel centres ``energy``."""
    e = np.asarray(energy)[None, :]
    lines = np.asarray(PEAKS_KEV[pigment])[:, None]
    return (np.exp(-0.5 * ((e - lines) / sigma) ** 2) * np.array([[1.0], [0.3]])).sum(axis=0)


def make_set(n=600, seed=0, energy=ENERGY, scale=1.0):
    """Spectra (n, channels) float32, present and top (n, 4) bool."""
    rng = np.random.default_rng(seed)
    k = len(PIGMENTS)
    spectra = np.empty((n, energy.size), np.float32)
    present = np.zeros((n, k), bool)
    top = np.zeros((n, k), bool)
    background = 3.0 * np.exp(-(energy - 2.0) / 6.0)
    for i in range(n):
        t = rng.integers(k)
        b = rng.integers(k + 1)  # k: no bottom pigment
        expected = background + rng.uniform(150, 300) * spectrum_shape(energy, t)
        if b < k and b != t:
            expected = expected + rng.uniform(25, 60) * spectrum_shape(energy, b)
            present[i, b] = True
        present[i, t] = top[i, t] = True
        spectra[i] = rng.poisson(expected * scale)
    return spectra, present, top


def write_set(path, n=600, seed=0, **kwargs):
    from napari_xrf_pigments.datasets.trainset import write_training_set

    spectra, present, top = make_set(n, seed)
    return write_training_set(
        path, spectra, ENERGY, present, top, PIGMENTS, {"generator": "tests/_model_data.py",
                                                        "seed": seed}, **kwargs
    )


_TMP = []


def _tmpdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="xrf-model-tests-"))
    _TMP.append(d)
    return d


@atexit.register
def _cleanup():
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def tiny_trained():
    """(TrainResult, model directory) of a tiny model trained once per test session.

    ``TrainResult.progress`` holds the Progress steps the training yielded.
    """
    from napari_xrf_pigments.datasets.trainset import read_training_set
    from napari_xrf_pigments.model.training import train
    from napari_xrf_pigments.progress import run

    d = _tmpdir()
    data = read_training_set(write_set(d / "train.h5"))
    steps = []
    result = run(
        train(data, folds=1, epochs=10, patience=4, seed=1, batch_size=32,
              learning_rate=3e-3, architecture=TINY_ARCH, name="tiny-test-model"),
        steps.append,
    )
    result.progress = steps
    path = result.save(d / "model")
    return result, path


def nexus_cube(path, counts, energy):
    """Write a minimal NeXus XRF cube: /entry/data counts (rows, cols, ch), energy (ch,) keV."""
    import h5py

    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        data.attrs["axes"] = ["y", "x", "energy"]
        data.create_dataset("counts", data=counts)
        e = data.create_dataset("energy", data=np.asarray(energy, float))
        e.attrs["units"] = "keV"
        data.create_dataset("y", data=np.arange(counts.shape[0], dtype=float))
        data.create_dataset("x", data=np.arange(counts.shape[1], dtype=float))
    return Path(path)
