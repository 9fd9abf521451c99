"""Single spectra: PyMca .mca / SPEC / IAEA .spe (PyMca5) and GSECARS multi-element MCA."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import gse, open_cube, pymca_text, sniff


def _peak(x, s, lo, hi):
    window = (x >= lo) & (x <= hi)
    return float(x[window][np.argmax(s[window])])


# --------------------------------------------------------------------------- PyMca's data


@pytest.mark.realdata
def test_steel_spe_is_uncalibrated(real_data):
    """The calibration is in Steel.cfg, not the .spe: the cube must not invent one. With the
    .cfg calibration the stainless-steel lines land where PyMca's fit found them."""
    path = real_data / "pymca5" / "Steel.spe"
    assert sniff(path) == "iaea-spe"
    cube = open_cube(path)
    assert cube.shape == (1, 1, 2048)
    assert cube.dtype == np.float64
    assert not cube.calibrated
    assert "Steel.cfg" in cube.metadata["hint"]
    spectrum = cube.sum_spectrum()
    e = -0.006124 + 0.011928 * np.arange(2048)  # README: Steel.cfg zero/gain
    assert e[np.argmax(spectrum)] == pytest.approx(6.40, abs=0.03)  # Fe Ka dominates
    assert _peak(e, spectrum, 5.2, 5.6) == pytest.approx(5.41, abs=0.03)  # Cr Ka
    assert _peak(e, spectrum, 7.3, 7.6) == pytest.approx(7.47, abs=0.03)  # Ni Ka


@pytest.mark.realdata
def test_xrfspectrum_single_column(real_data):
    path = real_data / "pymca5" / "XRFSpectrum.mca"
    assert sniff(path) == "ascii-spectrum"
    cube = open_cube(path)
    assert cube.shape == (1, 1, 4096)
    assert not cube.calibrated
    spectrum = cube.sum_spectrum()
    # File header: "Main Co peak is found close to the channel 1474".
    assert 1400 + int(np.argmax(spectrum[1400:1550])) == pytest.approx(1474, abs=10)
    assert spectrum.sum() == pytest.approx(56640073.0)


# --------------------------------------------------------------------------- GSECARS


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, n_elements, zero, gain, live, lines",
    [
        ("srm1832.mca", 4, -1.068655e-02, 1.465549e-02, 96.360748,
         {"Ca Ka": 3.692, "Mn Ka": 5.899, "Co Ka": 6.930, "Cu Ka": 8.048}),
        ("axorf4_21kev_i050.xrf", 4, -2.5184151e-02, 1.4799390e-02, 114.0904617,
         {"Fe Ka": 6.404, "Cu Ka": 8.048, "Pb La": 10.551, "Mo Ka": 17.479}),
        ("xrf_spectra.mca", 1, 2.2052931e-02, 1.3900329e-02, 1.7931432, {}),
    ],
)
def test_gse_files(real_data, name, n_elements, zero, gain, live, lines):
    path = real_data / "xraylarch" / name
    assert sniff(path) == "gse-mca"
    cube = open_cube(path)
    assert cube.format == "gse-mca"
    assert cube.shape == (1, 1, 2048)
    assert cube.metadata["n_detector_elements"] == n_elements
    # Real 4-element detectors differ by ~50 eV at 30 keV: element 0 alone, and said so.
    assert cube.metadata["elements_used"] == [0]
    if n_elements > 1:
        assert "element 0 only" in cube.metadata["elements_note"]
        assert cube.metadata["element_spectra"].shape == (n_elements, 2048)
    assert cube.energy.as_calibration() == pytest.approx((zero, gain, 0.0))
    assert cube.energy.range_keV == pytest.approx((zero, zero + 2047 * gain))
    assert cube.live_time == pytest.approx(live)
    e, s = cube.energy.energies(), cube.sum_spectrum()
    for line, energy in lines.items():
        assert _peak(e, s, energy - 0.1, energy + 0.1) == pytest.approx(energy, abs=0.035), line


def _gse_text(offsets, slopes, data, channels=None):
    n_el = len(offsets)
    lines = [
        "VERSION:    3.1",
        f"ELEMENTS:   {n_el}",
        "DATE:       Jan 01, 2024",
        f"CHANNELS:   {channels or data.shape[0]}",
        "REAL_TIME:  " + " ".join(["10"] * n_el),
        "LIVE_TIME:  " + " ".join(["9"] * n_el),
        "CAL_OFFSET: " + " ".join(map(str, offsets)),
        "CAL_SLOPE:  " + " ".join(map(str, slopes)),
        "CAL_QUAD:   " + " ".join(["0"] * n_el),
        "DATA: ",
    ]
    lines += [" ".join(str(int(v)) for v in row) for row in data]
    return "\n".join(lines) + "\n"


