"""EDF XRF stacks written with PyMca's own EdfFile."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.errors import UnreadableFileError
from napari_xrf_pigments.io import explain, open_cube, sniff

MCA_HEADER = {"MCA a": -0.05, "MCA b": 0.02, "MCA c": 0.0}


def _write(path, data, header):
    from PyMca5.PyMcaIO import EdfFile

    edf = EdfFile.EdfFile(str(path), "wb")
    edf.WriteImage(dict(header), data)
    del edf


def test_single_3d_edf(tmp_path):
    import dask.array as da

    data = np.arange(2 * 3 * 16, dtype=np.uint32).reshape(2, 3, 16)
    path = tmp_path / "cube.edf"
    _write(path, data, MCA_HEADER)
    assert sniff(path) == "edf"
    cube = open_cube(path)
    assert isinstance(cube.counts, da.Array)
    assert cube.shape == (2, 3, 16) and cube.dtype == np.uint32
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.as_calibration() == pytest.approx((-0.05, 0.02, 0.0))


def test_series_of_mca_rows(tmp_path):
    rows = [np.full((4, 32), i, dtype=np.float32) for i in range(3)]
    for i, row in enumerate(rows):
        _write(tmp_path / f"map_mca_{i:04d}.edf", row, {"McaCalib": "[0.1, 0.01, 0.0]", "MCA start ch": 0})
    (tmp_path / "map_mca_0007.edf").write_bytes(b"")  # not contiguous: not part of the series
    cube = open_cube(tmp_path / "map_mca_0001.edf")
    assert cube.shape == (3, 4, 32)
    assert np.array_equal(np.asarray(cube.counts)[:, 0, 0], [0, 1, 2])
    assert cube.energy.range_keV == pytest.approx((0.1, 0.41))
    assert cube.metadata["series"] == [f"map_mca_{i:04d}.edf" for i in range(3)]


def test_uncalibrated_default(tmp_path):
    path = tmp_path / "plain.edf"
    _write(path, np.ones((2, 2, 8), np.uint16), {"McaCalib": "0 1 0"})  # PyMca's "no calibration"
    assert not open_cube(path).calibrated


def test_detector_image_is_left_alone(tmp_path):
    path = tmp_path / "ccd.edf"
    _write(path, np.zeros((64, 64), np.uint16), {"Title": "ccd"})
    assert sniff(path) is None
    assert "detector image" in explain(path)
    with pytest.raises(UnreadableFileError, match="detector image"):
        open_cube(path)


def test_negative_counts_edf(tmp_path):
    data = np.ones((2, 2, 8), np.float32)
    data[0, 1, 3] = -1
    path = tmp_path / "neg.edf"
    _write(path, data, MCA_HEADER)
    with pytest.raises(UnreadableFileError, match="negative"):
        open_cube(path)
