"""Finetuning widget: labelling shapes, the labels file, finetuning in a worker, the maps.

TensorFlow must not load into this (napari, OpenGL) process: its LLVM and Mesa's crash together
(see ``model/isolated.py``). The tiny base model is trained in a child process, and the
widget finetunes in one.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _model_data import ENERGY, PIGMENTS, spectrum_shape

from napari_xrf_pigments._napari._finetune_widget import FinetuneWidget, shapes_to_labels
from napari_xrf_pigments._napari._reader import cube_layer_data
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.labels import (
    LabelledShape,
    ShapeLabels,
    rasterise,
    read_labels,
    write_labels,
)

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras"),
]
TESTS = Path(__file__).resolve().parent

PIXEL = 0.5  # mm
ROWS, COLS = 12, 16
REGIONS = {  # quadrant -> (top pigment, bottom pigment or None), indices into PIGMENTS
    (0, 0): (0, None), (0, 1): (1, 2), (1, 0): (3, 0), (1, 1): (2, None),
}


def synthetic_cube(seed=0, offset_keV=0.05):
    """Four quadrants of known paint, spectra like ``_model_data.make_set``'s, 50 eV off."""
    rng = np.random.default_rng(seed)
    counts = np.empty((ROWS, COLS, ENERGY.size), np.uint32)
    background = 3.0 * np.exp(-(ENERGY - 2.0) / 6.0)
    for r in range(ROWS):
        for c in range(COLS):
            t, b = REGIONS[(2 * r // ROWS, 2 * c // COLS)]
            expected = background + rng.uniform(150, 300) * spectrum_shape(ENERGY, t)
            if b is not None:
                expected = expected + rng.uniform(25, 60) * spectrum_shape(ENERGY, b)
            counts[r, c] = rng.poisson(expected)
    return XRFCube.from_array(counts, energy=ENERGY + offset_keV, pixel_size=(PIXEL, PIXEL))


def quadrant_labels():
    shapes = []
    for (qr, qc), (t, b) in REGIONS.items():
        r0, r1 = qr * ROWS // 2, (qr + 1) * ROWS // 2 - 1
        c0, c1 = qc * COLS // 2, (qc + 1) * COLS // 2 - 1
        v = [[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 + 0.5], [r1 + 0.5, c1 + 0.5], [r1 + 0.5, c0 - 0.5]]
        present = [PIGMENTS[t][0]] + ([PIGMENTS[b][0]] if b is not None else [])
        shapes.append(LabelledShape("rectangle", v, present, [PIGMENTS[t][0]]))
    return ShapeLabels(PIGMENTS, shapes, {"shape": [ROWS, COLS]})


@pytest.fixture(scope="module", autouse=True)
def stop_child_process():
    """The widget's child process serves every test here; it must not outlive the module."""
    yield
    from napari_xrf_pigments.model import isolated as _isolated

    _isolated.shutdown()
    assert multiprocessing.active_children() == []


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny test model (_model_data.tiny_trained), trained in a child process."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    code = (
        "import shutil, sys; from _model_data import tiny_trained; "
        "shutil.copytree(tiny_trained()[1], sys.argv[1])"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=TESTS, check=True, env=env,
                   capture_output=True)
    return out


@pytest.fixture
def notes():
    """Messages that reach napari's notification area during the test."""
    from napari.utils.notifications import notification_manager

    seen = []

    def keep(event):
        seen.append((str(event.severity), event.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


@pytest.fixture
def setup(make_napari_viewer, model_dir):
    """(viewer, widget, cube layer) with the tiny model as the base model."""
    viewer = make_napari_viewer()
    cube = synthetic_cube()
    for data, kwargs, _ in cube_layer_data(cube):
        viewer.add_image(data, **kwargs)
    layer = viewer.layers[cube.name]
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Finetune")
    widget.set_model_folder(model_dir)
    return viewer, widget, layer


def quadrant_rects():
    """The quadrants of the synthetic cube as 2-corner rectangles in pixel coordinates."""
    return [s.vertices[[0, 2]] for s in quadrant_labels().shapes]


def test_label_shapes_and_round_trip_the_labels_file(setup, tmp_path):
    viewer, widget, cube_layer = setup
    assert list(widget.present_boxes) == [p[0] for p in PIGMENTS]  # from the model
    layer = widget.new_labels_layer()
    assert tuple(layer.scale) == (PIXEL, PIXEL)  # aligned with the cube: data = pixel coords
    layer.add_rectangles(quadrant_rects())
    assert list(layer.features["label"]) == ["unlabelled"] * 4
    for index, shape in enumerate(quadrant_labels().shapes):
        layer.selected_data = {index}
        widget.set_checked(shape.present, shape.top)
        assert widget.apply_label()
    layer.selected_data = {1}
    widget.set_checked()
    widget.show_selection()  # the checkboxes show the selected shape's label
    assert widget.checked() == (["BB", "CC"], ["BB"])
    assert "1 shape selected: BB, CC (top BB)" in widget.selection_info.text()
    # Several shapes at once.
    layer.selected_data = {0, 3}
    widget.set_checked(["AA", "CC"], ["CC"])
    widget.apply_label()
    assert list(layer.features["label"])[::3] == ["AA, CC (top CC)"] * 2
    assert np.allclose(layer.face_color[0], layer.face_color[3])  # one colour per label
    assert not np.allclose(layer.face_color[0], layer.face_color[1])
    layer.selected_data = {0}
    widget.set_checked(["AA"], ["AA"])
    widget.apply_label()
    layer.selected_data = {3}
    widget.set_checked(["CC"], ["CC"])
    widget.apply_label()

    labels = widget.current_labels()
    px = rasterise(labels, (ROWS, COLS))
    expected = rasterise(quadrant_labels(), (ROWS, COLS))
    np.testing.assert_array_equal(px.present, expected.present)
    np.testing.assert_array_equal(px.top, expected.top)
    path = widget.save_labels(tmp_path / "labels.json")
    back = read_labels(path)
    assert back.cube["shape"] == [ROWS, COLS]
    np.testing.assert_array_equal(rasterise(back, (ROWS, COLS)).present, expected.present)
    loaded = widget.load_labels(path)
    assert loaded is not layer and widget.shapes_layer() is loaded
    assert list(loaded.features["label"]) == list(layer.features["label"])
    for a, b in zip(loaded.data, layer.data):
        np.testing.assert_allclose(a, b)


def test_vertices_go_through_the_layer_transforms(setup):
    viewer, widget, cube_layer = setup
    # A shapes layer in world units (mm, no scale): pixel (r, c) is at (r * 0.5, c * 0.5) mm.
    mm = viewer.add_shapes(
        [np.array([[-0.25, -0.25], [-0.25, 1.25], [0.75, 1.25], [0.75, -0.25]])],
        shape_type="rectangle",
        features={"present_AA": [True], "top_AA": [True]},
        name="drawn in mm",
    )
    labels = shapes_to_labels(mm, cube_layer, PIGMENTS)
    np.testing.assert_allclose(labels.shapes[0].vertices.min(axis=0), [-0.5, -0.5])
    np.testing.assert_allclose(labels.shapes[0].vertices.max(axis=0), [1.5, 2.5])
    px = rasterise(labels, (ROWS, COLS))
    assert px.n_pixels == 2 * 3 and px.mask[:2, :3].all()
    assert labels.shapes[0].present == ("AA",) and labels.shapes[0].top == ("AA",)


def _finetune(qtbot, widget, timeout=180_000):
    worker = widget.run()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass
    return worker


@pytest.mark.slow
def test_finetune_from_the_widget_then_recompute_the_maps(setup, qtbot, tmp_path, monkeypatch):
    viewer, widget, cube_layer = setup
    widget.load_labels(write_labels(tmp_path / "labels.json", quadrant_labels()))
    widget.head_epochs.setValue(2)
    widget.epochs.setValue(2)
    out = tmp_path / "finetuned"
    widget.out_edit.setText(str(out))
    _finetune(qtbot, widget)
    assert widget.result is not None and out.is_dir() and widget.result["path"] == str(out)
    text = widget.table.toPlainText()
    assert "Before" in text and "After" in text and "Delta (DD)" in text
    stages = [(p["stage"], p["epoch"]) for p in widget.curve]
    assert stages == [(0, 0), (1, 1), (1, 2), (2, 1), (2, 2)]  # the live loss curve's points
    assert len(widget.axes.lines) >= 2
    assert "macro F1" in widget.status.text() and widget.maps_button.isEnabled()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    # One click: the Pigment maps widget opens on the new model and the cube, and runs.
    from napari_xrf_pigments._napari import _pigment_widget

    started = []
    monkeypatch.setattr(_pigment_widget.PigmentMapsWidget, "run", lambda self, *a: started.append(self))
    maps = widget.recompute_maps()
    assert maps is not None and started == [maps]
    assert str(maps.model_dir.value) == str(out) and maps.cube_combo.value == cube_layer.name
    assert maps.model_path() == out


def test_bad_inputs_give_messages(setup, tmp_path, notes):
    viewer, widget, cube_layer = setup
    assert widget.run() is None  # no labels layer
    layer = widget.new_labels_layer()
    assert widget.run() is None and "save as" in widget.status.text()
    widget.out_edit.setText(str(tmp_path / "new"))
    assert widget.run() is None and "no shapes" in widget.status.text()
    layer.add_rectangles([[[0, 0], [5, 5]], [[3, 3], [8, 8]]])
    layer.selected_data = {0}
    widget.set_checked(["AA"], ["AA"])
    widget.apply_label()
    layer.selected_data = {1}
    widget.set_checked(["BB"], ["BB"])
    widget.apply_label()
    assert widget.run() is None and "overlap" in widget.status.text()
    widget.out_edit.setText(widget.model_dir.text())
    assert widget.run() is None and "would overwrite the base model" in widget.status.text()
    assert any("Finetuning" in message for _, message in notes)
    assert not widget.runner.running


def test_cancel_stops_between_epochs_and_writes_nothing(setup, qtbot, tmp_path):
    viewer, widget, cube_layer = setup
    widget.load_labels(write_labels(tmp_path / "labels.json", quadrant_labels()))
    widget.head_epochs.setValue(500)
    widget.epochs.setValue(500)
    widget.options = {"patience": 1000}  # no early stop: it must still run when cancelled
    out = tmp_path / "finetuned"
    widget.out_edit.setText(str(out))
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: any(p["stage"] == 1 for p in list(widget.curve)), timeout=120_000)
    assert widget.runner.running
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.cancel()
    assert widget.result is None and not out.exists()
    assert "stopped" in widget.status.text()
    assert [p.name for p in tmp_path.iterdir()] == ["labels.json"]


def test_a_ground_truth_file_loads_as_strip_shapes(setup, tmp_path):
    from napari_xrf_pigments.datasets.mockup import crossed_strips, write_truth

    viewer, widget, cube_layer = setup
    layout = crossed_strips(("Top 4",), ("Bottom 6", "Bottom 2A"), strip_px=4, gap_px=0, margin_px=4)
    assert layout.shape == (ROWS, COLS)
    recipes = {"Top 4": ("VM",), "Bottom 6": ("VM",), "Bottom 2A": ("ZW", "LW", "VM")}
    present = {a: np.zeros((ROWS, COLS), bool) for a in ("VM", "LW", "ZW")}
    top = {a: np.zeros((ROWS, COLS), bool) for a in present}
    for r in range(ROWS):
        for c in range(COLS):
            t, b = layout.top_index[r, c], layout.bottom_index[r, c]
            for a in recipes[layout.bottoms[b]] if b >= 0 else ():
                present[a][r, c] = True
                top[a][r, c] = t < 0
            for a in recipes[layout.tops[t]] if t >= 0 else ():
                present[a][r, c] = top[a][r, c] = True
    truth = {"present": present, "top": top, "top_index": layout.top_index,
             "bottom_index": layout.bottom_index, "attrs": {}}
    layer = widget.load_labels(write_truth(tmp_path / "truth.h5", truth))
    assert len(layer.data) == 3 * 4  # (margin, strip, margin) x (margin, 2 strips, margin)
    assert set(layer.features["label"]) == {
        "bare ground", "VM (top VM)", "VM, LW, ZW (top VM)", "VM, LW, ZW (top VM, LW, ZW)",
    }
    labels = widget.current_labels()
    assert isinstance(labels, ShapeLabels) and rasterise(labels, (ROWS, COLS)).mask.all()
    assert all(isinstance(s, LabelledShape) for s in labels.shapes)


def test_stages_have_the_cli_defaults_and_the_widget_fits_a_small_screen(setup):
    from napari_xrf_pigments.model.defaults import FINETUNE_DEFAULTS

    _, widget, _ = setup
    assert widget.head_epochs.value() == FINETUNE_DEFAULTS["head_epochs"]
    assert widget.epochs.value() == FINETUNE_DEFAULTS["epochs"]
    # Scrolls rather than demanding a tall screen (it needed 1059 px; 1366 x 768 is common).
    assert widget.minimumSizeHint().height() < 600