def test_gse_agreeing_elements_are_summed(tmp_path):
    data = np.random.default_rng(3).integers(0, 100, (256, 3))
    path = tmp_path / "three.mca"
    path.write_text(_gse_text([0.01, 0.0105, 0.0098], [0.01, 0.01, 0.01], data))
    cube = open_cube(path)
    assert cube.metadata["elements_used"] == [0, 1, 2]
    assert np.array_equal(cube.counts[0, 0], data.sum(axis=1))
    assert cube.energy.zero == pytest.approx(np.mean([0.01, 0.0105, 0.0098]))


def test_gse_cut_short(tmp_path):
    data = np.ones((100, 2))
    path = tmp_path / "cut.mca"
    path.write_text(_gse_text([0, 0], [0.01, 0.01], data, channels=2048))
    with pytest.raises(UnreadableFileError, match="100 DATA rows but CHANNELS: 2048"):
        open_cube(path)


def test_gse_sniff_wins_over_plain_columns(tmp_path):
    path = tmp_path / "x.mca"
    path.write_text(_gse_text([0.0], [0.01], np.ones((128, 1))))
    assert sniff(path) == "gse-mca"
    assert gse.sniff(tmp_path / "nothing.mca") is None


# --------------------------------------------------------------------------- SPEC / IAEA


SPEC = """#F scan.spec
#E 1700000000
#D Mon Jan 01 00:00:00 2024

#S 1  ct 10
#D Mon Jan 01 00:00:00 2024
#@MCA 16C
#@CHANN {n} 10 {last} 1
#@CALIB 0.5 0.01 0
#@CTIME 10 9.5 10
#N 1
#L I0
100
@A {counts}
"""


def test_spec_single_mca(tmp_path):
    counts = np.arange(1, 41)
    path = tmp_path / "scan.spec"
    path.write_text(SPEC.format(n=40, last=49, counts=" ".join(map(str, counts))))
    assert sniff(path) == "spec"
    cube = open_cube(path)
    assert cube.format == "spec"
    assert np.array_equal(cube.counts[0, 0], counts)
    # #@CHANN starts at channel 10: the first stored channel is at 0.5 + 0.01*10 keV.
    assert cube.energy.range_keV == pytest.approx((0.6, 0.99))
    assert cube.live_time == 9.5


def test_spec_with_several_spectra_is_refused(tmp_path):
    one = SPEC.format(n=8, last=17, counts=" ".join(["1"] * 8))
    two = one.replace("#S 1 ", "#S 2 ").split("\n", 4)[4]
    path = tmp_path / "two.spec"
    path.write_text(one + "\n" + two)
    with pytest.raises(UnreadableFileError, match="several MCA spectra \\(2"):
        open_cube(path)


def test_iaea_spe_with_calibration(tmp_path):
    counts = np.arange(64) % 7
    body = "\n".join(" ".join(str(v) for v in counts[i : i + 8]) for i in range(0, 64, 8))
    path = tmp_path / "sample.spe"
    path.write_text(
        "$SPEC_ID:\nsample\n$MEAS_TIM:\n100 120\n$MCA_CAL:\n2\n-0.01 0.02\n$DATA:\n0 63\n" + body + "\n"
    )
    assert sniff(path) == "iaea-spe"
    cube = open_cube(path)
    assert cube.energy.as_calibration() == pytest.approx((-0.01, 0.02, 0.0))
    assert np.array_equal(cube.counts[0, 0], counts)
    assert cube.live_time == 100


def test_plain_text_is_not_a_spectrum(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\nworld\n" * 50)
    assert pymca_text.sniff(notes) is None
    few = tmp_path / "few.mca"
    few.write_text("1\n2\n3\n")  # too short to be a spectrum
    assert pymca_text.sniff(few) is None
    table = tmp_path / "table.txt"
    table.write_text("\n".join(f"{i} {i * 2}" for i in range(200)))
    assert pymca_text.sniff(table) is None


def test_negative_counts_in_text_spectrum(tmp_path):
    path = tmp_path / "neg.mca"
    path.write_text("\n".join(["5"] * 100 + ["-2"] + ["5"] * 27) + "\n")
    with pytest.raises(UnreadableFileError, match="negative"):
        open_cube(path)


def test_gse_with_an_impossible_calibration_is_refused_with_the_reason(tmp_path, capsys):
    from napari_xrf_pigments.cli import main

    path = tmp_path / "ev.mca"
    path.write_text(_gse_text([0.0], [1e308], np.ones((256, 1))))
    with pytest.raises(UnreadableFileError, match=r"cannot read .*ev\.mca: the calibration .* "
                                                  "XRF energies stay below about 200 keV"):
        open_cube(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "check the calibration" in err
