"""The npe2 reader: sniffing, the layers it adds, and the files it must decline."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_xrf_pigments._napari import _reader
from napari_xrf_pigments._napari._reader import get_reader, read_xrf
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.errors import UnreadableFileError

PLUGIN = "napari-xrf-pigments"
GAIN = 0.02  # keV/ch
N_CH = 800


def synthetic_counts(rows=12, cols=16):
    """Ca K peaks on the left half, Fe K peaks on the right half, flat background."""
    energy = GAIN * np.arange(N_CH)

    def peak(kev, height):
        return height * np.exp(-0.5 * ((energy - kev) / 0.07) ** 2)

    ca, fe = peak(3.69, 200) + peak(4.01, 30), peak(6.40, 300) + peak(7.06, 45)
    counts = np.empty((rows, cols, N_CH))
    for r in range(rows):
        for c in range(cols):
            counts[r, c] = 2 + (1 + r / rows) * (ca if c < cols // 2 else fe)
    return np.rint(counts).astype(np.uint16)


def write_nexus(path, *, calibrated=True, pixel_size=(0.5, 0.5)):
    from napari_xrf_pigments.io import write_cube

    counts = synthetic_counts()
    cube = XRFCube.from_array(
        counts, gain=GAIN if calibrated else None, zero=0.0, pixel_size=pixel_size
    )
    write_cube(path, cube)
    return counts


@pytest.fixture
def warnings_shown(monkeypatch):
    shown = []
    monkeypatch.setattr(_reader, "show_warning", shown.append)
    return shown


# ---------------------------------------------------------------------- no viewer


def test_get_reader_accepts_a_path_or_a_list_of_one(tmp_path):
    path = tmp_path / "scan.h5"
    write_nexus(path)
    assert get_reader(str(path)) is read_xrf
    assert get_reader(path) is read_xrf
    assert get_reader([str(path)]) is read_xrf
    assert get_reader([str(path), str(path)]) is None
    assert get_reader(42) is None


def test_get_reader_declines_what_is_not_xrf(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("this is a text file renamed .h5\n")
    good = tmp_path / "good.h5"
    write_nexus(good)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:1500])
    png = tmp_path / "picture.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    no_cube = tmp_path / "table.h5"
    with h5py.File(no_cube, "w") as h5:
        h5["table"] = np.arange(10.0)
    for path in (text, truncated, png, no_cube, tmp_path / "missing.h5", tmp_path):
        assert get_reader(str(path)) is None, path.name


def test_get_reader_survives_a_raising_sniffer(tmp_path, monkeypatch):
    def broken(path):
        raise RuntimeError("bug in a sniffer")

    monkeypatch.setattr(_reader, "sniff", broken)
    assert get_reader(str(tmp_path / "x.h5")) is None


def test_layer_data_tuples(tmp_path, warnings_shown):
    counts = write_nexus(tmp_path / "scan.h5")
    (cube_data, cube_meta, cube_type), (total, total_meta, total_type) = read_xrf(
        str(tmp_path / "scan.h5")
    )
    assert (cube_type, total_type) == ("image", "image")
    assert cube_data.shape == (N_CH, 12, 16)  # energy first: napari's slider
    cube = cube_meta["metadata"]["xrf_cube"]
    assert isinstance(cube, XRFCube) and cube.calibrated
    # The slider reads keV (scale = gain, translate = zero); rows and columns are in mm.
    assert cube_meta["scale"] == pytest.approx((GAIN, 0.5, 0.5)) and total_meta["scale"] == (0.5, 0.5)
    assert cube_meta["translate"][0] == pytest.approx(0.0)
    assert cube_meta["units"] == ("keV", "mm", "mm") and cube_meta["axis_labels"][0] == "energy (keV)"
    np.testing.assert_allclose(total, counts.sum(axis=2))
    assert cube_meta["name"] == "scan" and total_meta["name"] == "scan total counts"
    assert warnings_shown == []


def test_big_cube_opens_as_a_preview_over_the_full_cube(tmp_path, monkeypatch):
    counts = write_nexus(tmp_path / "scan.h5")
    monkeypatch.setattr(_reader, "EAGER_TOTAL_BYTES", 0)
    monkeypatch.setattr(_reader, "PREVIEW_BYTES", 6 * 8 * N_CH * 2)  # 6 x 8 spectra
    (levels, meta, _), (totals, total_meta, _) = read_xrf(str(tmp_path / "scan.h5"))
    assert meta["multiscale"] and total_meta["multiscale"]
    assert meta["locked_data_level"] == total_meta["locked_data_level"] == 1
    full, preview = levels
    assert full.shape == (N_CH, 12, 16)
    np.testing.assert_array_equal(preview, np.moveaxis(counts[::2, ::2], 2, 0))
    assert type(totals[0]).__module__.startswith("dask")  # read only where shown
    np.testing.assert_allclose(totals[0].compute(), counts.sum(axis=2))
    np.testing.assert_allclose(totals[1], counts[::2, ::2].sum(axis=2))
    low, high = total_meta["contrast_limits"]
    assert low < high


# ---------------------------------------------------------------------- in napari


@pytest.mark.gui
def test_open_adds_one_cube_layer_with_energy_slider(make_napari_viewer, tmp_path, warnings_shown):
    counts = write_nexus(tmp_path / "scan.h5")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "scan.h5"), plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["scan", "scan total counts"]
    assert len(layers) == 2
    cube_layer, total_layer = viewer.layers
    # One image layer for the whole cube (no channel_axis split): energy is a slider.
    assert cube_layer.ndim == 3 and not cube_layer.rgb
    assert cube_layer.data.shape == (N_CH, 12, 16)
    assert viewer.dims.ndim == 3 and viewer.dims.displayed == (1, 2)
    assert viewer.dims.nsteps[0] == N_CH
    assert isinstance(cube_layer.metadata["xrf_cube"], XRFCube)
    assert total_layer.ndim == 2
    np.testing.assert_allclose(total_layer.data, counts.sum(axis=2))
    # Moving the slider shows that channel's image.
    viewer.dims.set_current_step(0, 320)  # 6.40 keV: Fe Ka
    np.testing.assert_array_equal(
        np.asarray(cube_layer._slice.image.raw), counts[:, :, 320]
    )
    assert warnings_shown == []


@pytest.mark.gui
def test_first_view_of_a_huge_cube_reads_a_bounded_amount(xvfb):
    """A 24 GB cube: the first view reads the 64 MB preview; zoomed in with the level on
    Auto, napari reads the tiles on screen, not the cube (in a process of its own)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("_huge_cube_view.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, DISPLAY=os.environ["DISPLAY"]))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["first_view"]["levels"] == [1, 1]
    assert report["first_view"]["bytes"] <= _reader.PREVIEW_BYTES
    assert report["zoomed_in"]["levels"] == [0, 0]
    assert report["zoomed_in"]["bytes"] <= _reader.PREVIEW_BYTES + 16 * _reader.TILE_BYTES


@pytest.mark.gui
def test_uncalibrated_cube_opens_with_a_warning(make_napari_viewer, tmp_path, warnings_shown):
    write_nexus(tmp_path / "raw.h5", calibrated=False)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "raw.h5"), plugin=PLUGIN)
    cube = viewer.layers["raw"].metadata["xrf_cube"]
    assert not cube.calibrated
    assert len(warnings_shown) == 1
    assert "calibration is missing" in warnings_shown[0]
    assert "Energy calibration" in warnings_shown[0]


