"""Assemble point grid widget (``xrf-pigments assemble`` in napari): the same cube as the core's
assemble, masked points with a warning, one-line messages, an existing cube file replaced only
when the user agrees."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments._napari import _assemble_widget
from napari_xrf_pigments._napari._assemble_widget import AssembleWidget
from napari_xrf_pigments._napari._layers import cube_of
from napari_xrf_pigments.io import open_cube
from napari_xrf_pigments.io.amptek import write_pmca
from napari_xrf_pigments.io.pointgrid import assemble, raster_position

pytestmark = pytest.mark.gui

PLUGIN = "napari-xrf-pigments"
TIMEOUT_MS = 60000


def write_points(folder, rows, columns, *, channels=64, missing=(), order="row-major"):
    """Amptek point files ``pt_<n>.mca`` whose counts say where they belong (channel 0 = row,
    1 = column, 2 = point number; live time = number / 100 s), as test_io_amptek writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(rows * columns):
        number = k + 1
        if number in missing:
            continue
        r, c = raster_position(k, rows, columns, order)
        counts = np.full(channels, 1, dtype=np.int64)
        counts[:3] = (r, c, number)
        write_pmca(folder / f"pt_{number}.mca", counts, calibration=((10, 1.0), (50, 5.0)),
                   live_time=number / 100, real_time=1.0)
    return folder


@pytest.fixture
def messages(monkeypatch):
    """The widget's notifications, by kind."""
    shown = {"error": [], "warning": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(_assemble_widget, f"show_{kind}", shown[kind].append)
    return shown


def assemble_from(widget, qtbot):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=TIMEOUT_MS)
    return worker


def test_a_3x4_grid_from_the_widget_is_the_core_assemble(make_napari_viewer, qtbot, tmp_path,
                                                          messages):
    folder = write_points(tmp_path / "scan", 3, 4, order="serpentine")
    viewer = make_napari_viewer()
    widget = AssembleWidget(viewer)
    widget.source.value = folder
    # What the files are, before anything is written.
    info = widget.scan_info.value
    assert "12 point files pt_1.mca ... pt_12.mca (amptek-mca), 12 points" in info, info
    assert "64 channels" in info and "gain 100.000 eV/ch" in info, info
    assert widget.out.value == tmp_path / "scan.h5"  # proposed beside the folder
    assert "must be 12" in widget.raster_info.value
    widget.rows.value, widget.columns.value = 3, 4
    assert "the raster fits the files" in widget.raster_info.value
    widget.order.value = "serpentine"
    widget.pixel_size.value = 0.5
    assemble_from(widget, qtbot)
    assert messages["error"] == [] and messages["warning"] == []
    assert "scan.h5: 3 rows x 4 columns x 64 channels from amptek-mca point files" in widget.status.value

    core = assemble([folder], tmp_path / "core.h5", rows=3, columns=4, order="serpentine",
                    pixel_size=0.5)
    mine, theirs = open_cube(tmp_path / "scan.h5"), open_cube(core.out)
    np.testing.assert_array_equal(np.asarray(mine.counts), np.asarray(theirs.counts))
    np.testing.assert_array_equal(mine.live_time, theirs.live_time)
    np.testing.assert_array_equal(mine.metadata["mask"], theirs.metadata["mask"])
    assert mine.energy.as_calibration() == theirs.energy.as_calibration()
    assert mine.pixel_size == theirs.pixel_size == (0.5, 0.5)
    assert np.asarray(mine.counts)[1, :, 2].tolist() == [8, 7, 6, 5]  # serpentine row 1

    # Opened with the plugin's reader: the cube layer and its total counts.
    assert [layer.name for layer in viewer.layers] == ["scan", "scan total counts"]
    cube = cube_of(viewer.layers["scan"])
    assert cube.shape == (3, 4, 64) and cube.pixel_size == (0.5, 0.5)


def test_a_missing_point_is_masked_with_a_warning(make_napari_viewer, qtbot, tmp_path, messages):
    folder = write_points(tmp_path / "scan", 3, 4, missing={7})
    viewer = make_napari_viewer()
    widget = AssembleWidget(viewer)
    widget.source.value = folder
    assert "11 point files" in widget.scan_info.value and "(1 without a file: masked)" in widget.scan_info.value
    widget.rows.value, widget.columns.value = 3, 4
    widget.out.value = tmp_path / "masked.h5"
    assemble_from(widget, qtbot)
    assert messages["warning"] == [
        "Assemble point grid: 1 of 12 points have no file and are masked (counts 0): pt_7.mca"]
    assert "1 masked" in widget.status.value
    cube = cube_of(viewer.layers["masked"])
    mask = cube.metadata["mask"]
    assert mask.sum() == 1 and mask[1, 2]  # point 7: row 1, column 2; nothing shifted
    counts = np.asarray(cube.counts)
    assert not counts[1, 2].any() and counts[1, 3, 2] == 8 and counts[2, 3, 2] == 12


