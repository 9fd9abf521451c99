"""Lispix ripple .rpl/.raw pairs: real Bruker-M6-style export, HyperSpy-written, Lispix keys."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import explain, open_cube, sniff

M6_HEADER = (
    "key\tvalue\nwidth\t{w}\nheight\t{h}\ndepth\t{d}\noffset\t0\ndata-Length\t{n}\n"
    "data-type\tunsigned\nbyte-order\t{order}\nrecord-by\t{record}\n"
)


def _write_pair(folder, name, data, *, record="vector", extra="", order=None):
    """A ripple pair like a Bruker M6 export (tab-separated, 'data-Length', no calibration)."""
    rows, cols, depth = data.shape
    stored = data if record == "vector" else np.moveaxis(data, 2, 0)
    if order is None:
        order = "dont-care" if data.dtype.itemsize == 1 else "little-endian"
    header = M6_HEADER.format(w=cols, h=rows, d=depth, n=data.dtype.itemsize, order=order, record=record)
    (folder / f"{name}.rpl").write_text(header + extra)
    dtype = data.dtype.newbyteorder(">" if order == "big-endian" else "<")
    stored.astype(dtype).tofile(folder / f"{name}.raw")
    return folder / f"{name}.rpl", folder / f"{name}.raw"


@pytest.mark.realdata
def test_real_m6_style_export(real_data):
    """Element 0 of axo_std as a Bruker M6 export: no calibration in the file, so none is made
    up; its counts are exactly the derived HDF5's element 0."""
    rpl = real_data / "derived" / "axo_std_det0_m6style.rpl"
    raw = rpl.with_suffix(".raw")
    assert sniff(rpl) == "ripple" and sniff(raw) == "ripple"
    cube = open_cube(raw)
    assert cube.format == "ripple"
    assert cube.shape == (11, 11, 2000)
    assert cube.dtype == np.uint8
    assert not cube.calibrated
    assert cube.energy.range_keV is None
    assert isinstance(cube.counts, np.memmap)
    with h5py.File(real_data / "derived" / "2ide_axo_std.h5") as f:
        assert np.array_equal(np.asarray(cube.counts), f["entry/xrf/counts_det"][..., 0])
    # With the README's calibration (E ~= -0.011 + 0.00961*ch keV) Fe Ka is at 6.40 keV.
    calibrated = cube.with_calibration(-0.011, 0.00961)
    e, s = calibrated.energy.energies(), calibrated.sum_spectrum()
    window = (e > 6.2) & (e < 6.6)
    assert e[window][np.argmax(s[window])] == pytest.approx(6.404, abs=0.03)


def test_hyperspy_written_pair(tmp_path):
    from rsciio.ripple import file_writer

    data = np.arange(2 * 3 * 40, dtype=np.uint16).reshape(2, 3, 40)
    signal = {
        "data": data,
        "axes": [
            {"name": "height", "size": 2, "offset": 0, "scale": 50.0, "units": "µm", "navigate": True},
            {"name": "width", "size": 3, "offset": 0, "scale": 50.0, "units": "µm", "navigate": True},
            {"name": "Energy", "size": 40, "offset": -0.5, "scale": 0.01, "units": "keV", "navigate": False},
        ],
        "metadata": {
            "General": {"title": "t"},
            "Signal": {"signal_type": "EDS_SEM"},
            "Acquisition_instrument": {"SEM": {"beam_energy": 20, "Detector": {"EDS": {"live_time": 12.5}}}},
        },
        "original_metadata": {},
    }
    file_writer(str(tmp_path / "hs.rpl"), signal)
    cube = open_cube(tmp_path / "hs.rpl")
    assert np.array_equal(np.asarray(cube.counts), data)
    # HyperSpy writes ev-per-chan 0 (round(0.01)) and the true keV scale in depth-scale.
    assert cube.energy.as_calibration() == pytest.approx((-0.5, 0.01, 0.0))
    assert cube.live_time == 12.5
    assert cube.pixel_size == pytest.approx((0.05, 0.05))


def test_lispix_ev_per_chan(tmp_path):
    data = np.random.default_rng(1).integers(0, 50, (3, 4, 30)).astype(np.uint16)
    rpl, _ = _write_pair(tmp_path, "lispix", data, extra="ev-per-chan\t10\ndepth-origin\t-200\n")
    cube = open_cube(rpl)
    assert cube.energy.as_calibration() == pytest.approx((-0.2, 0.01, 0.0))
    assert np.array_equal(np.asarray(cube.counts), data)


def test_record_by_image_big_endian(tmp_path):
    data = np.random.default_rng(2).integers(0, 5000, (3, 5, 16)).astype(np.uint16)
    rpl, _ = _write_pair(tmp_path, "img", data, record="image", order="big-endian")
    cube = open_cube(rpl)
    assert cube.shape == (3, 5, 16)
    assert np.array_equal(np.asarray(cube.counts), data)


def test_one_row_scan_keeps_its_row_axis(tmp_path):
    data = np.ones((1, 7, 20), np.uint8)
    rpl, _ = _write_pair(tmp_path, "row", data)
    assert open_cube(rpl).shape == (1, 7, 20)


def test_raw_size_mismatch(tmp_path):
    data = np.ones((4, 4, 32), np.uint8)
    rpl, raw = _write_pair(tmp_path, "short", data)
    raw.write_bytes(raw.read_bytes()[:-100])
    assert sniff(rpl) is None and sniff(raw) is None
    assert "bytes" in explain(raw)
    with pytest.raises(UnreadableFileError, match=r"holds 412 bytes but short.rpl describes 4 x 4 x 32"):
        open_cube(rpl)


def test_missing_raw(tmp_path):
    rpl, raw = _write_pair(tmp_path, "alone", np.ones((2, 2, 8), np.uint8))
    raw.unlink()
    with pytest.raises(UnreadableFileError, match="missing"):
        open_cube(rpl)


def test_broken_header(tmp_path):
    rpl = tmp_path / "bad.rpl"
    rpl.write_text("width\t4\nheight\t4\ndepth\t8\ndata-type\tcomplex\nrecord-by\tvector\n")
    (tmp_path / "bad.raw").write_bytes(b"\x00" * 128)
    with pytest.raises(UnreadableFileError, match="ripple header"):
        open_cube(rpl)


def test_lone_raw_is_not_claimed(tmp_path):
    raw = tmp_path / "data.raw"
    raw.write_bytes(b"\x01" * 1000)
    assert sniff(raw) is None


def test_zero_sized_axis(tmp_path):
    rpl = tmp_path / "empty.rpl"
    rpl.write_text(M6_HEADER.format(w=0, h=4, d=16, n=1, order="dont-care", record="vector"))
    (tmp_path / "empty.raw").write_bytes(b"")
    with pytest.raises(UnreadableFileError, match="zero-sized"):
        open_cube(rpl)
