"""Pigment maps widget end to end: a tiny trained model on a small cube, against the CLI.

TensorFlow must not load into this (napari, OpenGL) process: its LLVM and Mesa's crash
together (see ``model/isolated.py``). The model is trained, and the CLI run, in child
processes, as the widget itself predicts in one.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _model_data import ENERGY, make_set

from napari_xrf_pigments._napari import _pigment_widget as pw
from napari_xrf_pigments._napari._maps import PIGMENT_ROLE
from napari_xrf_pigments._napari._reader import cube_layer_data
from napari_xrf_pigments.cube import XRFCube

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras"),
]
TESTS = Path(__file__).resolve().parent

PLUGIN = "napari-xrf-pigments"
ROWS, COLS = 6, 7
PIXEL = 0.25


@pytest.fixture(scope="module", autouse=True)
def stop_child_process():
    """The widget's child process serves every test here; it must not outlive the module."""
    yield
    from napari_xrf_pigments.model import isolated as _isolated

    _isolated.shutdown()
    assert multiprocessing.active_children() == []


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The model engineer's tiny test model (_model_data.tiny_trained), trained in a child."""
    out = tmp_path_factory.mktemp("model") / "tiny"
    code = (
        "import shutil, sys; from _model_data import tiny_trained; "
        "shutil.copytree(tiny_trained()[1], sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=TESTS, check=True,
                   env=_quiet_env(), capture_output=True)
    return out


def _quiet_env():
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(TESTS)}


def tensorflow_stays_out(loaded_before: bool):
    """The widget did not load TensorFlow here (it runs in the child process).

    ``loaded_before``: TensorFlow was in this process before the test (an earlier test loaded
    it), so the check cannot tell.
    """
    assert loaded_before or ("tensorflow" not in sys.modules and "keras" not in sys.modules)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """(NeXus file, presence truth (rows, cols, 4)) of a small cube of the tiny model's pigments."""
    from napari_xrf_pigments.io import write_cube

    spectra, present, _ = make_set(ROWS * COLS, seed=5)
    cube = XRFCube.from_array(spectra.reshape(ROWS, COLS, -1), energy=ENERGY, pixel_size=(PIXEL, PIXEL))
    path = tmp_path_factory.mktemp("scan") / "scan.h5"
    write_cube(path, cube)
    return path, present.reshape(ROWS, COLS, -1)


@pytest.fixture
def notes():
    from napari.utils.notifications import notification_manager

    seen = []

    def keep(event):
        seen.append((str(event.severity), event.message))

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


def make_widget(viewer, qtbot, model=None):
    widget = pw.PigmentMapsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Pigment maps")
    qtbot.waitUntil(lambda: not widget.gpu_check.running, timeout=60_000)
    if model is not None:
        widget.model_source.value = pw.MODEL_FOLDER
        widget.model_dir.value = model
    return widget


def run_widget(qtbot, widget, timeout=60_000):
    worker = widget.run()
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)
    return worker


def pigment_layers(viewer):
    return [la for la in viewer.layers if la.metadata.get("xrf_role") == PIGMENT_ROLE]


