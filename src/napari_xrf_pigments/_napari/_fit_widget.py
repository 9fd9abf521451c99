"""Element maps dock widget: PyMca fast linear fit of a cube layer, one layer per element group."""

from __future__ import annotations

import time

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    RadioButtons,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QListWidget, QListWidgetItem

from ..errors import XRFPigmentsError
from ..fitting import fit_cube_job, parse_elements, suggest_elements
from ..progress import Progress
from ._jobs import JobRunner
from ._layers import cube_layers, cube_of
from ._maps import geometry, put_element_map

ELEMENTS, CONFIG = "elements", "PyMca .cfg"
NO_TUBE = "(none)"
TUBES = (NO_TUBE, "Rh", "Mo", "W", "Ag", "Pd", "Cu", "Cr")
#: New element maps shown after a fit (the strongest); the others start hidden.
SHOWN_ELEMENT_MAPS = 3
_GROUP_ROLE = Qt.ItemDataRole.UserRole


def sum_spectrum_suggestions(cube, *, tube=None, kv=None):
    """Job: the cube's sum spectrum (block by block, cancellable), then suggested elements.

    Returns
    -------
    list of ElementSuggestion
    """
    rows = cube.shape[0]
    total = np.zeros(cube.n_channels, dtype=np.float64)
    yield Progress(0, rows, "sum spectrum")
    for sl, block in cube.iter_blocks():
        total += block.sum(axis=(0, 1), dtype=np.float64)
        yield Progress(sl.stop, rows, "sum spectrum")
    return suggest_elements(cube.energy.energies(), total, tube=tube, kv=kv)


