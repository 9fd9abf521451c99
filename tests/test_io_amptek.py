"""Amptek PMCA spectra, two-column (energy, counts) text, and point grids assembled into a cube
(``io.amptek``, ``io.columns``, ``io.pointgrid``, ``xrf-pigments assemble``).

No real Amptek files are in ../shared/data/real: the files here are written the way DppMCA
writes them (``amptek.write_pmca``, or by hand after Amptek's format description for the
variants it does not write: eV labels, ROI blocks, MS-DOS line ends).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.errors import (
    CalibrationError,
    Cancelled,
    InvalidDataError,
    UnreadableFileError,
)
from napari_xrf_pigments.io import amptek, columns, explain, open_cube, sniff
from napari_xrf_pigments.io._common import fit_pairs
from napari_xrf_pigments.io.amptek import write_pmca
from napari_xrf_pigments.io.pointgrid import (
    assemble,
    assemble_job,
    find_series,
    raster_position,
)
from napari_xrf_pigments.progress import run

# A real DppMCA calibration (PX5, padre_meddea's minix_20kV_15uA_sdd.mca): four (channel, keV)
# pairs that a straight line misses by 5.7 eV and a quadratic fits within 0.1 eV.
REAL_PAIRS = [(552.31, 5.9), (607.2, 6.49), (1299.82, 13.95), (1651.47, 17.75)]
STATUS = {"Device Type": "PX5", "Serial Number": "2524", "Firmware": "6.08  Build:  6",
          "Accumulation Time": "30.000000", "HV Volt": "-130V", "TEC Temp": "252K"}
CONFIG = {"CLCK": "80", "TPEA": "2.000", "GAIN": "60.023", "HVSE": "-130", "TECS": "225"}


def _spectrum(n=2048, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    ch = np.arange(n)
    expected = 5 + 400 * scale * np.exp(-0.5 * ((ch - 598) / 6) ** 2) + 50 * np.exp(-ch / 300)
    return rng.poisson(expected)


def _one_line_error(capsys, argv, command):
    """Run the CLI; (exit code, the error line) with tqdm's bar lines left out; asserts that
    nothing else was printed."""
    code = main(argv)
    _, err = capsys.readouterr()
    lines = [ln for part in err.splitlines() for ln in part.split("\r")
             if ln.strip() and "(points)" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"xrf-pigments {command}: error: "), err
    return code, lines[0]


# --------------------------------------------------------------------------- Amptek PMCA


def test_pmca_file_as_dppmca_writes_it(tmp_path):
    counts = _spectrum()
    path = write_pmca(tmp_path / "point.mca", counts, calibration=REAL_PAIRS, live_time=29.8,
                      real_time=30.0, start_time="12/04/2026 10:11:12", serial_number="0",
                      configuration=CONFIG, status=STATUS)
    assert sniff(path) == "amptek-mca"
    cube = open_cube(path)
    assert cube.format == "amptek-mca"
    assert cube.shape == (1, 1, 2048) and cube.dtype == np.uint32
    np.testing.assert_array_equal(cube.counts[0, 0], counts)
    assert cube.live_time == pytest.approx(29.8)
    meta = cube.metadata
    assert meta["real_time_s"] == pytest.approx(30.0)
    assert meta["start_time"] == "12/04/2026 10:11:12"
    # The header's SERIAL_NUMBER is 0 (as DppMCA writes it): the status block's is the device's.
    assert meta["serial_number"] == "2524" and meta["device"] == "PX5"
    assert meta["dpp_configuration"]["MCAC"] == "2048" and meta["dpp_configuration"]["TPEA"] == "2.000"
    assert meta["dpp_status"]["HV Volt"] == "-130V"
    # The quadratic is chosen (the line misses by 5.7 eV, more than a quarter channel) and puts
    # every stated pair within 0.1 eV.
    assert meta["calibration_fit"].startswith("quadratic least-squares fit of 4")
    assert meta["calibration_residual_keV"] < 1e-4
    energies = cube.energy.energies()
    for ch, keV in REAL_PAIRS:
        assert np.interp(ch, np.arange(2048), energies) == pytest.approx(keV, abs=1e-4)
    assert cube.energy.quad != 0


def test_pairs_on_a_line_stay_linear_and_the_residual_is_reported(tmp_path):
    pairs = [(100, 1.0 + 0.0001), (300, 3.0 - 0.0001), (600, 6.0 + 0.0001)]  # 0.1 eV scatter
    path = write_pmca(tmp_path / "lin.mca", _spectrum(1024), calibration=pairs)
    cube = open_cube(path)
    assert cube.energy.quad == 0.0 and cube.energy.gain == pytest.approx(0.01, rel=1e-3)
    assert "linear least-squares fit of 3" in cube.metadata["calibration_fit"]
    assert 0 < cube.metadata["calibration_residual_keV"] < 2e-4


def test_fit_pairs_rule():
    # 2 pairs: the line through them.
    fit = fit_pairs([0, 100], [0.0, 1.0], 1024)
    assert (fit.kind, fit.gain, fit.residual_keV) == ("linear", pytest.approx(0.01), pytest.approx(0))
    # A real detector's non-linearity: quadratic, recovered.
    ch = np.array([50.0, 300.0, 700.0, 1000.0])
    fit = fit_pairs(ch, -0.02 + 0.01 * ch + 2e-7 * ch**2, 1024)
    assert fit.kind == "quadratic" and fit.quad == pytest.approx(2e-7) and fit.residual_keV < 1e-9
    # A quadratic that would turn back inside the channels is not taken.
    fit = fit_pairs([0, 500, 1000], [0.0, 5.0, 5.5], 2048)
    assert fit.kind == "linear"
    with pytest.raises(CalibrationError, match="1 \\(channel, energy\\) pair; a calibration needs at least two"):
        fit_pairs([10], [1.0], 1024)
    with pytest.raises(CalibrationError, match="channel 10 is given twice"):
        fit_pairs([10, 10, 20], [1.0, 1.1, 2.0], 1024)
    with pytest.raises(CalibrationError, match="not monotonic"):
        fit_pairs([10, 20, 30], [1.0, 3.0, 2.0], 1024)


# Amptek's own sample in its "Spectrum File Format" description: energies in eV (label), a ROI,
# MS-DOS line ends; and a byte-order mark, as Windows editors save it.
AMPTEK_SAMPLE = (
    "\ufeff<<PMCA SPECTRUM>>\r\nTAG - Am241\r\nDESCRIPTION - Am241 Spectrum 4000 second. Accumulation\r\n"
    "GAIN - 2\r\nTHRESHOLD - 50\r\nLIVE_MODE - 0\r\nPRESET_TIME - 4000\r\nLIVE_TIME - 3983.720000\r\n"
    "REAL_TIME - 4000.000000\r\nSTART_TIME - 10/20/1998 12:17:17\r\nSERIAL_NUMBER - 1199\r\n"
    "<<CALIBRATION>>\r\nLABEL - Energy (eV)\r\n1 0.000000\r\n322 13950.000000\r\n<<ROI>>\r\n312 330\r\n"
    "<<DATA>>\r\n{data}<<END>>\r\n"
)


def test_amptek_sample_in_ev_with_roi_and_dos_line_ends(tmp_path):
    counts = _spectrum(512)
    path = tmp_path / "am241.mca"
    path.write_bytes(AMPTEK_SAMPLE.format(data="".join(f"{c}\r\n" for c in counts)).encode("utf-8"))
    assert sniff(path) == "amptek-mca"
    cube = open_cube(path)
    assert cube.shape == (1, 1, 512)
    assert cube.energy.gain == pytest.approx(13.95 / 321) and cube.energy.zero == pytest.approx(-13.95 / 321)
    assert cube.metadata["calibration_unit"] == "eV"
    assert cube.metadata["rois"] == [[312, 330]]
    assert cube.metadata["serial_number"] == "1199" and cube.metadata["tag"] == "Am241"
    assert cube.live_time == pytest.approx(3983.72)


def test_no_calibration_block_is_uncalibrated_and_zero_live_time_is_unknown(tmp_path):
    path = write_pmca(tmp_path / "raw.mca", _spectrum(256), live_time=0)
    cube = open_cube(path)
    assert not cube.calibrated and cube.live_time is None
    assert "calibration_fit" not in cube.metadata


def test_info_shows_the_calibration_fit(tmp_path, capsys):
    path = write_pmca(tmp_path / "point.mca", _spectrum(), calibration=REAL_PAIRS, live_time=1.0)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format:      amptek-mca" in out
    assert "calibration: quadratic least-squares fit of 4 (channel, energy) pairs, largest residual 0.09 eV" in out
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calibration_residual_keV"] == pytest.approx(9.2e-5, abs=1e-6)
    assert summary["calibration_fit"].startswith("quadratic")
    assert "masked_pixels" not in summary


def _pmca_text(counts, pairs=((100, 1.0), (200, 2.0)), mcac=None):
    lines = ["<<PMCA SPECTRUM>>", "TAG - live_data", "LIVE_TIME - 1.0", "REAL_TIME - 1.0",
             "SERIAL_NUMBER - 1", "<<CALIBRATION>>", "LABEL - Channel"]
    lines += [f"{c} {e}" for c, e in pairs]
    lines += ["<<DATA>>", *map(str, counts), "<<END>>", "<<DP5 CONFIGURATION>>",
              f"MCAC={mcac or len(counts)};    MCA/MCS Channels", "<<DP5 CONFIGURATION END>>"]
    return "\n".join(lines) + "\n"


GOOD = [3] * 256


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("no_end", _pmca_text(GOOD)[: _pmca_text(GOOD).index("<<END>>") - 7],
         "does not end with <<END>>: the file is cut short"),
        ("no_data", "<<PMCA SPECTRUM>>\nTAG - x\nLIVE_TIME - 1\n", "no <<DATA>> block"),
        ("short", _pmca_text(GOOD[:200], mcac=256), "holds 200 counts but MCAC=256 channels (the file is cut short?)"),
        ("long", _pmca_text(GOOD + [1], mcac=256), "holds 257 counts, more than MCAC=256"),
        ("text", _pmca_text(GOOD[:10] + ["12a"] + GOOD[11:]),
         "line 11 of the <<DATA>> block is not a whole count: '12a'"),
        ("float", _pmca_text(GOOD[:5] + ["2.5"] + GOOD[6:]), "line 6 of the <<DATA>> block is not a whole count"),
        ("negative", _pmca_text(GOOD[:7] + [-4] + GOOD[8:]), "negative count -4 in channel 7"),
        ("one_pair", _pmca_text(GOOD, pairs=[(100, 1.0)]), "<<CALIBRATION>> block: 1 (channel, energy) pair"),
        ("non_monotonic", _pmca_text(GOOD, pairs=[(100, 1.0), (200, 3.0), (300, 2.0)]),
         "<<CALIBRATION>> block: not monotonic, channel 200 is at 3 keV but channel 300 at 2 keV"),
        ("bad_pair", _pmca_text(GOOD, pairs=[(100, 1.0), ("200 2.0", "x")]), "not a (channel, energy) pair"),
    ],
)
def test_bad_pmca_files_are_one_line_naming_the_file(tmp_path, capsys, name, text, words):
    path = tmp_path / f"{name}.mca"
    path.write_text(text)
    assert sniff(path) == "amptek-mca"  # claimed, so the reason is the PMCA reader's
    with pytest.raises(UnreadableFileError) as err:
        open_cube(path)
    message = str(err.value)
    assert str(path) in message and words in message and "\n" not in message, message
    assert words in amptek.explain(path)
    code, line = _one_line_error(capsys, ["info", str(path)], "info")
    assert code == 2 and str(path) in line and words in line


def test_absurd_calibration_numbers_are_refused_not_crashed(tmp_path):
    path = tmp_path / "huge.mca"
    path.write_text(_pmca_text(GOOD, pairs=[(100, 1e308), (200, 1.7e308)]))
    with pytest.raises(UnreadableFileError, match="huge.mca"):
        open_cube(path)


@pytest.mark.realdata
def test_other_mca_files_keep_their_readers(real_data):
    """`.mca` is shared: PyMca's one-column file and the GSECARS files are not Amptek's."""
    for name, fmt in (("pymca5/XRFSpectrum.mca", "ascii-spectrum"), ("xraylarch/srm1832.mca", "gse-mca"),
                      ("xraylarch/xrf_spectra.mca", "gse-mca")):
        path = real_data / name
        assert amptek.sniff(path) is None and columns.sniff(path) is None
        assert sniff(path) == fmt and open_cube(path).format == fmt


# --------------------------------------------------------------------------- two columns


def _write_columns(path, energies, counts, *, header=None, fmt="{e:.4f},{c}"):
    text = (header + "\n" if header else "") + "".join(fmt.format(e=e, c=c) + "\n" for e, c in zip(energies, counts))
    path.write_text(text)
    return path


E_KEV = -0.02 + 0.01 * np.arange(1024)


@pytest.mark.parametrize(
    "name, header, fmt, scale",
    [
        ("comma.csv", "Energy (keV),Counts", "{e:.4f},{c}", 1.0),
        ("tab_ev.txt", None, "{e:.1f}\t{c}", 1000.0),  # no header: values above 200 are eV
        ("semicolon.csv", "E;I", "{e:.4f};{c}", 1.0),
        ("decimal_comma.csv", "Energie (keV);Impulse", "{e};{c}", 1.0),
        ("spaces.txt", "# exported spectrum\nkeV counts", "{e:.5f}   {c}", 1.0),
        ("header_ev.csv", "energy/eV,counts", "{e:.1f},{c}", 1000.0),
    ],
)
def test_two_column_exports(tmp_path, name, header, fmt, scale):
    counts = _spectrum(1024)
    energies = E_KEV * scale
    if name == "decimal_comma.csv":
        energies = [f"{e:.4f}".replace(".", ",") for e in energies]
        fmt = "{e};{c}"
    path = _write_columns(tmp_path / name, energies, counts, header=header, fmt=fmt)
    assert sniff(path) == "two-column"
    cube = open_cube(path)
    assert cube.format == "two-column" and cube.shape == (1, 1, 1024) and cube.dtype == np.float64
    np.testing.assert_array_equal(cube.counts[0, 0], counts)
    assert cube.energy.zero == pytest.approx(-0.02, abs=1e-4) and cube.energy.gain == pytest.approx(0.01, rel=1e-5)
    assert cube.metadata["energy_unit"] == ("eV" if scale != 1.0 else "keV")
    assert cube.metadata["calibration_residual_keV"] < 1e-4


@pytest.mark.parametrize(
    "name, change, words",
    [
        ("descending.csv", lambda e, c: (e[::-1], c), "the energy column is not increasing"),
        ("kink.csv", lambda e, c: (np.r_[e[:500], e[499:-1]], c), "the energy column is not increasing"),
        ("gap.csv", lambda e, c: (np.r_[e[:500], e[501:]], c[:-1]), "the energy column is not uniform: a step of 0.02"),
        ("channels.csv", lambda e, c: (np.arange(e.size), c), "its first column holds channel numbers"),
        ("negative.csv", lambda e, c: (e, np.r_[c[:9], -3, c[10:]]), "negative counts (-3) on line 10"),
    ],
)
def test_bad_two_column_files_are_refused_with_the_reason(tmp_path, capsys, name, change, words):
    energies, counts = change(E_KEV.copy(), _spectrum(1024))
    path = _write_columns(tmp_path / name, energies, counts, fmt="{e},{c}")
    assert sniff(path) is None  # not claimed: other napari plugins may read it
    assert words in explain(path)
    with pytest.raises(UnreadableFileError) as err:
        open_cube(path)
    assert str(path) in str(err.value) and words in str(err.value)
    code, line = _one_line_error(capsys, ["info", str(path)], "info")
    assert code == 2 and words in line


def test_two_columns_never_steal_other_text_formats(tmp_path):
    # PyMca's one-column spectrum (as XRFSpectrum.mca) and a one-element GSECARS file.
    one = tmp_path / "one.mca"
    one.write_text("#F XRFSpectrum\n" + "".join(f"{c}\n" for c in _spectrum(256)))
    assert sniff(one) == "ascii-spectrum"
    gse = tmp_path / "two_elements.mca"
    gse.write_text(
        "VERSION:    3.1\nELEMENTS:   2\nDATE:       x\nCHANNELS:   256\nREAL_TIME:  1 1\n"
        "LIVE_TIME:  1 1\nCAL_OFFSET: 0 0\nCAL_SLOPE:  0.01 0.01\nCAL_QUAD:   0 0\nDATA:\n"
        + "".join(f"{i} {c}\n" for i, c in enumerate(_spectrum(256)))
    )
    assert columns.sniff(gse) is None and sniff(gse) == "gse-mca"
    # A SPEC scan of two counters: columns, but not energies.
    spec = tmp_path / "scan.dat"
    spec.write_text("#F scan\n#S 1 ascan\n#L energy I0\n"
                    + "".join(f"{e:.4f} {c}\n" for e, c in zip(E_KEV, _spectrum(1024))))
    assert columns.sniff(spec) is None
    # An Amptek file: its own reader.
    pmca = write_pmca(tmp_path / "p.mca", _spectrum(256))
    assert columns.sniff(pmca) is None and sniff(pmca) == "amptek-mca"


# --------------------------------------------------------------------------- point grids


def _series(folder: Path, rows: int, columns: int, *, channels=64, missing=(), start=1, width=0,
            prefix="pt_", pairs=((10, 1.0), (50, 5.0)), order="row-major"):
    """Amptek point files whose counts say where they belong: channel 0 = row, 1 = column,
    2 = point number; live time = point number / 100 s."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(rows * columns):
        number = k + start
        if number in missing:
            continue
        r, c = raster_position(k, rows, columns, order)
        counts = np.full(channels, 1, dtype=np.int64)
        counts[:3] = (r, c, number)
        write_pmca(folder / f"{prefix}{number:0{width}d}.mca", counts, calibration=pairs,
                   live_time=number / 100, real_time=1.0, status={"Serial Number": "777"})
    return folder


