"""The instrument a scan's file describes (#16 item 4): `instrument_from_cube`, `xrf-pigments
instrument`, and the simulator reading the result."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.io import open_cube
from napari_xrf_pigments.physics.instrument import Instrument, instrument_from_cube

M6 = "rosettasciio_bruker/bruker_m6_jetstream_file_example.spx"


def test_the_bruker_m6_file_describes_its_tube_detector_and_readout(real_data, tmp_path):
    instrument, notes = instrument_from_cube(open_cube(real_data / M6))
    tube = instrument.tube
    # README: Rh anode, 50 kV, 199 uA; the file's XRF header: anode angles 78/12, 100 um Be.
    assert (tube.anode, tube.voltage_kV, tube.current_mA) == ("Rh", 50.0, pytest.approx(0.199))
    assert (tube.electron_angle_deg, tube.takeoff_angle_deg, tube.window_thickness_um) == (78, 12, 100)
    readout = instrument.readout
    assert (readout.zero_keV, readout.gain_keV, readout.n_channels) == (
        pytest.approx(-0.9555, abs=1e-4), pytest.approx(0.009999, abs=1e-6), 4096)
    # XFlash 430 (SigmaAbs/SigmaLin): 142 eV at Mn Ka, a usual SDD figure.
    assert readout.fwhm_keV(5.895) == pytest.approx(0.1417, abs=0.001)
    assert instrument.detector.thickness_um == 450 and instrument.detector.window_thickness_um == 12.5
    assert instrument.live_time_s == pytest.approx(28.046)
    assert any(n.startswith("tube: anode Rh") for n in notes)
    instrument.save(tmp_path / "m6.json")
    assert Instrument.load(tmp_path / "m6.json") == instrument


@pytest.mark.slow  # simulates a mock-up
def test_a_simulated_cube_gives_back_its_whole_instrument():
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    original = Instrument().replace(name="test scanner", live_time_s=2.0)
    layout = crossed_strips(("Top 4",), ("Bottom 2A",), strip_px=2, gap_px=1, margin_px=1)
    cube, _ = run(simulate_mockup(layout, instrument=original, seed=0))
    instrument, notes = instrument_from_cube(cube)
    assert instrument == original and "whole instrument description" in notes[0]


def test_a_synchrotron_file_gives_a_monochromatic_beam(real_data):
    instrument, notes = instrument_from_cube(open_cube(real_data / "derived/2ide_axo_std.h5"))
    assert instrument.tube is None and instrument.beam.energies_keV == (10.0,)
    assert notes[0] == "excitation: a 10 keV monochromatic beam"
    assert instrument.readout.n_channels == 2000


def test_a_portable_spectrum_gives_its_calibration_and_keeps_the_rest(tmp_path):
    from napari_xrf_pigments.io.amptek import write_pmca

    path = write_pmca(tmp_path / "point_1.mca", np.ones(1024, int),
                      calibration=[(100, 1.0), (900, 9.0)], live_time=29.5)
    base = Instrument().replace(name="our stage")
    instrument, notes = instrument_from_cube(open_cube(path), base=base)
    assert instrument.readout.gain_keV == pytest.approx(0.01) and instrument.readout.n_channels == 1024
    assert instrument.tube == base.tube and instrument.detector == base.detector
    assert instrument.live_time_s == pytest.approx(29.5)
    assert any("tube: not in the file; Rh 40 kV kept" == n for n in notes)


def test_instrument_command(real_data, tmp_path, capsys):
    out = tmp_path / "m6.json"
    assert main(["instrument", str(real_data / M6), "--out", str(out), "--name", "our M6"]) == 0
    printed = capsys.readouterr().out
    assert "detector resolution: 142 eV at Mn Ka" in printed and "--instrument" in printed
    made = Instrument.load(out)
    assert made.name == "our M6" and made.tube.anode == "Rh"
    assert main(["instrument", str(real_data / M6), "--out", str(out)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert main(["instrument", str(real_data / "pymca5/Steel.cfg"), "--out",
                 str(tmp_path / "steel.json")]) == 0
    assert Instrument.load(tmp_path / "steel.json").readout.gain_keV == pytest.approx(0.011928, abs=1e-6)
    assert main(["instrument", str(tmp_path / "none.h5"), "--out", str(tmp_path / "x.json")]) == 2
    assert "no such file" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
