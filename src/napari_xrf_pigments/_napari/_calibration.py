"""Energy calibration dock widget: type zero/gain, name two peaks, or find it automatically;
save the calibrated cube."""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..calibration import calibrate_cube_job
from ..errors import CalibrationError
from ..io.hdf5 import write_cube_job
from ..lines import line_energy, two_peak_calibration
from ._jobs import JobRunner
from ._layers import cube_layers, cube_of, set_cube

_MANUAL, _PEAKS = 0, 1


def _spin(minimum, maximum, decimals, value, suffix):
    box = QDoubleSpinBox()
    box.setRange(minimum, maximum)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class CalibrationWidget(QWidget):
    """Set the energy calibration ``E = zero + gain * channel`` of a cube layer.

    Either type zero (keV) and gain (keV/channel), or give two peaks: their channels (the
    spectrum viewer prints the channel of a clicked peak) and their lines (``"Ca Ka"``,
    ``"Fe Ka"``, ``"Pb La"``; energies from PyMca's tables), or press "Find calibration
    automatically": :func:`~napari_xrf_pigments.calibration.calibrate_cube_job` runs in a
    thread worker, and its result (lines used, residual, how far the stated calibration was
    off) is shown and filled into the zero/gain boxes for the user to check and apply. An
    uncalibrated cube is searched from the zero and gain in the boxes (a rough guess).
    Applying replaces ``layer.metadata["xrf_cube"]`` with a recalibrated cube; the layer
    itself stays.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("Cube layer to calibrate")
        self.current_label = QLabel()
        self.current_label.setWordWrap(True)

        self.zero_spin = _spin(-100.0, 100.0, 6, 0.0, " keV")
        self.gain_spin = _spin(1e-7, 10.0, 7, 0.01, " keV/ch")
        manual = QWidget()
        form = QFormLayout(manual)
        form.addRow("zero", self.zero_spin)
        form.addRow("gain", self.gain_spin)

        self.peak_channels, self.peak_lines, self.peak_energies = [], [], []
        peaks = QWidget()
        form = QFormLayout(peaks)
        for i, example in enumerate(("Ca Ka", "Fe Ka"), start=1):
            channel = _spin(-1e6, 1e6, 2, 0.0, "")
            channel.setToolTip(
                "Channel of the peak maximum (click the peak in the spectrum viewer)"
            )
            line = QLineEdit()
            line.setPlaceholderText(f"line, e.g. {example}")
            energy = QLabel()
            line.textChanged.connect(lambda text, label=energy: self._show_line_energy(text, label))
            form.addRow(f"peak {i} channel", channel)
            form.addRow(f"peak {i} line", line)
            form.addRow("", energy)
            self.peak_channels.append(channel)
            self.peak_lines.append(line)
            self.peak_energies.append(energy)

        self.tabs = QTabWidget()
        self.tabs.addTab(manual, "Zero / gain")
        self.tabs.addTab(peaks, "Two peaks")

        self.find_button = QPushButton("Find calibration automatically")
        self.find_button.setToolTip(
            "Name the peaks of the sum spectrum by lines that are always or often there (Ar, "
            "Ca, Fe, Cu, Zn, Sr K; Hg, Pb L; the tube's scattered lines) and fit zero and gain "
            "to them. An uncalibrated cube is searched from the zero and gain typed above."
        )
        self.find_button.clicked.connect(self.find)
        self.found_label = QLabel()
        self.found_label.setWordWrap(True)
        self.found_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.apply_button = QPushButton("Apply calibration")
        self.apply_button.clicked.connect(self.apply)
        self.save_button = QPushButton("Save calibrated cube...")
        self.save_button.setToolTip(
            "Write the cube with its current calibration as a new NeXus file (.h5), which "
            "every command and napari open calibrated; the original file is never changed."
        )
        self.save_button.clicked.connect(lambda: self.save())
        self.status = QLabel()
        self.status.setWordWrap(True)
        # The last automatic result, and the cube it was found for: applied whole (quadratic
        # term and provenance included) while the boxes still show it.
        self.found = None
        self._found_for = None
        self.runner = JobRunner(self, "Energy calibration", on_state=self._set_running,
                                on_status=self._runner_status, show_progress=False)

        layout = QVBoxLayout(self)
        form = QFormLayout()
        form.addRow("cube", self.layer_combo)
        layout.addLayout(form)
        layout.addWidget(self.current_label)
        layout.addWidget(self.tabs)
        layout.addWidget(self.find_button)
        layout.addWidget(self.found_label)
        layout.addWidget(self.apply_button)
        layout.addWidget(self.save_button)
        layout.addWidget(self.status)
        layout.addStretch()

        self.layer_combo.currentIndexChanged.connect(self._show_current)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self.reset_choices()

    # ------------------------------------------------------------------ layers

    def reset_choices(self, event=None):
        """Refill the cube list from the viewer's layers (keeps the current choice)."""
        current = self.layer_combo.currentText()
        names = [layer.name for layer in cube_layers(self.viewer)]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._show_current()

    def layer(self):
        """The chosen cube layer, or None."""
        name = self.layer_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _show_current(self, *_):
        cube = cube_of(self.layer())
        if cube is None:
            self.current_label.setText("Open an XRF file first (File > Open).")
            return
        if not cube.calibrated:
            self.current_label.setText(
                f"{cube.n_channels} channels, <b>not calibrated</b>: the energy slider and "
                "spectra show channel numbers."
            )
            return
        zero, gain, quad = cube.energy.as_calibration()
        first, last = cube.energy.range_keV
        self.current_label.setText(
            f"Now: zero {zero:.5f} keV, gain {gain:.6f} keV/ch"
            + (f", quad {quad:.3g}" if quad else "")
            + f" ({first:.2f} to {last:.2f} keV)"
        )
        if self.found is not None and self._found_for is cube:
            zero, gain = self.found.zero_keV, self.found.gain_keV  # not yet applied: keep it
        self.zero_spin.setValue(zero)
        self.gain_spin.setValue(gain)

    @staticmethod
    def _show_line_energy(text, label):
        if not text.strip():
            label.setText("")
            return
        try:
            label.setText(f"= {line_energy(text):.4f} keV")
        except CalibrationError as exc:
            label.setText(str(exc))

    # ------------------------------------------------------------------ automatic

    def find(self):
        """Find the calibration of the chosen cube from its sum spectrum (in a thread worker).

        Returns the worker, or None when nothing was started (no cube, or a search runs).
        """
        layer = self.layer()
        cube = cube_of(layer)
        if cube is None:
            self._set_status("Choose a cube layer first.", error=True)
            return None
        # A stated calibration is searched around; an uncalibrated cube from the boxes' guess.
        guess = None if cube.calibrated else (self.zero_spin.value(), self.gain_spin.value())
        self.found_label.setText("")
        return self.runner.start(
            calibrate_cube_job, cube, guess=guess,
            on_returned=lambda found: self._show_found(layer, cube, found),
            description=f"Finding the calibration of {layer.name}",
        )

    def _show_found(self, layer, cube, found):
        if cube_of(layer) is not cube:
            self._set_status(f"{layer.name} changed during the search; find it again.",
                             error=True)
            return
        self.found, self._found_for = found, cube
        lo, hi = found.span_keV
        text = (f"<b>{'Confirmed' if found.kept_stated else 'Found'}</b> from "
                f"{len(found.lines)} lines ({lo:.2f} to {hi:.2f} keV): zero "
                f"{found.zero_keV:.5f} keV, gain {found.gain_keV:.7f} keV/ch"
                + (f", quad {found.quad_keV:.3g} keV/ch²" if found.quad_keV else "")
                + f"; residual {found.residual_keV * 1000:.1f} eV.")
        if found.kept_stated:
            text += (" The stated calibration agrees with the lines within their "
                     "uncertainties: nothing to correct.")
        elif found.stated is not None:
            shifts = [(e, found.offset_at(e)) for e in (3.0, 10.0, 20.0)]
            shifts = ", ".join(f"{offset * 1000:+.0f} eV at {e:g} keV"
                               for e, offset in shifts if offset is not None)
            text += f" The stated calibration was off by {shifts} (stated minus found)."
        text += " Lines: " + ", ".join(f"{m.line} {m.residual_keV * 1000:+.1f}"
                                       for m in found.lines) + " eV."
        if found.rejected:
            text += (f" {len(found.rejected)} line{'s' if len(found.rejected) > 1 else ''} left "
                     "out (hover for why).")
        # Everything, as the command line prints it, on hover.
        self.found_label.setToolTip("\n".join(found.report()))
        self.found_label.setText(text)
        self.zero_spin.setValue(found.zero_keV)
        self.gain_spin.setValue(found.gain_keV)
        self.tabs.setCurrentIndex(_MANUAL)
        self._set_status("Check the result, then press Apply calibration to use it.")

    def _set_running(self, running):
        for button in (self.find_button, self.apply_button, self.save_button):
            button.setEnabled(not running)

    def _runner_status(self, text):
        self._set_status(text, error=text.startswith("failed"))

    # ------------------------------------------------------------------ applying

    def calibration(self) -> tuple[float, float]:
        """(zero keV, gain keV/ch) from the current tab.

        Raises
        ------
        CalibrationError
            If a line name is unknown or the peaks give no valid calibration.
        """
        if self.tabs.currentIndex() == _MANUAL:
            return self.zero_spin.value(), self.gain_spin.value()
        points = []
        for channel, line in zip(self.peak_channels, self.peak_lines):
            if not line.text().strip():
                raise CalibrationError("name the line of each peak, e.g. 'Ca Ka' and 'Fe Ka'")
            points += [channel.value(), line_energy(line.text())]
        return two_peak_calibration(*points)

    def apply(self) -> bool:
        """Recalibrate the chosen cube layer; returns True on success.

        Errors are shown in the widget (a wrong line name must not raise into Qt).
        """
        layer = self.layer()
        cube = cube_of(layer)
        if cube is None:
            self._set_status("Choose a cube layer first.", error=True)
            return False
        try:
            zero, gain = self.calibration()
            if self._found_applies(cube, zero, gain):
                new = self.found.apply(cube)  # with its quadratic term and how it was found
            else:
                new = cube.with_calibration(zero, gain)
        except CalibrationError as exc:
            self._set_status(str(exc), error=True)
            return False
        set_cube(layer, new)
        self.found, self._found_for = None, None
        first, last = new.energy.range_keV
        message = (
            f"{layer.name}: calibrated, zero {zero:.5f} keV, gain {gain:.6f} keV/ch "
            f"({first:.2f} to {last:.2f} keV)"
        )
        self._set_status(message)
        self._show_current()
        show_info(message)
        return True

    def save(self, path=None):
        """Write the chosen cube, as calibrated now, to a new NeXus file (in a thread worker).

        Parameters
        ----------
        path : str, optional
            Asked with a save dialog when not given (the dialog asks before replacing a file).

        Returns the worker, or None when nothing was started.
        """
        layer = self.layer()
        cube = cube_of(layer)
        if cube is None:
            self._set_status("Choose a cube layer first.", error=True)
            return None
        if path is None:
            start = str(Path(cube.source).with_name(f"{Path(cube.source).stem}-calibrated.h5")
                        if cube.source else f"{layer.name}-calibrated.h5")
            path, _ = QFileDialog.getSaveFileName(self, "Save the calibrated cube", start,
                                                  "NeXus cube (*.h5 *.nxs)")
            if not path:
                return None
        if cube.source and Path(path).resolve() == Path(cube.source).resolve():
            self._set_status("That is the cube's own file, which is never changed: choose "
                             "another name.", error=True)
            return None
        return self.runner.start(
            write_cube_job, path, cube, force=True,  # the dialog asked before replacing
            on_returned=lambda written: self._set_status(
                f"{layer.name} saved to {written} with its calibration."),
            description=f"Saving {layer.name}",
        )

    def _found_applies(self, cube, zero, gain) -> bool:
        """True when the boxes still show the automatic result for this very cube."""
        if self.found is None or self._found_for is not cube or self.tabs.currentIndex() != _MANUAL:
            return False
        return (round(zero, self.zero_spin.decimals()) == round(self.found.zero_keV,
                                                                  self.zero_spin.decimals())
                and round(gain, self.gain_spin.decimals()) == round(self.found.gain_keV,
                                                                      self.gain_spin.decimals()))

    def _set_status(self, text, error=False):
        self.status.setStyleSheet("color: #e06c5a;" if error else "")
        self.status.setText(text)
