"""Maps exported as one OME-TIFF: planes, names, pixel size and attributes survive."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.errors import (
    InvalidDataError,
    OutputExistsError,
    UnreadableFileError,
)
from napari_xrf_pigments.io.maps import read_maps, write_maps
from napari_xrf_pigments.io.tiff import read_maps_tiff, write_maps_tiff


def _maps():
    rng = np.random.default_rng(0)
    vm = rng.random((4, 5)).astype(np.float32)
    vm[0, 0] = np.nan  # a pixel without counts
    return {
        "VM": (vm, {"kind": "pigment", "unit": "probability", "abbreviation": "VM",
                    "pigment": "Vermilion", "layer": "any", "evidence": "checked"}),
        "LW+RL_top": (vm / 2, {"kind": "pigment", "unit": "probability", "abbreviation": "LW+RL",
                               "pigment": "Lead white / red lead", "layer": "top",
                               "members": ["Lead white", "Red lead"]}),
        "Hg L": (rng.random((4, 5)).astype(np.float32) * 100, {"kind": "element", "unit": "counts"}),
    }


def test_round_trip_keeps_planes_names_attributes_and_pixel_size(tmp_path):
    import tifffile

    maps = _maps()
    out = write_maps_tiff(tmp_path / "maps.ome.tif", maps, root_attrs={"model_name": "default-v4"},
                          pixel_size_mm=(0.5, 0.25))
    with tifffile.TiffFile(out) as tif:  # what Fiji or QuPath see
        assert tif.is_ome and tif.series[0].axes == "CYX" and tif.series[0].shape == (3, 4, 5)
        assert tif.series[0].dtype == np.float32
        assert 'Name="LW+RL_top"' in tif.ome_metadata and 'PhysicalSizeXUnit="mm"' in tif.ome_metadata
    back, root = read_maps_tiff(out)
    assert list(back) == list(maps)
    for name, (array, attrs) in maps.items():
        np.testing.assert_array_equal(back[name][0], array)
        assert back[name][1] == attrs
    assert root["model_name"] == "default-v4" and root["pixel_size_mm"] == (0.5, 0.25)


def test_export_refuses_bad_maps_and_existing_files(tmp_path):
    maps = _maps()
    out = write_maps_tiff(tmp_path / "maps.ome.tif", maps)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        write_maps_tiff(out, maps)
    assert out.read_bytes() == before
    with pytest.raises(InvalidDataError, match="no maps"):
        write_maps_tiff(tmp_path / "none.ome.tif", {})
    odd = {**maps, "small": (np.zeros((2, 2), np.float32), {"kind": "element", "unit": "counts"})}
    with pytest.raises(InvalidDataError, match="one shape"):
        write_maps_tiff(tmp_path / "odd.ome.tif", odd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.ome.tif"]  # nothing half-written


def test_foreign_tiff_is_refused(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "photo.tif", np.zeros((3, 3), np.uint8))
    with pytest.raises(UnreadableFileError, match="not a maps TIFF"):
        read_maps_tiff(tmp_path / "photo.tif")
    (tmp_path / "text.tif").write_text("not a tiff")
    with pytest.raises(UnreadableFileError, match="not a TIFF"):
        read_maps_tiff(tmp_path / "text.tif")


def test_maps_file_exports_like_it_reads(tmp_path):
    maps = _maps()
    h5 = write_maps(tmp_path / "maps.h5", maps, {"model_name": "m", "pixel_size_mm": np.array([0.1, 0.1])})
    read, root = read_maps(h5)
    write_maps_tiff(tmp_path / "maps.ome.tif", read, root_attrs=root, pixel_size_mm=root["pixel_size_mm"])
    back, back_root = read_maps_tiff(tmp_path / "maps.ome.tif")
    assert list(back) == list(read) and back["LW+RL_top"][1]["members"] == ["Lead white", "Red lead"]
    assert back_root["format"] == "napari-xrf-pigments/maps" and back_root["pixel_size_mm"] == (0.1, 0.1)


def test_export_command(tmp_path, capsys):
    from napari_xrf_pigments.cli import main

    h5 = write_maps(tmp_path / "maps.h5", _maps(), {"pixel_size_mm": np.array([0.2, 0.2])})
    out = tmp_path / "maps.ome.tif"
    assert main(["export", str(h5), "--out", str(out), "--maps", "Hg L,VM"]) == 0
    assert "2 maps written" in capsys.readouterr().out
    maps, root = read_maps_tiff(out)
    assert list(maps) == ["Hg L", "VM"] and root["pixel_size_mm"] == (0.2, 0.2)
    assert main(["export", str(h5), "--out", str(out)]) == 2  # exists: --force needed
    assert main(["export", str(h5), "--out", str(tmp_path / "x.ome.tif"), "--maps", "Zn K"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"xrf-pigments export: error: {h5} has no map Zn K (it has VM, LW+RL_top, Hg L)"
    assert not (tmp_path / "x.ome.tif").exists()
