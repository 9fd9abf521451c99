"""A form for an instrument's tube, geometry, detector and read-out (the Model for your
instrument widget's): the fields of :data:`~napari_xrf_pigments.physics.instrument.FORM_FIELDS`."""

from __future__ import annotations

from magicgui.widgets import Container, FloatSpinBox, LineEdit, SpinBox

from ..errors import InvalidDataError
from ..physics.instrument import FORM_FIELDS, crystal_density, form_values, instrument_from_form

# Decimals shown per unit: enough to keep what files hold (calibrations to 0.1 eV over 8192
# channels, resolutions to 0.1 eV).
_DECIMALS = {"keV": 5, "keV/ch": 7, "eV": 1, "uA": 2, "g/cm3": 4}


class InstrumentForm(Container):
    """The values of an instrument in editable boxes, one per
    :class:`~napari_xrf_pigments.physics.instrument.FormField`.

    :meth:`fill` shows an instrument; :meth:`changes` are the values the user edited since;
    :meth:`instrument` is the shown instrument with those edits (the core checks them).
    Typing a crystal of ``DETECTOR_CRYSTALS`` (Si, Ge, CdTe) sets its density.
    """

    def __init__(self):
        super().__init__(labels=True)
        self.boxes = {}
        for f in FORM_FIELDS:
            tip = f.tip + (f" ({f.unit})" if f.unit else "") if f.tip else f.unit
            if f.kind == "text":
                box = LineEdit(label=f.label, tooltip=tip)
            elif f.kind == "integer":
                box = SpinBox(label=f.label, min=int(f.minimum), max=int(f.maximum), tooltip=tip)
            else:
                box = FloatSpinBox(label=f.label, min=f.minimum, max=f.maximum, tooltip=tip)
                box.native.setDecimals(_DECIMALS.get(f.unit, 3))
                box.native.setSuffix(f" {f.unit}" if f.unit else "")
            self.boxes[f.key] = box
            self.append(box)
        self.base = None
        self._filled = {}
        self._absent = set()  # fields the shown instrument has not (the tube of a beam)
        self.boxes["detector.material"].changed.connect(self._crystal_density)

    def fill(self, instrument) -> None:
        """Show ``instrument``; the tube's boxes are disabled for an instrument with a beam."""
        self.base = instrument
        values = form_values(instrument)
        self._absent = {key for key, value in values.items() if value is None}
        with self.changed.blocked():
            for key, box in self.boxes.items():
                value = values[key]
                box.enabled = value is not None
                if value is not None:
                    with box.changed.blocked():
                        box.value = value
        # What the boxes show (rounded to their decimals): an untouched box changes nothing.
        self._filled = self.values()

    def values(self) -> dict:
        """Every box's value (None for a field the instrument has not), in the form's units."""
        return {key: (None if key in self._absent else box.value)
                for key, box in self.boxes.items()}

    def changes(self) -> dict:
        """The values that differ from what :meth:`fill` showed."""
        return {key: value for key, value in self.values().items()
                if value is not None and value != self._filled.get(key)}

    def instrument(self):
        """The filled instrument with the user's edits.

        Raises
        ------
        InvalidDataError
            Nothing filled yet, or an edit the instrument refuses (the message names it).
        """
        if self.base is None:
            raise InvalidDataError("no instrument in the form yet")
        return instrument_from_form(self.base, self.changes())

    def _crystal_density(self, text):
        density = crystal_density(text)
        if density is not None:
            self.boxes["detector.density"].value = density