@pytest.mark.gui
def test_open_unreadable_file_is_declined(make_napari_viewer, tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    viewer = make_napari_viewer()
    with pytest.raises(ValueError):
        viewer.open(str(path), plugin=PLUGIN)
    assert len(viewer.layers) == 0


# ---------------------------------------------------------------------- real files

REAL_CUBES = [
    # (file, (rows, columns, channels), calibrated)
    ("derived/2ide_axo_std.h5", (11, 11, 2000), True),
    ("derived/axo_std_det0_m6style.rpl", (11, 11, 2000), False),
    ("rosettasciio_bruker/30x30_instructively_packed_16bit_compressed.bcf", (30, 30, 2048), True),
    ("rosettasciio_bruker/bruker_m6_jetstream_file_example.spx", (1, 1, 4096), True),
    ("pymca5/Steel.spe", (1, 1, 2048), False),
]


@pytest.mark.gui
@pytest.mark.realdata
@pytest.mark.parametrize(("name", "shape", "calibrated"), REAL_CUBES)
def test_open_real_files(make_napari_viewer, real_data, warnings_shown, name, shape, calibrated):
    from napari_xrf_pigments._napari._spectrum import SpectrumViewer

    viewer = make_napari_viewer()
    viewer.open(str(real_data / name), plugin=PLUGIN)
    assert len(viewer.layers) == 2
    cube_layer, total_layer = viewer.layers
    rows, cols, channels = shape
    assert cube_layer.data.shape == (channels, rows, cols)
    assert total_layer.data.shape == (rows, cols)
    cube = cube_layer.metadata["xrf_cube"]
    assert cube.shape == shape and cube.calibrated is calibrated
    assert len(warnings_shown) == (0 if calibrated else 1)
    spectra = SpectrumViewer(viewer)
    assert spectra.show_spectrum_at(cube_layer.data_to_world((0, rows // 2, cols // 2)))
    np.testing.assert_array_equal(
        spectra.cursor_line.get_ydata(), np.asarray(cube.counts[rows // 2, cols // 2])
    )
    spectra.close()
    spectra.deleteLater()


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["xrfmaps_aps_2ide/maps_standardinfo.txt", "pymca5/Steel.cfg"])
def test_get_reader_declines_real_non_cubes(real_data, name):
    assert get_reader(str(real_data / name)) is None


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "says"), [
    ("xrfmaps_aps_2ide/2xfm_0011_2xfm3__0.h5", "raw APS fly-scan HDF5"),  # no calibration, no map size
    ("xrfmaps_aps_2ide/axo_std.mda", "EPICS MDA scan file"),
])
def test_xrf_files_no_reader_handles_are_explained(real_data, name, says):
    """napari's File > Open shows the plugin's reason, not a generic "no reader"."""
    reader = get_reader(str(real_data / name))
    assert reader is not None
    with pytest.raises(UnreadableFileError, match=says) as err:
        reader(str(real_data / name))
    assert str(real_data / name) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.gui
def test_nan_counts_give_a_clear_error_and_no_layer(make_napari_viewer, tmp_path):
    counts = synthetic_counts().astype(np.float32)
    counts[3, 4, 100] = np.nan
    path = tmp_path / "nan.h5"
    with h5py.File(path, "w") as h5:
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "counts", "axes": ["y", "x", "energy"]})
        data["counts"] = counts
        data["energy"] = GAIN * np.arange(N_CH)
        data["energy"].attrs["units"] = "keV"
    assert get_reader(str(path)) is read_xrf  # the header is fine; the values are not
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="NaN"):
        viewer.open(str(path), plugin=PLUGIN)
    assert len(viewer.layers) == 0


@pytest.mark.gui
@pytest.mark.realdata
def test_file_open_of_an_mda_scan_says_why(make_napari_viewer, real_data):
    from npe2 import PluginManager

    path = str(real_data / "xrfmaps_aps_2ide" / "axo_std.mda")
    viewer = make_napari_viewer()
    # File > Open offers the plugin for .mda files (the manifest's patterns)...
    assert PLUGIN in {r.plugin_name for r in PluginManager.instance().iter_compatible_readers([path])}
    # ... and opening with it shows its reason.
    with pytest.raises(Exception, match="EPICS MDA scan file") as err:
        viewer.open(path, plugin=PLUGIN)
    assert "convert it to HDF5" in str(err.value) or "HDF5 conversion" in str(err.value)
    assert len(viewer.layers) == 0
