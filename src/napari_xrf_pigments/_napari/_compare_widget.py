"""Compare dock widget: a pigment map against its element maps (the paper's Fig. 5, interactive)."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg, NavigationToolbar2QT
from matplotlib.figure import Figure
from napari.layers import Image
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog

from .. import compare
from ._layers import ROLE_KEY
from ._maps import ELEMENT_ROLE, PIGMENT_ROLE, geometry, role_of, set_visible
from ._plots import theme_axes

NONE = "(none)"
#: Roles of the layers this widget owns (found again by role, whatever their name).
RED, GREEN, BLUE, MARKER = "compare_red", "compare_green", "compare_blue", "compare_pixel"
_OWN = (RED, GREEN, BLUE, MARKER)
#: Hovering redraws the highlighted point at most this often (ms).
HOVER_INTERVAL_MS = 40
#: A click selects the nearest point within this many screen pixels.
CLICK_RADIUS_PX = 10


class CompareWidget(Container):
    """A pigment map against one or two element maps, as in the paper's Fig. 5.

    The viewer shows the pigment in red and the elements in green and blue (additive blending:
    yellow/white where they agree), elements clipped at their 99th percentile. The dock shows a
    scatter plot of pigment probability against element concentration (normalised to the 99th
    percentile; the minimum of two elements), one point per pixel. Clicking a point marks its
    pixel in the viewer; hovering a pixel highlights its point. "Export PNG" saves the
    comparison as a figure (pigment, elements, overlay, scatter).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        #: Scatter points (x, y) of the shown comparison; point i is pixel divmod(i, columns).
        self.x = self.y = None
        self.shape = None
        self.selected_pixel: tuple[int, int] | None = None
        self.hover_pixel: tuple[int, int] | None = None
        self._sources = []
        self._pending_position = None
        self._background = None

        self.pigment_combo = ComboBox(label="pigment", choices=self._pigment_choices)
        self.element1_combo = ComboBox(label="green", choices=self._element_choices)
        self.element2_combo = ComboBox(label="blue", choices=self._element_choices_or_none)
        self.hide_others = CheckBox(text="show only the comparison layers", value=True)
        self.info = Label(value="")
        self.export_button = PushButton(text="Export PNG…")
        self.extend([self.pigment_combo, self.element1_combo, self.element2_combo, self.hide_others])

        self.figure = Figure(figsize=(4.2, 3.4), dpi=100, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(260)
        self.toolbar = NavigationToolbar2QT(self.canvas, self.native)
        self.ax = self.figure.add_subplot()
        self._style_axes()
        self.points_line = self.ax.plot([], [], linestyle="none", marker=".", markersize=2.5,
                                        alpha=0.45, color="#ff6b5a")[0]
        self.highlight = self.ax.plot([], [], linestyle="none", marker="o", markersize=10,
                                      markerfacecolor="none", markeredgecolor="#00e5ff",
                                      markeredgewidth=1.6, animated=True)[0]
        # The plot, then the pixel read-out and the export button: native Qt widgets after the
        # magicgui rows (magicgui would insert its widgets above the plot).
        layout = self.native.layout()
        layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.info.native)
        layout.addWidget(self.export_button.native)
        self.info.native.setWordWrap(True)

        self._hover_timer = QTimer(self.native)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_INTERVAL_MS)
        self._hover_timer.timeout.connect(self._flush_hover)
        self.canvas.mpl_connect("button_press_event", self._on_plot_click)
        self.canvas.mpl_connect("draw_event", self._on_draw)

        self.pigment_combo.changed.connect(self._on_pigment_changed)
        self.element1_combo.changed.connect(self.refresh)
        self.element2_combo.changed.connect(self.refresh)
        self.hide_others.changed.connect(self.refresh)
        self.export_button.changed.connect(self._export_clicked)
        self._connect_viewer()
        self._on_pigment_changed()

    # ------------------------------------------------------------------ viewer hooks

    def _connect_viewer(self):
        # The callback holds the widget weakly and removes itself once the widget is gone, so
        # a closed widget does not stay alive through the viewer.
        ref = weakref.ref(self)
        callbacks = self.viewer.mouse_move_callbacks

        def on_mouse_move(viewer, event):
            widget = ref()
            try:
                if widget is None:
                    raise RuntimeError
                widget._queue_hover(event.position)
            except RuntimeError:
                if on_mouse_move in callbacks:
                    callbacks.remove(on_mouse_move)

        self._mouse_callback = on_mouse_move
        callbacks.append(on_mouse_move)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)

    def _style_axes(self):
        theme_axes(self.figure, self.ax, self.viewer)
        self.ax.set_xlim(-0.02, 1.02)
        self.ax.set_ylim(-0.02, 1.02)

    # ------------------------------------------------------------------ choices

    def _images(self):
        return [
            layer for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.data.ndim == 2 and not layer.rgb
            and role_of(layer) not in _OWN
        ]

    def _ranked(self, role):
        images = self._images()
        return [la.name for la in images if role_of(la) == role] + [
            la.name for la in images if role_of(la) != role
        ]

    def _pigment_choices(self, *_):
        return self._ranked(PIGMENT_ROLE)

    def _element_choices(self, *_):
        return self._ranked(ELEMENT_ROLE)

    def _element_choices_or_none(self, *_):
        return [NONE, *self._ranked(ELEMENT_ROLE)]

    def reset_choices(self, *_):
        """Refill the layer lists (napari calls this when layers change)."""
        before = (self.pigment_combo.value, self.element1_combo.value, self.element2_combo.value)
        for combo in (self.pigment_combo, self.element1_combo, self.element2_combo):
            with combo.changed.blocked():
                combo.reset_choices()
        after = (self.pigment_combo.value, self.element1_combo.value, self.element2_combo.value)
        if after[0] != before[0]:
            self._on_pigment_changed()
        elif after != before:
            self.refresh()

    def _layer(self, name):
        if name in (None, NONE) or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def pigment_layer(self):
        return self._layer(self.pigment_combo.value)

    def element_layers(self) -> list:
        layers = [self._layer(self.element1_combo.value), self._layer(self.element2_combo.value)]
        return [la for la in layers if la is not None]

    def _on_pigment_changed(self, *_):
        """Pick the element maps that go with the pigment (library pairing), then update."""
        layer = self.pigment_layer()
        if layer is not None:
            meta = layer.metadata
            key = meta.get("xrf_pigment") or meta.get("xrf_pigment_name") or layer.name
            by_group = {}
            for el in self._images():
                if role_of(el) == ELEMENT_ROLE:
                    by_group.setdefault(el.metadata.get("xrf_group", el.name), el.name)
            groups = compare.default_elements(key, available=list(by_group))
            if groups:
                with self.element1_combo.changed.blocked(), self.element2_combo.changed.blocked():
                    self.element1_combo.value = by_group[groups[0]]
                    self.element2_combo.value = by_group[groups[1]] if len(groups) > 1 else NONE
        self.refresh()

    # ------------------------------------------------------------------ comparison

    def refresh(self, *_):
        """Show the chosen pigment and elements in the viewer and the scatter plot."""
        pigment = self.pigment_layer()
        elements = [la for la in self.element_layers() if la is not pigment]
        if pigment is None or not elements:
            self._clear("Choose a pigment map and at least one element map.")
            return False
        shapes = {la.name: tuple(la.data.shape) for la in (pigment, *elements)}
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{n} {s[0]}x{s[1]}" for n, s in shapes.items())
            self._clear(f"The maps differ in size ({detail}): choose maps of one scan.")
            show_error(f"Compare: the maps differ in size ({detail}).")
            return False
        p = np.asarray(pigment.data, dtype=np.float32)
        maps = [np.asarray(la.data) for la in elements]
        self.x, self.y = compare.scatter_data(p, maps)
        self.shape = p.shape
        self._watch_sources([pigment, *elements])
        self._show_layers(pigment, elements, maps)
        self._plot(pigment, elements)
        if self.selected_pixel is not None and not self._inside(self.selected_pixel):
            self.selected_pixel = None
        self.select_pixel(self.selected_pixel, center=False)
        self.info.value = (
            f"{p.size} pixels. Click a point to find its pixel; hover the image to find its point."
        )
        return True

    def _inside(self, pixel):
        return self.shape is not None and 0 <= pixel[0] < self.shape[0] and 0 <= pixel[1] < self.shape[1]

    def _watch_sources(self, layers):
        # A re-run of the map widgets replaces the data of these layers: follow it.
        for layer in self._sources:
            layer.events.data.disconnect(self._on_source_data)
        self._sources = list(layers)
        for layer in self._sources:
            layer.events.data.connect(self._on_source_data)

    def _on_source_data(self, *_):
        QTimer.singleShot(0, self.refresh)

    def _own(self, role):
        for layer in self.viewer.layers:
            if role_of(layer) == role:
                return layer
        return None

    def _show_layers(self, pigment, elements, maps):
        geo = geometry(pigment)
        wanted = [(RED, pigment, "red", [0.0, 1.0])]
        for role, layer, values, colormap in zip((GREEN, BLUE), elements, maps, ("green", "blue")):
            wanted.append((role, layer, colormap, [0.0, compare.clip_limit(values)]))
        for role, source, colormap, limits in wanted:
            name = f"{role.replace('_', ' ')}: {source.name}"
            layer = self._own(role)
            if layer is None:
                self.viewer.add_image(
                    source.data, name=name, colormap=colormap, blending="additive",
                    contrast_limits=limits, metadata={ROLE_KEY: role}, **geo,
                )
                continue
            layer.data = source.data
            layer.scale, layer.translate, layer.units = geo["scale"], geo["translate"], geo["units"]
            layer.contrast_limits_range = [min(0.0, limits[0]), max(limits[1], _finite_max(source.data))]
            layer.contrast_limits = limits
            set_visible(layer, True)
            if layer.name != name:
                layer.name = name
        if len(elements) < 2:
            stale = self._own(BLUE)
            if stale is not None:
                self.viewer.layers.remove(stale)
        if self.hide_others.value:
            for layer in self.viewer.layers:
                if role_of(layer) not in _OWN:
                    set_visible(layer, False)

    def _clear(self, message):
        self.x = self.y = None
        self.shape = None
        self.points_line.set_data([], [])
        self.highlight.set_data([], [])
        self.canvas.draw_idle()
        self.info.value = message

    def _plot(self, pigment, elements):
        self.points_line.set_data(self.x, self.y)
        names = " / ".join(la.name for la in elements)
        prefix = "min of " if len(elements) > 1 else ""
        self.ax.set_xlabel(f"{prefix}{names} (÷ 99th percentile)", fontsize=8)
        self.ax.set_ylabel(pigment.name, fontsize=8)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ pixel <-> point

    def point_of(self, pixel) -> int | None:
        """Index of the scatter point of a (row, column) pixel."""
        if pixel is None or not self._inside(pixel):
            return None
        return compare.point_of_pixel(*pixel, self.shape[1])

    def select_pixel(self, pixel, center: bool = False):
        """Mark a (row, column) pixel in the viewer and its point in the scatter plot."""
        self.selected_pixel = pixel
        marker = self._own(MARKER)
        pigment = self.pigment_layer()
        if pixel is None or pigment is None or self.shape is None:
            if marker is not None:
                marker.data = np.empty((0, 2))
            self._draw_highlight(None)
            return
        geo = geometry(pigment)
        if marker is None:
            self.viewer.add_points(
                [pixel], name="compare: selected pixel", symbol="square", size=1.0,
                face_color="transparent", border_color="#00e5ff", border_width=0.18,
                border_width_is_relative=True, metadata={ROLE_KEY: MARKER}, **geo,
            )
        else:
            marker.data = np.asarray([pixel], dtype=float)
            marker.scale, marker.translate = geo["scale"], geo["translate"]
            marker.visible = True
        i = self.point_of(pixel)
        self.info.value = (
            f"pixel (row {pixel[0]}, column {pixel[1]}): {pigment.name} = {self.y[i]:.3f}, "
            f"element (normalised) = {self.x[i]:.3f}"
        )
        self._draw_highlight(pixel)

    def pick_point(self, x_display: float, y_display: float):
        """The pixel of the scatter point nearest to a display position (a click), or None."""
        if self.x is None:
            return None
        points = self.ax.transData.transform(np.column_stack([self.x, self.y]))
        i = compare.nearest_point(points, (x_display, y_display), CLICK_RADIUS_PX)
        return None if i is None else compare.pixel_of_point(i, self.shape[1])

    def _on_plot_click(self, event):
        if event.inaxes is not self.ax or event.button != 1 or self.toolbar.mode:
            return
        pixel = self.pick_point(event.x, event.y)
        if pixel is not None:
            self.select_pixel(pixel)

    def _queue_hover(self, position):
        self._pending_position = position
        if not self._hover_timer.isActive():
            self._hover_timer.start()

    def _flush_hover(self):
        position, self._pending_position = self._pending_position, None
        if position is not None:
            self.hover(position)

    def pixel_at(self, world_position):
        """(row, column) of the compared maps at a world position, or None outside."""
        layer = self.pigment_layer()
        if layer is None or self.shape is None:
            return None
        data = layer.world_to_data(np.asarray(world_position, dtype=float))
        # napari puts pixel centres on integer coordinates.
        pixel = tuple(int(np.floor(v + 0.5)) for v in data[-2:])
        return pixel if self._inside(pixel) else None

    def hover(self, world_position):
        """Highlight the scatter point of the pixel under ``world_position``."""
        pixel = self.pixel_at(world_position)
        if pixel == self.hover_pixel:
            return
        self.hover_pixel = pixel
        self._draw_highlight(pixel if pixel is not None else self.selected_pixel)

    def _draw_highlight(self, pixel):
        i = self.point_of(pixel)
        if i is None:
            self.highlight.set_data([], [])
        else:
            self.highlight.set_data([self.x[i]], [self.y[i]])
        # Blit only the marker over the saved plot: redrawing every point on each mouse move
        # would cost tens of milliseconds for a large scan.
        if self._background is None:
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self.ax.draw_artist(self.highlight)
        self.canvas.blit(self.figure.bbox)

    def _on_draw(self, event):
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.ax.draw_artist(self.highlight)

    # ------------------------------------------------------------------ export

    def export_png(self, path, dpi: int = 150) -> Path:
        """Save the comparison (pigment, elements, overlay, scatter plot) as a PNG figure."""
        pigment = self.pigment_layer()
        elements = [la for la in self.element_layers() if la is not pigment]
        if pigment is None or not elements or self.x is None:
            raise ValueError("nothing to export: choose a pigment map and element map(s) first")
        name = pigment.metadata.get("xrf_pigment_name") or pigment.name
        fig = compare.comparison_figure(
            np.asarray(pigment.data), [np.asarray(la.data) for la in elements],
            pigment_name=name, element_names=[la.name for la in elements],
            highlight=self.selected_pixel,
        )
        path = Path(path)
        fig.savefig(path, dpi=dpi)
        return path

    def _export_clicked(self, *_):
        pigment = self.pigment_layer()
        suggested = f"compare_{pigment.name if pigment else 'maps'}.png"
        for char in "()/, ":
            suggested = suggested.replace(char, "_")
        path, _ = QFileDialog.getSaveFileName(
            self.native, "Export comparison", suggested, "PNG image (*.png)"
        )
        if not path:
            return
        try:
            saved = self.export_png(path)
        except (ValueError, OSError) as exc:
            show_error(f"Compare: cannot export: {exc}")
            return
        show_info(f"Comparison saved to {saved}")

def _finite_max(values) -> float:
    values = np.asarray(values)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else 1.0
