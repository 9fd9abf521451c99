"""Pixel and region spectra (core, no viewer)."""

import h5py
import numpy as np
import pytest

from napari_xrf_pigments.errors import InvalidDataError
from napari_xrf_pigments.progress import Progress
from napari_xrf_pigments.regions import (
    pixel_spectrum,
    region_bytes,
    region_spectrum,
    region_spectrum_job,
)


@pytest.fixture
def counts():
    rng = np.random.default_rng(0)
    return rng.poisson(4.0, size=(9, 7, 32)).astype(np.uint16)


def test_pixel_spectrum(counts):
    spectrum = pixel_spectrum(counts, 3, 4)
    assert spectrum.dtype == np.float64
    np.testing.assert_array_equal(spectrum, counts[3, 4])
    with pytest.raises(IndexError):
        pixel_spectrum(counts, 9, 0)


def test_region_mean_and_sum(counts):
    mask = np.zeros(counts.shape[:2], bool)
    mask[2:5, 1:3] = True
    mask[7, 6] = True
    mean = region_spectrum(counts, mask, rows_per_block=2)
    np.testing.assert_allclose(mean.spectrum, counts[mask].mean(axis=0))
    assert mean.n_pixels == 7 and mean.reduce == "mean"
    total = region_spectrum(counts, mask, reduce="sum")
    np.testing.assert_allclose(total.spectrum, counts[mask].sum(axis=0))


def test_region_job_yields_progress_and_reads_h5py(tmp_path, counts):
    with h5py.File(tmp_path / "c.h5", "w") as h5:
        h5["counts"] = counts
    mask = np.zeros(counts.shape[:2], bool)
    mask[1:8, 2] = True
    with h5py.File(tmp_path / "c.h5", "r") as h5:
        job = region_spectrum_job(h5["counts"], mask, rows_per_block=3)
        steps = []
        try:
            while True:
                steps.append(next(job))
        except StopIteration as stop:
            result = stop.value
    assert all(isinstance(step, Progress) for step in steps)
    assert steps[-1].done == steps[-1].total == 7
    np.testing.assert_allclose(result.spectrum, counts[mask].mean(axis=0))
    assert region_bytes(counts, mask) == 7 * 1 * 32 * 2


def test_region_errors(counts):
    with pytest.raises(InvalidDataError, match="empty"):
        region_spectrum(counts, np.zeros(counts.shape[:2], bool))
    with pytest.raises(InvalidDataError, match="shape"):
        region_spectrum(counts, np.ones((3, 3), bool))
    bad = counts.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        region_spectrum(bad, np.ones(counts.shape[:2], bool))
    with pytest.raises(ValueError):
        region_spectrum(counts, np.ones(counts.shape[:2], bool), reduce="median")
