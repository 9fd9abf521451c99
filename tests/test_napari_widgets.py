"""Energy calibration widget and spectrum viewer, driven through a napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments._napari import _reader
from napari_xrf_pigments._napari._calibration import CalibrationWidget
from napari_xrf_pigments._napari._spectrum import SpectrumViewer, marker_groups
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.lines import line_energy

pytestmark = pytest.mark.gui

PLUGIN = "napari-xrf-pigments"
GAIN = 0.02  # keV/ch
N_CH = 800
ROWS, COLS = 12, 16
PIXEL = 0.5  # mm


def synthetic_counts():
    """Ca K peaks on the left half, Fe K peaks on the right half, flat background."""
    energy = GAIN * np.arange(N_CH)

    def peak(kev, height):
        return height * np.exp(-0.5 * ((energy - kev) / 0.07) ** 2)

    ca, fe = peak(3.69, 200) + peak(4.01, 30), peak(6.40, 300) + peak(7.06, 45)
    counts = np.empty((ROWS, COLS, N_CH))
    for r in range(ROWS):
        for c in range(COLS):
            counts[r, c] = 2 + (1 + r / ROWS) * (ca if c < COLS // 2 else fe)
    return np.rint(counts).astype(np.uint16)


@pytest.fixture
def opened(make_napari_viewer, tmp_path, monkeypatch):
    """(viewer, counts, open) where open(calibrated) opens a synthetic NeXus scan."""
    from napari_xrf_pigments.io import write_cube

    monkeypatch.setattr(_reader, "show_warning", lambda message: None)
    viewer = make_napari_viewer()
    counts = synthetic_counts()

    def open_scan(calibrated=True, name="scan"):
        cube = XRFCube.from_array(
            counts, zero=0.0, gain=GAIN if calibrated else None, pixel_size=(PIXEL, PIXEL)
        )
        path = tmp_path / f"{name}.h5"
        write_cube(path, cube)
        viewer.open(str(path), plugin=PLUGIN)
        return viewer.layers[name]

    return viewer, counts, open_scan


def world(row, col, channel=0):
    return (channel, row * PIXEL, col * PIXEL)


def test_energy_slider_label_says_the_energy(opened):
    viewer, _, open_scan = opened
    layer = open_scan()
    viewer.dims.set_current_step(0, 100)  # world coordinate: 100 channels x GAIN keV
    assert viewer.dims.current_step[0] == 100
    assert layer.axis_labels[0] == f"energy {100 * GAIN:.2f} keV"
    viewer.dims.set_current_step(0, 150)
    assert layer.axis_labels[0] == f"energy {150 * GAIN:.2f} keV"


# ---------------------------------------------------------------------- calibration


def test_calibration_zero_gain(opened, qtbot):
    viewer, _, open_scan = opened
    layer = open_scan(calibrated=False, name="raw")
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.layer_combo.currentText() == "raw"
    assert "not calibrated" in widget.current_label.text()
    widget.tabs.setCurrentIndex(0)
    widget.zero_spin.setValue(-0.01)
    widget.gain_spin.setValue(0.0205)
    widget.apply_button.click()
    cube = layer.metadata["xrf_cube"]
    assert cube.calibrated
    assert cube.energy.as_calibration() == pytest.approx((-0.01, 0.0205, 0.0))
    # The energy slider now reads keV: channel 300 sits at 6.14 keV in the viewer.
    assert layer.axis_labels[0] == "energy (keV)" and str(layer.units[0]) == "kiloelectron_volt"
    assert layer.data_to_world((300, 0, 0))[0] == pytest.approx(-0.01 + 0.0205 * 300)
    # Re-running updates the same layer; no new layers appear.
    widget.gain_spin.setValue(0.02)
    assert widget.apply()
    assert layer.metadata["xrf_cube"].energy.gain == pytest.approx(0.02)
    assert [lyr.name for lyr in viewer.layers] == ["raw", "raw total counts"]
    assert layer.metadata["xrf_cube"].counts is cube.counts  # same lazy counts


def test_calibration_from_two_named_peaks(opened, qtbot):
    viewer, _, open_scan = opened
    layer = open_scan(calibrated=False, name="raw")
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    widget.tabs.setCurrentIndex(1)
    widget.peak_channels[0].setValue(184.5)
    widget.peak_lines[0].setText("Ca Ka")
    widget.peak_channels[1].setValue(320.0)
    widget.peak_lines[1].setText("fe ka")
    assert widget.peak_energies[0].text().startswith("= 3.69")
    assert widget.apply()
    zero, gain, _ = layer.metadata["xrf_cube"].energy.as_calibration()
    ca, fe = line_energy("Ca Ka"), line_energy("Fe Ka")
    assert gain == pytest.approx((fe - ca) / (320.0 - 184.5))
    assert zero + gain * 184.5 == pytest.approx(ca)
    assert gain == pytest.approx(GAIN, rel=1e-3)


def test_calibration_errors_are_shown_not_raised(opened, qtbot):
    viewer, _, open_scan = opened
    layer = open_scan(calibrated=False, name="raw")
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    widget.tabs.setCurrentIndex(1)
    widget.peak_channels[0].setValue(300)
    widget.peak_lines[0].setText("Xx Ka")
    widget.peak_channels[1].setValue(200)
    widget.peak_lines[1].setText("Fe Ka")
    assert not widget.apply()
    assert "unknown element" in widget.status.text()
    widget.peak_channels[0].setValue(100)
    widget.peak_lines[0].setText("Cu Ka")  # 8.04 keV below Fe Ka's 6.40 keV: negative gain
    assert not widget.apply()
    assert "increase" in widget.status.text()
    assert not layer.metadata["xrf_cube"].calibrated


def test_calibration_widget_without_cube(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = CalibrationWidget(viewer)
    qtbot.addWidget(widget)
    assert not widget.apply()
    viewer.add_image(np.zeros((4, 4)))  # not an XRF cube: not offered
    assert widget.layer_combo.count() == 0


# ---------------------------------------------------------------------- spectrum viewer


def test_cursor_spectrum(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan()
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    assert widget.cube_combo.currentText() == "scan"
    assert widget.show_spectrum_at(world(3, 12))
    assert widget.cursor_pixel == (3, 12)
    x, y = widget.cursor_line.get_data()
    np.testing.assert_allclose(x, GAIN * np.arange(N_CH))
    np.testing.assert_array_equal(y, counts[3, 12])
    assert widget.ax.get_xlabel() == "Energy (keV)"
    assert not widget.show_spectrum_at(world(-3, 2))  # outside the cube: keep the last one
    assert widget.cursor_pixel == (3, 12)


def test_cursor_follows_mouse_moves_throttled(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan()
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    callback = widget._mouse_callback
    assert callback in viewer.mouse_move_callbacks

    class Event:
        def __init__(self, position):
            self.position = position

    shown = []
    original = widget.show_spectrum_at
    widget.show_spectrum_at = lambda pos: shown.append(pos) or original(pos)
    for col in range(10):  # a burst of moves...
        callback(viewer, Event(world(5, col)))
    qtbot.waitUntil(lambda: widget.cursor_pixel == (5, 9), timeout=2000)
    assert len(shown) == 1  # ...is drawn once, at the latest position
    np.testing.assert_array_equal(widget.cursor_line.get_ydata(), counts[5, 9])
    widget.close()
    assert callback not in viewer.mouse_move_callbacks


def test_region_mean_from_shapes(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan()
    # Rectangle over rows 2..5, columns 1..4 (pixel centres), drawn in world units (mm).
    rect = np.array([[1.6, 0.6], [1.6, 4.4], [5.4, 4.4], [5.4, 0.6]]) * PIXEL
    viewer.add_shapes([rect], shape_type="rectangle", name="region")
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.region_combo.setCurrentText("region")
    qtbot.waitUntil(lambda: widget.region_result is not None, timeout=3000)
    expected = counts[2:6, 1:5].reshape(-1, N_CH).mean(axis=0)
    assert widget.region_result.n_pixels == 16
    np.testing.assert_allclose(widget.region_line.get_ydata(), expected)
    widget.reduce_combo.setCurrentText("sum")
    qtbot.waitUntil(lambda: widget.region_result.reduce == "sum", timeout=3000)
    np.testing.assert_allclose(widget.region_line.get_ydata(), expected * 16)


def test_region_from_labels_in_a_worker(opened, qtbot, monkeypatch):
    from napari_xrf_pigments._napari import _spectrum

    workers = []
    real_thread_worker = _spectrum.thread_worker

    def recording_thread_worker(function, **kwargs):
        def create(*args, **kw):
            workers.append(real_thread_worker(function, **kwargs)(*args, **kw))
            return workers[-1]

        return create

    viewer, counts, open_scan = opened
    open_scan()
    labels = np.zeros((ROWS, COLS), dtype=np.uint8)
    labels[6:9, 10:14] = 1
    labels[0, 0] = 2
    viewer.add_labels(labels, name="painted", scale=(PIXEL, PIXEL))
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.sync_region_bytes = 0  # force the thread_worker path
    monkeypatch.setattr(_spectrum, "thread_worker", recording_thread_worker)
    widget.region_combo.setCurrentText("painted")
    qtbot.waitUntil(lambda: widget.region_result is not None, timeout=5000)
    assert len(workers) == 1
    qtbot.waitUntil(lambda: widget.region_worker is None, timeout=5000)
    assert widget.region_result.n_pixels == 12
    np.testing.assert_allclose(
        widget.region_line.get_ydata(), counts[6:9, 10:14].reshape(-1, N_CH).mean(axis=0)
    )


def test_markers_log_scale_and_peak_naming(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan()
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.elements_edit.setText("Fe, Ca Pb")
    widget.redraw()
    labels = {label for label, _, _ in widget.markers}
    assert {"Fe Ka", "Fe Kb", "Ca Ka", "Pb La", "Pb Lb", "Pb Ma"} <= labels
    assert all(0 <= energy <= GAIN * (N_CH - 1) for _, energy, _ in widget.markers)
    widget.log_check.setChecked(True)
    assert widget.ax.get_yscale() == "log"
    widget.show_spectrum_at(world(4, 12))
    peak = widget.name_peak(6.3)  # a click near the Fe Ka peak
    assert peak["energy"] == pytest.approx(6.40, abs=0.01)
    assert peak["lines"][0][0].element == "Fe"
    assert "Fe Ka1" in widget.info.text()


def test_click_on_plot_names_peak(opened, qtbot):
    from matplotlib.backend_bases import MouseEvent

    viewer, counts, open_scan = opened
    open_scan()
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.show_spectrum_at(world(2, 3))
    widget.canvas.draw()
    x, y = widget.ax.transData.transform((3.7, 100))
    MouseEvent("button_press_event", widget.canvas, x, y, button=1)._process()
    assert widget.last_peak["lines"][0][0].label.startswith("Ca Ka")


def test_uncalibrated_spectrum_in_channels_then_calibrated(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan(calibrated=False, name="raw")
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.show_spectrum_at(world(1, 1))
    assert "Channel" in widget.ax.get_xlabel()
    np.testing.assert_allclose(widget.cursor_line.get_xdata(), np.arange(N_CH))
    peak = widget.name_peak(180)
    assert peak["energy"] is None and peak["channel"] == pytest.approx(3.69 / GAIN, abs=0.5)
    assert "not calibrated" in widget.info.text()
    # The calibration widget replaces the cube; the spectrum viewer follows.
    calibration = CalibrationWidget(viewer)
    qtbot.addWidget(calibration)
    calibration.gain_spin.setValue(GAIN)
    calibration.zero_spin.setValue(0.0)
    assert calibration.apply()
    assert widget.ax.get_xlabel() == "Energy (keV)"
    np.testing.assert_allclose(widget.cursor_line.get_xdata(), GAIN * np.arange(N_CH))


def test_slice_marker_follows_energy_slider(opened, qtbot):
    viewer, _, open_scan = opened
    open_scan()
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    viewer.dims.set_current_step(0, 320)
    assert widget.slice_line.get_visible()
    assert widget.slice_line.get_xdata()[0] == pytest.approx(320 * GAIN)


def test_marker_groups_sit_on_weighted_means():
    groups = {label: energy for label, energy, _ in marker_groups("Fe", ["K"])}
    assert groups["Fe Ka"] == pytest.approx(line_energy("Fe Ka"))
    assert set(groups) == {"Fe Ka", "Fe Kb"}
    assert marker_groups("Pb", ["K"], (0.0, 40.0)) == []  # Pb K lines are above 70 keV


def test_widgets_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    for name in ("Spectrum viewer", "Energy calibration"):
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        assert widget is not None


def test_region_from_3d_labels_over_the_cube(opened, qtbot):
    viewer, counts, open_scan = opened
    open_scan()
    labels = np.zeros((N_CH, ROWS, COLS), dtype=np.uint8)  # as napari's "new labels" makes it
    labels[320, 1:3, 2:4] = 1  # painted on the Fe Ka slice
    labels[10, 5, 5] = 1  # and one pixel on another slice
    viewer.add_labels(labels, name="painted", scale=(1, PIXEL, PIXEL))
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.region_combo.setCurrentText("painted")
    qtbot.waitUntil(lambda: widget.region_result is not None, timeout=3000)
    expected = np.concatenate([counts[1:3, 2:4].reshape(-1, N_CH), counts[5:6, 5]]).mean(axis=0)
    assert widget.region_result.n_pixels == 5
    np.testing.assert_allclose(widget.region_line.get_ydata(), expected)


def test_labels_of_another_size_are_reported(opened, qtbot):
    viewer, _, open_scan = opened
    open_scan()
    viewer.add_labels(np.ones((5, 5), dtype=np.uint8), name="small")
    widget = SpectrumViewer(viewer)
    qtbot.addWidget(widget)
    widget.region_combo.setCurrentText("small")
    qtbot.waitUntil(lambda: "failed" in widget.info.text(), timeout=3000)
    assert widget.region_result is None
