"""Automatic energy calibration (calibration.py) and ``xrf-pigments calibrate``.

Simulated mock-ups (the project's simulator) with misstated calibrations are recovered within
10 eV; synthetic spectra of PyMca's lines check the linear/quadratic decision; the real Bruker
M6 spectrum checks that a right calibration is left (nearly) alone; spectra without two lines
to name are refused with one line.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json

import numpy as np
import pytest

from napari_xrf_pigments.calibration import (
    AutoCalibration,
    calibrate_cube,
    calibrate_cube_job,
    find_calibration,
)
from napari_xrf_pigments.cli import main
from napari_xrf_pigments.cube import EnergyAxis, XRFCube
from napari_xrf_pigments.errors import CalibrationError
from napari_xrf_pigments.progress import Progress

M6_SPX = "rosettasciio_bruker/bruker_m6_jetstream_file_example.spx"
RANGE_KEV = (3.0, 20.0)


@functools.lru_cache(maxsize=1)
def mockup() -> XRFCube:
    """A 10 x 10 simulated mock-up: vermilion over lead white / zinc white, chalk ground, the
    default Rh 40 kV instrument, 1 s per pixel (~2 s to simulate)."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    layout = crossed_strips(("Top 4",), ("Bottom 2A",), strip_px=4)
    cube, _ = run(simulate_mockup(layout, seed=3, live_time_s=1.0))
    return cube


def misstated(cube, offset_keV, gain_error):
    zero, gain, quad = cube.energy.as_calibration()
    return cube.with_calibration(zero + offset_keV, gain * (1 + gain_error), quad)


def largest_error_keV(energies, truth) -> float:
    """max |E - E_true| over the channels whose true energy is between 3 and 20 keV."""
    inside = (truth >= RANGE_KEV[0]) & (truth <= RANGE_KEV[1])
    return float(np.max(np.abs(energies[inside] - truth[inside])))


def line_spectrum(zero, gain, quad=0.0, *, n=2048, seed=0, lines=None, resolution=0.14):
    """Counts per channel of K and L lines (PyMca's energies and rates) on a falling background,
    with Poisson noise, for channel energies ``zero + gain*ch + quad*ch**2`` (keV)."""
    from napari_xrf_pigments.lines import element_lines
    from napari_xrf_pigments.physics.instrument import fwhm_at

    ch = np.arange(n, dtype=np.float64)
    e = zero + gain * ch + quad * ch * ch
    width = gain + 2 * quad * ch  # keV per channel
    y = 40.0 * np.exp(-e / 8.0) + 4.0
    lines = lines or {("Ar", "K"): 2e4, ("Ca", "K"): 4e5, ("Ti", "K"): 5e4, ("Fe", "K"): 2e5,
                      ("Cu", "K"): 8e4, ("Zn", "K"): 6e4, ("Pb", "L"): 3e5, ("Sr", "K"): 5e4}
    for (element, family), area in lines.items():
        for line in element_lines(element, (family,)):
            sigma = float(fwhm_at(line.energy, resolution, 0.114)) / 2.3548
            y = y + area * line.rate * width * np.exp(-0.5 * ((e - line.energy) / sigma) ** 2) / (
                sigma * np.sqrt(2 * np.pi))
    return np.random.default_rng(seed).poisson(y).astype(np.float64)


