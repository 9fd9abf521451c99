"""Element maps with PyMca's fast linear fit: lines, maps, equality with PyMca's own call,
bad inputs, the ``fit`` command, cancellation, suggestions from the sum spectrum."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.errors import (
    CalibrationError,
    InvalidDataError,
    OutputExistsError,
    UnreadableFileError,
)

GAIN = 0.01  # keV per channel: a 10 eV grid, 0-20 keV
N_CHANNELS = 2000
# (line energy keV, relative intensity) of the synthetic elements
LINES = {
    "Fe": [(6.404, 1.0), (7.058, 0.13)],
    "Pb": [(10.551, 1.0), (12.614, 0.85)],
    "Hg": [(9.989, 1.0), (11.823, 0.8)],
    "Ca": [(3.692, 1.0), (4.013, 0.13)],
}


def fwhm(energy_keV, noise=0.1, fano=0.114):
    """PyMca's detector model (its default noise and Fano factor)."""
    return np.sqrt(noise**2 + 0.00385 * energy_keV * fano * 2.3548**2)


def peak(energy, line_keV, area):
    sigma = fwhm(line_keV) / 2.3548
    return area * GAIN / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((energy - line_keV) / sigma) ** 2)


def synthetic_cube(rows=24, cols=20, seed=0, scale=1.0, extra_lines=(), dtype=np.int32):
    """Gaussian peaks on a ramp, Poisson noise: Fe everywhere (a gradient), Pb in the top half,
    Hg in the left half, Ca in a band of columns 0-4."""
    rng = np.random.default_rng(seed)
    energy = GAIN * np.arange(N_CHANNELS)
    background = 4.0 + 6.0 * np.clip(1 - energy / 20.0, 0, None)
    yy, xx = np.mgrid[:rows, :cols]
    amounts = {
        "Fe": 1500 * (0.5 + xx / cols),
        "Pb": 2500 * (yy < rows // 2),
        "Hg": 1500 * (xx < cols // 2),
        "Ca": 800 * (xx < 5),
    }
    expected = np.broadcast_to(background, (rows, cols, N_CHANNELS)).copy()
    for element, lines in LINES.items():
        shape = sum(peak(energy, e, r) for e, r in lines)
        expected += scale * amounts[element][..., None] * shape
    for line_keV, area in extra_lines:
        expected += scale * area * peak(energy, line_keV, 1.0)
    counts = rng.poisson(expected).astype(dtype)
    return XRFCube.from_array(counts, zero=0.0, gain=GAIN), amounts


@pytest.fixture(scope="module")
def cube():
    return synthetic_cube()[0]


@pytest.fixture(scope="module")
def fitted(cube):
    from napari_xrf_pigments.fitting import fit_cube

    return fit_cube(cube, elements="Ca,Fe,Pb,Hg", workers=0)


def plain_pymca(counts, config, weight=0, refit=True):
    """One FastXRFLinearFit.fitMultipleSpectra call on the whole cube: the reference."""
    import logging

    from PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit import FastXRFLinearFit

    # PyMca logs "%d pixels ... forced to zero"; napari's pytest plugin turns log arguments into
    # strings (LeakSafeLogRecord), which breaks %d. Its warnings are not what is tested here.
    logger = logging.getLogger("PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        out = FastXRFLinearFit().fitMultipleSpectra(
            y=np.asarray(counts), configuration=config, weight=weight, refit=refit, concentrations=False
        )
    finally:
        logger.setLevel(level)
    return {name: out["parameters"][i] for i, name in enumerate(out.labels("parameters"))}


# -- line choice ------------------------------------------------------------------------------


def test_lines_follow_range_and_excitation():
    from napari_xrf_pigments.fitting import choose_lines

    got = choose_lines("Fe,Pb,Hg,Ba,Sn,Ca,S", (1.0, 20.0), 40.0)
    assert got == {"Fe": ["K"], "Pb": ["L"], "Hg": ["L"], "Ba": ["L"], "Sn": ["L"], "Ca": ["K"], "S": ["K"]}
    # Wider range: Sn Ka (25.3) and Ba Ka (32.2) fit, and a 50 kV tube excites their K edges.
    assert choose_lines("Sn,Ba", (1.0, 40.0), 50.0) == {"Sn": ["K"], "Ba": ["K"]}
    # At 35 kV the Ba K edge (37.4 keV) is not excited: L lines instead.
    assert choose_lines("Ba", (1.0, 40.0), 35.0) == {"Ba": ["L"]}
    # Pb L out of range: Pb M. An explicit family is kept.
    assert choose_lines("Pb", (1.0, 8.0)) == {"Pb": ["M"]}
    assert choose_lines(["Pb L", "pb-m"], (1.0, 20.0)) == {"Pb": ["L", "M"]}


def test_lines_errors_name_the_element():
    from napari_xrf_pigments.fitting import choose_lines

    with pytest.raises(InvalidDataError, match=r"Fe \(K at 6.40"):
        choose_lines("Ca,Fe", (1.0, 5.0))
    with pytest.raises(InvalidDataError, match=r"Pb \(M at 2.35 keV\)"):
        choose_lines("Pb M", (5.0, 20.0))
    with pytest.raises(InvalidDataError, match="unknown element 'Xx'"):
        choose_lines("Fe,Xx", (1.0, 20.0))
    with pytest.raises(InvalidDataError, match="unknown line family"):
        choose_lines("Fe Q", (1.0, 20.0))


def test_build_config_puts_cube_calibration_and_snip(cube):
    from napari_xrf_pigments.fitting import build_config

    setup = build_config("Fe,Pb", cube.energy, tube="Rh", kv=40)
    cfg = setup.config
    assert cfg["peaks"] == {"Fe": "K", "Pb": "L", "Rh": "L"}  # Rh K (20.2 keV) is out of range
    assert setup.scatter_groups == {"Rh L"}
    assert cfg["detector"]["zero"] == 0.0 and cfg["detector"]["gain"] == GAIN
    fit = cfg["fit"]
    assert (fit["linearfitflag"], fit["stripflag"], fit["stripalgorithm"]) == (1, 1, 1)
    assert fit["snipwidth"] == 40  # 0.4 keV
    assert fit["xmin"] == 100 and fit["xmax"] == N_CHANNELS - 1  # 1.0 keV to the last channel
    assert fit["energy"] == [40.0]


# -- maps -------------------------------------------------------------------------------------


def test_hg_map_high_where_hg_was_put(fitted):
    maps = fitted.maps
    assert fitted.groups == ["Ca K", "Fe K", "Hg L", "Pb L"]
    hg, pb, ca = maps["Hg L"], maps["Pb L"], maps["Ca K"]
    cols = hg.shape[1]
    assert hg[:, : cols // 2].mean() > 20 * max(hg[:, cols // 2 :].mean(), 1.0)
    assert hg[:, : cols // 2].min() > 5 * hg[:, cols // 2 :].max() / 2
    assert pb[: pb.shape[0] // 2].mean() > 20 * max(pb[pb.shape[0] // 2 :].mean(), 1.0)
    assert ca[:, :5].mean() > 20 * max(ca[:, 5:].mean(), 1.0)
    # Fe follows its gradient across the columns.
    fe = maps["Fe K"].mean(axis=0)
    assert np.corrcoef(fe, np.arange(cols))[0, 1] > 0.95
    for name in fitted.groups:
        assert maps[name].dtype == np.float32 and maps[name].shape == (24, 20)
        assert fitted.kinds[name] == "element" and fitted.units[name] == "counts"
    for name in ("chi2", "residual", "sum"):
        assert fitted.kinds[name] == "fit-statistic"
    assert 0.5 < float(np.median(maps["chi2"])) < 3
    np.testing.assert_allclose(maps["sum"], fitted.maps["sum"])
    assert fitted.attrs["groups"] == fitted.groups


@pytest.mark.parametrize(
    "weight, workers, rows_per_chunk, cache_mb, dtype",
    [
        (0, 0, 5, 1024, np.int32),  # in process, cached refit
        (0, 0, 7, 0, np.int32),  # in process, refit re-reads the cube
        (1, 0, 5, 1024, np.uint16),  # weights from the sum spectrum
        (0, 0, 3, 1024, np.float64),  # float64 results
        (0, 2, 4, 1024, np.int32),  # worker processes
        (1, 2, 6, 0, np.int32),  # worker processes, refit in the workers
    ],
)
def test_chunked_equals_one_plain_pymca_call(weight, workers, rows_per_chunk, cache_mb, dtype):
    from napari_xrf_pigments.fitting import fit_cube

    # Cu and Zn are absent: their areas scatter around zero, so the refit has work to do.
    cube, _ = synthetic_cube(rows=21, cols=17, seed=3, dtype=dtype)
    result = fit_cube(
        cube, elements="Fe,Cu,Zn,Hg,Pb", weight=weight, workers=workers,
        rows_per_chunk=rows_per_chunk, cache_mb=cache_mb,
    )
    reference = plain_pymca(cube.counts, result.config, weight=weight)
    assert set(result.groups) == set(reference) - {"Constant", "1st Order"}  # + linear background
    for name in result.groups:
        scale = float(np.abs(reference[name]).max())
        np.testing.assert_allclose(
            result.maps[name], reference[name], rtol=0, atol=1e-5 * scale, err_msg=name
        )
    refitted = (result.maps["Cu K"] == 0).sum() + (result.maps["Zn K"] == 0).sum()
    assert refitted > 20  # negative areas were removed
    assert np.all(result.maps["Cu K"] >= 0)


def test_file_backed_cube_streams_to_the_same_maps(cube, fitted, tmp_path):
    from napari_xrf_pigments.fitting import fit_cube
    from napari_xrf_pigments.io import open_cube, write_cube

    write_cube(tmp_path / "cube.h5", cube)
    lazy = open_cube(tmp_path / "cube.h5")
    assert not isinstance(lazy.counts, np.ndarray)  # read chunk by chunk
    result = fit_cube(lazy, elements="Ca,Fe,Pb,Hg", workers=0, rows_per_chunk=5, cache_mb=0)
    for name in fitted.maps:
        np.testing.assert_allclose(result.maps[name], fitted.maps[name], rtol=1e-6, atol=1e-3, err_msg=name)


def test_no_refit_keeps_negative_areas(cube):
    from napari_xrf_pigments.fitting import fit_cube

    result = fit_cube(cube, elements="Fe,Cu", refit=False, workers=0)
    reference = plain_pymca(cube.counts, result.config, refit=False)
    np.testing.assert_allclose(result.maps["Cu K"], reference["Cu K"], rtol=1e-6, atol=1e-3)
    assert (result.maps["Cu K"] < 0).any()


@pytest.mark.realdata
def test_steel_spectrum_with_steel_cfg(real_data):
    from napari_xrf_pigments.fitting import fit_cube, load_config

    folder = real_data / "pymca5"
    text = (folder / "Steel.spe").read_text()
    values = text.split("$DATA:")[1].split()
    first, last = int(values[0]), int(values[1])
    spectrum = np.array(values[2 : 2 + last - first + 1], dtype=np.float64)
    cfg = load_config(folder / "Steel.cfg")
    cube = XRFCube.from_array(spectrum, zero=cfg["detector"]["zero"], gain=cfg["detector"]["gain"])
    result = fit_cube(cube, folder / "Steel.cfg")
    area = {name: float(result.maps[name][0, 0]) for name in result.groups}
    # Stainless steel (SRM 1155): Fe 65 %, Cr 18 %, Ni 12 %, Mn 1.6 %.
    for name in ("Cr K", "Mn K", "Fe Ka", "Ni K"):
        assert area[name] > 5e4, (name, area)
    assert area["Fe Ka"] > area["Cr K"] > area["Ni K"] > area["Mn K"]
    assert any("SNIP" in note for note in result.notes)  # Steel.cfg asks for the strip background
    reference = plain_pymca(spectrum.reshape(1, 1, -1), result.config)
    for name in result.groups:
        assert result.maps[name][0, 0] == pytest.approx(reference[name][0, 0], rel=1e-6, abs=1e-3)


# -- bad inputs -------------------------------------------------------------------------------


def test_uncalibrated_cube_says_how_to_calibrate(cube, tmp_path):
    from napari_xrf_pigments.fitting import fit_cube

    raw = XRFCube.from_array(np.asarray(cube.counts))
    with pytest.raises(CalibrationError, match="with_calibration"):
        fit_cube(raw, elements="Fe", workers=0)
    cfg = tmp_path / "fe.cfg"
    cfg.write_text(
        f"[peaks]\nFe = K\n\n[detector]\nzero = 0.0\ngain = {GAIN}\n\n[fit]\nxmin = 100\nxmax = 1999\n"
    )
    with pytest.raises(CalibrationError, match="calibration='config'"):
        fit_cube(raw, cfg, workers=0)
    # ...which uses the .cfg's zero and gain.
    result = fit_cube(raw, cfg, workers=0, calibration="config")
    assert result.maps["Fe K"].mean() > 1000


def test_bad_cfg_files(cube, tmp_path):
    from napari_xrf_pigments.fitting import fit_cube

    garbage = tmp_path / "garbage.cfg"
    garbage.write_text("this is not = a [PyMca configuration\n")
    with pytest.raises(UnreadableFileError, match="not a PyMca fit configuration"):
        fit_cube(cube, garbage)
    binary = tmp_path / "binary.cfg"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UnreadableFileError, match="not a PyMca fit configuration"):
        fit_cube(cube, binary)
    empty = tmp_path / "empty.cfg"
    empty.write_text("[fit]\nxmin = 100\nxmax = 1900\n\n[peaks]\n")
    with pytest.raises(InvalidDataError, match="names no elements"):
        fit_cube(cube, empty)
    unknown = tmp_path / "unknown.cfg"
    unknown.write_text("[peaks]\nXx = K\n")
    with pytest.raises(InvalidDataError, match="PyMca cannot use"):
        fit_cube(cube, unknown, workers=0)
    with pytest.raises(UnreadableFileError, match="no such file"):
        fit_cube(cube, tmp_path / "missing.cfg")


def test_no_element_line_in_range(tmp_path):
    from napari_xrf_pigments.fitting import fit_cube

    counts = np.random.default_rng(0).poisson(5.0, size=(3, 3, 300))
    narrow = XRFCube.from_array(counts, zero=5.0, gain=0.01)  # 5-8 keV
    with pytest.raises(InvalidDataError, match="no element line.*Pb"):
        fit_cube(narrow, elements="Fe,Pb", workers=0)
    cfg = tmp_path / "pb.cfg"
    cfg.write_text("[peaks]\nSr = K\nMo = K\n\n[fit]\nxmin = 0\nxmax = 299\n")  # escapes > 8 keV too
    with pytest.raises(InvalidDataError, match="no element line in the fitted energy range 5.00-7.99"):
        fit_cube(narrow, cfg, workers=0)


def test_other_bad_inputs(cube):
    from napari_xrf_pigments.fitting import fit_cube

    with pytest.raises(InvalidDataError, match="not both"):
        fit_cube(cube, "x.cfg", elements="Fe")
    with pytest.raises(InvalidDataError, match="cfg. or a list of elements"):
        fit_cube(cube)
    with pytest.raises(InvalidDataError, match="weight"):
        fit_cube(cube, elements="Fe", weight=3)
    with pytest.raises(InvalidDataError, match="kv go with a list of elements"):
        fit_cube(cube, {"peaks": {"Fe": "K"}}, kv=40)
    negative = np.asarray(cube.counts).astype(np.float64)
    negative[3, 4, 500] = -1
    with pytest.raises(InvalidDataError, match="negative"):
        fit_cube(XRFCube.from_array(negative, zero=0, gain=GAIN), elements="Fe", workers=0)


# -- files, command line, cancellation --------------------------------------------------------


def test_maps_file_layout(fitted, tmp_path):
    import h5py

    from napari_xrf_pigments.fitting import write_maps_file

    out = write_maps_file(tmp_path / "maps.h5", fitted)
    with h5py.File(out, "r") as f:
        for name in ("Ca K", "Fe K", "Hg L", "Pb L", "chi2", "residual", "sum"):
            dset = f["maps"][name]
            assert dset.dtype == np.float32 and dset.shape == (24, 20)
            np.testing.assert_array_equal(dset[()], fitted.maps[name])
        assert f["maps/Hg L"].attrs["kind"] == "element" and f["maps/Hg L"].attrs["unit"] == "counts"
        assert f["maps/chi2"].attrs["kind"] == "fit-statistic"
        assert f.attrs["format"] == "napari-xrf-pigments/maps"
        assert "[peaks]" in f.attrs["fit_config"] and f.attrs["package_version"]
        assert json.loads(f.attrs["groups"]) == fitted.groups
    with pytest.raises(OutputExistsError):
        write_maps_file(out, fitted)


@pytest.mark.slow  # ~1 s: the command in a subprocess
def test_cli_fit_end_to_end(cube, tmp_path, capsys):
    import h5py

    from napari_xrf_pigments import cli
    from napari_xrf_pigments.io import write_cube

    path = tmp_path / "cube.h5"
    write_cube(path, cube)
    out = tmp_path / "maps.h5"
    args = ["fit", str(path), "--out", str(out), "--elements", "Fe,Pb,Hg", "--tube", "Rh", "--kv", "40"]
    assert cli.main(args + ["--workers", "0"]) == 0
    assert "Fe K, Hg L, Pb L" in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        hg = f["maps/Hg L"][()]
        assert f.attrs["input_file"] == str(path)
        assert f["maps/Rh L"].attrs["kind"] == "scatter"
    assert hg[:, :10].mean() > 20 * max(hg[:, 10:].mean(), 1.0)
    # No overwrite without --force; a one-line error, exit code 2.
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert cli.main(args + ["--force", "--workers", "2"]) == 0
    # Without --elements: those found in the sum spectrum.
    assert cli.main(["fit", str(path), "--out", str(tmp_path / "auto.h5"), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "found in the sum spectrum" in captured.err
    for group in ("Fe K", "Hg L", "Pb L"):
        assert group in captured.out


@pytest.mark.slow  # three fits through the CLI
def test_cli_fit_many_cubes_into_a_folder(cube, tmp_path, capsys):
    """#17: one maps file per cube in --out-dir, identical to single-cube runs; existing maps
    files skipped unless --force; two cubes of one name refused before any work."""
    import dataclasses

    import h5py

    from napari_xrf_pigments import cli
    from napari_xrf_pigments.io import write_cube

    write_cube(tmp_path / "left.h5", cube)
    write_cube(tmp_path / "right.h5", dataclasses.replace(cube, counts=np.asarray(cube.counts)[::-1]))
    out_dir = tmp_path / "maps"
    argv = ["fit", str(tmp_path / "left.h5"), str(tmp_path / "right.h5"), "--out-dir", str(out_dir),
            "--elements", "Fe,Pb,Hg", "--workers", "0"]
    assert cli.main(argv) == 0
    assert "2 cubes: 2 written, 0 skipped (maps exist), 0 failed" in capsys.readouterr().err
    assert cli.main(["fit", str(tmp_path / "right.h5"), "--out", str(tmp_path / "alone.h5"),
                     "--elements", "Fe,Pb,Hg", "--workers", "0"]) == 0
    with h5py.File(out_dir / "right.h5") as campaign, h5py.File(tmp_path / "alone.h5") as alone:
        for name in ("Fe K", "Hg L", "Pb L"):
            np.testing.assert_array_equal(campaign[f"maps/{name}"][()], alone[f"maps/{name}"][()])
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "0 written, 2 skipped" in capsys.readouterr().err
    assert cli.main(argv + ["--force"]) == 0
    assert "2 written, 0 skipped" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    write_cube(tmp_path / "other" / "left.h5", cube)
    assert cli.main(["fit", str(tmp_path / "left.h5"), str(tmp_path / "other" / "left.h5"),
                     "--out-dir", str(tmp_path / "new"), "--elements", "Fe"]) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_cli_fit_errors(cube, tmp_path, capsys):
    from napari_xrf_pigments import cli
    from napari_xrf_pigments.io import write_cube

    path = tmp_path / "raw.h5"
    write_cube(path, XRFCube.from_array(np.asarray(cube.counts)))
    assert cli.main(["fit", str(path), "--out", str(tmp_path / "m.h5"), "--elements", "Fe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not calibrated" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.h5").exists()


def _alive(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cancel_leaves_no_file_and_no_process(tmp_path):
    from napari_xrf_pigments.fitting import fit_to_file_job
    from napari_xrf_pigments.progress import Progress

    cube, _ = synthetic_cube(rows=40, cols=20, seed=5)
    out = tmp_path / "maps.h5"
    before = {p.pid for p in multiprocessing.active_children()}
    job = fit_to_file_job(cube, out, elements="Fe,Pb,Hg", workers=2, rows_per_chunk=2)
    step = next(job)
    while step.done == 0:
        step = next(job)
    assert isinstance(step, Progress) and 0 < step.done < step.total
    workers = {p.pid for p in multiprocessing.active_children()} - before
    assert len(workers) == 2
    job.close()  # what a cancel button does
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file either
    assert {p.pid for p in multiprocessing.active_children()} - before == set()
    assert not any(_alive(pid) for pid in workers)


def test_cancel_with_progress_callback_raises_cancelled(cube):
    from napari_xrf_pigments.errors import Cancelled
    from napari_xrf_pigments.fitting import fit_cube

    with pytest.raises(Cancelled):
        fit_cube(cube, elements="Fe", workers=0, rows_per_chunk=4, callback=lambda p: p.done > 0)


# -- suggestions ------------------------------------------------------------------------------


def test_suggest_elements_from_sum_spectrum(cube):
    from napari_xrf_pigments.fitting import suggest_elements

    energy = cube.energy.energies()
    found = suggest_elements(energy, cube.sum_spectrum())
    assert {s.group for s in found} == {"Ca K", "Fe K", "Hg L", "Pb L"}
    assert found[0].significance >= found[-1].significance


def test_suggest_elements_leaves_out_tube_lines():
    from PyMca5.PyMcaPhysics import Elements

    from napari_xrf_pigments.fitting import suggest_elements

    rh = Elements.Element["Rh"]
    # Rayleigh-scattered Rh K lines of the tube, in a 0-30 keV spectrum.
    energy = GAIN * np.arange(3000)
    spectrum = 5.0 + 0 * energy
    for transition, area in (("KL3", 4e5), ("KL2", 2e5), ("KM3", 1e5)):
        spectrum += peak(energy, rh[transition]["energy"], area)
    for line_keV, area in LINES["Fe"]:
        spectrum += peak(energy, line_keV, 2e5 * area)
    spectrum = np.random.default_rng(1).poisson(spectrum).astype(float)
    assert {s.group for s in suggest_elements(energy, spectrum, tube="Rh", kv=40)} == {"Fe K"}
    assert "Rh K" in {s.group for s in suggest_elements(energy, spectrum, candidates="all")}


def test_every_evidence_element_of_the_library_is_a_default_candidate():
    from napari_xrf_pigments.fitting._suggest import PAINTING_ELEMENTS
    from napari_xrf_pigments.pigments import load_pigment_library

    library = load_pigment_library()
    needed = {el for label in library.labels for el in library.evidence_of(label)}
    needed |= {el for m in library for el in m.evidence}  # distractors too (Ba, Zr, Bi, ...)
    assert needed <= set(PAINTING_ELEMENTS), sorted(needed - set(PAINTING_ELEMENTS))


def _lines_spectrum(symbols, kv=40.0, area=2e5, seed=0):
    """0-40 keV, 10 eV channels: every K line (and for Cd and heavier the L lines) of the
    elements that a ``kv`` tube excites, at PyMca's relative rates, over a flat background."""
    from PyMca5.PyMcaPhysics import Elements

    from napari_xrf_pigments.pigments._elements import ATOMIC_NUMBER

    energy = GAIN * np.arange(4000)
    spectrum = 5.0 + 0 * energy
    for symbol in symbols:
        element = Elements.Element[symbol]
        k_excited = element["binding"]["K"] < kv
        families = [("K", 1.0)] if k_excited else []
        if ATOMIC_NUMBER[symbol] >= 48:  # Cd, Sn, Sb L lines above 3 keV; Hg, Pb L only
            families.append(("L", 0.3 if k_excited else 1.0))
        for family, weight in families:
            for transition in element[f"{family} xrays"]:
                info = element.get(transition)
                if info and info["rate"] > 0 and 1.0 < info["energy"] < kv:
                    spectrum += peak(energy, info["energy"], area * weight * info["rate"])
    return energy, np.random.default_rng(seed).poisson(spectrum).astype(float)


def test_suggestions_find_the_evidence_of_every_class_as_the_compare_widget_pairs_it():
    # Ti K, Mn K, Co K, Cu K, As K, Cd K, Sn K, Sb K, Hg L, Pb L...: one spectrum per class
    # of its evidence elements; the suggested groups must hold the element maps the compare
    # widget pairs the class with.
    from napari_xrf_pigments.compare import default_elements
    from napari_xrf_pigments.fitting import suggest_elements
    from napari_xrf_pigments.pigments import load_pigment_library

    library = load_pigment_library()
    checked = 0
    for label in library.labels:
        evidence = library.evidence_of(label)
        if not evidence:  # ultramarine: nothing for XRF to see
            continue
        energy, spectrum = _lines_spectrum(evidence)
        found = {s.group for s in suggest_elements(energy, spectrum, kv=40)}
        assert set(evidence) <= {g.split()[0] for g in found}, (label, found)
        assert set(default_elements(label, library=library)) <= found, (label, found)
        checked += 1
    assert checked == len(library.labels) - 1


def test_fitting_import_is_light():
    code = (
        "import sys, json\n"
        "import napari_xrf_pigments.fitting, napari_xrf_pigments.fitting._worker\n"
        "print(json.dumps([m for m in ('numpy', 'PyMca5', 'qtpy', 'napari') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_an_unguarded_script_is_told_what_to_add(tmp_path):
    """Workers import the main script again; without the guard the fit says what to add."""
    script = tmp_path / "my_fit.py"
    script.write_text(
        "import numpy as np\n"
        "from napari_xrf_pigments.cube import XRFCube\n"
        "from napari_xrf_pigments.fitting import fit_cube_job\n"
        "from napari_xrf_pigments.progress import run\n"
        "e = 0.01 * np.arange(1024)\n"
        "counts = np.random.default_rng(0).poisson(3 + 200 * np.exp(-0.5 * ((e - 6.4) / 0.07) ** 2), (8, 8, 1024))\n"
        "cube = XRFCube.from_array(counts.astype(np.uint16), zero=0.0, gain=0.01)\n"
        "run(fit_cube_job(cube, elements=['Fe'], workers=2, rows_per_chunk=2))\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode != 0
    # Not simply the last line: the workers' resource tracker may warn about a leaked semaphore
    # after the traceback (seen in CI), in its own time.
    errors = [line for line in done.stderr.splitlines()
              if line.startswith("napari_xrf_pigments.fitting._engine.FitError")]
    assert len(errors) == 1, done.stderr
    assert 'imports my_fit.py again: put the script\'s code under `if __name__ == "__main__":`' in errors[0]
