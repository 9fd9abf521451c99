"""Damaged files (issue #14): checked at open, one line naming the file, never a raw library error."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import open_cube, write_cube


def _cube(rows=24, cols=10, chans=128):
    rng = np.random.default_rng(1)
    return XRFCube.from_array(rng.poisson(5, size=(rows, cols, chans)).astype(np.uint16), zero=0.0, gain=0.05)


def _zero_chunk(path, chunk_index):
    import h5py

    with h5py.File(path, "r") as h5:
        info = h5["/entry/data/counts"].id.get_chunk_info(chunk_index)
    data = bytearray(path.read_bytes())
    data[info.byte_offset:info.byte_offset + info.size] = bytes(info.size)
    path.write_bytes(bytes(data))
    return info.chunk_offset


def test_damaged_chunk_in_the_sample_is_reported_at_open(tmp_path):
    path = write_cube(tmp_path / "cube.h5", _cube())
    _zero_chunk(path, 0)  # the first pixel's chunk
    with pytest.raises(UnreadableFileError, match=r"damaged data at row 0, column 0") as info:
        open_cube(path)
    assert str(path) in str(info.value)


def test_damaged_chunk_elsewhere_is_one_line_when_read(tmp_path):
    """Chunks outside the open-time sample: the read that reaches them says where, in our words."""
    import h5py

    path = tmp_path / "cube.h5"
    write_cube(path, _cube(64, 64, 1024))
    with h5py.File(path, "r") as h5:
        n_chunks = h5["/entry/data/counts"].id.get_num_chunks()
    assert n_chunks >= 4
    offset = _zero_chunk(path, 1)  # neither first, middle nor last pixel
    cube = open_cube(path)
    with pytest.raises(UnreadableFileError, match=rf"damaged data at row {offset[0]}\b") as info:
        cube.total_counts()
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value.__cause__, OSError)  # HDF5's own words, for --debug


def test_huge_declared_cube_is_refused_before_reading(tmp_path):
    import h5py

    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["default"] = "entry"
        entry = h5.create_group("entry")
        entry.attrs["NX_class"], entry.attrs["default"] = "NXentry", "data"
        data = entry.create_group("data")
        data.attrs["NX_class"], data.attrs["signal"] = "NXdata", "counts"
        data.attrs["axes"] = ["y", "x", "energy"]
        data.create_dataset("counts", shape=(1_000_000, 1_000_000, 2048), dtype=np.uint16, chunks=(1, 16, 2048))
        data.create_dataset("energy", data=np.linspace(0, 20, 2048))
    with pytest.raises(UnreadableFileError, match="TiB.*header is damaged"):
        open_cube(path)


def test_declared_cube_far_bigger_than_its_file_is_refused(tmp_path):
    """100 GiB of counts declared in a file of a few KB: a damaged header, not a scan; napari
    would read hours of fill values to draw it."""
    import h5py

    path = tmp_path / "sparse.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("counts", shape=(5000, 5000, 2048), dtype=np.uint16, chunks=(1, 64, 2048))
        h5.create_dataset("energy", data=np.linspace(0, 20, 2048))
    with pytest.raises(UnreadableFileError, match="GiB\\) in a file of"):
        open_cube(path)


def _write_edf(path, data, header):
    from PyMca5.PyMcaIO import EdfFile

    edf = EdfFile.EdfFile(str(path), "wb")
    edf.WriteImage(dict(header), data)
    del edf


def test_edf_declaring_more_than_the_file_holds(tmp_path):
    path = tmp_path / "cube.edf"
    _write_edf(path, np.ones((6, 5, 64), np.uint32), {"MCA a": 0.0, "MCA b": 0.02})
    text = path.read_bytes()
    path.write_bytes(text.replace(b"Dim_3 = 6 ", b"Dim_3 = 2147483648 ", 1) if b"Dim_3 = 6 " in text
                     else text[: len(text) - 1000])
    with pytest.raises(UnreadableFileError, match="bytes of data follow") as info:
        open_cube(path)
    assert str(path) in str(info.value)


def test_ripple_header_error_is_one_line(tmp_path):
    rpl = tmp_path / "bad.rpl"
    rpl.write_text("width\t4\nheight\t4\ndepth\t8\ndata-type\tunsigned\ndata-length\t1e308\n"
                   "record-by\tvector\nbyte-order\tdont-care\n")
    (tmp_path / "bad.raw").write_bytes(bytes(128))
    with pytest.raises(UnreadableFileError) as info:
        open_cube(rpl)
    assert "\n" not in str(info.value) and "data-length" in str(info.value)


def test_cli_debug_shows_the_library_detail(tmp_path, capsys):
    path = write_cube(tmp_path / "cube.h5", _cube())
    _zero_chunk(path, 0)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "damaged data" in err[0]
    assert main(["--debug", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "OSError" in err  # HDF5's own message, only under --debug
    assert err.strip().splitlines()[-1].startswith("xrf-pigments info: error: cannot read")


def test_cli_error_names_the_input_file(tmp_path, capsys):
    """An error about the data (here: no calibration) still names the file it is about."""
    cube = XRFCube.from_array(np.ones((2, 2, 64), np.uint16))
    path = write_cube(tmp_path / "uncal.h5", cube)
    assert main(["fit", str(path), "--out", str(tmp_path / "maps.h5"), "--elements", "Fe",
                 "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]


@pytest.mark.realdata
@pytest.mark.slow  # ~1 s: a child process crashes
def test_bcf_decoder_crash_in_the_napari_reader_is_an_error(tmp_path, real_data):
    """The napari reader survives a .bcf that makes the compiled decoder segfault."""
    data = (real_data / "rosettasciio_bruker" / "Hitachi_TM3030Plus.bcf").read_bytes()
    path = tmp_path / "cut.bcf"
    path.write_bytes(data[:762287])
    code = (
        "import sys\n"
        "from napari_xrf_pigments._napari._reader import get_reader\n"
        "from napari_xrf_pigments.errors import UnreadableFileError\n"
        f"reader = get_reader({str(path)!r})\n"
        "try:\n"
        f"    reader({str(path)!r})\n"
        "except UnreadableFileError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "damaged data" in proc.stdout and str(path) in proc.stdout


def _plain_nexus_that_hangs_hdf5(folder):
    """The fuzz harness's plain NeXus sample with 8 bytes of its metadata set to 2^40 (case #149
    of seed 7): HDF5 1.14 then loops forever inside an attribute read while sniffing."""
    rng = np.random.default_rng(0)
    channels = np.arange(256)
    peaks = 50 * np.exp(-0.5 * ((channels - 80) / 3) ** 2) + 20 * np.exp(-0.5 * ((channels - 150) / 3) ** 2)
    counts = rng.poisson(peaks + 2, size=(8, 6, 256)).astype(np.uint16)
    path = write_cube(folder / "plain.h5", XRFCube.from_array(counts.astype(np.float32), zero=-0.01, gain=0.04),
                      compression=None)
    data = bytearray(path.read_bytes())
    data[1207:1215] = (2**40).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.slow
def test_hdf5_metadata_that_hangs_the_library_is_a_bounded_error(tmp_path, monkeypatch):
    import time

    from napari_xrf_pigments.io import _isolated, sniff

    path = _plain_nexus_that_hangs_hdf5(tmp_path)
    monkeypatch.setattr(_isolated, "PROBE_TIMEOUT_S", 4.0)
    started = time.monotonic()
    verdict = _isolated.probe_hdf5(path)
    if verdict is None:
        pytest.skip("this HDF5 version does not loop on the damaged bytes (nothing to bound)")
    assert "did not finish in 4 s" in verdict
    assert sniff(path) is None  # napari's reader check declines it, in bounded time
    with pytest.raises(UnreadableFileError, match="HDF5 file is damaged .*did not finish") as info:
        open_cube(path)
    assert str(path) in str(info.value)
    assert time.monotonic() - started < 30


def test_a_probe_verdict_is_the_error(tmp_path, monkeypatch):
    """What the child-process probe finds (a crash or a hang of the HDF5 library) is the one-line
    error of sniffing and opening; the HDF5 calls are not made in this process."""
    from napari_xrf_pigments.io import _isolated, sniff

    path = write_cube(tmp_path / "cube.h5", _cube())
    message = "the HDF5 file is damaged (reading its structure crashes the HDF5 library: SIGSEGV)"
    monkeypatch.setattr(_isolated, "probe_hdf5", lambda p, timeout=None: message)
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match=r"crashes the HDF5 library: SIGSEGV"):
        open_cube(path)


def test_a_probe_another_process_finished_is_trusted_for_that_file_version_only(tmp_path, monkeypatch):
    """A cluster's client hands its finished probe to the workers (CubeRef.probed): they open the
    same version of the file without a child of their own, and probe a changed file again."""
    from napari_xrf_pigments.io import _isolated

    path = write_cube(tmp_path / "cube.h5", _cube())
    children = []
    spawn = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: children.append(a) or spawn(*a, **k))
    assert _isolated.probed_version(path) is None  # not probed in this process yet
    open_cube(path)
    assert len(children) == 1
    version = _isolated.probed_version(path)
    assert version is not None
    monkeypatch.setattr(_isolated, "_probe_cache", {})  # as in another process
    _isolated.trust_probe(version)
    open_cube(path)
    assert len(children) == 1  # trusted: no child
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed since
    assert _isolated.probed_version(path) is None
    open_cube(path)
    assert len(children) == 2
    # A version whose probe found damage is not handed on.
    _isolated._probe_cache[_isolated._version(path)] = "the HDF5 file is damaged (...)"
    assert _isolated.probed_version(path) is None


def _sfs_with(path, source, offset, value: bytes):
    data = bytearray(source.read_bytes())
    data[offset:offset + len(value)] = value
    path.write_bytes(bytes(data))
    return path


@pytest.mark.realdata
def test_bruker_container_tables_are_checked_before_rsciio_reads_them(tmp_path, real_data):
    """Damaged SFS tables (chunk size, entry parents) are refused by the bounded pre-pass."""
    import struct

    from napari_xrf_pigments.io import bruker, explain, sniff

    source = real_data / "rosettasciio_bruker" / "P45_the_default_job.bcf"
    assert bruker.sfs_damage(source) is None
    bad_chunk = _sfs_with(tmp_path / "chunk.bcf", source, 0x128, struct.pack("<I", 12345))
    assert "chunk size" in bruker.sfs_damage(bad_chunk)
    assert sniff(bad_chunk) is None and "damaged Bruker .bcf" in explain(bad_chunk)
    # Entry 0's parent made itself: a cycle rsciio's tree builder would loop on.
    chunksize, = struct.unpack_from("<I", source.read_bytes(), 0x128)
    tree_address, = struct.unpack_from("<I", source.read_bytes(), 0x140)
    entry0 = chunksize * tree_address + 0x138
    cycle = _sfs_with(tmp_path / "cycle.bcf", source, entry0 + 4 + 8 * 4 + 4, struct.pack("<i", 0))
    assert "parent" in bruker.sfs_damage(cycle)
    with pytest.raises(UnreadableFileError, match="damaged Bruker .bcf"):
        open_cube(cycle)


@pytest.mark.realdata
def test_a_bcf_decoder_that_never_finishes_is_killed(real_data, monkeypatch):
    """A decoder looping on damaged data is stopped at the time limit (here made tiny)."""
    from napari_xrf_pigments.io import _isolated

    monkeypatch.setattr(_isolated, "_timeout_s", lambda path: 0.2)
    path = real_data / "rosettasciio_bruker" / "bcf_v2_50x50px.bcf"
    with pytest.raises(UnreadableFileError, match="did not finish"):
        open_cube(path)


def test_damaged_float_counts_read_at_open_name_the_file_once(tmp_path):
    """Small float cubes are checked for NaN at open: a damaged chunk met there is one error
    ("cannot read FILE: damaged data ..."), not wrapped twice."""
    import h5py

    path = tmp_path / "maps.h5"
    counts = np.random.default_rng(2).poisson(5, size=(256, 12, 6)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("/MAPS/Spectra/mca_arr", data=counts, chunks=(256, 2, 6), compression="gzip")
        h5.create_dataset("/MAPS/Spectra/Energy_Calibration", data=[0.0, 0.04, 0.0])
        info = h5["/MAPS/Spectra/mca_arr"].id.get_chunk_info(2)
    data = bytearray(path.read_bytes())
    data[info.byte_offset:info.byte_offset + info.size] = bytes(info.size)
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="damaged data") as err:
        open_cube(path)
    assert str(err.value).count("cannot read") == 1 and str(path) in str(err.value)