# -- simulated mock-ups --------------------------------------------------------------------


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
@pytest.mark.parametrize("offset_keV, gain_error", [
    (-0.100, -0.005), (-0.065, 0.0), (0.030, -0.005), (0.100, 0.005),
])
def test_a_misstated_calibration_of_a_simulated_mockup_is_recovered(offset_keV, gain_error):
    truth = mockup().energy.energies()
    stated = misstated(mockup(), offset_keV, gain_error)
    assert largest_error_keV(stated.energy.energies(), truth) > 0.029  # really off
    found = calibrate_cube(stated)
    assert largest_error_keV(found.energies(), truth) < 0.010
    used = {m.line for m in found.lines}
    assert {"Ca Ka", "Hg La", "Pb La", "Pb Lb"} <= used  # chalk, vermilion, lead white
    assert "Rh Ka" in used  # the scattered tube line: the anode is in the cube's metadata
    assert found.quad_keV == 0.0  # the simulated detector is linear
    assert found.residual_keV < 0.005
    # The shift is reported as "stated minus found" at the channel of an energy.
    assert found.offset_at(6.4) == pytest.approx(offset_keV + gain_error * 6.4, abs=0.008)
    assert found.max_offset_keV() == pytest.approx(
        largest_error_keV(stated.energy.energies(), truth), abs=0.010)


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_a_right_calibration_is_kept_and_a_slightly_wrong_one_corrected():
    right = calibrate_cube(mockup())
    assert right.kept_stated and right.free_fit is not None
    assert right.calibration == pytest.approx(mockup().energy.as_calibration(), abs=1e-12)
    assert right.to_dict()["kept_stated"] is True
    assert right.report()[0].startswith("kept the stated calibration")
    # 15 eV off at every line is many times the lines' uncertainties (~4 eV): corrected.
    off = calibrate_cube(misstated(mockup(), 0.015, 0.0))
    assert not off.kept_stated
    assert off.offset_at(6.4) == pytest.approx(0.015, abs=0.004)


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_an_uncalibrated_mockup_is_recovered_from_a_rough_guess():
    cube = mockup()
    raw = XRFCube(cube.counts, EnergyAxis.uncalibrated(cube.n_channels), metadata=cube.metadata)
    with pytest.raises(CalibrationError, match="not calibrated.*--guess 0,0.01") as info:
        calibrate_cube(raw)
    assert "\n" not in str(info.value)
    found = calibrate_cube(raw, guess=(0.0, 0.0102))  # 10 eV channels, 2 % off
    assert largest_error_keV(found.energies(), cube.energy.energies()) < 0.010
    assert found.stated is None and found.offset_at(6.4) is None
    # A guess for a calibrated cube is searched from, but reported against the stated one.
    found = calibrate_cube(misstated(cube, 0.4, 0.03), guess=(0.0, 0.0102))
    assert largest_error_keV(found.energies(), cube.energy.energies()) < 0.010
    assert found.offset_at(6.4) == pytest.approx(0.4 + 0.03 * 6.4, abs=0.01)


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_the_job_reports_progress_and_apply_keeps_the_counts():
    cube = misstated(mockup(), 0.05, 0.0)
    steps = []
    job = calibrate_cube_job(cube)
    try:
        while True:
            steps.append(next(job))
    except StopIteration as stop:
        found = stop.value
    assert isinstance(found, AutoCalibration)
    assert all(isinstance(s, Progress) for s in steps) and steps[-1].done == steps[-1].total
    new = found.apply(cube)
    assert new.counts is cube.counts and new.energy.as_calibration() == found.calibration
    assert cube.energy.zero == pytest.approx(0.05)  # the input is unchanged
    record = new.metadata["auto_calibration"]
    assert record["lines"][0]["line"] == found.lines[0].line
    assert record["shift_eV"]["6.4"] == pytest.approx(50, abs=8)
    assert new.metadata["calibration_fit"].startswith("linear, found from the peaks of")
    assert "auto_calibration" not in cube.metadata
    json.dumps(record, allow_nan=False)


# -- the linear/quadratic decision on synthetic line spectra -------------------------------


@pytest.mark.slow  # ~1 s: simulates spectra
def test_a_non_linear_detector_gets_a_quadratic_term():
    quad = 3e-8  # bends the axis ~30 eV away from the straight line at mid-range
    truth = 0.005 + 0.0099 * np.arange(2048) + quad * np.arange(2048.0) ** 2
    y = line_spectrum(0.005, 0.0099, quad)
    found = find_calibration(y, (0.0, 0.01))
    assert found.quad_keV == pytest.approx(quad, rel=0.15)
    assert any(note.startswith("quadratic term kept") for note in found.notes)
    assert largest_error_keV(found.energies(), truth) < 0.005
    linear = find_calibration(y, (0.0, 0.01), quadratic=False)
    assert linear.quad_keV == 0.0 and largest_error_keV(linear.energies(), truth) > 0.010