def _check_placement(cube, rows, columns, *, masked=(), start=1):
    counts = np.asarray(cube.counts)
    assert cube.shape[:2] == (rows, columns)
    for r in range(rows):
        for c in range(columns):
            if (r, c) in masked:
                assert not counts[r, c].any()
                continue
            assert (counts[r, c, 0], counts[r, c, 1]) == (r, c)


def test_assemble_row_major_with_a_missing_point(tmp_path, capsys):
    folder = _series(tmp_path / "scan", 3, 4, missing={7})
    out = tmp_path / "cube.h5"
    assert main(["assemble", str(folder), "--rows", "3", "--columns", "4", "--pixel-size", "0.5",
                 "-o", str(out)]) == 0
    _, err = capsys.readouterr()
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: 1 of 12 points have no file and are masked (counts 0): pt_7.mca"]
    cube = open_cube(out)
    assert cube.shape == (3, 4, 64) and cube.dtype == np.uint32
    # Point 7 is row 1, column 2: masked, and nothing after it shifted.
    _check_placement(cube, 3, 4, masked={(1, 2)})
    mask = cube.metadata["mask"]
    assert mask.dtype == bool and mask.sum() == 1 and mask[1, 2]
    assert cube.metadata["masked_pixels"] == 1
    # Natural order: pt_10 .. pt_12 are the last row, not after pt_1.
    assert np.asarray(cube.counts)[2, 1:, 2].tolist() == [10, 11, 12]
    assert cube.live_time[0, 0] == pytest.approx(0.01) and cube.live_time[2, 3] == pytest.approx(0.12)
    assert cube.live_time[1, 2] == 0
    assert cube.energy.as_calibration() == pytest.approx((0.0, 0.1, 0.0))
    assert cube.pixel_size == (0.5, 0.5)
    assert cube.metadata["serial_number"] == "777"
    assert cube.metadata["assembled_from"]["series"] == "pt_<n>.mca"
    with h5py.File(out) as h5:
        assert h5["/entry/data/mask"].dtype == np.uint8
    assert main(["info", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [3, 4, 64] and summary["masked_pixels"] == 1
    assert summary["calibration_residual_keV"] == pytest.approx(0, abs=1e-9)


def test_serpentine_zero_padded_and_numbered_from_zero(tmp_path):
    folder = _series(tmp_path / "scan", 4, 3, start=0, width=4, order="serpentine")
    result = assemble([str(folder / "pt_*.mca")], tmp_path / "cube.h5", rows=4, columns=3,
                      order="serpentine")
    assert result.masked == 0 and not result.warnings
    cube = open_cube(tmp_path / "cube.h5")
    _check_placement(cube, 4, 3, start=0)
    # Row 1 runs back: its first column holds the last point of that row.
    assert np.asarray(cube.counts)[1, :, 2].tolist() == [5, 4, 3]
    with pytest.raises(UnreadableFileError, match="numbered 0, before the first point number 1"):
        assemble_job([folder], tmp_path / "other.h5", rows=4, columns=3, first_number=1)


def test_positions_file_sets_positions_and_checks_the_order(tmp_path):
    folder = _series(tmp_path / "scan", 2, 3, order="serpentine")
    pos = tmp_path / "positions.csv"
    # Serpentine stage moves: row 1 goes back in x.
    xy = [(10.0, 5.0), (10.4, 5.0), (10.8, 5.0), (10.8, 5.4), (10.4, 5.4), (10.0, 5.4)]
    pos.write_text("x_mm,y_mm\n" + "".join(f"{x + 0.01 * (i % 2)},{y}\n" for i, (x, y) in enumerate(xy)))
    out = tmp_path / "cube.h5"
    assemble([folder], out, rows=2, columns=3, order="serpentine", positions=pos)
    cube = open_cube(out)
    assert cube.pixel_size == pytest.approx((0.4, 0.4))
    y, x = cube.positions
    assert y == pytest.approx([5.0, 5.4]) and x == pytest.approx([10.0, 10.4, 10.8], abs=0.01)
    _check_placement(cube, 2, 3)
    # The same positions read as row-major: rows run in opposite directions.
    with pytest.raises(UnreadableFileError, match="looks serpentine; give --order serpentine"):
        assemble_job([folder], tmp_path / "x.h5", rows=2, columns=3, positions=pos)
    pos.write_text("1,1\n2,1\n")
    with pytest.raises(UnreadableFileError, match="2 positions for a raster of 6 points"):
        assemble_job([folder], tmp_path / "x.h5", rows=2, columns=3, order="serpentine", positions=pos)
    assert not (tmp_path / "x.h5").exists()


def test_two_column_point_files_go_through_open_cube(tmp_path):
    folder = tmp_path / "csv"
    folder.mkdir()
    for k in range(1, 5):
        _write_columns(folder / f"spot{k}.csv", E_KEV[:128], np.full(128, k), header="keV,counts")
    (folder / "notes.txt").write_text("not a point\n")  # a folder's other files are skipped
    result = assemble([folder], tmp_path / "cube.h5", rows=2, columns=2)
    assert result.point_format == "two-column"
    cube = open_cube(tmp_path / "cube.h5")
    assert cube.dtype == np.float64 and np.asarray(cube.counts)[:, :, 0].tolist() == [[1, 2], [3, 4]]
    assert cube.live_time is None


@pytest.mark.parametrize(
    "case, words",
    [
        ("truncated", ("pt_5.mca: the <<DATA>> block does not end with <<END>>: the file is cut "
                       "short (--mask-unreadable assembles the other points and masks this one)")),
        ("channels", ("pt_9.mca has 128 channels but {folder}/pt_1.mca has 64: the point files of "
                      "one scan must share the channel count")),
        ("calibration", ("the energy calibration of {folder}/pt_3.mca differs from that of "
                         "{folder}/pt_1.mca by up to 530.0 eV")),
        ("raster", ("the point files run from pt_1.mca to pt_12.mca (12 files, the last is point 12) "
                    "but --rows 3 x --columns 5 makes 15 points: the raster is larger than the scan")),
        ("beyond", ("(12 files, the last is point 12) but --rows 2 x --columns 5 makes 10 points: "
                    "the files do not fit that raster")),
        ("other_series", "the inputs hold several numbered series"),
    ],
)
def test_bad_point_grids_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, case, words):
    folder = _series(tmp_path / "scan", 3, 4)
    rows, cols = 3, 4
    if case == "truncated":
        text = (folder / "pt_5.mca").read_text()
        (folder / "pt_5.mca").write_text(text[: text.index("<<END>>") - 20])
    elif case == "channels":
        write_pmca(folder / "pt_9.mca", np.ones(128, dtype=int), calibration=((10, 1.0), (50, 5.0)))
    elif case == "calibration":
        write_pmca(folder / "pt_3.mca", np.ones(64, dtype=int), calibration=((10, 1.0), (50, 5.4)))
    elif case == "raster":
        cols = 5
    elif case == "beyond":
        rows, cols = 2, 5
    elif case == "other_series":
        write_pmca(folder / "other_1.mca", np.ones(64, dtype=int))
    out = tmp_path / "cube.h5"
    code, line = _one_line_error(
        capsys, ["assemble", str(folder), "--rows", str(rows), "--columns", str(cols), "-o", str(out)],
        "assemble")
    assert code == 2
    assert words.format(folder=folder) in line, line
    assert not out.exists() and not list(tmp_path.glob(".cube.h5.*"))


def test_mask_unreadable_masks_damaged_point_files(tmp_path, capsys):
    folder = _series(tmp_path / "scan", 2, 3)
    (folder / "pt_2.mca").write_text("<<PMCA SPECTRUM>>\nTAG - x\n")  # cut in the header
    out = tmp_path / "cube.h5"
    assert main(["assemble", str(folder), "--rows", "2", "--columns", "3", "--mask-unreadable",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert ("warning: 1 of 6 point files cannot be read and are masked (counts 0): pt_2.mca "
            "(first: the PMCA file has no <<DATA>> block (the file is cut short?))") in err
    cube = open_cube(out)
    _check_placement(cube, 2, 3, masked={(0, 1)})
    assert cube.metadata["masked_pixels"] == 1


def test_existing_output_needs_force_and_cancel_leaves_nothing(tmp_path, monkeypatch, capsys):
    from napari_xrf_pigments.io import pointgrid

    folder = _series(tmp_path / "scan", 6, 4)
    out = tmp_path / "cube.h5"
    out.write_bytes(b"old")
    code, line = _one_line_error(
        capsys, ["assemble", str(folder), "--rows", "6", "--columns", "4", "-o", str(out)], "assemble")
    assert code == 2 and "exists" in line and out.read_bytes() == b"old"
    # Several blocks of rows (as a big scan has), cancelled after the second row: the old file
    # stays, no temporary file is left.
    monkeypatch.setattr(pointgrid, "BLOCK_BYTES", 1)
    steps = []
    job = assemble_job([folder], out, rows=6, columns=4, force=True)
    with pytest.raises(Cancelled):
        run(job, lambda p: steps.append(p) or len(steps) == 2)
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["cube.h5", "scan"]
    # Ctrl-C while the bar is drawn (outside the job): the same.
    def interrupt(step):
        if step.done >= 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(assemble_job([folder], out, rows=6, columns=4, force=True), interrupt)
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["cube.h5", "scan"]
    # Run to its end, block by block: every point in place.
    steps.clear()
    result = run(assemble_job([folder], out, rows=6, columns=4, force=True), steps.append)
    assert [p.done for p in steps] == [4, 8, 12, 16, 20, 24] and steps[-1].total == 24
    assert result.shape == (6, 4, 64)
    _check_placement(open_cube(out), 6, 4)


def test_series_rules(tmp_path):
    folder = _series(tmp_path / "scan", 1, 3)
    write_pmca(folder / "pt_01.mca", np.ones(64, dtype=int))
    with pytest.raises(UnreadableFileError, match="point number 1 is also the number of"):
        find_series([folder])
    (folder / "pt_01.mca").unlink()
    with pytest.raises(UnreadableFileError, match="no point number at the end of its name"):
        find_series([folder / "pt_1.mca", write_pmca(tmp_path / "single.mca", np.ones(4, dtype=int))])
    with pytest.raises(UnreadableFileError, match="no point files match this pattern"):
        find_series([str(tmp_path / "nothing_*.mca")])
    series = find_series([folder / "pt_3.mca", folder / "pt_1.mca", folder / "pt_2.mca"])
    assert [f.number for f in series.files] == [1, 2, 3]
    assert len(find_series([folder, folder / "pt_1.mca"]).files) == 3  # named twice, counted once
    with pytest.raises(InvalidDataError, match="not both"):
        assemble_job([folder], tmp_path / "c.h5", rows=1, columns=3, positions=tmp_path / "p.csv",
                     pixel_size=0.5)


def test_napari_reader_shows_the_assembled_cube(tmp_path):
    pytest.importorskip("napari")
    from napari_xrf_pigments._napari._reader import get_reader

    folder = _series(tmp_path / "scan", 3, 4)
    out = tmp_path / "cube.h5"
    assemble([folder], out, rows=3, columns=4, pixel_size=(0.25, 0.5))
    reader = get_reader(str(out))
    assert reader is not None
    (data, kwargs, kind), (total, _, _) = reader(str(out))
    assert kind == "image" and data.shape == (64, 3, 4)
    assert kwargs["scale"] == pytest.approx((0.1, 0.25, 0.5)) and kwargs["units"][1] == "mm"
    assert total.shape == (3, 4)


def test_a_zeroed_block_in_a_pmca_file_is_named(tmp_path):
    path = write_pmca(tmp_path / "zeroed.mca", _spectrum(512), calibration=REAL_PAIRS[:2])
    data = bytearray(path.read_bytes())
    data[400:464] = bytes(64)
    path.write_bytes(bytes(data))
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="zeroed.mca: an Amptek PMCA file with binary zeros"):
        open_cube(path)
