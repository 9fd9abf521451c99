"""Element maps widget end to end on a small simulated mock-up (PyMca fit in a thread worker)."""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_xrf_pigments._napari._fit_widget import _GROUP_ROLE, CONFIG, ElementMapsWidget
from napari_xrf_pigments._napari._maps import ELEMENT_ROLE
from napari_xrf_pigments._napari._reader import cube_layer_data

pytestmark = pytest.mark.gui

PIXEL = 0.5  # mm


@functools.lru_cache(maxsize=1)
def mockup():
    """(cube, truth): 2 top x 2 bottom strips, 9 x 9 pixels; vermilion on top in rows 1-3."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    layout = crossed_strips(("Top 4", "Top 1"), ("Bottom 2A", "Bottom 3A"), strip_px=3, gap_px=1, margin_px=1)
    cube, truth = run(simulate_mockup(layout, seed=3, live_time_s=1.0, pixel_size_mm=PIXEL))
    return cube, truth


def add_cube(viewer, cube):
    for data, kwargs, _ in cube_layer_data(cube):
        viewer.add_image(data, **kwargs)
    return viewer.layers[cube.name]


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
def fit_setup(make_napari_viewer, qtbot):
    """(viewer, widget, cube layer, truth) with the widget docked and its suggestions done."""
    viewer = make_napari_viewer()
    cube, truth = mockup()
    layer = add_cube(viewer, cube)
    widget = ElementMapsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Element maps")
    wait_idle(qtbot, widget)
    return viewer, widget, layer, truth


def wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.runner.running and not widget.suggester.running, timeout=timeout)


def run_fit(qtbot, widget, timeout=60_000):
    worker = widget.run()
    assert worker is not None
    # Not waitSignal(worker.finished): a job failing at once may finish before it connects.
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=timeout)
    return worker


def fit_processes():
    # The pigment widget's long-lived TensorFlow process is not the fit's business.
    return [p for p in multiprocessing.active_children() if p.name != "xrf-pigments-server"]


def element_layers(viewer):
    return [la for la in viewer.layers if la.metadata.get("xrf_role") == ELEMENT_ROLE]


def test_fit_suggested_elements_end_to_end_and_rerun_updates(fit_setup, qtbot):
    viewer, widget, layer, truth = fit_setup
    # Suggestions from the sum spectrum, computed in the background, are ticked.
    assert {"Hg L", "Pb L"} <= set(widget.elements())
    assert widget.tube.value == "Rh" and widget.kv.value == 40.0  # from the cube's instrument
    # Fit three of the suggestions (each group costs PyMca time; the test stays quick).
    for i in range(widget.element_list.count()):
        item = widget.element_list.item(i)
        if item.data(_GROUP_ROLE) not in ("Hg L", "Pb L", "Zn K"):
            item.setCheckState(Qt.CheckState.Unchecked)
    assert widget.elements() == [g for g in widget.elements() if g in ("Hg L", "Pb L", "Zn K")]
    run_fit(qtbot, widget)
    names = [la.name for la in element_layers(viewer)]
    assert sorted(names) == ["Hg L", "Pb L", "Zn K"] == sorted(widget.last_result.groups)
    hg_layer = viewer.layers["Hg L"]
    hg = hg_layer.data
    # High where vermilion was simulated (under a thick top strip it is still well above zero).
    vermilion = truth["present"]["VM"]
    assert hg[vermilion].mean() > 20 * hg[~vermilion].mean()
    assert hg[truth["top"]["VM"]].min() > 5 * np.median(hg[~vermilion])
    np.testing.assert_array_equal(hg, widget.last_result.maps["Hg L"])
    assert hg_layer.blending == "additive"
    assert hg_layer.contrast_limits == pytest.approx([0.0, np.percentile(hg, 99)])
    assert tuple(hg_layer.scale) == (PIXEL, PIXEL) and tuple(layer.scale[-2:]) == (PIXEL, PIXEL)
    assert "element maps" in widget.status.value

    # A second run updates the same layers instead of adding copies.
    n_layers = len(viewer.layers)
    hg_layer.colormap = "magma"  # user choices survive a re-run
    run_fit(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers["Hg L"] is hg_layer
    assert hg_layer.colormap.name == "magma"


def test_typed_elements_and_run_twice(fit_setup, qtbot, notes):
    viewer, widget, _, truth = fit_setup
    widget.element_list.clear()
    widget.add_elements.value = "Hg, Zn K"
    widget._add_typed_elements()
    assert widget.elements() == ["Hg", "Zn K"]
    widget.add_elements.value = "Xx"
    widget._add_typed_elements()  # unknown element: a message, nothing added
    assert widget.elements() == ["Hg", "Zn K"]
    assert any("unknown element" in message for _, message in notes)

    assert widget.run() is not None
    assert widget.run_button.enabled is False and widget.cancel_button.enabled is True
    assert widget.run() is None  # the second press is refused while the first runs
    assert any("already running" in m or "is running" in m for _, m in notes)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert {la.name for la in element_layers(viewer)} == {"Hg L", "Zn K"}
    assert widget.run_button.enabled is True and widget.cancel_button.enabled is False


def test_a_second_cube_keeps_its_own_maps_and_few_are_shown(fit_setup, qtbot, monkeypatch):
    """Maps belong to the cube they were fitted on; only the strongest new ones are shown."""
    from napari_xrf_pigments._napari import _fit_widget

    viewer, widget, first, _ = fit_setup
    monkeypatch.setattr(_fit_widget, "SHOWN_ELEMENT_MAPS", 1)
    widget.element_list.clear()
    widget.add_elements.value = "Hg L, Zn K"
    widget._add_typed_elements()
    run_fit(qtbot, widget)
    hg = viewer.layers["Hg L"]
    # Vermilion's Hg outshines the zinc white of two strips: only Hg is shown.
    assert {la.name for la in element_layers(viewer) if la.visible} == {"Hg L"}

    cube, _ = mockup()
    second = add_cube(viewer, dataclasses.replace(cube, source="/data/second scan.h5"))
    widget.reset_choices()
    widget.cube_combo.value = second.name
    wait_idle(qtbot, widget)  # the new cube's element suggestions
    widget.element_list.clear()
    widget.add_elements.value = "Hg L, Zn K"
    widget._add_typed_elements()
    run_fit(qtbot, widget)
    names = {la.name for la in element_layers(viewer)}
    assert names == {"Hg L", "Zn K", "Hg L [second scan]", "Zn K [second scan]"}
    assert viewer.layers["Hg L"] is hg and hg.metadata["xrf_source"] == first.name
    assert viewer.layers["Hg L [second scan]"].metadata["xrf_source"] == "second scan"
    # A re-run on the first cube updates its own layers.
    widget.cube_combo.value = first.name
    wait_idle(qtbot, widget)
    widget.element_list.clear()
    widget.add_elements.value = "Hg L, Zn K"
    widget._add_typed_elements()
    run_fit(qtbot, widget)
    assert {la.name for la in element_layers(viewer)} == names and viewer.layers["Hg L"] is hg


def test_widget_follows_the_calibration_and_the_cube_s_tube(fit_setup, qtbot):
    from napari_xrf_pigments._napari._fit_widget import NO_TUBE
    from napari_xrf_pigments._napari._layers import set_cube
    from napari_xrf_pigments.cube import EnergyAxis

    viewer, widget, first, _ = fit_setup
    assert widget.tube.value == "Rh" and widget.kv.value == 40.0
    cube, _ = mockup()
    bare = dataclasses.replace(cube, source="/data/bare.h5", metadata={},
                               energy=EnergyAxis.uncalibrated(cube.n_channels))
    layer = add_cube(viewer, bare)
    widget.reset_choices()
    widget.cube_combo.value = layer.name
    # Neither the first cube's tube nor its calibration carry over.
    assert widget.tube.value == NO_TUBE and widget.kv.value == 0.0
    assert "not calibrated" in widget.status.value
    # Calibrated in the Energy calibration widget (which replaces the layer's cube): followed.
    set_cube(layer, bare.with_calibration(cube.energy.zero, cube.energy.gain))
    assert "not calibrated" not in widget.status.value
    wait_idle(qtbot, widget)
    assert {"Hg L", "Pb L"} <= set(widget.elements())


def test_cancel_stops_the_fit_and_its_worker_processes(fit_setup, qtbot):
    viewer, widget, _, _ = fit_setup
    widget.fit_options = {"workers": 2, "rows_per_chunk": 1}

    def cancel_once_fitting(step):
        if step.message == "fitting spectra":
            widget.cancel()

    worker = widget.run()
    worker.yielded.connect(cancel_once_fitting)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert element_layers(viewer) == []
    assert not widget.runner.running and widget.run_button.enabled
    assert "stopped" in widget.status.value
    # The job was closed: its process pool and threads are gone.
    assert fit_processes() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("xrf-fit")]


def test_bad_inputs_give_messages_not_exceptions(fit_setup, qtbot, notes, tmp_path):
    from napari_xrf_pigments.fitting import build_config, config_text

    viewer, widget, layer, _ = fit_setup
    # No elements ticked.
    widget.element_list.clear()
    assert widget.run() is None
    assert "no elements" in notes[-1][1]

    # A .cfg: none chosen, one that does not parse, one without elements, a good one.
    widget.source.value = CONFIG
    assert not widget.element_list.isVisible() or not widget.native.isVisible()
    assert widget.run() is None
    assert "choose a PyMca" in notes[-1][1]
    garbage = tmp_path / "garbage.cfg"
    garbage.write_bytes(b"\x00\xff this is not a configuration [[[")
    empty = tmp_path / "empty.cfg"
    empty.write_text("[fit]\nxmin = 100\n[peaks]\n")
    cube = layer.metadata["xrf_cube"]
    good = tmp_path / "good.cfg"
    good.write_text(config_text(build_config(["Hg", "Pb"], cube.energy).config))
    for path, expected in ((garbage, "not a PyMca fit configuration"), (empty, "names no elements")):
        widget.config_file.value = path
        run_fit(qtbot, widget)
        assert notes[-1][0] == "error" and expected in notes[-1][1], notes[-1]
        assert element_layers(viewer) == []
    widget.config_file.value = good
    run_fit(qtbot, widget)
    assert {la.name for la in element_layers(viewer)} == {"Hg L", "Pb L"}

    # An uncalibrated cube, fitted by elements or by a .cfg with the cube's calibration.
    raw = dataclasses.replace(
        cube, energy=type(cube.energy).uncalibrated(cube.n_channels), source=str(tmp_path / "raw.h5")
    )
    raw_layer = add_cube(viewer, raw)
    widget.cube_combo.value = raw_layer.name
    assert "not calibrated" in widget.status.value
    assert widget.run() is None
    assert "not energy-calibrated" in notes[-1][1]
    widget.source.value = "elements"
    widget.set_elements(["Hg L"])
    assert widget.run() is None
    assert "not energy-calibrated" in notes[-1][1]
    # ... unless the .cfg's own calibration is used.
    widget.source.value = CONFIG
    widget.config_calibration.value = True
    run_fit(qtbot, widget)
    assert notes[-1][0] == "info"


def test_closing_the_viewer_during_a_fit_stops_it(make_napari_viewer, qtbot):
    from qtpy.QtCore import QThreadPool
    from superqt.utils._qthreading import WorkerBase

    viewer = make_napari_viewer()
    cube, _ = mockup()
    add_cube(viewer, cube)
    widget = ElementMapsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Element maps")
    wait_idle(qtbot, widget)
    widget.fit_options = {"workers": 2, "rows_per_chunk": 1}
    worker = widget.run()
    started = []
    worker.yielded.connect(started.append)
    qtbot.waitUntil(lambda: bool(started), timeout=30_000)
    viewer.close()
    qtbot.waitUntil(lambda: worker not in WorkerBase._worker_set, timeout=30_000)
    assert widget.runner.cancel_reason == "the viewer was closed"
    assert QThreadPool.globalInstance().waitForDone(5000)
    assert fit_processes() == []
    assert not [t for t in threading.enumerate() if t.name.startswith("xrf-fit")]