def test_maps_equal_the_cli_and_rerun_updates(make_napari_viewer, qtbot, model_dir, scan, tmp_path):
    tf_before = "tensorflow" in sys.modules
    from napari_xrf_pigments.io.maps import read_maps
    from napari_xrf_pigments.model.isolated import isolated
    from napari_xrf_pigments.progress import run

    path, present = scan
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = make_widget(viewer, qtbot, model_dir)
    assert widget.device.native.isHidden()  # no GPU here: no device choice
    assert "tiny-test-model: 4 pigments (AA, BB, CC, DD)" in widget.model_info.value
    run_widget(qtbot, widget)

    names = [la.name for la in pigment_layers(viewer)]
    assert names == ["P(alpha)", "P(beta)", "P(gamma)", "P(delta)",
                     "P(alpha, top)", "P(beta, top)", "P(gamma, top)", "P(delta, top)"]
    # The same maps as `xrf-pigments predict` on the same file and model: its predict_to_file
    # job, run in the widget's child process (TensorFlow stays out of this one).
    out = tmp_path / "maps.h5"
    run(isolated("napari_xrf_pigments.model.predict:predict_to_file", str(path), str(out), str(model_dir)))
    maps, _ = read_maps(out)
    for abbreviation, name in (("AA", "alpha"), ("BB", "beta"), ("CC", "gamma"), ("DD", "delta")):
        np.testing.assert_array_equal(viewer.layers[f"P({name})"].data, maps[abbreviation][0])
        np.testing.assert_array_equal(viewer.layers[f"P({name}, top)"].data, maps[f"{abbreviation}_top"][0])
    # The values mean something: high where a pigment was put, low elsewhere.
    probabilities = np.stack([viewer.layers[f"P({n})"].data for n in ("alpha", "beta", "gamma", "delta")], -1)
    assert probabilities[present].mean() > 0.6 > 0.3 > probabilities[~present].mean()
    layer = viewer.layers["P(alpha)"]
    assert layer.contrast_limits == [0.0, 1.0] and layer.blending == "additive"
    assert tuple(layer.scale) == (PIXEL, PIXEL)
    assert layer.metadata["xrf_pigment"] == "AA" and layer.metadata["xrf_layer"] == "any"

    # Grouped visibility: any-layer maps shown, top-layer maps hidden; one pigment alone.
    assert widget.solo.value == pw.CALLED  # by default, the pigments called somewhere
    widget.solo.value = pw.ALL
    visible = {la.name for la in pigment_layers(viewer) if la.visible}
    assert visible == {"P(alpha)", "P(beta)", "P(gamma)", "P(delta)"}
    widget.show_top.value = True
    widget.show_any.value = False
    assert {la.name for la in pigment_layers(viewer) if la.visible} == {
        "P(alpha, top)", "P(beta, top)", "P(gamma, top)", "P(delta, top)"}
    widget.show_any.value = True
    widget.solo.value = "Gamma"
    assert {la.name for la in pigment_layers(viewer) if la.visible} == {"P(gamma)", "P(gamma, top)"}
    widget.solo.value = pw.ALL

    # The dominant pigment: one colour per pixel, the most probable call, with a legend.
    dominant = viewer.layers["Dominant pigment"]
    assert not dominant.visible and widget.legend.native.isHidden()
    widget.show_dominant.value = True
    assert dominant.visible and not widget.legend.native.isHidden()
    best = np.argmax(np.nan_to_num(probabilities), axis=-1) + 1
    called = np.nanmax(probabilities, axis=-1) >= 0.5
    np.testing.assert_array_equal(dominant.data, np.where(called, best, 0))
    # The legend lists the pigments by their share of the pixels, the largest first.
    most = np.bincount(dominant.data[called]).argmax()
    first = widget.legend.value.split("<br>")[1]
    assert first.endswith(f"{('Alpha', 'Beta', 'Gamma', 'Delta')[most - 1]} ({np.mean(dominant.data == most):.0%})")
    widget.show_dominant.value = False

    # An RGB composite of chosen maps; grid view for side by side.
    widget.rgb[0].value, widget.rgb[1].value = "P(alpha)", "P(beta)"
    rgb = widget.make_rgb()
    assert rgb.rgb and rgb.name == "RGB: P(alpha) / P(beta) / -"
    np.testing.assert_array_equal(rgb.data[..., 1], np.nan_to_num(viewer.layers["P(beta)"].data))
    assert not rgb.data[..., 2].any() and tuple(rgb.scale) == (PIXEL, PIXEL)
    widget.grid.value = True
    assert viewer.grid.enabled
    widget.grid.value = False

    # Running again updates the layers in place.
    n_layers = len(viewer.layers)
    run_widget(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["P(alpha)"] is layer
    tensorflow_stays_out(tf_before)


def test_maps_stay_with_their_cube_and_model(make_napari_viewer, qtbot, model_dir, scan, tmp_path):
    """Another cube or model adds layers named after what differs; a re-run updates its own;
    only pigments called somewhere are shown."""
    import json
    import shutil

    path, _ = scan
    other = tmp_path / "other.h5"
    shutil.copy(path, other)
    renamed = tmp_path / "renamed-model"
    shutil.copytree(model_dir, renamed)
    meta = json.loads((renamed / "metadata.json").read_text())
    (renamed / "metadata.json").write_text(json.dumps({**meta, "name": "tiny-copy"}))

    viewer = make_napari_viewer()
    first = viewer.open(str(path), plugin=PLUGIN)[0]
    second = viewer.open(str(other), plugin=PLUGIN)[0]
    widget = make_widget(viewer, qtbot, model_dir)
    widget.cube_combo.value = first.name
    run_widget(qtbot, widget)
    alpha = viewer.layers["P(alpha)"]
    widget.cube_combo.value = second.name
    run_widget(qtbot, widget)
    widget.cube_combo.value = first.name
    widget.model_dir.value = renamed
    run_widget(qtbot, widget)
    names = {la.name for la in pigment_layers(viewer)}
    assert {"P(alpha)", "P(alpha) [other]", "P(alpha) [tiny-copy]", "P(delta, top) [other]"} <= names
    assert len(names) == 3 * 8 and viewer.layers["P(alpha)"] is alpha
    assert viewer.layers["P(alpha) [other]"].metadata["xrf_source"] == "other"
    assert viewer.layers["P(alpha) [tiny-copy]"].metadata["xrf_model"] == "tiny-copy"
    np.testing.assert_array_equal(viewer.layers["P(alpha) [tiny-copy]"].data, alpha.data)

    widget.model_dir.value = model_dir
    run_widget(qtbot, widget)  # the first cube and model again: their layers are updated
    assert {la.name for la in pigment_layers(viewer)} == names and viewer.layers["P(alpha)"] is alpha
    for layer in pigment_layers(viewer):
        called = layer.metadata["xrf_called_share"] >= pw.CALLED_SHARE
        assert layer.visible == (called and layer.metadata["xrf_layer"] == "any"), layer.name


def test_gpu_choice_appears_only_with_a_gpu(make_napari_viewer, qtbot, model_dir, scan, monkeypatch):
    def a_gpu():
        yield from ()
        return True

    monkeypatch.setattr(pw, "detect_gpu", a_gpu)
    path, _ = scan
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = make_widget(viewer, qtbot, model_dir)
    assert widget.gpu_present and not widget.device.native.isHidden()
    assert widget.device.value == pw.GPU
    run_widget(qtbot, widget)
    default = viewer.layers["P(beta)"].data.copy()
    widget.device.value = pw.CPU  # runs pinned to the CPU (here: the same CPU engine)
    run_widget(qtbot, widget)
    np.testing.assert_allclose(viewer.layers["P(beta)"].data, default, atol=1e-6)


def test_bad_inputs_give_messages_not_exceptions(make_napari_viewer, qtbot, model_dir, scan, notes,
                                                 monkeypatch, tmp_path):
    from napari_xrf_pigments.model import files

    monkeypatch.setattr(files, "DEFAULT_MODEL_DIR", tmp_path / "no-default-model")
    path, _ = scan
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = make_widget(viewer, qtbot)
    # No default model installed, and none chosen.
    assert "no default pigment model" in widget.model_info.value
    assert run_widget(qtbot, widget) is None
    assert notes[-1][0] == "error" and "no default pigment model" in notes[-1][1]
    widget.model_source.value = pw.MODEL_FOLDER
    assert run_widget(qtbot, widget) is None
    assert "choose a model folder" in notes[-1][1]
    # A folder that is not a model: the worker reports it.
    widget.model_dir.value = tmp_path
    assert "metadata.json" in widget.model_info.value
    assert run_widget(qtbot, widget) is not None
    assert notes[-1][0] == "error" and "metadata.json" in notes[-1][1]

    widget.model_dir.value = model_dir
    # An uncalibrated cube.
    spectra = np.ones((2, 3, ENERGY.size), np.float32)
    for data, kwargs, _ in cube_layer_data(XRFCube.from_array(spectra, source="raw.h5")):
        viewer.add_image(data, **kwargs)
    widget.cube_combo.value = "raw"
    assert run_widget(qtbot, widget) is None
    assert "not energy-calibrated" in notes[-1][1]
    # A cube whose energy range misses the model's grid (2-14 keV).
    far = XRFCube.from_array(spectra, energy=30.0 + 0.04 * np.arange(ENERGY.size), source="far.h5")
    for data, kwargs, _ in cube_layer_data(far):
        viewer.add_image(data, **kwargs)
    widget.cube_combo.value = "far"
    assert run_widget(qtbot, widget) is not None
    assert notes[-1][0] == "error" and "does not overlap the model's" in notes[-1][1]
    assert pigment_layers(viewer) == []
    # The widget is ready for the next run.
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_cancel_stops_the_prediction(make_napari_viewer, qtbot, model_dir, tmp_path):
    spectra, _, _ = make_set(9000, seed=8)  # three blocks of rows
    cube = XRFCube.from_array(spectra.reshape(100, 90, -1), energy=ENERGY)
    viewer = make_napari_viewer()
    for data, kwargs, _ in cube_layer_data(cube):
        viewer.add_image(data, **kwargs)
    widget = make_widget(viewer, qtbot, model_dir)

    def cancel_after_first_rows(step):
        if step is not None and step.message.startswith("rows"):
            widget.cancel()

    worker = widget.run()
    worker.yielded.connect(cancel_after_first_rows)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert pigment_layers(viewer) == []
    assert "stopped" in widget.status.value
    # The child process that was predicting is gone.
    assert multiprocessing.active_children() == []


def test_shipped_model_marks_unknown_paint_as_unexplained(make_napari_viewer, qtbot, tmp_path):
    """Strontium white (no class has Sr) across vermilion: no pigment called on it, its Sr shown
    as unexplained, and the cursor readout says so."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.progress import run

    layout = crossed_strips(("SrW",), ("VM",), strip_px=4, gap_px=2, margin_px=2)
    cube, _ = run(simulate_mockup(layout, seed=2, live_time_s=1.0))
    path = tmp_path / "strontium.h5"
    write_cube(path, cube)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    widget = make_widget(viewer, qtbot)  # the shipped model
    run_widget(qtbot, widget, timeout=180_000)

    foreign_only = (layout.top_index == 0) & (layout.bottom_index < 0)
    score = viewer.layers["Unexplained signal"].data
    assert np.all(score[foreign_only] >= 0.5)
    bare = (layout.top_index < 0) & (layout.bottom_index < 0)
    assert np.all(score[bare] < 0.5)
    assert "Unexplained Sr" in viewer.layers
    called = np.stack([la.data for la in pigment_layers(viewer) if la.metadata["xrf_layer"] == "any"], -1)
    assert np.all(called[foreign_only] < 0.5)
    assert "Unexplained signal on" in widget.status.value and "Sr" in widget.status.value
    assert not viewer.layers["Unexplained signal"].visible
    widget.show_unexplained.value = True
    assert viewer.layers["Unexplained signal"].visible

    # Cursor readout over a strontium-white-only pixel, then over vermilion.
    layer = viewer.layers["Unexplained signal"]
    row, column = np.argwhere(foreign_only)[0]
    viewer.cursor.position = tuple(layer.data_to_world((row, column)))
    widget._on_mouse_move(viewer, None)
    assert viewer.text_overlay.visible
    assert "no pigment called | unexplained: Sr" in viewer.text_overlay.text
    row, column = np.argwhere((layout.bottom_index == 0) & (layout.top_index < 0))[0]
    viewer.cursor.position = tuple(layer.data_to_world((row, column)))
    widget._on_mouse_move(viewer, None)
    assert viewer.text_overlay.text.startswith("Pigments: Vermilion")