def test_a_linear_detector_keeps_a_linear_calibration():
    truth = -0.02 + 0.0101 * np.arange(2048)
    found = find_calibration(line_spectrum(-0.02, 0.0101), (0.06, 0.01))  # stated 80 eV high
    assert found.quad_keV == 0.0
    assert any(note.startswith("quadratic term tried, not kept") for note in found.notes)
    assert largest_error_keV(found.energies(), truth) < 0.005  # started 80-100 eV off
    # (Cu Ka is left out: its Kb is only a shoulder of Zn Ka, so the companion check fails.)
    assert {"Ar Ka", "Ca Ka", "Ti Ka", "Fe Ka", "Zn Ka", "Pb La", "Pb Lb", "Sr Ka"} <= {
        m.line for m in found.lines}
    # Each line within twice its uncertainty (multiplets such as Pb Lb fit to a few eV).
    assert all(abs(m.residual_keV) < 2 * m.sigma_keV for m in found.lines)


# -- refusals ------------------------------------------------------------------------------


def test_a_flat_spectrum_is_refused_in_one_line():
    flat = np.random.default_rng(1).poisson(30.0, 2048).astype(float)
    with pytest.raises(CalibrationError, match="^no clear peak in the sum spectrum") as info:
        find_calibration(flat, (0.0, 0.01))
    assert "\n" not in str(info.value)
    with pytest.raises(CalibrationError, match="no counts"):
        find_calibration(np.zeros(2048), (0.0, 0.01))


def test_one_line_is_not_enough():
    y = line_spectrum(0.0, 0.01, lines={("Fe", "K"): 3e5})
    with pytest.raises(CalibrationError) as info:
        find_calibration(y, (0.0, 0.01))
    # Fe Ka and Fe Kb are two peaks but one line of the calibration set: refused.
    assert "two are needed" in str(info.value) or "two lines are needed" in str(info.value)
    assert "\n" not in str(info.value)


def test_peaks_no_line_explains_are_refused():
    # Two clear peaks at 5.0 and 11.0 keV: no pair of the lines fits them within 0.3 keV and
    # 2 % of the stated calibration.
    e = 0.01 * np.arange(2048)
    y = 20.0 + 4e4 * (np.exp(-0.5 * ((e - 5.0) / 0.06) ** 2) + np.exp(-0.5 * ((e - 11.0) / 0.08) ** 2))
    with pytest.raises(CalibrationError, match="fewer than two of the 2 clear peaks"):
        find_calibration(np.random.default_rng(2).poisson(y).astype(float), (0.0, 0.01))


def test_two_peaks_that_two_pairs_of_lines_fit_are_ambiguous():
    # Two lone peaks 2.5 keV apart: Ti Ka / Co Ka and Cr Ka / Cu Ka (and more) fit them within
    # the wide search around a guess, and nothing tells them apart.
    e = 0.01 * np.arange(2048)
    y = 20.0 + 4e4 * (np.exp(-0.5 * ((e - 4.9) / 0.06) ** 2) + np.exp(-0.5 * ((e - 7.4) / 0.07) ** 2))
    with pytest.raises(CalibrationError, match="can be named in two ways") as info:
        find_calibration(np.random.default_rng(3).poisson(y).astype(float), (0.0, 0.01),
                         stated=False)
    assert "\n" not in str(info.value)


# -- the real Bruker M6 spectrum -----------------------------------------------------------


@pytest.mark.realdata
def test_the_real_m6_spectrum_keeps_its_stated_calibration(real_data):
    from napari_xrf_pigments.io import open_cube

    cube = open_cube(real_data / M6_SPX)
    found = calibrate_cube(cube)
    assert {"Ca Ka", "Fe Ka", "Zn Ka", "Sr Ka"} <= {m.line for m in found.lines}
    lo, hi = found.span_keV
    assert lo < 3.8 and hi > 14.0
    # The stated calibration explains the lines within their uncertainties, so it is kept: no
    # correction anywhere (the goal: below 10 eV over 3-20 keV).
    assert found.kept_stated
    assert found.max_offset_keV(3.0, 20.0) < 1e-6
    assert found.calibration == pytest.approx(cube.energy.as_calibration(), abs=1e-12)
    assert found.residual_keV < 0.008  # the lines' misses of the stated calibration
    assert any("kept" in note and "p = " in note for note in found.notes)
    # The lines alone would move it by < 10 eV where they are (3 to 14 keV), and beyond the
    # last line by an extrapolation within its uncertainty (PyMca's own zero/gain fit of this
    # spectrum finds 13-25 eV at 20 keV too).
    free = dataclasses.replace(found, zero_keV=found.free_fit[0], gain_keV=found.free_fit[1],
                               quad_keV=found.free_fit[2])
    assert free.max_offset_keV(3.0, hi) < 0.010
    assert abs(free.offset_at(20.0)) < 1.5 * found.uncertainty_at(20.0)
    assert found.apply(cube).energy is cube.energy  # nothing to change
    # Misstated by +60 eV and -0.4 % gain, the stated calibration is refused and corrected to
    # what the lines alone give.
    again = calibrate_cube(misstated(cube, 0.06, -0.004))
    assert not again.kept_stated
    assert largest_error_keV(again.energies(), free.energies()) < 0.001


