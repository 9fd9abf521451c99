"""Pigment maps dock widget: the pigment CNN over a cube layer, one probability layer per pigment."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton
from napari.utils.colormaps import label_colormap
from napari.utils.notifications import show_error, show_info

from ..errors import XRFPigmentsError
from ..model.files import ModelFileError, default_model_path, read_metadata
from ..model.isolated import gpu_device_present, isolated, portable_cube
from ._jobs import JobRunner, error_message
from ._layers import ROLE_KEY, cube_layers, cube_of
from ._maps import (
    ANY_LAYER,
    DOMINANT_ROLE,
    PIGMENT_ROLE,
    TOP_LAYER,
    UNEXPLAINED_ROLE,
    called_share,
    dominant_legend,
    geometry,
    map_layers,
    put_dominant_map,
    put_pigment_map,
    put_rgb_composite,
    put_unexplained_map,
    set_visible,
)

DEFAULT_MODEL, MODEL_FOLDER = "shipped default", "model folder"
ALL = "(all pigments)"
NONE = "(none)"
#: The "show" choice of the pigments called (p >= 0.5) on at least CALLED_SHARE of the pixels.
CALLED = "(pigments called)"
CALLED_SHARE = 0.01
CPU, GPU = "CPU", "GPU"
PREDICT_TARGET = "napari_xrf_pigments.model.isolated:predict_job"
GPU_TARGET = "napari_xrf_pigments.model.isolated:gpu_job"
NO_DEFAULT_MODEL = (
    "no default pigment model is installed in this version of napari-xrf-pigments: choose a "
    "model folder (one written by `xrf-pigments train`)"
)


def prediction_job(cube, model_path=None, *, device: str | None = None):
    """Job: load the model (cached) and predict every pixel of ``cube``, in a child process.

    The child runs what ``xrf-pigments predict`` runs, so the maps are the same; TensorFlow
    stays out of napari's process (see :mod:`~napari_xrf_pigments.model.isolated`). ``device`` None: GPU when there is
    one, as the CLI; ``"CPU"``: on the CPU even when a GPU is present.

    Returns
    -------
    (PigmentPrediction, model name)
    """
    # napari makes its first Labels layer (the dominant-pigment map) with pandas (its features
    # table) and a label colormap (scikit-image's colour conversions): 0.5-1 s of imports on the
    # main thread. Done here, in the worker thread, they cost the GUI nothing.
    import pandas  # noqa: F401

    label_colormap(2)
    return (yield from isolated(PREDICT_TARGET, portable_cube(cube), model_path, device=device))


def detect_gpu():
    """Job: True if TensorFlow sees a GPU (asked in a child process, and only if one may exist)."""
    if not gpu_device_present():
        return False
    return (yield from isolated(GPU_TARGET))


class PigmentMapsWidget(Container):
    """Pigment probability maps of a cube layer (``xrf-pigments predict`` in napari).

    Choose the cube layer and the model (the shipped default, or a model folder); where a GPU
    is present, choose where the network runs. The prediction runs in the background (a worker
    thread driving a child process that holds TensorFlow, see :mod:`~napari_xrf_pigments.model.isolated`) with a
    progress bar and a Cancel button, and adds one layer per pigment, ``"P(vermilion)"``
    (probability in any paint layer, contrast 0-1, additive blending in the pigment's colour),
    plus ``"P(vermilion, top)"`` (in the top layer) for two-headed models. The "show" controls
    switch each set on and off at once, showing the pigments called somewhere (default), all,
    or one. Running again on the same cube layer and model updates its layers; another cube or
    model adds its own (:func:`._maps.put_image`). The maps equal those of ``xrf-pigments
    predict`` on the same cube and model: the
    network's probabilities checked against element evidence, with an "Unexplained signal"
    layer (and one per unexplained element) and the warnings found before prediction. Under
    the cursor, the canvas shows the pigments called at that pixel and the elements left
    unexplained.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.last_prediction = None

        self.cube_combo = ComboBox(label="cube", choices=self._cube_names, tooltip="Cube layer to map")
        self.model_source = ComboBox(
            label="model", choices=[DEFAULT_MODEL, MODEL_FOLDER], value=DEFAULT_MODEL
        )
        self.model_dir = FileEdit(label="folder", mode="d", nullable=True,
                                  tooltip="A model folder (model.keras + metadata.json)")
        self.model_info = Label(value="")
        self.device = ComboBox(label="run on", choices=[GPU, CPU], value=GPU, visible=False,
                               tooltip="Where the network runs (shown when a GPU is present)")
        self.run_button = PushButton(text="Predict pigment maps")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.show_any = CheckBox(text="show maps of pigments in any layer", value=True)
        self.show_top = CheckBox(text="show top-layer maps", value=False)
        self.solo = ComboBox(label="show", choices=self._pigment_names,
                             tooltip="The pigments called on at least 1 % of the pixels, all, or one")
        self.show_unexplained = CheckBox(text="show unexplained signal", value=False)
        self.show_dominant = CheckBox(text="show the dominant pigment (one colour per pixel)",
                                      value=False)
        self.legend = Label(value="")
        self.rgb = [ComboBox(label=colour, choices=self._map_names, tooltip=f"Map shown in {colour}")
                    for colour in ("red", "green", "blue")]
        self.rgb_button = PushButton(text="RGB composite of these three maps")
        self.grid = CheckBox(text="side by side (napari's grid view)", value=False)
        self.readout = CheckBox(text="pigments under the cursor", value=True)
        self.extend([
            self.cube_combo, self.model_source, self.model_dir, self.model_info, self.device,
            self.run_button, self.cancel_button, self.status, self.show_any, self.show_top,
            self.solo, self.show_unexplained, self.show_dominant, self.legend, *self.rgb,
            self.rgb_button, self.grid, self.readout,
        ])
        for label in (self.model_info, self.status):
            label.native.setWordWrap(True)
        self.legend.visible = False

        self.runner = JobRunner(self.native, "Pigment maps", on_state=self._set_running,
                                on_status=self._set_status)
        self.gpu_check = JobRunner(self.native, "GPU check", show_progress=False)
        self.gpu_present = None

        self.model_source.changed.connect(self._on_model_changed)
        self.model_dir.changed.connect(self._on_model_changed)
        self.run_button.changed.connect(self.run)
        self.rgb_button.changed.connect(self.make_rgb)
        self.grid.changed.connect(lambda on: setattr(self.viewer.grid, "enabled", bool(on)))
        self.cancel_button.changed.connect(self.cancel)
        for control in (self.show_any, self.show_top, self.solo, self.show_unexplained,
                        self.show_dominant):
            control.changed.connect(self.apply_visibility)
        self.viewer.mouse_move_callbacks.append(self._on_mouse_move)
        self._readout_layer = None
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self._on_model_changed()
        # Asking TensorFlow takes seconds: look for a GPU in the background.
        self.gpu_check.start(detect_gpu, on_returned=self._on_gpu_checked)

    # ------------------------------------------------------------------ choices

    def _cube_names(self, *_):
        return [layer.name for layer in cube_layers(self.viewer)]

    def _pigment_names(self, *_):
        names = []
        for layer in map_layers(self.viewer, PIGMENT_ROLE):
            name = layer.metadata.get("xrf_pigment_name")
            if name and name not in names:
                names.append(name)
        return [CALLED, ALL, *names]

    def _map_names(self, *_):
        return [NONE, *(layer.name for layer in map_layers(self.viewer, PIGMENT_ROLE))]

    def make_rgb(self, *_):
        """Add or update the RGB composite of the three chosen maps (a message if it cannot)."""
        layers = [self.viewer.layers[c.value] if c.value in self.viewer.layers else None
                  for c in self.rgb]
        try:
            return put_rgb_composite(self.viewer, layers)
        except XRFPigmentsError as exc:
            show_error(f"Pigment maps: {error_message(exc)}")
            return None

    def cube_layer(self):
        """The chosen cube layer, or None."""
        name = self.cube_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_gpu_checked(self, present):
        self.gpu_present = bool(present)
        self.device.visible = self.gpu_present

    def model_path(self):
        """The chosen model folder, or None for the shipped default.

        Raises
        ------
        ModelFileError
            If the default is chosen and none is installed, or no folder is chosen.
        """
        if self.model_source.value == DEFAULT_MODEL:
            try:
                default_model_path()
            except ModelFileError:
                raise ModelFileError(NO_DEFAULT_MODEL) from None
            return None
        path = self.model_dir.value
        if not path or not str(path).strip():
            raise ModelFileError("choose a model folder (one written by `xrf-pigments train`)")
        return Path(path)

    def _on_model_changed(self, *_):
        self.model_dir.visible = self.model_source.value == MODEL_FOLDER
        try:
            path = self.model_path()
            meta = read_metadata(default_model_path() if path is None else path)
        except XRFPigmentsError as exc:
            self.model_info.value = str(exc)
            return
        energy = meta["preprocessing"].get("energy_keV") or [np.nan]
        abbreviations = ", ".join(p["abbreviation"] for p in meta["pigments"])
        top = "top-layer maps too" if "top" in meta["outputs"] else "no top-layer maps"
        self.model_info.value = (
            f"{meta.get('name') or 'model'}: {len(meta['pigments'])} pigments ({abbreviations}), "
            f"{energy[0]:.2f}-{energy[-1]:.2f} keV, {top}"
        )

    # ------------------------------------------------------------------ running

    def run(self, *_):
        """Start the prediction (refused with a message if inputs are missing or one runs)."""
        if self.runner.running:
            show_info("Pigment maps: a prediction is running; wait for it or press Cancel first.")
            return None
        layer = self.cube_layer()
        cube = cube_of(layer)
        if cube is None:
            show_error("Pigment maps: choose a cube layer (open an XRF file first).")
            return None
        if not cube.calibrated:
            show_error(
                f"Pigment maps: {cube.name} is not energy-calibrated; calibrate it first "
                "(Plugins > XRF Pigments > Energy calibration)."
            )
            return None
        try:
            path = self.model_path()
        except XRFPigmentsError as exc:
            show_error(f"Pigment maps: {error_message(exc)}")
            return None
        device = CPU if self.gpu_present and self.device.value == CPU else None
        # The maps belong to this cube layer and model: others get layers of their own.
        source = {"cube": layer.name, "geometry": geometry(layer), "started": time.perf_counter()}
        return self.runner.start(
            prediction_job, cube, path, device=device,
            on_returned=lambda result: self._show_maps(*result, source),
            description=f"Predicting pigments of {cube.name}",
        )

    def cancel(self, *_):
        """Stop the running prediction (after its current block of rows)."""
        return self.runner.cancel()

    def _show_maps(self, prediction, model_name, source):
        """Add or update the probability layers; a generator: one layer per step."""
        self.last_prediction = prediction
        added = []
        for output, which in (("present", ANY_LAYER), ("top", TOP_LAYER)):
            if output not in prediction.maps:
                continue
            for i, pigment in enumerate(prediction.pigments):
                data = prediction.maps[output][..., i]
                # Shown as it arrives, if the controls want it: switching a whole set on at the
                # end would redraw them all in one turn of the event loop (a long stall).
                shown = self._wanted({"xrf_layer": which, "xrf_pigment_name": pigment.name,
                                      "xrf_called_share": called_share(data)})
                layer = put_pigment_map(
                    self.viewer, pigment, data, which=which, index=i, model_name=model_name,
                    source=source["cube"], evidence=prediction.evidence,
                    members=prediction.groups.get(pigment.abbreviation, ()), visible=shown,
                    **source["geometry"],
                )
                added.append(layer.name)
                self._set_status(f"{source['cube']}: adding pigment maps ({len(added)})…")
                yield  # the GUI breathes between layers
        self._readout_layer = added[0] if added else None
        unexplained = ""
        if prediction.unexplained is not None:
            maps = {None: prediction.unexplained, **prediction.unexplained_elements}
            for element, data in maps.items():
                layer = put_unexplained_map(
                    self.viewer, data, element=element, model_name=model_name,
                    source=source["cube"], **source["geometry"])
                added.append(layer.name)
                yield
            share = float(np.nanmean(prediction.unexplained >= 0.5))
            elements = ", ".join(prediction.unexplained_elements) or "none"
            unexplained = f" Unexplained signal on {share:.0%} of the pixels (elements: {elements})."
        dominant = prediction.dominant()
        put_dominant_map(self.viewer, dominant, prediction.pigments, model_name=model_name,
                         source=source["cube"], visible=self.show_dominant.value,
                         **source["geometry"])
        self.legend.value = (f"<b>Dominant pigment</b>, {source['cube']}, {model_name}:<br>"
                             + dominant_legend(dominant, prediction.pigments))
        added.append("Dominant pigment")
        yield
        self.reset_choices()
        self.apply_visibility()
        seconds = time.perf_counter() - source["started"]
        message = (
            f"{source['cube']}: {len(prediction.pigments)} pigments from {model_name} in "
            f"{seconds:.1f} s ({len(added)} layers).{unexplained}"
        )
        if prediction.warnings:
            message += " Warnings: " + " ".join(f"({i + 1}) {w}" for i, w in enumerate(prediction.warnings))
        self._set_status(message)
        show_info(message)

    # ------------------------------------------------------------------ showing

    def apply_visibility(self, *_):
        """Show the pigment map layers the "show" controls ask for, hide the others."""
        for layer in map_layers(self.viewer, PIGMENT_ROLE):
            set_visible(layer, self._wanted(layer.metadata))
        for layer in map_layers(self.viewer, UNEXPLAINED_ROLE):
            # The overall score follows its checkbox; per-element maps are switched by hand.
            if layer.metadata.get("xrf_element") is None:
                set_visible(layer, self.show_unexplained.value)
        for layer in self.viewer.layers:
            if layer.metadata.get(ROLE_KEY) == DOMINANT_ROLE:
                set_visible(layer, self.show_dominant.value)
        self.legend.visible = bool(self.show_dominant.value) and bool(self.legend.value)

    def _wanted(self, meta) -> bool:
        """Whether the "show" controls show the pigment map with this metadata."""
        solo = self.solo.value
        wanted = self.show_top.value if meta.get("xrf_layer") == TOP_LAYER else self.show_any.value
        if solo == CALLED:
            wanted = wanted and meta.get("xrf_called_share", 1.0) >= CALLED_SHARE
        elif solo not in (None, ALL) and meta.get("xrf_pigment_name") != solo:
            wanted = False
        return bool(wanted)

    def _on_mouse_move(self, viewer, event):
        """Show the pigments called under the cursor, and what is left unexplained there."""
        prediction = self.last_prediction
        overlay = viewer.text_overlay
        if not self.readout.value or prediction is None or self._readout_layer not in viewer.layers:
            if overlay.text.startswith("Pigments:"):
                overlay.visible = False
            return
        layer = viewer.layers[self._readout_layer]
        row, column = (int(np.floor(v + 0.5)) for v in layer.world_to_data(viewer.cursor.position)[-2:])
        rows, columns = prediction.maps["present"].shape[:2]
        if not (0 <= row < rows and 0 <= column < columns):
            overlay.visible = False
            return
        overlay.text = f"Pigments: {prediction.describe_pixel(row, column)}"
        overlay.visible = True

    # ------------------------------------------------------------------ state

    def _set_running(self, running):
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text):
        self.status.value = text
