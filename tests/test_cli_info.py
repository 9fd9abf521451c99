"""``xrf-pigments info FILE --json`` on every real file of a supported format, and on bad ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_xrf_pigments.cli import main

# Values from ../shared/data/real/README.txt (energy: first/last channel in keV, None when the
# file carries no calibration). The derived files' energy comes from a per-element refit that
# the README gives only roughly (E ~= -0.0105 + 0.00961*ch): hence the wider tolerance there.
REAL_FILES = {
    "derived/2ide_axo_std.h5": ("nexus", [11, 11, 2000], "uint16", (-0.0105, 19.20, 0.1)),
    "derived/2ide_2xfm_0010.h5": ("nexus", [11, 11, 2000], "uint16", (-0.0105, 19.20, 0.1)),
    "derived/axo_std_det0_m6style.rpl": ("ripple", [11, 11, 2000], "uint8", None),
    "derived/axo_std_det0_m6style.raw": ("ripple", [11, 11, 2000], "uint8", None),
    "pymca5/Steel.spe": ("iaea-spe", [1, 1, 2048], "float64", None),
    "pymca5/XRFSpectrum.mca": ("ascii-spectrum", [1, 1, 4096], "float64", None),
    "rosettasciio_bruker/30x30_instructively_packed_16bit_compressed.bcf": (
        "bruker-bcf", [30, 30, 2048], "uint16", (-0.472, -0.472 + 2047 * 0.01)),
    "rosettasciio_bruker/bcf_v2_50x50px.bcf": ("bruker-bcf", [50, 50, 2048], "uint8", (-0.473, 19.99)),
    "rosettasciio_bruker/P45_the_default_job.bcf": ("bruker-bcf", [75, 100, 2048], "uint8", (-0.472, 20.0)),
    "rosettasciio_bruker/Hitachi_TM3030Plus.bcf": ("bruker-bcf", [240, 320, 2048], "uint8", (-0.4746, 20.0)),
    "rosettasciio_bruker/bruker_m6_jetstream_file_example.spx": (
        "bruker-spx", [1, 1, 4096], "uint64", (-0.9555, -0.9555 + 4095 * 0.009999)),
    "rosettasciio_bruker/bruker_nano.spx": ("bruker-spx", [1, 1, 4096], "uint64", (-0.2389, 9.9986)),
    "xraylarch/srm1832.mca": ("gse-mca", [1, 1, 2048], "float64", (-1.068655e-02, -1.068655e-02 + 2047 * 1.465549e-02)),
    "xraylarch/axorf4_21kev_i050.xrf": ("gse-mca", [1, 1, 2048], "float64", (-0.025184, -0.025184 + 2047 * 0.01479939)),
    "xraylarch/xrf_spectra.mca": ("gse-mca", [1, 1, 2048], "float64", (0.022053, 0.022053 + 2047 * 0.013900329)),
}

REFUSED = {
    "xrfmaps_aps_2ide/axo_std.mda": "EPICS MDA",
    "xrfmaps_aps_2ide/2xfm_0010.mda": "EPICS MDA",
    "xrfmaps_aps_2ide/2xfm_0011.mda": "EPICS MDA",
    "xrfmaps_aps_2ide/2xfm_0011_2xfm3__0.h5": "fly-scan",
    "pymca5/Steel.cfg": "not a supported XRF file format",
}


def _info(capsys, path):
    code = main(["info", str(path), "--json"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_info_json_on_real_files(real_data, capsys, name):
    fmt, shape, dtype, energy = REAL_FILES[name]
    code, out, err = _info(capsys, real_data / name)
    assert code == 0, err
    summary = json.loads(out)
    assert set(summary) == {"format", "shape", "energy_keV", "calibrated", "dtype"}
    assert summary["format"] == fmt
    assert summary["shape"] == shape
    assert summary["dtype"] == dtype
    if energy is None:
        assert summary["energy_keV"] is None and summary["calibrated"] is False
    else:
        assert summary["calibrated"] is True
        first, last, *tol = energy
        assert summary["energy_keV"] == pytest.approx([first, last], abs=tol[0] if tol else 0.02)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_info_refuses_with_one_line(real_data, capsys, name):
    code, out, err = _info(capsys, real_data / name)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(real_data / name) in lines[0] and REFUSED[name] in lines[0]


@pytest.fixture
def bad_files(tmp_path, real_data):
    source = real_data / "derived" / "2ide_axo_std.h5"
    files = {}
    files["truncated"] = tmp_path / "truncated.h5"
    files["truncated"].write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    files["text"] = tmp_path / "text.h5"
    files["text"].write_text("not hdf5\n")
    files["no3d"] = tmp_path / "no3d.h5"
    with h5py.File(files["no3d"], "w") as f:
        f.create_dataset("image", data=np.zeros((4, 4)))
    files["nan"] = tmp_path / "nan.h5"
    with h5py.File(files["nan"], "w") as f:
        ds = f.create_dataset("counts", data=np.full((2, 2, 8), np.nan, np.float32))
        ds.attrs["zero"], ds.attrs["gain"] = 0.0, 0.01
    files["mismatch"] = tmp_path / "m.rpl"
    files["mismatch"].write_text("width\t4\nheight\t4\ndepth\t8\noffset\t0\ndata-length\t1\n"
                                 "data-type\tunsigned\nbyte-order\tdont-care\nrecord-by\tvector\n")
    (tmp_path / "m.raw").write_bytes(b"\x00" * 100)
    files["zero"] = tmp_path / "zero.h5"
    with h5py.File(files["zero"], "w") as f:
        ds = f.create_dataset("counts", shape=(3, 0, 8), dtype=np.uint16)
        ds.attrs["zero"], ds.attrs["gain"] = 0.0, 0.01
    return files


@pytest.mark.realdata
@pytest.mark.parametrize(
    "kind, reason",
    [
        ("truncated", "truncated or damaged"),
        ("text", "not an HDF5 file"),
        ("no3d", "no 3-D dataset"),
        ("nan", "NaN"),
        ("mismatch", "holds 100 bytes"),
        ("zero", "zero-sized"),
    ],
)
def test_info_bad_input(bad_files, capsys, kind, reason):
    code, out, err = _info(capsys, bad_files[kind])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert reason in err and str(bad_files[kind]) in err


@pytest.mark.realdata
def test_console_script(real_data):
    script = Path(sys.executable).with_name("xrf-pigments")
    if not script.exists():
        pytest.skip("console script not installed next to this Python")
    ok = subprocess.run(
        [str(script), "info", str(real_data / "rosettasciio_bruker/bruker_m6_jetstream_file_example.spx"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["shape"] == [1, 1, 4096]
    bad = subprocess.run(
        [str(script), "info", str(real_data / "xrfmaps_aps_2ide/axo_std.mda"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "EPICS MDA" in bad.stderr
