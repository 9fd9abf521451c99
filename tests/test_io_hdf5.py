"""HDF5 readers (NeXus both axis orders, PyMca stacks, MAPS, generic) and the NeXus writer."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from napari_xrf_pigments.cube import EnergyAxis, XRFCube
from napari_xrf_pigments.errors import OutputExistsError, UnreadableFileError
from napari_xrf_pigments.io import explain, open_cube, sniff, write_cube
from napari_xrf_pigments.io import hdf5 as h5reader

RNG = np.random.default_rng(7)


def _cube_data(rows=4, cols=5, chans=64, dtype=np.uint16):
    return RNG.poisson(20, (rows, cols, chans)).astype(dtype)


def _peak_keV(cube, lo, hi):
    """Energy of the largest channel of the sum spectrum between lo and hi keV."""
    e = cube.energy.energies()
    s = cube.sum_spectrum()
    window = (e >= lo) & (e <= hi)
    return float(e[window][np.argmax(s[window])])


# --------------------------------------------------------------------------- real files


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name, step_mm",
    [("2ide_axo_std.h5", 0.1), ("2ide_2xfm_0010.h5", 0.05)],
)
def test_real_derived_nexus(real_data, name, step_mm):
    cube = open_cube(real_data / "derived" / name)
    assert cube.format == "nexus"
    assert cube.shape == (11, 11, 2000)
    assert cube.dtype == np.uint16
    assert isinstance(cube.counts, h5py.Dataset)  # lazy: nothing read
    # README: refit calibration E ~= -0.0105 + 0.00961*ch keV.
    first, last = cube.energy.range_keV
    assert first == pytest.approx(-0.0105, abs=0.002)
    assert last == pytest.approx(-0.0105 + 0.00961 * 1999, abs=0.1)
    assert cube.pixel_size == pytest.approx((step_mm, step_mm), rel=1e-3)
    assert cube.positions[0].shape == (11,) and cube.positions[1].shape == (11,)
    assert cube.metadata["incident_energy_keV"] == 10.0
    # Physics: Fe Ka (6.404 keV) and Ca Ka (3.692 keV) sit where they should.
    assert _peak_keV(cube, 6.2, 6.6) == pytest.approx(6.404, abs=0.03)
    assert _peak_keV(cube, 3.5, 3.9) == pytest.approx(3.692, abs=0.03)


@pytest.mark.realdata
def test_real_raw_flyscan_is_refused(real_data):
    path = real_data / "xrfmaps_aps_2ide" / "2xfm_0011_2xfm3__0.h5"
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="fly-scan"):
        open_cube(path)


@pytest.mark.realdata
def test_real_truncated_copy(real_data, tmp_path):
    source = real_data / "derived" / "2ide_axo_std.h5"
    broken = tmp_path / "truncated.h5"
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    assert sniff(broken) is None
    with pytest.raises(UnreadableFileError, match="truncated or damaged") as err:
        open_cube(broken)
    assert str(broken) in str(err.value)


# --------------------------------------------------------------------------- NeXus


def _write_nxdata(path, counts, axes, energy=None, *, energy_name="energy", units="keV", extra=None):
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "data"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        if axes is not None:
            data.attrs["axes"] = axes
        data.create_dataset("counts", data=counts)
        if energy is not None:
            ds = data.create_dataset(energy_name, data=energy)
            if units:
                ds.attrs["units"] = units
        for key, value in (extra or {}).items():
            data.attrs[key] = value


@pytest.mark.parametrize("axes", [["y", "x", "energy"], ["energy", "y", "x"], ["y", "energy", "x"]])
def test_nexus_axis_orders(tmp_path, axes):
    data = _cube_data(3, 4, 50)  # (rows, cols, channels)
    stored = np.moveaxis(data, 2, axes.index("energy"))  # the file's axis order
    energy = 1.0 + 0.2 * np.arange(50)
    path = tmp_path / "cube.nxs"
    _write_nxdata(path, stored, axes, energy)
    assert sniff(path) == "nexus"
    cube = open_cube(path)
    assert cube.shape == (3, 4, 50)
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.range_keV == pytest.approx((1.0, 10.8))
    if axes[-1] == "energy":
        assert isinstance(cube.counts, h5py.Dataset)
    else:
        import dask.array as da

        assert isinstance(cube.counts, da.Array)  # transposed lazily, not read
        assert cube.counts.chunksize[2] == 50  # whole spectra per chunk


def test_nexus_indices_attributes_and_ev_units(tmp_path):
    data = _cube_data(2, 3, 40)
    path = tmp_path / "indices.h5"
    _write_nxdata(
        path,
        np.moveaxis(data, 2, 0),
        None,
        np.arange(40) * 100.0 + 500.0,
        energy_name="photon_energy",
        units="eV",
        extra={"photon_energy_indices": 0},
    )
    cube = open_cube(path)
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.range_keV == pytest.approx((0.5, 4.4))


def test_nexus_legacy_signal_attribute(tmp_path):
    data = _cube_data(2, 2, 30).astype(np.float32)
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("scan")
        group.attrs["NX_class"] = "NXdata"
        ds = group.create_dataset("spectra", data=np.moveaxis(data, 2, 0))
        ds.attrs["signal"] = 1
        ds.attrs["axes"] = "energy:row:col"
        group.create_dataset("energy", data=np.linspace(1, 10, 30)).attrs["units"] = "keV"
    cube = open_cube(path)
    assert np.allclose(np.asarray(cube.counts), data)
    assert cube.energy.range_keV == pytest.approx((1.0, 10.0))


def test_nexus_channel_axis_is_uncalibrated(tmp_path):
    path = tmp_path / "channels.h5"
    _write_nxdata(path, _cube_data(2, 2, 16), ["y", "x", "channel"], np.arange(16), energy_name="channel", units=None)
    cube = open_cube(path)
    assert not cube.calibrated
    assert cube.shape == (2, 2, 16)


def test_nexus_without_energy_axis_is_refused(tmp_path):
    path = tmp_path / "image_stack.h5"
    _write_nxdata(path, _cube_data(2, 2, 16), ["a", "b", "c"])
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="energy"):
        open_cube(path)


# --------------------------------------------------------------------------- PyMca, MAPS, generic


@pytest.mark.parametrize("interpretation, mcaindex, axis", [("spectrum", -1, 2), ("image", 2, 0)])
def test_pymca_saved_stacks(tmp_path, interpretation, mcaindex, axis):
    from PyMca5.PyMcaIO import ArraySave

    data = _cube_data(4, 5, 64)
    energy = 0.1 + 0.02 * np.arange(64)
    axes, labels = [None] * 3, [None] * 3
    axes[axis], labels[axis] = energy, "Energy"
    path = tmp_path / f"pymca_{interpretation}.h5"
    # PyMca's own writer (QStackWidget "Save as NeXus").
    ArraySave.save3DArrayAsHDF5(
        data, str(path), axes=axes, labels=labels, mode="nexus", mcaindex=mcaindex, interpretation=interpretation
    )
    cube = open_cube(path)
    assert cube.format == "pymca-hdf5"
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.range_keV == pytest.approx((0.1, 1.36))


def test_pymca_stack_without_axes_is_channels_last_uncalibrated(tmp_path):
    from PyMca5.PyMcaIO import ArraySave

    data = _cube_data(3, 4, 32)
    path = tmp_path / "plain.h5"
    ArraySave.save3DArrayAsHDF5(data, str(path), mode="nexus")
    cube = open_cube(path)
    assert cube.format == "pymca-hdf5"
    assert not cube.calibrated
    assert np.array_equal(np.asarray(cube.counts), data)


def test_maps_layout(tmp_path):
    """XRF-Maps v10 layout: mca_arr is (channels, rows, columns), as its hdf5_io.cpp writes."""
    data = _cube_data(3, 4, 100).astype(np.float32)
    path = tmp_path / "2xfm_0010.h5"
    with h5py.File(path, "w") as f:
        spectra = f.create_group("MAPS/Spectra")
        spectra.create_dataset("mca_arr", data=np.moveaxis(data, 2, 0), chunks=(100, 1, 1))
        spectra.create_dataset("Energy_Calibration", data=[-0.0042, 0.0095, 0.0])
        spectra.create_dataset("Energy", data=-0.0042 + 0.0095 * np.arange(100))
        spectra.create_dataset("Elapsed_Livetime", data=np.full((3, 4), 0.05))
        f.create_dataset("MAPS/version", data=[10.0])
    assert sniff(path) == "maps-hdf5"
    cube = open_cube(path)
    assert cube.shape == (3, 4, 100)
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.as_calibration() == pytest.approx((-0.0042, 0.0095, 0.0))
    assert cube.live_time.shape == (3, 4)


def test_generic_hdf5_with_energy_dataset(tmp_path):
    data = _cube_data(3, 3, 20)
    path = tmp_path / "generic.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("scan/xrf_counts", data=data)
        f.create_dataset("scan/mca_energy", data=np.linspace(0.5, 10.0, 20)).attrs["units"] = "keV"
        f.create_dataset("scan/i0", data=np.ones((3, 3)))
    assert sniff(path) == "hdf5"
    cube = open_cube(path)
    assert np.array_equal(np.asarray(cube.counts), data)
    assert cube.energy.range_keV == pytest.approx((0.5, 10.0))


@pytest.mark.parametrize(
    "attrs, expected",
    [
        ({"zero": -0.01, "gain": 0.01, "quad": 1e-7}, (-0.01, 0.01, 1e-7)),
        ({"calibration": [0.02, 0.015, 0.0]}, (0.02, 0.015, 0.0)),
        ({"offset": -10.0, "slope": 10.0, "calibration_units": "eV"}, (-0.01, 0.01, 0.0)),
    ],
)
def test_generic_hdf5_with_calibration_attributes(tmp_path, attrs, expected):
    data = _cube_data(2, 3, 25)
    path = tmp_path / "calibrated.hdf5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("counts", data=data)
        for key, value in attrs.items():
            ds.attrs[key] = value
    cube = open_cube(path)
    assert cube.format == "hdf5"
    assert cube.energy.as_calibration() == pytest.approx(expected)
    assert np.array_equal(np.asarray(cube.counts), data)


def test_generic_hdf5_several_cubes_refused(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.zeros((2, 2, 8)))
        f.create_dataset("b", data=np.zeros((2, 2, 8)))
        f.attrs["gain"] = 0.01
        f.attrs["zero"] = 0.0
    with pytest.raises(UnreadableFileError, match="several 3-D datasets"):
        open_cube(path)


# --------------------------------------------------------------------------- writer


def test_write_cube_round_trip(tmp_path):
    data = _cube_data(5, 6, 128)
    live = np.full((5, 6), 0.2)
    y, x = np.arange(5) * 0.5 + 10.0, np.arange(6) * 0.5
    cube = XRFCube.from_array(
        data, zero=-0.96, gain=0.01, live_time=live, positions=(y, x), pixel_size=(0.5, 0.5),
        source="scan.bcf", format="bruker-bcf", metadata={"excitation_kV": 50},
    )
    path = write_cube(tmp_path / "out.h5", cube)
    back = open_cube(path)
    assert back.format == "nexus"
    assert isinstance(back.counts, h5py.Dataset)
    assert back.counts.chunks[2] == 128  # chunked by whole spectra
    assert np.array_equal(back.counts[()], data)
    assert back.dtype == data.dtype
    assert back.energy.gain == pytest.approx(0.01)  # the polynomial, not just values
    assert back.energy.zero == pytest.approx(-0.96)
    assert np.array_equal(back.live_time, live)
    assert np.allclose(back.positions[0], y) and np.allclose(back.positions[1], x)
    assert back.pixel_size == pytest.approx((0.5, 0.5))
    assert back.metadata["excitation_kV"] == 50
    with h5py.File(path) as f:
        assert f["entry/data"].attrs["signal"] == "counts"
        assert f["entry/data/energy"].attrs["units"] == "keV"


def test_write_cube_uncalibrated_and_overwrite(tmp_path):
    cube = XRFCube.from_array(_cube_data(2, 2, 10), live_time=3.5)
    path = tmp_path / "u.h5"
    write_cube(path, cube)
    back = open_cube(path)
    assert not back.calibrated and back.live_time == 3.5
    with pytest.raises(OutputExistsError):
        write_cube(path, cube)
    write_cube(path, XRFCube.from_array(_cube_data(2, 2, 12), gain=0.02), force=True)
    assert open_cube(path).shape == (2, 2, 12)
    assert [p.name for p in tmp_path.iterdir()] == ["u.h5"]  # no temporary left behind


def test_write_cube_explicit_energy_values(tmp_path):
    values = np.sqrt(np.linspace(1, 100, 30))  # not a polynomial of degree 2
    cube = XRFCube(_cube_data(2, 2, 30), EnergyAxis.from_values(values))
    back = open_cube(write_cube(tmp_path / "v.h5", cube))
    assert np.allclose(back.energy.energies(), values)


def test_open_is_lazy_on_a_large_sparse_file(tmp_path):
    """A 1.6 GB (logical) cube opens without reading its counts."""
    import time

    path = tmp_path / "big.h5"
    shape = (400, 1000, 2048)
    with h5py.File(path, "w") as f:
        data = f.create_group("entry/data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        data.attrs["axes"] = ["y", "x", "energy"]
        data.create_dataset("counts", shape=shape, dtype=np.uint16, chunks=(1, 64, 2048), fillvalue=0)
        data.create_dataset("energy", data=0.01 * np.arange(2048)).attrs["units"] = "keV"
    t0 = time.perf_counter()
    cube = open_cube(path)
    assert time.perf_counter() - t0 < 2.0
    assert isinstance(cube.counts, h5py.Dataset)
    assert cube.counts.id.get_storage_size() == 0  # not even allocated, so nothing read


# --------------------------------------------------------------------------- bad input


def test_text_renamed_h5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("this is not HDF5\n" * 10)
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="not an HDF5 file.*text"):
        open_cube(path)


def test_hdf5_without_3d_dataset(tmp_path):
    path = tmp_path / "maps.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("maps/Fe", data=np.zeros((10, 10)))
        f.create_dataset("energy", data=np.arange(10.0))
    assert sniff(path) is None
    assert "no 3-D dataset" in explain(path)
    with pytest.raises(UnreadableFileError, match="no 3-D dataset"):
        open_cube(path)


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (-3.0, "negative")])
def test_nan_or_negative_counts(tmp_path, bad, message):
    data = _cube_data(3, 3, 20).astype(np.float32)
    data[1, 2, 5] = bad
    cube_path = tmp_path / "bad.h5"
    _write_nxdata(cube_path, data, ["y", "x", "energy"], np.linspace(1, 20, 20))
    with pytest.raises(UnreadableFileError, match=message):
        open_cube(cube_path)


def test_zero_sized_axis(tmp_path):
    path = tmp_path / "empty.h5"
    _write_nxdata(path, np.zeros((0, 4, 20), np.uint16), ["y", "x", "energy"], np.linspace(1, 20, 20))
    with pytest.raises(UnreadableFileError, match="zero-sized"):
        open_cube(path)


def test_sniff_never_raises_on_odd_input(tmp_path):
    (tmp_path / "empty.h5").write_bytes(b"")
    (tmp_path / "sig_only.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    for name in ("empty.h5", "sig_only.h5", "missing.h5"):
        assert h5reader.sniff(tmp_path / name) is None
    assert h5reader.sniff(tmp_path) is None
    with pytest.raises(UnreadableFileError):
        open_cube(tmp_path / "sig_only.h5")


@pytest.mark.realdata
def test_copy_of_real_file_reads_like_the_original(tmp_path, real_data):
    """Sniffing is content-based: a NeXus cube renamed .dat is still found."""
    pytest.importorskip("h5py")
    copy = tmp_path / "renamed.dat"
    shutil.copy(real_data / "derived" / "2ide_axo_std.h5", copy)
    assert sniff(copy) == "nexus"


def test_xanes_stack_is_not_xrf(tmp_path):
    """An absorption image stack (incident energies around the Fe K edge) is not misread."""
    path = tmp_path / "xanes.h5"
    _write_nxdata(path, _cube_data(40, 6, 7), ["energy", "y", "x"], np.linspace(7.1, 7.3, 40))
    assert sniff(path) is None
    with pytest.raises(UnreadableFileError, match="XANES"):
        open_cube(path)


def test_maps_layout_with_unset_calibration(tmp_path):
    path = tmp_path / "maps_v9.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("MAPS/mca_arr", data=np.ones((32, 2, 3), np.float32))
        f.create_dataset("MAPS/energy_calib", data=[0.0, 0.0, 0.0])  # never set
    cube = open_cube(path)
    assert cube.format == "maps-hdf5" and cube.shape == (2, 3, 32)
    assert not cube.calibrated


def test_energies_in_ev_labelled_kev_are_refused(tmp_path):
    path = tmp_path / "ev.nxs"
    _write_nxdata(path, _cube_data(2, 3, 40), ["y", "x", "energy"], 500.0 + 100.0 * np.arange(40))
    with pytest.raises(UnreadableFileError, match=r"ev\.nxs: the energy array gives 500 to 4400 keV"
                                                  ".* looks like eV; divide it by 1000"):
        open_cube(path)
