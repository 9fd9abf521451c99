"""The format registry: sniffing order, refusals with reasons, robustness, light imports."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import _modules, explain, formats, open_cube, sniff


def test_every_module_follows_the_contract():
    names = formats()
    assert len(names) == len(set(names))
    for module in _modules():
        assert module.FORMATS and callable(module.sniff) and callable(module.read)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["axo_std.mda", "2xfm_0010.mda", "2xfm_0011.mda"])
def test_mda_refused_with_the_hdf5_alternative(real_data, name):
    path = real_data / "xrfmaps_aps_2ide" / name
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="EPICS MDA") as err:
        open_cube(path)
    if name != "2xfm_0011.mda":  # the scaler-only scan has no converted twin
        assert f"derived/2ide_{name.replace('.mda', '.h5')}" in str(err.value)
    else:
        assert "scalers, not spectra" in str(err.value)


@pytest.mark.slow  # opens every real file
@pytest.mark.realdata
def test_sniff_agrees_with_open_on_every_real_file(real_data):
    for path in sorted(p for p in real_data.rglob("*") if p.is_file()):
        fmt = sniff(path)
        if fmt is None:
            with pytest.raises(UnreadableFileError):
                open_cube(path)
        else:
            assert open_cube(path).format == fmt, path


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 4096, os.urandom(10000), b"{\nDim_1 = 5 ;\n", b"VERSION: 3.1\n", b"$SPEC_ID:\n"],
)
@pytest.mark.parametrize("suffix", [".h5", ".bcf", ".spx", ".rpl", ".raw", ".edf", ".mca", ".spe", ".mda", ".xrf"])
def test_junk_is_refused_cleanly(tmp_path, content, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(content)
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError) as err:
        open_cube(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_and_directory(tmp_path):
    assert sniff(tmp_path) is None and sniff(tmp_path / "nope.h5") is None
    assert explain(tmp_path / "nope.h5") == "no such file"
    with pytest.raises(UnreadableFileError, match="no such file"):
        open_cube(tmp_path / "nope.h5")
    with pytest.raises(UnreadableFileError, match="not a file"):
        open_cube(tmp_path)


def test_a_reader_crash_becomes_unreadable_file_error(tmp_path, monkeypatch):
    from napari_xrf_pigments.io import gse

    path = tmp_path / "x.mca"
    path.write_text("VERSION: 3.1\nELEMENTS: 1\nCHANNELS: 4\nCAL_SLOPE: 0.01\nDATA:\n1\n2\n3\n4\n")
    monkeypatch.setattr(gse, "_parse", lambda p: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(UnreadableFileError, match="damaged or not what its format says") as info:
        open_cube(path)
    # The library's own words stay on the chain (printed by `xrf-pigments --debug`), not in the line.
    assert "boom" not in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError) and str(info.value.__cause__) == "boom"


def test_importing_io_is_light():
    code = (
        "import sys, napari_xrf_pigments.io as io\n"
        "heavy = [m for m in ('h5py', 'PyMca5', 'rsciio', 'dask', 'napari', 'qtpy', 'tensorflow') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_small_array_check_reads_nothing_for_unsigned(tmp_path):
    """Unsigned counts cannot be NaN or negative: the open-time check skips them."""
    from napari_xrf_pigments.io._common import check_small_counts

    class Unreadable:
        shape, dtype = (2, 2, 2), np.dtype(np.uint16)

        def __array__(self, *args, **kwargs):
            raise AssertionError("read")

    check_small_counts(Unreadable(), "x")
