"""The energy axis refuses calibrations no XRF detector can have, with a message saying what to do."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_xrf_pigments.cube import EnergyAxis, XRFCube
from napari_xrf_pigments.errors import CalibrationError


@pytest.mark.parametrize(
    "zero, gain, quad, message",
    [
        (0.0, 1e308, 0.0, "0 to inf keV over its 4096 channels: XRF energies stay below about 200 keV"),
        (0.0, 0.01, 1e18, r"1.6769e\+25 keV .* check the calibration"),
        (0.0, 10.0, 0.0, "0 to 40950 keV over .*: that looks like eV; divide it by 1000"),
        (-15.0, 10.0, 0.0, "looks like eV"),  # zero and gain both in eV
        (-5.0, 0.01, 0.0, "check the zero offset"),
        (0.0, 0.01, -1e-5, "turns back at channel 500 of 0-4095: .* check the quadratic term"),
        (0.0, -0.01, 0.0, "energy must increase with the channel; check the sign of the gain"),
    ],
)
def test_impossible_calibrations_are_refused(zero, gain, quad, message):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning before the error
        with pytest.raises(CalibrationError, match=message) as info:
            EnergyAxis.from_calibration(4096, zero, gain, quad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "zero, gain, quad",
    [(-0.1, 0.01, 0.0), (-0.9, 0.02, 0.0), (0.0, 0.0195, 1e-7), (0.0, 0.048, 0.0), (0.01, 0.01, -1e-6)],
)
def test_real_detector_calibrations_are_kept(zero, gain, quad):
    axis = EnergyAxis.from_calibration(4096, zero, gain, quad)
    assert axis.calibrated and np.all(np.diff(axis.energies()) > 0)


def test_explicit_energies_in_eV_or_far_out_are_refused():
    with pytest.raises(CalibrationError, match="energy array gives 0 to 40950 keV .* looks like eV"):
        EnergyAxis.from_values(10.0 * np.arange(4096))
    with pytest.raises(CalibrationError, match="check the calibration"):
        EnergyAxis.from_values(1e28 * np.arange(10))
    assert EnergyAxis.from_values(-0.05 + 0.01 * np.arange(10)).range_keV[0] == pytest.approx(-0.05)


def test_with_calibration_refuses_an_ev_calibration():
    cube = XRFCube.from_array(np.ones((2, 2, 1024)))
    with pytest.raises(CalibrationError, match="looks like eV"):
        cube.with_calibration(0.0, 20.0)
    assert cube.with_calibration(0.0, 0.02).energy.range_keV[1] == pytest.approx(20.46)
