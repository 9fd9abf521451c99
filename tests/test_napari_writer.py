"""Saving map layers from napari: the CLI's maps file, through napari's own save path."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments._napari._maps import put_element_map, put_pigment_map, put_unexplained_map
from napari_xrf_pigments.io.maps import read_maps
from napari_xrf_pigments.model.files import PigmentLabel

pytestmark = pytest.mark.gui
PLUGIN = "napari-xrf-pigments"


def _maps(viewer, source="scan", model="default-v4"):
    rng = np.random.default_rng(0)
    hg = rng.random((4, 5)).astype(np.float32) * 100
    vm = rng.random((4, 5)).astype(np.float32)
    put_element_map(viewer, "Hg L", hg, source=source, scale=(0.5, 0.5))
    put_pigment_map(viewer, PigmentLabel("VM", "Vermilion"), vm, model_name=model, source=source,
                    evidence="checked", scale=(0.5, 0.5))
    put_pigment_map(viewer, PigmentLabel("LW+RL", "Lead white / red lead"), vm / 2, which="top",
                    model_name=model, source=source, evidence="checked",
                    members=("Lead white", "Red lead"), scale=(0.5, 0.5))
    put_unexplained_map(viewer, vm / 3, element="Ti", model_name=model, source=source, scale=(0.5, 0.5))
    return hg, vm


def test_map_layers_save_as_the_cli_maps_file(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((4, 5)), name="scan total counts")  # not a map: left out
    hg, vm = _maps(viewer)
    out = tmp_path / "saved.h5"
    written = viewer.layers.save(str(out), plugin=PLUGIN)  # every layer
    assert written == [str(out)]
    maps, root = read_maps(out)
    assert list(maps) == ["Hg L", "VM", "LW+RL_top", "unexplained_Ti"]
    np.testing.assert_array_equal(maps["Hg L"][0], hg)
    np.testing.assert_array_equal(maps["VM"][0], vm)
    assert maps["VM"][1]["evidence"] == "checked" and maps["VM"][1]["layer"] == "any"
    assert maps["VM"][1]["pigment"] == "Vermilion" and maps["VM"][1]["model_name"] == "default-v4"
    assert maps["LW+RL_top"][1]["members"] == ["Lead white", "Red lead"]
    assert maps["unexplained_Ti"][1]["element"] == "Ti" and maps["Hg L"][1]["kind"] == "element"
    assert root["format"] == "napari-xrf-pigments/maps" and root["cubes"] == '["scan"]'
    assert list(root["scale"]) == [0.5, 0.5]

    # The same pigment from a second model: both kept, the second under its layer name.
    _maps(viewer, model="finetuned")
    viewer.layers.save(str(out), plugin=PLUGIN)
    maps, _ = read_maps(out)
    assert {"VM", "VM [finetuned]"} <= set(maps)
    assert maps["VM [finetuned]"][1]["model_name"] == "finetuned"


def test_nothing_to_save_is_a_clear_error(make_napari_viewer, tmp_path):
    from napari_xrf_pigments._napari._writer import write_maps_layers
    from napari_xrf_pigments.errors import InvalidDataError

    with pytest.raises(InvalidDataError, match="none of the selected layers"):
        write_maps_layers(str(tmp_path / "x.h5"), [(np.ones((3, 3)), {"name": "photo"}, "image")])
    assert not (tmp_path / "x.h5").exists()
    small = ({"name": "a", "metadata": {"xrf_role": "element_map", "xrf_map": "Pb L"}}, "image")
    big = ({"name": "b", "metadata": {"xrf_role": "element_map", "xrf_map": "Hg L"}}, "image")
    with pytest.raises(InvalidDataError, match="different sizes"):
        write_maps_layers(str(tmp_path / "x.h5"), [(np.ones((3, 3)), *small), (np.ones((4, 4)), *big)])


def test_map_layers_export_as_one_ome_tiff(make_napari_viewer, tmp_path):
    from napari_xrf_pigments.io.tiff import read_maps_tiff

    viewer = make_napari_viewer()
    viewer.add_image(np.ones((4, 5)), name="scan total counts")  # not a map: left out
    rng = np.random.default_rng(1)
    hg, vm = rng.random((4, 5)).astype(np.float32), rng.random((4, 5)).astype(np.float32)
    put_element_map(viewer, "Hg L", hg, source="scan", scale=(0.5, 0.25), units=("mm", "mm"))
    put_pigment_map(viewer, PigmentLabel("VM", "Vermilion"), vm, model_name="default-v4",
                    source="scan", evidence="checked", scale=(0.5, 0.25), units=("mm", "mm"))
    out = tmp_path / "maps.ome.tif"
    assert viewer.layers.save(str(out), plugin=PLUGIN) == [str(out)]
    maps, root = read_maps_tiff(out)
    assert list(maps) == ["Hg L", "VM"]
    np.testing.assert_array_equal(maps["VM"][0], vm)
    assert maps["VM"][1]["pigment"] == "Vermilion" and maps["Hg L"][1]["kind"] == "element"
    assert root["pixel_size_mm"] == (0.5, 0.25) and root["cubes"] == ["scan"]