@pytest.mark.parametrize("case", ["no_points", "raster", "first_number", "nothing_chosen"])
def test_bad_inputs_give_one_line_and_write_nothing(make_napari_viewer, tmp_path, messages, case):
    folder = write_points(tmp_path / "scan", 3, 4)
    viewer = make_napari_viewer()
    widget = AssembleWidget(viewer)
    if case == "no_points":
        empty = tmp_path / "notes"
        empty.mkdir()
        (empty / "readme.txt").write_text("not a point\n")
        widget.source.value = empty
        assert widget.scan_info.value.startswith("no numbered point files (NAME_<n>.ext) in ")
        widget.out.value = tmp_path / "cube.h5"
        says = "no numbered point files (NAME_<n>.ext) in "
    elif case == "raster":
        widget.source.value = folder
        widget.rows.value, widget.columns.value = 3, 5
        says = "makes 15 points: the raster is larger than the scan"
    elif case == "first_number":
        widget.source.value = folder
        widget.rows.value, widget.columns.value = 3, 4
        widget.first_number.value = "one"
        says = "first number must be a whole number >= 0 (or empty: automatic), got 'one'"
        assert widget.raster_info.value == says
    else:
        widget.out.value = tmp_path / "cube.h5"
        says = "choose the folder of the point files"
    assert widget.run() is None and not widget.runner.running
    (error,) = messages["error"]
    assert error.startswith("Assemble point grid: ") and says in error and "\n" not in error, error
    assert widget.status.value == f"failed: {error.removeprefix('Assemble point grid: ')}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "scan"] if case == "no_points" \
        else ["scan"]
    assert len(viewer.layers) == 0


def test_an_existing_cube_file_is_replaced_only_when_the_user_agrees(make_napari_viewer, qtbot,
                                                                    tmp_path, monkeypatch,
                                                                    messages):
    folder = write_points(tmp_path / "scan", 2, 3)
    out = tmp_path / "cube.h5"
    out.write_bytes(b"old")
    viewer = make_napari_viewer()
    widget = AssembleWidget(viewer)
    widget.source.value = folder
    widget.rows.value, widget.columns.value = 2, 3
    widget.out.value = out
    asked = []
    monkeypatch.setattr(_assemble_widget, "confirm_replace",
                        lambda parent, path, title: asked.append(path) or False)
    assert widget.run() is None
    assert asked == [out] and out.read_bytes() == b"old" and messages["error"] == []
    assert "cube.h5 exists and was kept" in widget.status.value
    monkeypatch.setattr(_assemble_widget, "confirm_replace", lambda parent, path, title: True)
    assemble_from(widget, qtbot)
    assert open_cube(out).shape == (2, 3, 64)
    # A second run over the same file shows one copy of the cube, not two.
    assemble_from(widget, qtbot)
    assert [layer.name for layer in viewer.layers] == ["cube", "cube total counts"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.h5", "scan"]  # no temporary file


def test_cancel_leaves_no_file_and_no_layer(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                            messages):
    import time

    from napari_xrf_pigments.io import pointgrid

    folder = write_points(tmp_path / "scan", 6, 4)
    into = pointgrid._spectrum_into

    def slow(*args):  # a slow disk: the run is still going when Cancel is pressed
        time.sleep(0.05)
        return into(*args)

    monkeypatch.setattr(pointgrid, "_spectrum_into", slow)
    monkeypatch.setattr(pointgrid, "BLOCK_BYTES", 1)  # a block per row, as a big scan has
    viewer = make_napari_viewer()
    widget = AssembleWidget(viewer)
    widget.source.value = folder
    widget.rows.value, widget.columns.value = 6, 4
    worker = widget.run()
    assert worker is not None and not widget.run_button.enabled and widget.cancel_button.enabled
    assert widget.run() is None  # one run at a time
    worker.yielded.connect(lambda step: widget.cancel_button.changed.emit(True))
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=TIMEOUT_MS)
    assert widget.status.value.endswith("stopped (cancelled).")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan"] and len(viewer.layers) == 0
    assert widget.run_button.enabled and messages["error"] == []
