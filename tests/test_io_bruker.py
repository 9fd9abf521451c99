"""Bruker .bcf spectrum images and .spx spectra (rosettasciio), checked against the README."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import bruker, open_cube, sniff

BRUKER = "rosettasciio_bruker"


def _peak_keV(cube, lo, hi):
    e = cube.energy.energies()
    s = cube.sum_spectrum()
    window = (e >= lo) & (e <= hi)
    return float(e[window][np.argmax(s[window])])


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, shape, dtype",
    [
        ("30x30_instructively_packed_16bit_compressed.bcf", (30, 30, 2048), np.uint16),
        ("bcf_v2_50x50px.bcf", (50, 50, 2048), np.uint8),
        ("P45_the_default_job.bcf", (75, 100, 2048), np.uint8),
        ("Hitachi_TM3030Plus.bcf", (240, 320, 2048), np.uint8),
    ],
)
def test_bcf_spectrum_images(real_data, name, shape, dtype):
    path = real_data / BRUKER / name
    assert sniff(path) == "bruker-bcf"
    cube = open_cube(path)
    assert cube.format == "bruker-bcf"
    assert cube.shape == shape
    assert cube.dtype == dtype
    assert isinstance(cube.counts, np.ndarray)  # small: decoded (in a child process) at open
    # README: offset ~ -0.473 keV, 0.01 keV/channel (CalibAbs / CalibLin).
    zero, gain, _ = cube.energy.as_calibration()
    assert zero == pytest.approx(-0.473, abs=0.003)
    assert gain == pytest.approx(0.01, abs=2e-5)
    first, last = cube.energy.range_keV
    assert last == pytest.approx(first + 2047 * gain)


@pytest.mark.realdata
@pytest.mark.parametrize("at_open", [True, False])
def test_bcf_counts_match_rsciio_and_physics(real_data, monkeypatch, at_open):
    """Decoding in a child process, at open or lazily (big maps), gives rsciio's eager result;
    Si Ka and Fe Ka are in place in the Mg/Al/Si/K/Ca/Ti/Fe sample."""
    import dask.array as da
    from rsciio.bruker import file_reader

    if not at_open:
        monkeypatch.setattr(bruker, "DECODE_AT_OPEN_BYTES", 0)
    path = real_data / BRUKER / "30x30_instructively_packed_16bit_compressed.bcf"
    cube = open_cube(path)
    assert isinstance(cube.counts, np.ndarray if at_open else da.Array)
    eager = file_reader(str(path), select_type="spectrum_image")[0]["data"]
    assert np.array_equal(np.asarray(cube.counts[3:7]), eager[3:7])
    assert np.array_equal(np.asarray(cube.counts), eager)
    assert _peak_keV(cube, 1.6, 1.9) == pytest.approx(1.740, abs=0.03)  # Si Ka
    assert _peak_keV(cube, 6.2, 6.6) == pytest.approx(6.404, abs=0.03)  # Fe Ka
    assert cube.pixel_size is not None and cube.pixel_size[0] > 0  # um converted to mm
    assert cube.metadata["excitation_kV"] == 20.0


@pytest.mark.realdata
def test_bcf_hitachi_copper(real_data):
    cube = open_cube(real_data / BRUKER / "Hitachi_TM3030Plus.bcf")
    assert _peak_keV(cube, 7.8, 8.3) == pytest.approx(8.048, abs=0.03)  # Cu Ka


@pytest.mark.realdata
def test_spx_m6_jetstream(real_data):
    """The real MA-XRF spectrum: README values and the dominant Ca Ka / Kb peaks."""
    path = real_data / BRUKER / "bruker_m6_jetstream_file_example.spx"
    assert sniff(path) == "bruker-spx"
    cube = open_cube(path)
    assert cube.format == "bruker-spx"
    assert cube.shape == (1, 1, 4096)
    assert cube.energy.as_calibration() == pytest.approx((-0.9555, 0.009999, 0.0), abs=1e-4)
    assert cube.live_time == pytest.approx(28.046)
    assert cube.metadata["excitation_kV"] == 50
    # From the file's XRF header (README: Rh anode, Z=45, 50 kV, 199 uA).
    assert cube.metadata["tube"] == {"anode": "Rh", "voltage_kV": 50.0, "current_uA": 199.0,
                                     "type": "ixtube-Rh-30", "electron_angle_deg": 78.0,
                                     "takeoff_angle_deg": 12.0, "window_thickness_um": 100.0}
    # The detector: XFlash 430, 450 um crystal, 12.5 um Be; sigma^2 = SigmaAbs + SigmaLin E.
    detector = cube.metadata["instrument"]
    assert detector["detector"] == {"thickness_um": 450.0, "window": "Be", "window_thickness_um": 12.5}
    assert detector["readout"]["fano"] == pytest.approx(0.000446639 / 0.00385, rel=1e-4)
    assert _peak_keV(cube, 3.5, 3.9) == pytest.approx(3.692, abs=0.03)  # Ca Ka
    assert _peak_keV(cube, 3.9, 4.2) == pytest.approx(4.013, abs=0.03)  # Ca Kb
    spectrum = cube.sum_spectrum()
    e = cube.energy.energies()
    assert e[np.argmax(spectrum * (e > 1.0))] == pytest.approx(3.69, abs=0.03)  # Ca dominates


@pytest.mark.realdata
def test_spx_sem_eds(real_data):
    cube = open_cube(real_data / BRUKER / "bruker_nano.spx")
    assert cube.shape == (1, 1, 4096)
    assert "tube" not in cube.metadata  # an electron microscope's: no X-ray tube
    assert _peak_keV(cube, 2.2, 2.45) == pytest.approx(2.307, abs=0.03)  # S Ka
    assert _peak_keV(cube, 6.2, 6.6) == pytest.approx(6.404, abs=0.04)  # Fe Ka


def test_not_bruker(tmp_path):
    fake = tmp_path / "fake.bcf"
    fake.write_bytes(b"AAMVHFSS" + b"\x00" * 32)  # magic, then garbage
    assert bruker.sniff(fake) is None
    with pytest.raises(UnreadableFileError):
        open_cube(fake)
    text = tmp_path / "fake.spx"
    text.write_text("<xml>nothing</xml>")
    assert bruker.sniff(text) is None
