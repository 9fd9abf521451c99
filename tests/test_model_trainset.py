"""Training-set files and maps files (the HDF5 layouts the model stage reads and writes)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _model_data import ENERGY, PIGMENTS, make_set, write_set

from napari_xrf_pigments.datasets.trainset import read_training_set, write_training_set
from napari_xrf_pigments.errors import InvalidDataError, OutputExistsError, UnreadableFileError
from napari_xrf_pigments.io.maps import read_maps, write_maps


def test_training_set_round_trip(tmp_path):
    spectra, present, top = make_set(20)
    path = write_training_set(
        tmp_path / "t.h5", spectra, ENERGY, present, top, PIGMENTS, {"seed": 3},
        params={"thickness_um": np.arange(20.0)},
    )
    data = read_training_set(path)
    np.testing.assert_array_equal(data.spectra, spectra)
    np.testing.assert_array_equal(data.present, present)
    np.testing.assert_array_equal(data.top, top)
    assert data.energy.dtype == np.float64 and data.energy.size == 300
    assert data.abbreviations == ["AA", "BB", "CC", "DD"]
    assert data.pigments[1].name == "Beta"
    assert data.provenance == {"seed": 3}
    np.testing.assert_array_equal(data.params["thickness_um"], np.arange(20.0))
    with h5py.File(path) as f:
        assert f.attrs["format"] == "napari-xrf-pigments/training-set"
        assert json.loads(f.attrs["pigments"])[0] == {"abbreviation": "AA", "name": "Alpha"}
        assert f["spectra"].dtype == np.float32 and f["labels/present"].dtype == bool
    sub = data.subset(np.arange(5))
    assert len(sub) == 5 and sub.top.shape == (5, 4)


def test_training_set_refuses_overwrite(tmp_path):
    write_set(tmp_path / "t.h5", n=10)
    with pytest.raises(OutputExistsError):
        write_set(tmp_path / "t.h5", n=10)
    write_set(tmp_path / "t.h5", n=12, force=True)
    assert len(read_training_set(tmp_path / "t.h5")) == 12


def test_training_file_without_labels_is_refused(tmp_path):
    path = tmp_path / "unlabelled.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = np.ones((4, 300), np.float32)
        f["energy"] = ENERGY
        f.attrs["pigments"] = json.dumps([{"abbreviation": "AA", "name": "Alpha"}])
    with pytest.raises(UnreadableFileError, match="no labels"):
        read_training_set(path)


def test_training_set_validation(tmp_path):
    spectra, present, top = make_set(10)
    with pytest.raises(InvalidDataError, match="top"):
        write_training_set(tmp_path / "a.h5", spectra, ENERGY, present, top | True, PIGMENTS)
    bad = spectra.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidDataError, match="NaN"):
        write_training_set(tmp_path / "b.h5", bad, ENERGY, present, top, PIGMENTS)
    with pytest.raises(InvalidDataError, match="repeat"):
        write_training_set(tmp_path / "c.h5", spectra, ENERGY, present, top, PIGMENTS[:3] + [("AA", "x")])
    with pytest.raises(InvalidDataError, match="energy"):
        write_training_set(tmp_path / "d.h5", spectra, ENERGY[::-1], present, top, PIGMENTS)
    assert not any(tmp_path.iterdir())  # nothing half-written
    data = write_training_set(tmp_path / "e.h5", spectra, ENERGY, present, None, PIGMENTS)
    assert read_training_set(data).top is None
    with pytest.raises(UnreadableFileError, match="top-layer"):
        read_training_set(data, require_top=True)


def test_maps_round_trip_and_layout(tmp_path):
    maps = {
        "VM": (np.full((3, 4), 0.5), {"kind": "pigment", "unit": "probability", "layer": "any"}),
        "Fe K": (np.arange(12.0).reshape(3, 4), {"kind": "element", "unit": "counts"}),
    }
    path = write_maps(tmp_path / "m.h5", maps, {"model": "x", "meta": {"a": 1}})
    back, root = read_maps(path)
    assert list(back) == ["VM", "Fe K"]
    assert back["VM"][0].dtype == np.float32 and back["VM"][1]["layer"] == "any"
    assert root["model"] == "x" and json.loads(root["meta"]) == {"a": 1}
    assert root["format"] == "napari-xrf-pigments/maps" and "version" in root
    with pytest.raises(OutputExistsError):
        write_maps(path, maps)


@pytest.mark.parametrize(
    "maps, match",
    [
        ({}, "no maps"),
        ({"a/b": (np.zeros((2, 2)), {"kind": "pigment", "unit": "1"})}, "bad map name"),
        ({"a": (np.zeros(4), {"kind": "pigment", "unit": "1"})}, "2-D"),
        ({"a": (np.zeros((2, 2)), {"kind": "other", "unit": "1"})}, "kind"),
        ({"a": (np.zeros((2, 2)), {"kind": "pigment"})}, "unit"),
        (
            {
                "a": (np.zeros((2, 2)), {"kind": "pigment", "unit": "1"}),
                "b": (np.zeros((2, 3)), {"kind": "pigment", "unit": "1"}),
            },
            "shape",
        ),
    ],
)
def test_bad_maps_are_refused(tmp_path, maps, match):
    with pytest.raises(InvalidDataError, match=match):
        write_maps(tmp_path / "m.h5", maps)
    assert not any(tmp_path.iterdir())
