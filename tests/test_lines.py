"""X-ray line tables and calibration from named peaks (core, no viewer)."""

import numpy as np
import pytest

from napari_xrf_pigments.errors import CalibrationError
from napari_xrf_pigments.lines import (
    element_lines,
    line_energy,
    nearest_lines,
    parse_line_name,
    peak_channel,
    two_peak_calibration,
)


@pytest.mark.parametrize(
    ("name", "kev"),
    [
        ("Fe Ka1", 6.404),
        ("Fe KL3", 6.404),
        ("Fe Ka", 6.400),  # rate-weighted Ka1/Ka2
        ("Ca Ka", 3.690),
        ("Cu Ka", 8.041),
        ("Pb La", 10.541),
        ("Pb Lb1", 12.614),
        ("Hg Ma", 2.195),
        ("S Ka", 2.307),
        ("fe-kα", 6.400),
        ("CaKa", 3.690),
    ],
)
def test_line_energy_matches_tables(name, kev):
    assert line_energy(name) == pytest.approx(kev, abs=0.002)


def test_parse_line_name():
    assert parse_line_name(" pb  Lβ1 ") == ("Pb", "Lb1")
    with pytest.raises(CalibrationError, match="unknown element"):
        line_energy("Xx Ka")
    with pytest.raises(CalibrationError, match="no line"):
        line_energy("Fe Qz")
    with pytest.raises(CalibrationError):
        line_energy("6.4 keV")


def test_nearest_lines_physics_facts():
    # PyMca's ElementsTest facts: As K and Pb L overlap at 10.55 keV, S K and Hg M at ~2.3 keV.
    labels = [line.label for line, _ in nearest_lines(10.54)]
    assert "As Ka1" in labels and "Pb La1" in labels
    labels = [line.label for line, _ in nearest_lines(2.29, tolerance_keV=0.05)]
    assert "S Ka1" in labels and "Hg Mb" in labels
    line, delta = nearest_lines(6.40)[0]
    assert line.element == "Fe" and abs(delta) < 0.01
    only_cu = nearest_lines(8.0, elements=["cu"], tolerance_keV=0.1)
    assert {line.element for line, _ in only_cu} == {"Cu"}
    assert nearest_lines(30.0, elements=["Ca"]) == []


def test_element_lines_families_and_rates():
    k = element_lines("Fe", ["K"])
    assert {line.family for line in k} == {"K"}
    assert [line.energy for line in k] == sorted(line.energy for line in k)
    pb_l = element_lines("Pb", ["L"])
    assert max(pb_l, key=lambda ln: ln.rate).name == "La1"


def test_two_peak_calibration():
    zero, gain = two_peak_calibration(100, 1.0, 600, 6.0)
    assert (zero, gain) == pytest.approx((0.0, 0.01))
    zero, gain = two_peak_calibration(465.0, line_energy("Ca Ka"), 735.0, line_energy("Fe Ka"))
    assert zero + gain * 465 == pytest.approx(line_energy("Ca Ka"))
    with pytest.raises(CalibrationError, match="same channel"):
        two_peak_calibration(10, 1.0, 10, 2.0)
    with pytest.raises(CalibrationError, match="increase"):
        two_peak_calibration(600, 1.0, 100, 6.0)


def test_peak_channel_refines_to_sub_channel():
    ch = np.arange(200, dtype=float)
    spectrum = 5 + 1000 * np.exp(-0.5 * ((ch - 120.3) / 3.0) ** 2)
    assert peak_channel(spectrum, 115) == pytest.approx(120.3, abs=0.1)
    assert peak_channel(np.arange(10.0), 2, half_width=3) == 5.0  # no maximum inside: highest
    with pytest.raises(ValueError):
        peak_channel(spectrum, 500)