# -- xrf-pigments calibrate ----------------------------------------------------------------


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def misstated_file(tmp_path):
    from napari_xrf_pigments.io import write_cube

    path = tmp_path / "scan.h5"
    write_cube(path, misstated(mockup(), 0.065, 0.0))
    return path


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_cli_calibrate_prints_and_writes_a_new_cube(misstated_file, tmp_path, capsys):
    from napari_xrf_pigments.io import open_cube

    before = digest(misstated_file)
    out = tmp_path / "calibrated.h5"
    assert main(["calibrate", str(misstated_file), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lines used:" in text and "Ca Ka" in text and "residual" in text
    assert "shift of the stated calibration (stated minus found): +6" in text  # ~+65 eV
    assert f"recalibrated cube written to {out}" in text
    assert digest(misstated_file) == before  # the input is never changed
    written = open_cube(out)
    assert largest_error_keV(written.energy.energies(), mockup().energy.energies()) < 0.010
    np.testing.assert_array_equal(np.asarray(written.counts), mockup().counts)
    assert written.metadata["calibration_fit"].startswith("linear, found from the peaks of")

    # An existing output is refused without --force (one line, exit 2, file untouched)...
    kept = digest(out)
    assert main(["calibrate", str(misstated_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xrf-pigments calibrate: error:") and "--force" in err
    assert "\n" not in err and digest(out) == kept
    # ...and replaced with it; the input itself is never an output, --force or not.
    assert main(["calibrate", str(misstated_file), "-o", str(out), "--force"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(misstated_file), "-o", str(misstated_file), "--force"]) == 2
    assert "is the input cube" in capsys.readouterr().err
    assert digest(misstated_file) == before


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_cli_calibrate_json(misstated_file, capsys):
    assert main(["calibrate", str(misstated_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["written"] is None and result["cube"] == str(misstated_file)
    assert result["shift_eV"]["6.4"] == pytest.approx(65, abs=8)
    assert {line["line"] for line in result["lines"]} >= {"Ca Ka", "Pb La"}
    assert result["stated"]["zero_keV"] == pytest.approx(0.065)


@pytest.mark.slow  # simulates a mock-up (PyMca), once per session
def test_cli_calibrate_fails_with_one_line_and_writes_nothing(tmp_path, capsys):
    from napari_xrf_pigments.io import write_cube

    flat = tmp_path / "flat.h5"
    counts = np.random.default_rng(0).poisson(20.0, (4, 4, 2048)).astype(np.uint16)
    write_cube(flat, XRFCube.from_array(counts, zero=0.0, gain=0.01))
    out = tmp_path / "out.h5"
    assert main(["calibrate", str(flat), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xrf-pigments calibrate: error: {flat}: no clear peak")
    assert "\n" not in err and not out.exists()

    raw = tmp_path / "raw.h5"
    write_cube(raw, dataclasses.replace(mockup(), energy=EnergyAxis.uncalibrated(4096)))
    assert main(["calibrate", str(raw)]) == 2
    assert "--guess 0,0.01" in capsys.readouterr().err
    assert main(["calibrate", str(raw), "--guess", "0,0.0102", "-o", str(out)]) == 0
    assert "recalibrated cube written" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["calibrate", str(raw), "--guess", "0"])
    assert info.value.code == 2
    assert "ZERO,GAIN" in capsys.readouterr().err
