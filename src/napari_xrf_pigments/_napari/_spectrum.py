"""Spectrum viewer dock widget: cursor spectrum, region spectrum, line markers, peak naming."""

from __future__ import annotations

import re
import weakref

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from napari.layers import Labels, Shapes
from napari.qt.threading import thread_worker
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..errors import XRFPigmentsError
from ..lines import element_lines, nearest_lines, peak_channel
from ..regions import pixel_spectrum, region_bytes, region_spectrum, region_spectrum_job
from ._jobs import GUI_THREAD_GC
from ._layers import cube_layers, cube_of, pixel_at, x_axis
from ._plots import theme_axes

NO_REGION = "(none)"
# The cursor spectrum is redrawn at most this often (ms): mouse moves arrive far faster.
CURSOR_INTERVAL_MS = 40
# Region edits are collected for this long (ms) before the region spectrum is recomputed.
REGION_DEBOUNCE_MS = 250
# Regions whose bounding box holds more counts than this are reduced in a worker thread.
SYNC_REGION_BYTES = 16 * 2**20
# Line groups lighter than this (fraction of the family) get no marker.
_MIN_GROUP_RATE = 0.03
_COLORS = ("#4cc9f0", "#f72585", "#b5e48c", "#ffb703", "#c77dff", "#ff7b00", "#80ed99", "#ef476f")


def _group(name: str) -> str | None:
    """Siegbahn group of a line name: "Ka1" -> "Ka", "Lb15" -> "Lb", "Mb" -> "Mb"."""
    m = re.match(r"^([KLM][a-z])", name)
    return m.group(1) if m else None


def marker_groups(
    symbol, families=("K", "L", "M"), energy_range=None
) -> list[tuple[str, float, float]]:
    """(label, keV, summed rate) of each line group of an element, e.g. ("Fe Ka", 6.40, 0.88).

    The marker sits at the rate-weighted mean energy of the group's lines, where an
    unresolved peak appears.
    """
    groups: dict[str, list] = {}
    for line in element_lines(symbol, families, min_rate=0.0):
        group = _group(line.name)
        if group:
            groups.setdefault(group, []).append(line)
    markers = []
    for group, lines in groups.items():
        rate = sum(ln.rate for ln in lines)
        if rate < _MIN_GROUP_RATE:
            continue
        energy = sum(ln.energy * ln.rate for ln in lines) / rate
        if energy_range and not (energy_range[0] <= energy <= energy_range[1]):
            continue
        markers.append((f"{lines[0].element} {group}", float(energy), float(rate)))
    return sorted(markers, key=lambda m: m[1])


