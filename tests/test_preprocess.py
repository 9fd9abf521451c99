"""Preprocessing: resampling onto a model grid, crop, Eq. 1, count-level normalisation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.cube import EnergyAxis, XRFCube
from napari_xrf_pigments.errors import CalibrationError, InvalidDataError
from napari_xrf_pigments.preprocess import (
    CROP_KEV,
    Preprocessing,
    Resampler,
    channel_edges,
    eq1,
    paper_grid,
    resample,
    transform,
)

BRUKER_M6 = -0.9555 + 0.009999 * np.arange(4096)  # Bruker M6 Jetstream .spx calibration
ELIO = -0.01 + 0.010 * np.arange(4096)  # 10 eV ELIO-like grid; channel 281 = 2.80 keV


def binned_gaussian(energies, centre, sigma, area):
    """Exact counts of a Gaussian peak integrated over each channel's bin."""
    from scipy.special import erf

    edges = channel_edges(energies)
    cdf = 0.5 * (1 + erf((edges - centre) / (sigma * np.sqrt(2))))
    return area * np.diff(cdf)


def test_paper_grid():
    g = paper_grid()
    assert g.size == 3815
    assert g[0] == pytest.approx(2.80)
    assert np.allclose(np.diff(g), 0.010)
    assert g[-1] == pytest.approx(40.94)


def test_eq1_values():
    assert eq1(np.array(0.0)) == 0.0
    assert eq1(np.array(1.0)) == pytest.approx(np.log(1 + np.log(2)))
    assert eq1(np.array(100.0)) == pytest.approx(np.log(1 + np.log(11)))


def test_eq1_in_place_is_bit_identical():
    x = np.random.default_rng(0).poisson(20, (5, 300)).astype(np.float32)
    want = eq1(x)
    got = eq1(x, out=x)
    assert got is x and want.dtype == np.float32
    assert want.tobytes() == x.tobytes()


@pytest.mark.parametrize("source", [BRUKER_M6, 0.05 + 0.02 * np.arange(2048)], ids=["m6", "20eV"])
def test_resampling_conserves_counts_and_peak_positions(source):
    counts = binned_gaussian(source, 6.40, 0.07, 1e5) + binned_gaussian(source, 12.61, 0.1, 3e4)
    res = Resampler(source, paper_grid())
    assert not res.is_slice
    out = res(counts[None])[0]
    assert out.dtype == np.float32
    assert out.sum() == pytest.approx(counts.sum(), rel=1e-5)
    grid = paper_grid()
    for centre, lo, hi in [(6.40, 6.0, 6.8), (12.61, 12.2, 13.0)]:
        sel = (grid > lo) & (grid < hi)
        centroid = np.sum(grid[sel] * out[sel]) / out[sel].sum()
        assert centroid == pytest.approx(centre, abs=0.002)


def test_two_instrument_grids_give_the_same_model_input():
    pre = Preprocessing.paper()
    inputs = []
    for source in (BRUKER_M6, ELIO):
        counts = (
            binned_gaussian(source, 6.40, 0.075, 5e4)
            + binned_gaussian(source, 9.99, 0.09, 2e4)
            + 3.0 * (source > 0)
        )
        inputs.append(pre(counts, source))
    assert inputs[0].shape == inputs[1].shape == (3815,)
    both = paper_grid() < 39.9  # the M6 axis ends at 40.0 keV, the model grid at 40.94
    assert np.max(np.abs(inputs[0] - inputs[1])[both]) < 0.03


def test_aligned_grid_is_sliced_exactly():
    counts = np.arange(4096, dtype=np.float32)[None] % 17
    res = Resampler(ELIO, paper_grid())
    assert res.is_slice
    np.testing.assert_array_equal(res(counts)[0], counts[0, 281 : 281 + 3815])


def test_crop_at_2_8_keV():
    pre = Preprocessing.from_energies(ELIO)
    assert pre.grid[0] == pytest.approx(CROP_KEV)
    assert pre.n_channels == 3815
    # Sulfur K (2.31 keV) / Hg M (2.20 keV) region never reaches the model.
    counts = binned_gaussian(ELIO, 2.31, 0.05, 1e5)
    assert pre.counts_on_grid(counts, ELIO).sum() < 1e-3


def test_normalisation_is_independent_of_counting_time():
    expected = binned_gaussian(BRUKER_M6, 8.04, 0.08, 2e3) + 0.5
    short, long = transform(resample(expected, BRUKER_M6, paper_grid())), transform(
        resample(100 * expected, BRUKER_M6, paper_grid())
    )
    np.testing.assert_allclose(short, long, atol=1e-6)
    assert short.max() == pytest.approx(1.0)
    assert short.min() >= 0


def test_empty_spectrum_stays_zero():
    out = transform(np.zeros((2, 10)))
    assert np.all(out == 0)


def test_uncalibrated_input_is_refused():
    cube = XRFCube.from_array(np.ones((2, 2, 64)))
    with pytest.raises(CalibrationError, match="not calibrated"):
        Preprocessing.paper().counts_on_grid(cube.counts, cube.energy)
    with pytest.raises(CalibrationError, match="not calibrated"):
        Preprocessing.paper().resampler(EnergyAxis.uncalibrated(64))


def test_no_overlap_is_refused():
    ev_by_mistake = 0.001 * np.arange(2048)  # eV read as keV: 0 - 2.05 "keV"
    with pytest.raises(CalibrationError, match="does not overlap"):
        Preprocessing.paper().counts_on_grid(np.ones(2048), ev_by_mistake)


def test_nan_counts_are_refused():
    counts = np.ones(4096)
    counts[100] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        Preprocessing.paper()(counts, ELIO)


def test_partial_coverage_fills_zeros():
    short = 0.0 + 0.01 * np.arange(2000)  # ends at 20 keV
    res = Preprocessing.paper().resampler(short)
    assert 0.4 < res.coverage < 0.5
    out = res(np.ones((1, 2000)))[0]
    assert np.all(out[paper_grid() > 20.1] == 0)


def test_preprocessing_dict_round_trip_and_version_check():
    pre = Preprocessing.from_energies(ELIO, reference_counts=5e4)
    back = Preprocessing.from_dict(pre.to_dict())
    np.testing.assert_allclose(back.grid, pre.grid, atol=1e-9)
    assert back.reference_counts == 5e4
    bad = pre.to_dict() | {"version": 99}
    with pytest.raises(InvalidDataError, match="version 99"):
        Preprocessing.from_dict(bad)
    with pytest.raises(CalibrationError, match="below"):
        Preprocessing(ELIO)  # starts below the crop


def test_core_imports_do_not_load_tensorflow():
    code = (
        "import sys, napari_xrf_pigments, napari_xrf_pigments.preprocess, "
        "napari_xrf_pigments.datasets.trainset, napari_xrf_pigments.model, "
        "napari_xrf_pigments.model.metrics, napari_xrf_pigments.io.maps, napari_xrf_pigments.cli\n"
        "bad = [m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
