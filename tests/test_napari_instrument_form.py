"""The instrument form of the Model for your instrument widget: filled from the cube's file,
edited, saved as the simulator's instrument JSON (atomically, never over a file without asking),
and what the adapt job is given. No model is trained here (the child process is replaced)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xrf_pigments._napari import _adapt_widget
from napari_xrf_pigments._napari._adapt_widget import FROM_DEFAULT, FROM_FILE, AdaptWidget
from napari_xrf_pigments._napari._reader import cube_layer_data
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.errors import InvalidDataError
from napari_xrf_pigments.physics.instrument import (
    MN_KA_KEV,
    Instrument,
    form_values,
    instrument_from_form,
)

pytestmark = pytest.mark.gui

# What a file header says about the tube (the keys readers write; see model.preflight.cube_tube).
TUBE = {"anode": "W", "voltage_kV": 35.0, "current_uA": 150.0}


def add_scan(viewer):
    e = 0.0195 * np.arange(2048) - 0.03
    counts = np.random.default_rng(0).poisson(
        2 + 80 * np.exp(-0.5 * ((e - 6.4) / 0.07) ** 2), (4, 5, 2048)).astype(np.uint16)
    cube = XRFCube.from_array(counts, zero=-0.03, gain=0.0195, live_time=2.0, source="scan.h5",
                              metadata={"tube": dict(TUBE)})
    for data, kwargs, kind in cube_layer_data(cube):
        viewer._add_layer_from_data(data, kwargs, kind)
    return viewer.layers["scan"]


@pytest.fixture
def messages(monkeypatch):
    shown = {"error": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(_adapt_widget, f"show_{kind}", shown[kind].append)
    return shown


def test_the_form_is_filled_from_the_cube_and_saves_json_the_simulator_reads(
        make_napari_viewer, tmp_path, messages):
    viewer = make_napari_viewer()
    add_scan(viewer)
    widget = AdaptWidget(viewer)
    boxes = widget.form.boxes
    # The file's tube and calibration, the rest the shipped model's instrument.
    assert boxes["tube.anode"].value == "W" and boxes["tube.voltage_kV"].value == 35.0
    assert boxes["tube.current_mA"].value == 150.0  # shown in uA
    assert boxes["readout.gain_keV"].value == pytest.approx(0.0195)
    assert boxes["readout.n_channels"].value == 2048 and boxes["live_time_s"].value == 2.0
    assert boxes["detector.material"].value == "Si1"
    assert widget.form.changes() == {}
    # Untouched, the form gives the cube's instrument exactly.
    from napari_xrf_pigments.physics.instrument import instrument_from_cube

    from_cube, _ = instrument_from_cube(widget.cube_layer().metadata["xrf_cube"])
    assert widget.instrument()[0] == from_cube

    # Edits: another tube, a CdTe detector (its density follows), a resolution.
    boxes["tube.anode"].value = "mo"
    boxes["tube.voltage_kV"].value = 30.0
    boxes["detector.material"].value = "CdTe"
    assert boxes["detector.density"].value == pytest.approx(5.85)
    boxes["readout.resolution_eV"].value = 180.0
    boxes["incidence_deg"].value = 45.0
    assert "entered in the form: tube anode mo, tube voltage 30 kV" in widget.instrument_info.value

    path = widget.save_instrument(tmp_path / "mine.json")
    assert path == tmp_path / "mine.json" and messages["error"] == []
    loaded = Instrument.load(path)
    assert loaded == widget.instrument()[0]
    assert (loaded.tube.anode, loaded.tube.voltage_kV, loaded.tube.current_mA) == ("Mo", 30.0, 0.15)
    assert (loaded.detector.material, loaded.detector.density) == ("Cd1Te1", 5.85)
    assert loaded.readout.fwhm_keV(MN_KA_KEV) == pytest.approx(0.180)
    assert loaded.incidence_deg == 45.0 and loaded.readout.zero_keV == pytest.approx(-0.03)
    # Exactly what `xrf-pigments instrument` writes.
    assert path.read_text() == json.dumps(loaded.to_dict(), indent=2) + "\n"
    assert not list(tmp_path.glob(".mine.json.*"))  # no temporary file left

    # The saved file, read back as the instrument source, fills the same values (as the
    # instrument writes them).
    shown = {**widget.form.values(), "tube.anode": "Mo", "detector.material": "Cd1Te1"}
    widget.source.value = FROM_FILE
    widget.instrument_file.value = path
    assert widget.form.values() == shown and widget.form.changes() == {}
    assert widget.instrument()[0] == loaded


def test_saving_over_a_file_asks_and_bad_values_are_one_line(make_napari_viewer, tmp_path,
                                                              monkeypatch, messages):
    viewer = make_napari_viewer()
    add_scan(viewer)
    widget = AdaptWidget(viewer)
    path = tmp_path / "instrument.json"
    path.write_text("old")
    monkeypatch.setattr(_adapt_widget, "confirm_replace", lambda parent, p, title: False)
    assert widget.save_instrument(path) is None and path.read_text() == "old"
    monkeypatch.setattr(_adapt_widget, "confirm_replace", lambda parent, p, title: True)
    assert widget.save_instrument(path) == path
    assert Instrument.load(path).tube.anode == "W"

    # Below the Fano limit: said under the source, and neither saved nor run.
    widget.form.boxes["readout.resolution_eV"].value = 100.0
    assert "below the Fano limit of 120 eV" in widget.instrument_info.value
    assert widget.save_instrument(tmp_path / "other.json") is None
    assert widget.run() is None and not widget.runner.running
    assert len(messages["error"]) == 2
    for error in messages["error"]:
        assert error.startswith("Model for your instrument: a resolution of 100 eV at Mn Ka is "
                                "below the Fano limit") and "\n" not in error
    assert not (tmp_path / "other.json").exists()


def test_the_adapt_job_gets_the_form_values(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                            messages):
    from napari_xrf_pigments.model import isolated

    given = []

    def child(target, out, instrument, base_model, background, *, n):
        # What the child process would get, instead of simulating and training.
        given.append((target, instrument, background, n))
        yield from ()
        return {"path": out, "name": "test", "split": {"n_test": 40},
                "before": {"summary": {"present_f1_mean": 0.5}},
                "after": {"summary": {"present_f1_mean": 0.6}}}

    monkeypatch.setattr(isolated, "isolated", child)
    viewer = make_napari_viewer()
    add_scan(viewer)
    widget = AdaptWidget(viewer)
    widget.form.boxes["tube.voltage_kV"].value = 25.0
    widget.form.boxes["detector.thickness_um"].value = 1000.0
    widget.form.boxes["name"].value = "our stage"
    widget.background.value = False
    widget.n_spectra.value = 200
    widget.out_dir.value = tmp_path / "model"
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30000)
    ((target, described, background, n),) = given
    assert target == _adapt_widget.ADAPT_TARGET and background is None and n == 200
    instrument = Instrument.from_dict(described)
    assert instrument == widget.instrument()[0]
    assert (instrument.name, instrument.tube.voltage_kV, instrument.tube.anode) == ("our stage", 25.0, "W")
    assert instrument.detector.thickness_um == 1000.0
    assert instrument.readout.gain_keV == pytest.approx(0.0195)
    assert "macro F1 on 40 held-back simulated spectra 0.500 (shipped) -> 0.600" in widget.status.value


def test_an_instrument_typed_in_without_a_scan(make_napari_viewer, tmp_path, messages):
    widget = AdaptWidget(make_napari_viewer())
    assert "choose a cube layer" in widget.instrument_info.value
    assert not widget.form.enabled  # nothing to show yet
    widget.source.value = FROM_DEFAULT
    assert widget.form.enabled
    # The form's 21 rows are shown on request: the dock fits a 1366 x 768 screen until then.
    assert widget.form.native.isHidden()
    assert widget.native.minimumSizeHint().height() < 600
    widget.edit_instrument.value = True
    assert not widget.form.native.isHidden()
    shown, expected = widget.form.values(), form_values(Instrument())
    key = "readout.resolution_eV"  # shown to 0.1 eV
    assert shown.pop(key) == pytest.approx(expected.pop(key), abs=0.05) and shown == expected
    widget.form.boxes["tube.anode"].value = "Cr"
    path = widget.save_instrument(tmp_path / "cr.json")
    assert Instrument.load(path) == Instrument().replace(tube=Instrument().tube.__class__(anode="Cr"))


def test_form_values_round_trip_and_name_the_bad_field():
    base = Instrument()
    assert instrument_from_form(base, form_values(base)) == base
    with pytest.raises(InvalidDataError, match="tube anode 'Xx' is not an element symbol"):
        instrument_from_form(base, {"tube.anode": "Xx"})
    with pytest.raises(InvalidDataError, match="detector crystal 'C-T' is not a formula"):
        instrument_from_form(base, {"detector.material": "C-T"})
    with pytest.raises(InvalidDataError, match="tube voltage 150.0 kV is outside 5-100 kV"):
        instrument_from_form(base, {"tube.voltage_kV": 150.0})
    with pytest.raises(InvalidDataError, match="unknown instrument form fields"):
        instrument_from_form(base, {"tube.colour": "red"})
    beam = Instrument.from_dict({"beam": {"energies_keV": [10.0], "weights": [1.0]}})
    assert form_values(beam)["tube.anode"] is None
    with pytest.raises(InvalidDataError, match="excited by a beam"):
        instrument_from_form(beam, {"tube.voltage_kV": 30.0})