class ElementMapsWidget(Container):
    """Element maps of a cube layer with PyMca's fast linear fit (``xrf-pigments fit``).

    Fit either ticked elements (suggested from the peaks of the sum spectrum, computed in the
    background when a cube is chosen; more can be typed in) with the tube anode and voltage,
    or a PyMca ``.cfg``. The fit runs in a worker thread with a progress bar and a Cancel
    button; it adds one image layer per element group (``"Pb L"``), additive blending,
    contrast limited at the 99th percentile. Running again updates those layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        #: Extra keyword arguments for :func:`~napari_xrf_pigments.fitting.fit_cube_job`
        #: (``workers``, ``weight``...); empty means the CLI's defaults.
        self.fit_options: dict = {}
        self.suggestions = []
        self.last_result = None

        self.cube_combo = ComboBox(label="cube", choices=self._cube_names, tooltip="Cube layer to fit")
        self.source = RadioButtons(
            label="fit", choices=[ELEMENTS, CONFIG], value=ELEMENTS, orientation="horizontal"
        )
        self.config_file = FileEdit(
            label=".cfg", mode="r", filter="PyMca fit configuration (*.cfg);;All files (*)", nullable=True
        )
        self.config_calibration = CheckBox(
            text="use the .cfg's energy calibration",
            value=False,
            tooltip="For cubes without a calibration: take zero and gain from the .cfg",
        )
        self.elements_label = Label(label="elements", value="")
        self.add_elements = LineEdit(
            label="add", tooltip="More elements, e.g. 'Ti, Ba L' (Enter adds them, ticked)"
        )
        self.suggest_button = PushButton(text="Suggest from the sum spectrum")
        self.tube = ComboBox(label="tube", choices=TUBES, value=NO_TUBE, tooltip="X-ray tube anode")
        self.kv = FloatSpinBox(label="kV", value=0.0, min=0.0, max=150.0, step=1.0,
                               tooltip="Tube voltage; 0: not set")
        self.run_button = PushButton(text="Fit element maps")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.extend([
            self.cube_combo, self.source, self.config_file, self.config_calibration,
            self.elements_label, self.add_elements, self.suggest_button, self.tube, self.kv,
            self.run_button, self.cancel_button, self.status,
        ])
        # Ticking is a native Qt list (magicgui has no check list), under the "elements" row.
        self.element_list = QListWidget()
        self.element_list.setMinimumHeight(120)
        self.element_list.setToolTip("Element groups to fit: suggested ones are ticked")
        layout = self.native.layout()
        layout.insertWidget(layout.indexOf(self.elements_label.native.parentWidget()) + 1, self.element_list)
        self.status.native.setWordWrap(True)

        self.runner = JobRunner(self.native, "Element maps", on_state=self._set_running,
                                on_status=self._set_status)
        self.suggester = JobRunner(self.native, "Element suggestions", on_state=self._suggester_state)
        self._suggest_again = False
        self._suggested_for = None

        self.source.changed.connect(self._update_source)
        self.cube_combo.changed.connect(self._on_cube_changed)
        self.suggest_button.changed.connect(lambda: self.suggest(force=True))
        self.add_elements.native.returnPressed.connect(self._add_typed_elements)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self._update_source()
        self._watched = None
        self._on_cube_changed()

    # ------------------------------------------------------------------ choices

    def _cube_names(self, *_):
        return [layer.name for layer in cube_layers(self.viewer)]

    def reset_choices(self, *_):
        """Refill the cube list (napari calls this when layers change)."""
        before = self.cube_combo.value
        super().reset_choices()
        if self.cube_combo.value != before:
            self._on_cube_changed()

    def cube_layer(self):
        """The chosen cube layer, or None."""
        name = self.cube_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _update_source(self, *_):
        by_config = self.source.value == CONFIG
        self.config_file.visible = by_config
        self.config_calibration.visible = by_config
        for widget in (self.elements_label, self.add_elements, self.suggest_button, self.tube, self.kv):
            widget.visible = not by_config
        self.element_list.setVisible(not by_config)

    def _on_cube_changed(self, *_):
        layer = self.cube_layer()
        if layer is not self._watched:
            # A calibration set in the Energy calibration widget replaces the layer's cube
            # (a metadata event): follow it, for the chosen cube only.
            if self._watched is not None:
                self._watched.events.metadata.disconnect(self._on_cube_changed)
            if layer is not None:
                layer.events.metadata.connect(self._on_cube_changed)
            self._watched = layer
        cube = cube_of(layer)
        if cube is None:
            self._set_status("Open an XRF cube first (File > Open).")
            return
        # The cube's own tube and voltage, or "not set": never the previous cube's.
        tube = (cube.metadata.get("instrument") or {}).get("tube") or {}
        self.tube.value = tube["anode"] if tube.get("anode") in TUBES else NO_TUBE
        self.kv.value = float(tube.get("voltage_kV") or 0.0)
        if not cube.calibrated:
            self._set_status(
                f"{cube.name}: not calibrated. Calibrate it (Energy calibration widget), or fit "
                "with a .cfg and its calibration."
            )
            return
        self._set_status("")
        self.suggest()

    # ------------------------------------------------------------------ elements

    def elements(self) -> list[str]:
        """Ticked element groups, in list order."""
        out = []
        for i in range(self.element_list.count()):
            item = self.element_list.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(_GROUP_ROLE))
        return out

    def set_elements(self, groups, *, checked=True, suggested=False):
        """Add element groups (``"Pb L"``, ``"Fe"``) to the list, ticked or not."""
        present = {self.element_list.item(i).data(_GROUP_ROLE): self.element_list.item(i)
                   for i in range(self.element_list.count())}
        for group in groups:
            label = group
            if not isinstance(group, str):  # an ElementSuggestion
                label = f"{group.group}   ({group.significance:.0f} σ at {group.peak_keV:.2f} keV)"
                group = group.group
            item = present.get(group)
            if item is None:
                item = QListWidgetItem(label)
                item.setData(_GROUP_ROLE, group)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                self.element_list.addItem(item)
                present[group] = item
            item.setText(label)
            item.setData(Qt.ItemDataRole.ToolTipRole, "suggested from the sum spectrum" if suggested else "")
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def _add_typed_elements(self):
        text = self.add_elements.value.strip()
        if not text:
            return
        try:
            parsed = parse_elements(text.replace(";", ","))
        except XRFPigmentsError as exc:
            show_error(f"Element maps: {exc}")
            return
        self.set_elements([f"{symbol} {family}" if family else symbol for symbol, family in parsed])
        self.add_elements.value = ""

    def suggest(self, force: bool = False):
        """Suggest elements from the chosen cube's sum spectrum, in a worker thread."""
        cube = cube_of(self.cube_layer())
        if cube is None or not cube.calibrated:
            if force:
                show_error("Element maps: suggestions need a calibrated cube layer.")
            return None
        key = (id(cube), self.tube.value, self.kv.value)
        if not force and key == self._suggested_for:
            return None
        if self.suggester.running:
            # Restart with the current cube once the running one has stopped.
            self._suggest_again = True
            self.suggester.cancel("the cube changed")
            return None
        self._suggested_for = key
        self._set_status(f"Looking for element peaks in the sum spectrum of {cube.name}…")
        return self.suggester.start(
            sum_spectrum_suggestions, cube, tube=self._tube(), kv=self._kv(),
            on_returned=lambda found: self._show_suggestions(cube, found),
            description=f"Sum spectrum of {cube.name}",
        )

    def _suggester_state(self, running):
        if not running and self._suggest_again:
            self._suggest_again = False
            self.suggest(force=True)

    def _show_suggestions(self, cube, found):
        if cube is not cube_of(self.cube_layer()):
            return  # the user moved on to another cube meanwhile
        self.suggestions = list(found)
        # Replace the old unticked suggestions; keep what the user typed or ticked.
        for i in reversed(range(self.element_list.count())):
            if self.element_list.item(i).checkState() != Qt.CheckState.Checked:
                self.element_list.takeItem(i)
        self.set_elements(self.suggestions, suggested=True)
        if found:
            self._set_status(
                f"Suggested from the peaks of the sum spectrum: {', '.join(s.group for s in found)}."
            )
        else:
            self._set_status("No element peaks found in the sum spectrum: type elements to fit.")

    # ------------------------------------------------------------------ running

    def _tube(self):
        return None if self.tube.value == NO_TUBE else self.tube.value

    def _kv(self):
        return float(self.kv.value) or None

    def run(self, *_):
        """Start the fit (refused with a message if inputs are missing or a fit is running)."""
        if self.runner.running:
            show_info("Element maps: a fit is running; wait for it or press Cancel first.")
            return None
        layer = self.cube_layer()
        cube = cube_of(layer)
        if cube is None:
            show_error("Element maps: choose a cube layer (open an XRF file first).")
            return None
        if self.source.value == CONFIG:
            path = self.config_file.value
            if not path or not path.is_file():
                show_error("Element maps: choose a PyMca fit configuration (.cfg) file.")
                return None
            calibration = "config" if self.config_calibration.value else "cube"
            if calibration == "cube" and not cube.calibrated:
                show_error(
                    f"Element maps: {cube.name} is not energy-calibrated. Calibrate it (Energy "
                    "calibration widget) or tick \"use the .cfg's energy calibration\"."
                )
                return None
            kwargs = {"config": str(path), "calibration": calibration}
            what = path.name
        else:
            if not cube.calibrated:
                show_error(
                    f"Element maps: {cube.name} is not energy-calibrated; calibrate it first "
                    "(Plugins > XRF Pigments > Energy calibration)."
                )
                return None
            elements = self.elements()
            if not elements:
                show_error("Element maps: no elements to fit: tick or type some, or use a PyMca .cfg.")
                return None
            kwargs = {"elements": elements, "tube": self._tube(), "kv": self._kv()}
            what = ", ".join(elements)
        # Taken now, on the main thread: the layer may move or vanish while the fit runs.
        # The maps belong to this cube layer: another cube's maps get layers of their own.
        source = {"cube": layer.name, "geometry": geometry(layer), "started": time.perf_counter()}
        return self.runner.start(
            fit_cube_job, cube, **kwargs, **self.fit_options,
            on_returned=lambda result: self._show_maps(result, source),
            description=f"Fitting {cube.name} ({what})",
        )

    def cancel(self, *_):
        """Stop the running fit (its worker processes are stopped too)."""
        return self.runner.cancel()

    def _show_maps(self, result, source):
        """Add or update one layer per element group; a generator: one layer per step."""
        self.last_result = result
        layers = []
        # Additive maps of every element white the canvas out: new ones start hidden but the
        # strongest few.
        strength = {g: float(np.nansum(result.maps[g])) for g in result.groups}
        shown = sorted(strength, key=strength.get, reverse=True)[:SHOWN_ELEMENT_MAPS]
        for i, group in enumerate(result.groups):
            layers.append(put_element_map(
                self.viewer, group, result.maps[group], index=i, source=source["cube"],
                unit=result.units.get(group, "counts"), visible=group in shown,
                **source["geometry"],
            ))
            self._set_status(f"{source['cube']}: adding element maps ({i + 1}/{len(result.groups)})…")
            yield  # the GUI breathes between layers
        seconds = time.perf_counter() - source["started"]
        groups = ", ".join(result.groups)
        message = f"{source['cube']}: {len(layers)} element maps in {seconds:.1f} s ({groups})."
        if result.notes:
            message += " Notes: " + "; ".join(result.notes)
        self._set_status(message)
        show_info(message)

    # ------------------------------------------------------------------ state

    def _set_running(self, running):
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text):
        self.status.value = text

