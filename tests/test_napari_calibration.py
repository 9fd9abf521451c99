"""Energy calibration widget: "Find calibration automatically" on a simulated mock-up, driven
through a napari viewer (the search runs in a thread worker)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from napari_xrf_pigments._napari._calibration import _MANUAL, CalibrationWidget
from napari_xrf_pigments._napari._reader import cube_layer_data
from napari_xrf_pigments.cube import EnergyAxis, XRFCube

pytestmark = pytest.mark.gui

OFFSET_KEV, GAIN_ERROR = 0.08, 0.004  # the misstated calibration reads ~80-120 eV high


@functools.lru_cache(maxsize=1)
def mockup():
    """A 10 x 10 simulated mock-up (vermilion over lead white, chalk ground, Rh tube), 1 s."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    layout = crossed_strips(("Top 4",), ("Bottom 2A",), strip_px=4)
    cube, _ = run(simulate_mockup(layout, seed=5, live_time_s=1.0))
    return cube


def add_cube(viewer, cube):
    for data, kwargs, _ in cube_layer_data(cube):
        viewer.add_image(data, **kwargs)
    return viewer.layers[cube.name]


def misstated(cube):
    zero, gain, _ = cube.energy.as_calibration()
    return cube.with_calibration(zero + OFFSET_KEV, gain * (1 + GAIN_ERROR))


def largest_error_keV(energies, truth) -> float:
    inside = (truth >= 3.0) & (truth <= 20.0)
    return float(np.max(np.abs(energies[inside] - truth[inside])))


def find_and_wait(widget, qtbot):
    assert widget.find() is not None
    # Until the result (or the error) has been shown on the main thread: waiting for the
    # worker's finished signal could miss one emitted before the wait began.
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60000)


def test_find_fills_in_the_calibration_and_apply_uses_it(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    truth = mockup().energy.energies()
    layer = add_cube(viewer, misstated(mockup()))
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    widget.tabs.setCurrentIndex(1)  # the two-peaks tab: the result switches to zero/gain

    find_and_wait(widget, qtbot)
    found = widget.found
    assert found is not None
    assert largest_error_keV(found.energies(), truth) < 0.010
    # Shown: the lines used and the residual; and how far the stated calibration was off.
    text = widget.found_label.text()
    assert "Ca Ka" in text and "Pb La" in text and "residual" in text
    assert "stated calibration was off by +" in text  # it read high
    assert widget.tabs.currentIndex() == _MANUAL
    assert widget.zero_spin.value() == pytest.approx(found.zero_keV, abs=1e-6)
    assert widget.gain_spin.value() == pytest.approx(found.gain_keV, abs=1e-7)
    # Not applied until the user says so.
    assert layer.metadata["xrf_cube"].energy.zero == pytest.approx(OFFSET_KEV)

    names = [lyr.name for lyr in viewer.layers]
    assert widget.apply()
    cube = layer.metadata["xrf_cube"]
    assert cube.energy.as_calibration() == pytest.approx(found.calibration)
    assert largest_error_keV(cube.energy.energies(), truth) < 0.010
    assert cube.metadata["auto_calibration"]["lines"]  # how it was found travels with the cube
    assert cube.counts is mockup().counts  # the same counts, only the axis changed
    assert [lyr.name for lyr in viewer.layers] == names  # the same layer, recalibrated


def test_an_uncalibrated_cube_is_searched_from_the_typed_guess(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    cube = mockup()
    raw = XRFCube(cube.counts, EnergyAxis.uncalibrated(cube.n_channels), metadata=cube.metadata,
                  source="raw.h5")
    layer = add_cube(viewer, raw)
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    widget.zero_spin.setValue(0.0)
    widget.gain_spin.setValue(0.0102)  # 10 eV channels, roughly
    find_and_wait(widget, qtbot)
    assert largest_error_keV(widget.found.energies(), cube.energy.energies()) < 0.010
    assert "stated calibration" not in widget.found_label.text()  # there was none
    assert widget.apply()
    assert layer.metadata["xrf_cube"].calibrated


def test_a_cube_without_peaks_gets_a_one_line_reason(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    flat = np.random.default_rng(0).poisson(20.0, (6, 6, 2048)).astype(np.uint16)
    layer = add_cube(viewer, XRFCube.from_array(flat, zero=0.0, gain=0.01, source="flat.h5"))
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    find_and_wait(widget, qtbot)
    assert widget.found is None
    status = widget.status.text()
    assert status.startswith("failed: no clear peak in the sum spectrum") and "\n" not in status
    assert "e06c5a" in widget.status.styleSheet()  # shown as an error
    assert layer.metadata["xrf_cube"].energy.zero == 0.0  # nothing applied
    assert widget.find_button.isEnabled()


def test_typing_other_values_applies_those(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer = add_cube(viewer, misstated(mockup()))
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    find_and_wait(widget, qtbot)
    widget.gain_spin.setValue(0.0101)
    assert widget.apply()
    cube = layer.metadata["xrf_cube"]
    assert cube.energy.gain == pytest.approx(0.0101)
    assert "auto_calibration" not in cube.metadata


def test_a_second_press_while_searching_is_refused(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_cube(viewer, dataclasses.replace(misstated(mockup()), source="again.h5"))
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.find() is not None
    # Nothing has reached the main thread yet: the search counts as running.
    assert not widget.find_button.isEnabled()
    assert widget.find() is None  # refused, the first one goes on
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60000)
    assert widget.find_button.isEnabled() and widget.found is not None


def test_save_writes_the_calibrated_cube_and_never_its_own_file(make_napari_viewer, qtbot, tmp_path):
    from napari_xrf_pigments.io import open_cube, write_cube

    source = write_cube(tmp_path / "scan.h5", misstated(mockup()))
    before = source.read_bytes()
    viewer = make_napari_viewer()
    layer = add_cube(viewer, open_cube(source))
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    widget.zero_spin.setValue(0.0)
    widget.gain_spin.setValue(0.02)
    assert widget.apply()
    assert widget.save(str(source)) is None  # its own file: refused
    assert "never changed" in widget.status.text()
    out = tmp_path / "scan-calibrated.h5"
    assert widget.save(str(out)) is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60000)
    assert "saved to" in widget.status.text()
    saved = open_cube(out)
    assert saved.energy.as_calibration() == pytest.approx((0.0, 0.02, 0.0))
    np.testing.assert_array_equal(np.asarray(saved.counts), np.asarray(layer.metadata["xrf_cube"].counts))
    assert source.read_bytes() == before
