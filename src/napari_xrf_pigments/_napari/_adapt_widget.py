"""Model for your instrument dock widget: ``xrf-pigments adapt`` in napari."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from ..errors import InvalidDataError, XRFPigmentsError
from ..model.defaults import ADAPT_DEFAULTS
from ..model.finetuning import check_finetune_output
from ..physics.instrument import Instrument, describe_form_values, instrument_from_cube, write_instrument
from ._confirm import confirm_replace
from ._instrument_form import InstrumentForm
from ._jobs import JobRunner, error_message
from ._layers import cube_layers, cube_of
from ._pigment_widget import MODEL_FOLDER

TITLE = "Model for your instrument"
ADAPT_TARGET = "napari_xrf_pigments.model.isolated:adapt_job"
FROM_CUBE, FROM_FILE = "the cube's file", "an instrument file"
FROM_DEFAULT = "the shipped model's instrument"


def adapt_widget_job(out, instrument, background_cube=None, *, n: int):
    """Job: simulate and finetune in the child process (TensorFlow never loads into napari's,
    see :mod:`~napari_xrf_pigments.model.isolated`).

    Parameters
    ----------
    out : str
        New model folder.
    instrument : Instrument
    background_cube : XRFCube, optional
        A scan whose measured background the simulated spectra get.
    n : int
        Spectra to simulate.
    """
    # here, not at the top: the tests monkeypatch this name on its module
    from ..model.isolated import isolated, portable_cube

    background = None if background_cube is None else portable_cube(background_cube)
    return (yield from isolated(ADAPT_TARGET, str(out), instrument.to_dict(), None, background,
                                n=n))


class AdaptWidget(Container):
    """A pigment model for the scanner of a cube layer (``xrf-pigments adapt`` in napari).

    The instrument comes from the cube's file (its tube, detector, calibration and live time,
    what ``xrf-pigments instrument`` reads; the rest is the shipped model's instrument), from
    an instrument file, or from the shipped model's instrument; it fills a form (tube, angles,
    air, detector, resolution, calibration, live time) whose edits are used, and which saves
    as the instrument JSON the simulator reads. The widget simulates spectra with it (with the
    cube's measured background if asked), finetunes the shipped model on them in a child
    process (progress bar, Cancel), shows the before/after scores on held-back spectra, and
    offers the new model to the Pigment maps widget.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.model_out = None

        self.cube_combo = ComboBox(label="cube", choices=self._cube_names,
                                   tooltip="A scan made with the instrument")
        self.source = ComboBox(label="instrument from",
                               choices=[FROM_CUBE, FROM_FILE, FROM_DEFAULT], value=FROM_CUBE,
                               tooltip="What fills the instrument form below (edit it to match "
                                       "your instrument)")
        self.instrument_file = FileEdit(label="file", mode="r", nullable=True, visible=False,
                                        filter="*.json *.toml *.cfg",
                                        tooltip="xrf-pigments instrument file, or a PyMca .cfg")
        self.instrument_info = Label(value="")
        # The form's 21 rows would make the dock taller than a 1366 x 768 screen: shown on request.
        self.edit_instrument = CheckBox(text="show and edit the instrument's fields", value=False)
        self.form = InstrumentForm()
        self.form.visible = False
        self.save_instrument_button = PushButton(
            text="Save instrument JSON...",
            tooltip="Write the instrument of the form as the JSON file that `xrf-pigments "
                    "simulate/adapt --instrument` read")
        self.background = CheckBox(text="add the cube's measured background", value=True)
        self.n_spectra = SpinBox(label="spectra", min=200, max=200000, step=1000,
                                 value=ADAPT_DEFAULTS["n"],
                                 tooltip="Spectra to simulate; 80 % finetune, 20 % score")
        self.out_dir = FileEdit(label="new model", mode="w", nullable=True,
                                tooltip="Folder to write the new model to")
        self.run_button = PushButton(text="Simulate and finetune")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.maps_button = PushButton(text="Use it in Pigment maps", enabled=False)
        self.extend([self.cube_combo, self.source, self.instrument_file, self.instrument_info,
                     self.edit_instrument, self.form, self.save_instrument_button, self.background, self.n_spectra,
                     self.out_dir, self.run_button, self.cancel_button, self.status,
                     self.maps_button])
        for label in (self.instrument_info, self.status):
            label.native.setWordWrap(True)
        self._form_source = None  # what the form was filled from (see _fill_form)
        self.runner = JobRunner(self.native, TITLE,
                                on_state=self._set_running, on_status=self._set_status)

        self.source.changed.connect(self._on_source_changed)
        self.edit_instrument.changed.connect(self._show_form)
        for control in (self.cube_combo, self.instrument_file, self.form):
            control.changed.connect(self.show_instrument)
        self.save_instrument_button.changed.connect(lambda: self.save_instrument())
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(lambda: self.runner.cancel())
        self.maps_button.changed.connect(self.use_in_pigment_maps)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self.show_instrument()

    def _show_form(self, shown: bool) -> None:
        self.form.visible = bool(shown)

    def _cube_names(self, *_):
        return [layer.name for layer in cube_layers(self.viewer)]

    def cube_layer(self):
        """The chosen cube layer, or None."""
        name = self.cube_combo.value
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_source_changed(self, *_):
        self.instrument_file.visible = self.source.value == FROM_FILE
        self.show_instrument()

    def base_instrument(self):
        """(Instrument, notes) from the chosen source, before the form's edits.

        Raises
        ------
        XRFPigmentsError
            No cube or no file chosen, or a file that is no instrument description.
        """
        if self.source.value == FROM_DEFAULT:
            return Instrument(), ["the shipped model's instrument (the ELIO-like scanner of the "
                                  "paper)"]
        if self.source.value == FROM_FILE:
            path = self.instrument_file.value
            if not path or not Path(path).is_file():
                raise InvalidDataError("choose an instrument file (xrf-pigments instrument "
                                       "writes one) or a PyMca .cfg")
            return Instrument.load(path), [f"from {Path(path).name}"]
        cube = cube_of(self.cube_layer())
        if cube is None:
            raise InvalidDataError("choose a cube layer (open a scan of the instrument first)")
        return instrument_from_cube(cube)

    def _source_key(self):
        """What the form's values come from: a new source refills it."""
        if self.source.value == FROM_FILE:
            path = self.instrument_file.value
            try:
                return FROM_FILE, str(path), Path(path).stat().st_mtime_ns
            except (OSError, TypeError):
                return FROM_FILE, str(path), None
        if self.source.value == FROM_CUBE:
            return FROM_CUBE, id(cube_of(self.cube_layer()))
        return (FROM_DEFAULT,)

    def _fill_form(self):
        """(base instrument, notes); the form shows the base when its source changed."""
        key = self._source_key()
        base, notes = self.base_instrument()
        if key != self._form_source or self.form.base is None:
            self.form.fill(base)
            self._form_source = key
        return base, notes

    def instrument(self):
        """(Instrument, notes): the chosen source's instrument with the form's edits.

        Raises
        ------
        XRFPigmentsError
            No cube or no file chosen, a file that is no instrument description, or a form
            value the instrument refuses.
        """
        _, notes = self._fill_form()
        instrument = self.form.instrument()
        edits = self.form.changes()
        if edits:
            notes = [*notes, f"entered in the form: {describe_form_values(edits)}"]
        return instrument, notes

    def show_instrument(self, *_):
        """Say what the instrument is and where each part came from."""
        try:
            self._fill_form()
        except XRFPigmentsError as exc:
            self.form.enabled = False  # it shows an earlier source's instrument
            self.instrument_info.value = error_message(exc)
            return
        self.form.enabled = True
        try:
            instrument, notes = self.instrument()
        except XRFPigmentsError as exc:
            self.instrument_info.value = error_message(exc)
            return
        self.instrument_info.value = f"<b>{instrument.name}</b>: " + "; ".join(notes)
        if self.out_dir.value is None or str(self.out_dir.value) in ("", "."):
            layer = self.cube_layer()
            cube = cube_of(layer)
            stem = Path(cube.source).stem if cube is not None and cube.source else "instrument"
            folder = Path(cube.source).parent if cube is not None and cube.source else Path.cwd()
            self.out_dir.value = folder / f"model-{stem}"

    def run(self, *_):
        """Start simulating and finetuning; returns the worker, or None (with a message)."""
        if self.runner.running:
            show_info("Model for your instrument: a run is going on; wait for it or Cancel it.")
            return None
        try:
            instrument, _ = self.instrument()
            out = self.out_dir.value
            if out is None or str(out) in ("", "."):
                raise XRFPigmentsError("choose the folder of the new model")
            check_finetune_output(out, None)
        except (XRFPigmentsError, OSError) as exc:
            show_error(f"{TITLE}: {error_message(exc)}")
            return None
        cube = cube_of(self.cube_layer())
        background = cube if self.background.value and cube is not None and cube.calibrated else None
        return self.runner.start(
            adapt_widget_job, str(out), instrument, background, n=int(self.n_spectra.value),
            on_returned=self._show_result,
            description=f"Model for {instrument.name}",
        )

    def _show_result(self, figures):
        self.model_out = Path(figures["path"])
        before = figures["before"]["summary"].get("present_f1_mean")
        after = figures["after"]["summary"].get("present_f1_mean")
        split = figures["split"]
        message = (f"new model {figures['name']} in {self.model_out}: macro F1 on "
                   f"{split['n_test']} held-back simulated spectra "
                   f"{'n/a' if before is None else f'{before:.3f}'} (shipped) -> "
                   f"{'n/a' if after is None else f'{after:.3f}'}")
        self._set_status(message)
        self.maps_button.enabled = True
        show_info(f"Model for your instrument: {message}")

    def use_in_pigment_maps(self, *_):
        """Open the Pigment maps widget with the new model on the chosen cube."""
        if self.model_out is None:
            show_error("Model for your instrument: make a model first.")
            return None

        _, maps = self.viewer.window.add_plugin_dock_widget("napari-xrf-pigments", "Pigment maps")
        maps.model_source.value = MODEL_FOLDER
        maps.model_dir.value = self.model_out
        if self.cube_layer() is not None:
            maps.cube_combo.value = self.cube_layer().name
        return maps

    def save_instrument(self, path=None):
        """Write the form's instrument as the simulator's instrument JSON; returns the path,
        or None (with a message).

        Parameters
        ----------
        path : str or Path, optional
            Asked with a save dialog when not given (the dialog asks before replacing a
            file); a given path that exists is replaced only if the user agrees.
        """

        try:
            instrument, _ = self.instrument()
        except XRFPigmentsError as exc:
            show_error(f"{TITLE}: {error_message(exc)}")
            return None
        if path is None:
            cube = cube_of(self.cube_layer())
            folder = Path(cube.source).parent if cube is not None and cube.source else Path.cwd()
            path, _ = QFileDialog.getSaveFileName(self.native, "Save the instrument",
                                                  str(folder / "instrument.json"),
                                                  "Instrument (*.json)")
            if not path:
                return None
            path = Path(path)
            path = path if path.suffix else path.with_suffix(".json")
            force = path.exists()  # the dialog asked
        else:
            path = Path(path)
            force = path.exists()
            if force and not confirm_replace(self.native, path, TITLE):
                self._set_status(f"{path.name} exists and was kept.")
                return None
        try:
            write_instrument(instrument, path, force=force)
        except (XRFPigmentsError, OSError) as exc:
            show_error(f"{TITLE}: {error_message(exc)}")
            return None
        message = (f"instrument {instrument.name} written to {path}: `xrf-pigments simulate "
                   "--instrument` and `adapt --instrument` read it")
        self._set_status(message)
        show_info(f"{TITLE}: {message}")
        return path

    def _set_running(self, running):
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text):
        self.status.value = text