class SpectrumViewer(QWidget):
    """Spectra of the chosen cube layer: under the cursor and over a region.

    - the spectrum of the pixel under the mouse (any layer may be on top);
    - the mean or sum spectrum inside a Shapes layer (all its shapes, mapped through world
      coordinates) or a Labels layer on the cube's pixel grid (its selected label), recomputed
      when the region changes;
    - linear or log y; x in keV (channels when uncalibrated); the current energy slice;
    - K/L/M markers for the elements typed in (PyMca line energies);
    - clicking a peak names the nearest lines (and gives its channel for calibration).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.sync_region_bytes = SYNC_REGION_BYTES

        # What is plotted (tests and other widgets read these).
        self.cursor_pixel: tuple[int, int] | None = None
        self.cursor_spectrum: np.ndarray | None = None
        self.region_result = None  # regions.RegionSpectrum
        self.markers: list[tuple[str, float, float]] = []
        self.last_peak: dict | None = None
        self.region_worker = None

        self._pending_position = None
        self._region_pending = False
        self._region_source = None
        self._cube_source = None

        self._build_ui()
        self._connect_viewer()
        self.reset_choices()

    # ------------------------------------------------------------------ UI

    def _build_ui(self):
        self.cube_combo = QComboBox()
        self.region_combo = QComboBox()
        self.region_combo.setToolTip("Shapes layer (all shapes) or Labels layer (selected label)")
        self.reduce_combo = QComboBox()
        self.reduce_combo.addItems(["mean", "sum"])
        self.log_check = QCheckBox("log y")
        self.elements_edit = QLineEdit()
        self.elements_edit.setPlaceholderText("elements, e.g. Ca Fe Cu Hg Pb")
        self.family_checks = {fam: QCheckBox(fam) for fam in ("K", "L", "M")}
        for check in self.family_checks.values():
            check.setChecked(True)
        self.info = QLabel("Move the mouse over the image; click a peak to name it.")
        self.info.setWordWrap(True)
        self.info.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)

        self.figure = Figure(figsize=(5, 3.2), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.toolbar = NavigationToolbar2QT(self.canvas, self)
        self.ax = self.figure.add_subplot()
        self._style_axes()
        self.cursor_line = self.ax.plot([], [], lw=1.0, color="#e0e0e0", label="cursor")[0]
        self.region_line = self.ax.plot([], [], lw=1.4, color="#ffb703", label="region")[0]
        self.slice_line = self.ax.axvline(0, color="#7f8c8d", lw=0.8, ls="--", visible=False)
        self._marker_artists = []
        self._peak_artists = []

        row1 = QHBoxLayout()
        row1.addWidget(QLabel("cube"))
        row1.addWidget(self.cube_combo, 1)
        row1.addWidget(self.log_check)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("region"))
        row2.addWidget(self.region_combo, 1)
        row2.addWidget(self.reduce_combo)
        row3 = QHBoxLayout()
        row3.addWidget(QLabel("lines"))
        row3.addWidget(self.elements_edit, 1)
        for check in self.family_checks.values():
            row3.addWidget(check)
        layout = QVBoxLayout(self)
        for row in (row1, row2, row3):
            layout.addLayout(row)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.info)

        self._cursor_timer = QTimer(self)
        self._cursor_timer.setSingleShot(True)
        self._cursor_timer.setInterval(CURSOR_INTERVAL_MS)
        self._cursor_timer.timeout.connect(self._flush_cursor)
        self._region_timer = QTimer(self)
        self._region_timer.setSingleShot(True)
        self._region_timer.setInterval(REGION_DEBOUNCE_MS)
        self._region_timer.timeout.connect(self.update_region)

        self.cube_combo.currentIndexChanged.connect(self._on_cube_changed)
        self.region_combo.currentIndexChanged.connect(self._on_region_layer_changed)
        self.reduce_combo.currentIndexChanged.connect(self._schedule_region)
        self.log_check.toggled.connect(self._apply_scale)
        self.elements_edit.editingFinished.connect(self.redraw)
        for check in self.family_checks.values():
            check.toggled.connect(self.redraw)
        self.canvas.mpl_connect("button_press_event", self._on_click)

    def _style_axes(self):
        self._foreground = theme_axes(self.figure, self.ax, self.viewer)
        self.ax.set_ylabel("counts", fontsize=9)

    def _connect_viewer(self):
        # The callback holds only a weak reference, so a closed widget does not stay alive
        # through the viewer; it removes itself once the widget is gone.
        ref = weakref.ref(self)
        callbacks = self.viewer.mouse_move_callbacks

        def on_mouse_move(viewer, event):
            widget = ref()
            try:
                if widget is None:
                    raise RuntimeError
                widget._queue_cursor(event.position)
            except RuntimeError:  # widget deleted (Python or Qt side)
                if on_mouse_move in callbacks:
                    callbacks.remove(on_mouse_move)

        self._mouse_callback = on_mouse_move
        callbacks.append(on_mouse_move)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self.viewer.dims.events.current_step.connect(self._update_slice_marker)

    def closeEvent(self, event):
        if self._mouse_callback in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._mouse_callback)
        events = self.viewer.layers.events
        for emitter in (events.inserted, events.removed, events.reordered, events.renamed):
            emitter.disconnect(self.reset_choices)
        self.viewer.dims.events.current_step.disconnect(self._update_slice_marker)
        if self._cube_source is not None:
            self._cube_source.events.metadata.disconnect(self._on_cube_metadata)
        if self._region_source is not None:
            self._watch_region(self._region_source, connect=False)
        if self.region_worker is not None:
            self.region_worker.quit()
        super().closeEvent(event)

    # ------------------------------------------------------------------ layer choices

    def reset_choices(self, event=None):
        """Refill the cube and region lists from the viewer's layers (keeps choices)."""
        cubes = [layer.name for layer in cube_layers(self.viewer)]
        regions = [NO_REGION] + [
            layer.name for layer in self.viewer.layers if isinstance(layer, (Shapes, Labels))
        ]
        for combo, names in ((self.cube_combo, cubes), (self.region_combo, regions)):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._on_cube_changed()
        self._on_region_layer_changed()

    def cube_layer(self):
        """The chosen cube layer, or None."""
        name = self.cube_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def region_layer(self):
        """The chosen Shapes/Labels layer, or None."""
        name = self.region_combo.currentText()
        if name == NO_REGION or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def _on_cube_changed(self, *_):
        layer = self.cube_layer()
        if layer is self._cube_source:
            return
        if self._cube_source is not None:
            self._cube_source.events.metadata.disconnect(self._on_cube_metadata)
        self._cube_source = layer
        if layer is not None:
            # The calibration widget replaces the cube in the metadata.
            layer.events.metadata.connect(self._on_cube_metadata)
        self.cursor_pixel = None
        self.cursor_spectrum = None
        self.region_result = None
        self.redraw()
        self._schedule_region()

    def _on_cube_metadata(self, event=None):
        self.redraw()

    def _on_region_layer_changed(self, *_):
        layer = self.region_layer()
        if layer is self._region_source:
            return
        if self._region_source is not None:
            self._watch_region(self._region_source, connect=False)
        self._region_source = layer
        if layer is not None:
            self._watch_region(layer, connect=True)
        self._schedule_region()

    def _watch_region(self, layer, *, connect):
        names = ("data", "paint", "selected_label") if isinstance(layer, Labels) else ("data",)
        for name in names:
            emitter = getattr(layer.events, name, None)
            if emitter is None:
                continue
            if connect:
                emitter.connect(self._schedule_region)
            else:
                emitter.disconnect(self._schedule_region)

    # ------------------------------------------------------------------ cursor spectrum

    def _queue_cursor(self, position):
        # Keep only the latest position; the timer turns a burst of moves into one redraw.
        self._pending_position = position
        if not self._cursor_timer.isActive():
            self._cursor_timer.start()

    def _flush_cursor(self):
        position, self._pending_position = self._pending_position, None
        if position is None:
            return
        try:
            self.show_spectrum_at(position)
        except (XRFPigmentsError, OSError, ValueError, IndexError) as exc:
            # A damaged or vanished file must not raise on every mouse move.
            self.info.setText(f"Cannot read the spectrum here: {exc}")

    def show_spectrum_at(self, world_position) -> bool:
        """Plot the spectrum of the cube pixel at ``world_position``; False if outside."""
        layer = self.cube_layer()
        pixel = pixel_at(layer, world_position)
        if pixel is None:
            return False
        if pixel == self.cursor_pixel and self.cursor_spectrum is not None:
            return True
        # One spectrum is a small read (channels values), fine on the main thread.
        self.cursor_spectrum = pixel_spectrum(cube_of(layer).counts, *pixel)
        self.cursor_pixel = pixel
        self._update_data_lines()
        return True

    # ------------------------------------------------------------------ region spectrum

    def _schedule_region(self, *_):
        self._region_timer.start()

    def region_mask(self):
        """Boolean (rows, columns) mask of the region over the chosen cube, or None.

        Raises
        ------
        XRFPigmentsError
            If a labels layer does not match the cube's pixel grid.
        """
        cube_layer, region = self.cube_layer(), self.region_layer()
        cube = cube_of(cube_layer)
        if cube is None or region is None:
            return None
        shape2d = cube.shape[:2]
        if isinstance(region, Labels):
            data = region.data
            if tuple(data.shape[-2:]) != shape2d:
                raise XRFPigmentsError(
                    f"labels layer {region.name!r} is {tuple(data.shape[-2:])}, "
                    f"the cube is {shape2d} pixels"
                )
            # A labels layer made over the cube has a channel axis too: any painted slice
            # counts. Compared slice by slice so a big labels volume is not doubled in memory.
            label = region.selected_label
            mask = np.zeros(shape2d, dtype=bool)
            for index in np.ndindex(*data.shape[:-2]):
                mask |= np.asarray(data[index]) == label
            return mask
        if len(region.data) == 0:
            return None
        # Shapes are mapped through world coordinates onto the cube's pixel grid, then
        # rasterised in 2-D (shapes drawn on any energy slice count).
        base = np.asarray(self.viewer.dims.point, dtype=float)
        polygons = []
        for vertices in region.data:
            pixels = []
            for vertex in vertices:
                world = np.asarray(region.data_to_world(vertex), dtype=float)
                point = base.copy()
                point[-world.size :] = world
                pixels.append(cube_layer.world_to_data(point)[-2:])
            polygons.append(np.asarray(pixels))
        flat = Shapes(polygons, shape_type=list(region.shape_type))
        return flat.to_masks(mask_shape=shape2d).any(axis=0)

    def update_region(self):
        """Recompute the region spectrum (in a worker thread when the region is large)."""
        if self.region_worker is not None:
            # One worker at a time: stop the running one, recompute when it has finished.
            self._region_pending = True
            self.region_worker.quit()
            return
        cube = cube_of(self.cube_layer())
        try:
            mask = self.region_mask()
        except XRFPigmentsError as exc:
            self._region_failed(exc)
            return
        if cube is None or mask is None or not mask.any():
            if self.region_result is not None:
                self.region_result = None
                self._update_data_lines()
            return
        reduce = self.reduce_combo.currentText()
        counts = cube.counts
        if region_bytes(counts, mask) <= self.sync_region_bytes:
            try:
                result = region_spectrum(counts, mask, reduce=reduce)
            except XRFPigmentsError as exc:
                self._region_failed(exc)
                return
            self._region_done(result)
            return
        worker = thread_worker(region_spectrum_job, start_thread=False)(counts, mask, reduce=reduce)
        worker.yielded.connect(self._region_progress)
        worker.returned.connect(self._region_done)
        worker.errored.connect(self._region_failed)
        worker.finished.connect(self._region_finished)
        self.region_worker = worker
        GUI_THREAD_GC.acquire()
        worker.start()

    def _region_progress(self, step):
        if step.total:
            self.info.setText(f"Region: {step.message} {100 * step.done // step.total}%")

    def _region_done(self, result):
        self.region_result = result
        self.info.setText(f"Region: {result.reduce} of {result.n_pixels} pixels")
        self._update_data_lines()

    def _region_failed(self, exc):
        self.region_result = None
        self.info.setText(f"Region spectrum failed: {exc}")
        self._update_data_lines()

    def _region_finished(self):
        GUI_THREAD_GC.release()
        self.region_worker = None
        if self._region_pending:
            self._region_pending = False
            self._schedule_region()

    # ------------------------------------------------------------------ drawing

    def redraw(self, *_):
        """Redraw everything (axis units, markers, spectra), e.g. after a calibration."""
        cube = cube_of(self.cube_layer())
        for artist in self._marker_artists + self._peak_artists:
            artist.remove()
        self._marker_artists, self._peak_artists = [], []
        self.markers = []
        if cube is None:
            self.ax.set_xlabel("")
            self._update_data_lines()
            return
        x, label = x_axis(cube)
        self.ax.set_xlabel(label, fontsize=9)
        if cube.calibrated:
            self._draw_markers(cube)
        elif self.elements_edit.text().strip():
            self.info.setText(
                "Line markers need an energy calibration (Energy calibration widget)."
            )
        self._update_data_lines()
        self._update_slice_marker()

    def _elements(self):
        text = self.elements_edit.text().replace(",", " ")
        return [word for word in text.split() if word]

    def _draw_markers(self, cube):
        families = [fam for fam, check in self.family_checks.items() if check.isChecked()]
        first, last = cube.energy.range_keV
        transform = blended_transform_factory(self.ax.transData, self.ax.transAxes)
        unknown = []
        for i, symbol in enumerate(self._elements()):
            try:
                groups = marker_groups(symbol, families, (first, last))
            except ValueError:
                unknown.append(symbol)
                continue
            color = _COLORS[i % len(_COLORS)]
            for label, energy, rate in groups:
                height = 0.25 + 0.6 * min(1.0, rate)
                self._marker_artists.append(
                    self.ax.vlines(
                        energy, 0, height, transform=transform, color=color, lw=1.0, alpha=0.9
                    )
                )
                self._marker_artists.append(
                    self.ax.text(
                        energy, height + 0.01, label, transform=transform, color=color,
                        fontsize=7, rotation=90, ha="center", va="bottom",
                    )
                )
                self.markers.append((label, energy, rate))
        if unknown:
            self.info.setText(f"Unknown element(s): {', '.join(unknown)}")

    def _update_data_lines(self):
        cube = cube_of(self.cube_layer())
        x = x_axis(cube)[0] if cube is not None else None
        region = self.region_result
        for line, y, label in (
            (self.cursor_line, self.cursor_spectrum, f"pixel (row, col) {self.cursor_pixel}"),
            (
                self.region_line,
                None if region is None else region.spectrum,
                None if region is None else f"region {region.reduce} ({region.n_pixels} px)",
            ),
        ):
            if y is None or x is None or y.size != x.size:
                line.set_data([], [])
            else:
                line.set_data(x, y)
                line.set_label(label)
        handles = [ln for ln in (self.cursor_line, self.region_line) if len(ln.get_xdata())]
        legend = self.ax.get_legend()
        if legend is not None:
            legend.remove()
        if handles:
            legend = self.ax.legend(handles=handles, fontsize=7, loc="upper right", frameon=False)
            for text in legend.get_texts():
                text.set_color(self._foreground)
        self._apply_scale()

    def _apply_scale(self, *_):
        self.ax.set_yscale("log" if self.log_check.isChecked() else "linear")
        self.ax.relim()
        self.ax.autoscale_view()
        if self.log_check.isChecked():
            ys = [np.asarray(ln.get_ydata(), float) for ln in (self.cursor_line, self.region_line)]
            ys = np.concatenate([y for y in ys if y.size] or [np.ones(1)])
            positive = ys[ys > 0]
            if positive.size:
                # Channels below the detector's threshold hold ~0 counts: do not let them
                # stretch the axis over decades of nothing.
                self.ax.set_ylim(max(np.percentile(positive, 2) * 0.5, 0.1), positive.max() * 2)
        self.canvas.draw_idle()

    def _update_slice_marker(self, *_):
        layer = self.cube_layer()
        cube = cube_of(layer)
        if cube is None:
            self.slice_line.set_visible(False)
            return
        channel = int(round(layer.world_to_data(self.viewer.dims.point)[0]))
        if not 0 <= channel < cube.n_channels:
            self.slice_line.set_visible(False)
        else:
            x = x_axis(cube)[0]
            self.slice_line.set_xdata([x[channel], x[channel]])
            self.slice_line.set_visible(True)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ naming peaks

    def _on_click(self, event):
        if event.inaxes is not self.ax or event.button != 1 or event.xdata is None:
            return
        if self.toolbar.mode:  # zooming or panning, not pointing at a peak
            return
        self.name_peak(event.xdata)

    def name_peak(self, x: float) -> dict | None:
        """Find the peak near ``x`` (plot units) in the shown spectrum and name its lines.

        Returns
        -------
        dict or None
            ``channel`` (fractional), ``energy`` (keV or None), ``lines`` (list of
            (Line, delta_keV)); also shown in the widget and stored as ``last_peak``.
        """
        cube = cube_of(self.cube_layer())
        spectrum = (
            self.region_result.spectrum if self.region_result is not None else self.cursor_spectrum
        )
        if cube is None or spectrum is None:
            return None
        xs = x_axis(cube)[0]
        near = int(np.argmin(np.abs(xs - x)))
        channel = peak_channel(spectrum, near)
        for artist in self._peak_artists:
            artist.remove()
        self._peak_artists = []
        if not cube.calibrated:
            self.last_peak = {"channel": channel, "energy": None, "lines": []}
            self.info.setText(
                f"Peak at channel {channel:.1f}. The cube is not calibrated: enter this channel "
                "and its line (e.g. Ca Ka) in the Energy calibration widget."
            )
            self._mark_peak(channel, f"ch {channel:.1f}")
            return self.last_peak
        zero, gain, quad = cube.energy.as_calibration()
        energy = zero + gain * channel + quad * channel**2
        chosen = self._elements()
        lines = nearest_lines(energy)
        if chosen:
            try:
                # The user's elements first: they are what is expected in the painting.
                preferred = nearest_lines(energy, elements=chosen)
            except ValueError:
                preferred = []
            lines = preferred + [hit for hit in lines if hit not in preferred]
        lines = lines[:6]
        self.last_peak = {"channel": channel, "energy": energy, "lines": lines}
        names = ", ".join(f"{ln.label} {ln.energy:.3f} ({d:+.3f})" for ln, d in lines)
        names = names or "no line within 0.15 keV"
        self.info.setText(f"Peak at {energy:.3f} keV (channel {channel:.1f}): {names}")
        self._mark_peak(energy, lines[0][0].label if lines else f"{energy:.2f} keV")
        return self.last_peak

    def _mark_peak(self, x, label):
        transform = blended_transform_factory(self.ax.transData, self.ax.transAxes)
        self._peak_artists.append(self.ax.axvline(x, color="#ff4d4d", lw=0.8))
        self._peak_artists.append(
            self.ax.text(x, 0.97, f" {label}", transform=transform, color="#ff4d4d", fontsize=8,
                         ha="left", va="top")
        )
        self.canvas.draw_idle()
