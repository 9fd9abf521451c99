"""Assemble point grid dock widget: ``xrf-pigments assemble`` in napari."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import InvalidDataError, XRFPigmentsError
from ..io.pointgrid import ORDERS, assemble_job, scan_points
from ._confirm import confirm_replace
from ._jobs import JobRunner, error_message
from ._layers import CUBE_KEY, ROLE_KEY

TITLE = "Assemble point grid"
PLUGIN = "napari-xrf-pigments"


def continue_job(job):
    """Job for :class:`~._jobs.JobRunner`: a job already made (and its inputs checked) on the
    main thread, run on in the worker thread."""
    return (yield from job)


class AssembleWidget(Container):
    """Build a cube from a scan's numbered point files and open it (``xrf-pigments assemble``).

    The user picks a folder of point files (``NAME_1.mca ... NAME_<n>.mca``, Amptek or
    two-column) or types a glob; the widget says how many files it found, how many points they
    make and the first file's channels and calibration. Rows, columns, scan order, first point
    number, a pixel size or a positions file, and whether damaged files are masked are the
    command's options. The cube file is written in a thread worker (progress bar, Cancel, never
    half-written; an existing file only after the user agrees), then opened with the plugin's
    reader. Problems are one-line messages.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.scan = None
        self._auto_out = None  # the cube file the widget proposed (replaced on a new folder)

        self.source = FileEdit(label="point files", mode="d", nullable=True,
                               tooltip="A folder of numbered point files (NAME_1.mca ...), or a "
                                       "glob typed in, such as scan/pt_*.mca")
        self.scan_info = Label(value="")
        self.rows = SpinBox(label="rows", min=1, max=1_000_000, value=1)
        self.columns = SpinBox(label="columns", min=1, max=1_000_000, value=1,
                               tooltip="Points per row")
        self.raster_info = Label(value="")
        self.order = ComboBox(label="order", choices=list(ORDERS), value=ORDERS[0],
                              tooltip="row-major: every row from the first column; serpentine: "
                                      "odd rows from the last column back")
        self.first_number = LineEdit(label="first number", value="",
                                     tooltip="Number of the raster's first point; empty: 0 if "
                                             "a file is numbered 0, else 1")
        self.first_number.native.setPlaceholderText("auto")
        self.pixel_size = FloatSpinBox(label="pixel size", min=0.0, max=1000.0, step=0.05,
                                       value=0.0, tooltip="Step of the scan in mm (square pixels)")
        self.pixel_size.native.setDecimals(4)
        self.pixel_size.native.setSuffix(" mm")
        self.pixel_size.native.setSpecialValueText("not given")
        self.positions = FileEdit(label="positions", mode="r", nullable=True,
                                  filter="*.csv *.txt *.dat",
                                  tooltip="Optional: one 'x,y' line in mm per point, in "
                                          "point-number order (sets the pixel size)")
        self.mask_unreadable = CheckBox(text="mask damaged point files (with a warning)",
                                        value=False)
        self.out = FileEdit(label="cube file", mode="w", nullable=True, filter="*.h5",
                            tooltip="NeXus cube file to write (.h5)")
        self.run_button = PushButton(text="Assemble and open")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.extend([self.source, self.scan_info, self.rows, self.columns, self.raster_info,
                     self.order, self.first_number, self.pixel_size, self.positions,
                     self.mask_unreadable, self.out, self.run_button, self.cancel_button,
                     self.status])
        for label in (self.scan_info, self.raster_info, self.status):
            label.native.setWordWrap(True)
        self.runner = JobRunner(self.native, TITLE, on_state=self._set_running,
                                on_status=self._set_status)

        self.source.changed.connect(self.look)
        for control in (self.rows, self.columns, self.first_number):
            control.changed.connect(self._show_raster)
        self.positions.changed.connect(self._on_positions)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(lambda: self.runner.cancel())
        self.look()

    # ------------------------------------------------------------------ the files

    def inputs(self) -> list[str]:
        """The folder or glob as ``assemble_job`` takes it.

        Raises
        ------
        InvalidDataError
            Nothing chosen.
        """
        value = self.source.value
        if value is None or str(value) in ("", "."):
            raise InvalidDataError("choose the folder of the point files (or type a glob such "
                                   "as scan/pt_*.mca)")
        return [str(value)]

    def look(self, *_):
        """Find the point files and read the first one; show what they are (or why not)."""
        self.scan = None
        try:
            self.scan = scan_points(self.inputs())
        except (XRFPigmentsError, OSError) as exc:
            self.scan_info.value = error_message(exc)
            self._show_raster()
            return None
        self.scan_info.value = self.scan.summary()
        folder = self.scan.series.files[0].path.parent
        proposed = folder.parent / f"{folder.name}.h5"
        if self.out.value is None or str(self.out.value) in ("", ".") or self.out.value == self._auto_out:
            self.out.value = self._auto_out = proposed
        self._show_raster()
        return self.scan

    def _first(self):
        """The first point number typed, or None (automatic).

        Raises
        ------
        InvalidDataError
            Not a whole number >= 0.
        """
        text = str(self.first_number.value).strip()
        if not text:
            return None
        if not text.isdigit():
            raise InvalidDataError(f"first number must be a whole number >= 0 (or empty: "
                                   f"automatic), got {text!r}")
        return int(text)

    def _show_raster(self, *_):
        rows, columns = int(self.rows.value), int(self.columns.value)
        if self.scan is None:
            self.raster_info.value = ""
            return
        try:
            first = self._first()
        except XRFPigmentsError as exc:
            self.raster_info.value = error_message(exc)
            return
        first = self.scan.first_number if first is None else first
        needed = self.scan.series.files[-1].number - first + 1
        if rows * columns == needed:
            self.raster_info.value = f"{rows} x {columns} = {needed} points: the raster fits the files."
        else:
            self.raster_info.value = (f"{rows} x {columns} = {rows * columns} points, but the files "
                                      f"make {needed}: rows x columns must be {needed}.")

    def _on_positions(self, *_):
        # A positions file sets the pixel size (the command takes one or the other).
        self.pixel_size.enabled = self._positions() is None

    def _positions(self):
        value = self.positions.value
        return None if value is None or str(value) in ("", ".") else str(value)

    # ------------------------------------------------------------------ running

    def run(self, *_):
        """Check the inputs, then assemble in a thread worker; returns the worker, or None
        (with a one-line message)."""
        if self.runner.running:
            show_info(f"{TITLE}: a run is going on; wait for it or Cancel it.")
            return None
        try:
            inputs = self.inputs()
            out = self.out.value
            if out is None or str(out) in ("", "."):
                raise XRFPigmentsError("choose the cube file to write (.h5)")
            out = Path(out)
            force = out.exists()
            if force and not confirm_replace(self.native, out, TITLE):
                self._set_status(f"{out.name} exists and was kept: choose another cube file.")
                return None
            positions = self._positions()
            size = float(self.pixel_size.value)
            # The checks of the inputs and the raster run here: their errors come at once.
            job = assemble_job(
                inputs, out, rows=int(self.rows.value), columns=int(self.columns.value),
                order=self.order.value, positions=positions,
                pixel_size=size if size > 0 and positions is None else None,
                first_number=self._first(), mask_unreadable=bool(self.mask_unreadable.value),
                force=force,
            )
        except (XRFPigmentsError, OSError) as exc:
            message = error_message(exc)
            show_error(f"{TITLE}: {message}")
            self._set_status(f"failed: {message}")
            return None
        return self.runner.start(continue_job, job, on_returned=self._show_result,
                                 description=f"Assembling {out.name}")

    def _show_result(self, result):
        for warning in result.warnings:
            show_warning(f"{TITLE}: {warning}")
        rows, columns, channels = result.shape
        message = (f"{result.out.name}: {rows} rows x {columns} columns x {channels} channels "
                   f"from {result.point_format} point files"
                   + (f", {result.masked} masked" if result.masked else ""))
        self._set_status(message)
        self._remove_layers_of(result.out)
        try:
            self.viewer.open(str(result.out), plugin=PLUGIN)
        except Exception as exc:  # noqa: BLE001 - napari wraps the reader's error
            cause = getattr(exc, "original_error", None) or exc.__cause__ or exc
            show_error(f"{TITLE}: {error_message(cause)}")
            self._set_status(f"written, but not opened: {error_message(cause)}")
            return
        show_info(f"{TITLE}: {message}")

    def _remove_layers_of(self, path):
        """Layers of an earlier cube in ``path`` (replaced now): a re-run shows one copy."""
        target = Path(path).resolve()

        def source_of(layer):
            meta = getattr(layer, "metadata", {}) or {}
            if meta.get(ROLE_KEY) == "cube" and meta.get(CUBE_KEY) is not None:
                return meta[CUBE_KEY].source
            return meta.get("xrf_source") if meta.get(ROLE_KEY) == "total_counts" else None

        for layer in list(self.viewer.layers):
            source = source_of(layer)
            if source and Path(source).resolve() == target:
                self.viewer.layers.remove(layer)

    def _set_running(self, running):
        self.run_button.enabled = not running
        self.cancel_button.enabled = running

    def _set_status(self, text):
        self.status.value = text
