"""Warnings before prediction: energy range, counts, tube, calibration and class checks (no
Keras)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from napari_xrf_pigments.cube import EnergyAxis, XRFCube
from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
from napari_xrf_pigments.datasets.trainset import PigmentLabel, as_pigment_labels
from napari_xrf_pigments.errors import CalibrationError
from napari_xrf_pigments.model.files import DEFAULT_MODEL_DIR, PigmentModel, read_metadata
from napari_xrf_pigments.model.preflight import (
    DEFAULT_COUNT_RANGE,
    Preflight,
    cube_tube,
    measure_calibration,
    measure_cube_calibration,
    preflight_warnings,
    training_conditions,
)
from napari_xrf_pigments.physics import Instrument
from napari_xrf_pigments.physics.instrument import Beam, Tube
from napari_xrf_pigments.pigments import load_pigment_library
from napari_xrf_pigments.preprocess import Preprocessing
from napari_xrf_pigments.progress import run

M6_SPX = "rosettasciio_bruker/bruker_m6_jetstream_file_example.spx"


def metadata_model(meta) -> PigmentModel:
    """A PigmentModel from metadata alone: the checks never touch the network."""
    pigments = tuple(PigmentLabel(*p) for p in as_pigment_labels(meta["pigments"]))
    return PigmentModel(None, pigments, Preprocessing.from_dict(meta["preprocessing"]), meta)


def with_columns(meta, labels, library=None, **more) -> PigmentModel:
    """A metadata model whose output columns are ``labels`` of the library (names from it),
    group columns recorded as the training does."""
    library = load_pigment_library() if library is None else library
    groups = [g.to_dict() for g in library.groups if g.abbreviation in labels]
    meta = {**meta, "pigments": [{"abbreviation": a, "name": library.name_of(a)} for a in labels],
            "groups": groups, **more}
    return metadata_model(meta)


@pytest.fixture(scope="module")
def shipped():
    """The shipped model's metadata (grid 2.80-29.96 keV, Rh 40 kV + variants, 1e3-1e6 counts)."""
    return metadata_model(read_metadata(DEFAULT_MODEL_DIR))


@pytest.fixture(scope="module")
def model(shipped):
    """The shipped model's metadata with the pigment library's labels as its output columns,
    so that only the cube is checked (the shipped model may predate the library's classes)."""
    return with_columns(shipped.metadata, load_pigment_library().labels)


@pytest.fixture(scope="module")
def mockup():
    """A 10 x 10 mock-up (vermilion over lead white/zinc white/vermilion, chalk ground), Rh tube."""
    layout = crossed_strips(("Top 4",), ("Bottom 2A",), strip_px=4)
    cube, _ = run(simulate_mockup(layout, seed=3))
    return cube


def shifted(cube, offset_keV):
    """The same counts with the calibration zero moved: peaks read ``offset_keV`` too high."""
    zero, gain, quad = cube.energy.as_calibration()
    return cube.with_calibration(zero + offset_keV, gain, quad)


def codes(items):
    return [item.code for item in items]


def by_code(items, code):
    found = [item for item in items if item.code == code]
    assert len(found) == 1, items
    return found[0]


# -- a correct cube, then one fault at a time -------------------------------------------------


def test_a_correct_mockup_gives_no_warning(mockup, model):
    items = preflight_warnings(mockup, model)
    assert items == []
    check = measure_cube_calibration(mockup)
    assert abs(check.offset_keV) < 0.010
    assert not check.off
    used = {m.line for m in check.lines}
    # Strong lines of the mock-up: chalk, vermilion, lead white, the scattered Rh tube line.
    assert {"Ca Ka", "Hg La", "Pb La"} <= used
    for m in check.lines:
        assert m.significance > 10
        assert abs(m.offset_keV) < 0.015


@pytest.mark.parametrize("offset_keV", [0.060, -0.065])
def test_a_shifted_calibration_is_measured_and_reported(mockup, model, offset_keV):
    items = preflight_warnings(shifted(mockup, offset_keV), model)
    assert codes(items) == ["calibration"]
    item = items[0]
    assert abs(item.value - offset_keV) < 0.015
    assert str(item) == item.message
    word = "high" if offset_keV > 0 else "low"
    assert f"energy calibration looks {abs(offset_keV) * 1000:.0f} eV {word}" in item.message
    assert "Ca Ka at" in item.message and "expected" in item.message
    assert "Energy calibration widget" in item.message
    assert "\n" not in item.message


def test_a_cube_ending_at_20_keV_misses_part_of_the_model_range(mockup, model):
    zero, gain, _ = mockup.energy.as_calibration()
    n = int(round((20.0 - zero) / gain)) + 1
    cut = XRFCube(mockup.counts[..., :n], EnergyAxis.from_calibration(n, zero, gain),
                  metadata=mockup.metadata)
    item = by_code(preflight_warnings(cut, model), "energy-range")
    assert "ends at 20.0 keV" in item.message and "up to 30.0 keV" in item.message
    assert "lines above are missing" in item.message
    assert item.value == pytest.approx((29.96 - 20.0) / (29.96 - 2.80), abs=0.01)


def test_a_calibration_in_eV_is_caught(mockup, model):
    # 10 "keV" per channel over 4096 channels: refused by the energy axis itself.
    with pytest.raises(CalibrationError, match="looks like eV; divide it by 1000"):
        mockup.with_calibration(0.0, 10.0)
    # Channels keV wide that stay below 200 keV (a gain off by a factor, few channels): warned.
    coarse = XRFCube(mockup.counts[..., :300], EnergyAxis.from_calibration(300, 0.0, 0.5),
                     metadata=mockup.metadata)
    item = by_code(preflight_warnings(coarse, model), "energy-range")
    assert "only 54 channels between 2.80 and 29.96 keV" in item.message
    assert "keV, not eV" in item.message

    items = preflight_warnings(mockup.with_calibration(100.0, 0.01), model)  # 100 "keV" offset
    item = by_code(items, "energy-range")
    assert "does not overlap" in item.message and item.value == 1.0


def test_50_counts_per_pixel_are_below_the_training_range(mockup, model):
    rng = np.random.default_rng(0)
    e = mockup.energy.energies()
    inside = (e >= 2.8) & (e <= 29.96)
    median = np.median(mockup.counts[..., inside].sum(axis=2))
    thin = rng.binomial(mockup.counts, 50.0 / median).astype(np.uint32)
    items = preflight_warnings(dataclasses.replace(mockup, counts=thin), model)
    item = by_code(items, "counts")
    assert 30 < item.value < 70
    assert "counts per pixel are low" in item.message
    assert "1,000 to 1,000,000" in item.message
    assert "bin the cube" in item.message


def test_very_high_counts_are_reported_too(mockup, model):
    items = preflight_warnings(dataclasses.replace(mockup, counts=mockup.counts * 20), model)
    item = by_code(items, "counts")
    assert item.value > 1e6 and "counts per pixel are high" in item.message


def test_metadata_without_a_tube(mockup, model):
    items = preflight_warnings(dataclasses.replace(mockup, metadata={}), model)
    assert codes(items) == ["tube"]
    assert items[0].message.startswith("unknown tube: ")
    # The tubes the training set drew (its provenance lists them), not all it could draw.
    assert "trained with Rh 40 kV and variants (Rh, W, Mo anodes, 31-49 kV)" in items[0].message


@pytest.mark.slow  # simulates spectra
def test_a_chromium_tube_at_25_kV_is_unlike_the_training_instruments(model):
    layout = crossed_strips(("Top 4",), ("Bottom 2A",), strip_px=4)
    instrument = Instrument(name="Cr tube", tube=Tube(anode="Cr", voltage_kV=25.0))
    cube, _ = run(simulate_mockup(layout, seed=4, instrument=instrument))
    items = preflight_warnings(cube, model)
    assert codes(items) == ["tube"]
    item = items[0]
    assert item.value == 25.0
    assert item.message.startswith("tube unlike the training instruments: Cr 25 kV (no Cr anode in training")
    assert "trained with Rh 40 kV and variants (Rh, W, Mo anodes, 31-49 kV)" in item.message
    # Its calibration is still measured right, with the scattered Cr Ka among the lines.
    check = measure_cube_calibration(cube)
    assert abs(check.offset_keV) < 0.010
    assert "Cr Ka" in {m.line for m in check.lines}


def test_a_copper_tube_is_named_though_variants_could_have_drawn_one(mockup, model):
    """The shipped model's variants could have drawn Cu but did not (its copper group drops
    from 0.95 to 0.66 F1 on a Cu tube): the check uses the tubes actually drawn."""
    meta = {**mockup.metadata, "instrument": {"tube": {"anode": "Cu", "voltage_kV": 40.0}}}
    items = preflight_warnings(dataclasses.replace(mockup, metadata=meta), model)
    assert codes(items) == ["tube"] and "(no Cu anode in training)" in items[0].message
    # A set that lists no tubes (made before they were recorded): every drawable anode passes.
    unlisted = copy.deepcopy(model.metadata)
    del unlisted["training"]["data"]["provenance"]["tubes"]
    old = with_columns(unlisted, load_pigment_library().labels)
    assert "tube" not in codes(preflight_warnings(dataclasses.replace(mockup, metadata=meta), old))


def test_an_uncalibrated_cube_gives_one_item_and_no_exception(mockup, model):
    raw = XRFCube(mockup.counts, EnergyAxis.uncalibrated(mockup.n_channels))
    items = preflight_warnings(raw, model)
    assert codes(items) == ["uncalibrated"]
    assert items[0].value is None and "Energy calibration widget" in items[0].message


# -- robustness: never raise, read little ------------------------------------------------------


def test_bad_contents_become_items_not_exceptions(mockup, model):
    bad = mockup.counts.astype(np.float32)
    bad[2, 3, 100] = np.nan
    items = preflight_warnings(dataclasses.replace(mockup, counts=bad), model)
    assert "data" in codes(items) and "NaN" in by_code(items, "data").message

    empty = dataclasses.replace(mockup, counts=np.zeros_like(mockup.counts))
    items = preflight_warnings(empty, model)
    assert "no sampled pixel has counts" in by_code(items, "counts").message
    assert by_code(items, "calibration").message.startswith(
        "could not check the energy calibration: no clear")

    garbage = copy.deepcopy(mockup.metadata)
    garbage["instrument"]["tube"] = {"anode": "Xx", "voltage_kV": "forty"}
    garbage["instrument"]["readout"] = "?"
    items = preflight_warnings(dataclasses.replace(mockup, metadata=garbage), model)
    assert codes(items) == ["tube"] and "unknown tube" in items[0].message


def test_a_failing_check_becomes_could_not_check(mockup, model, monkeypatch):
    from napari_xrf_pigments.model import preflight

    def broken(*args, **kwargs):
        raise RuntimeError("peak search exploded")

    monkeypatch.setattr(preflight, "measure_calibration", broken)
    items = preflight_warnings(shifted(mockup, 0.06), model)
    assert items == [Preflight("calibration",
                               "could not check the energy calibration: peak search exploded")]


class RecordingCounts:
    """Array-like counts that remember which rows were read (as an h5py dataset would be)."""

    def __init__(self, counts):
        self.counts, self.shape, self.dtype, self.reads = counts, counts.shape, counts.dtype, []

    def __getitem__(self, key):
        rows = key[0] if isinstance(key, tuple) else key
        self.reads.append((rows.start, rows.stop))
        return self.counts[key]


def test_only_evenly_spaced_rows_are_read(mockup, model):
    tall = np.concatenate([mockup.counts] * 30, axis=0)  # 300 rows x 10 columns
    counts = RecordingCounts(tall)
    cube = dataclasses.replace(mockup, counts=counts)
    assert preflight_warnings(cube, model, max_spectra=200) == []
    rows = [start for start, stop in counts.reads]
    assert all(stop - start == 1 for start, stop in counts.reads)
    assert len(rows) == 20 and rows[0] == 0 and rows[-1] == 299
    assert np.ptp(np.diff(rows)) <= 1  # evenly spaced

    # More columns than max_spectra: every n-th spectrum of the middle row.
    counts.reads.clear()
    preflight_warnings(cube, model, max_spectra=4)
    assert counts.reads == [(150, 151)]


def test_an_h5py_backed_cube_is_sampled(tmp_path, mockup, model):
    import h5py

    with h5py.File(tmp_path / "cube.h5", "w") as f:
        f.create_dataset("counts", data=np.concatenate([mockup.counts] * 8, axis=0),
                         chunks=(1, 10, 4096))
    with h5py.File(tmp_path / "cube.h5", "r") as f:
        cube = dataclasses.replace(mockup, counts=f["counts"])
        items = preflight_warnings(shifted(cube, -0.065), model, max_spectra=300)
    assert codes(items) == ["calibration"]
    assert abs(items[0].value + 0.065) < 0.015


def test_a_dask_backed_cube_is_sampled(mockup, model):
    da = pytest.importorskip("dask.array")

    lazy = da.from_array(np.concatenate([mockup.counts] * 5, axis=0), chunks=(4, 10, 4096))
    items = preflight_warnings(shifted(dataclasses.replace(mockup, counts=lazy), 0.06), model,
                               max_spectra=250)
    assert codes(items) == ["calibration"]
    assert abs(items[0].value - 0.06) < 0.015


def test_100_by_100_cube_is_checked_without_warnings(mockup, model):
    # Speed is a benchmark matter (about 0.08 s on 2 cores), not asserted here.
    big = dataclasses.replace(mockup, counts=np.tile(mockup.counts, (10, 10, 1)))
    assert preflight_warnings(big, model) == []


# -- the model's classes against the pigment library -------------------------------------------

PAPER_CLASSES = ("CrG", "CrY", "CB", "EG", "IO", "LW", "PB", "RL", "CM", "VM", "ZW")


class FakeModel:
    """The least a model needs for the checks: columns, preprocessing, metadata, a name."""

    def __init__(self, pigments, model, name="mine", groups=None):
        self.pigments = tuple(pigments)  # plain (abbreviation, name) pairs
        self.preprocessing = model.preprocessing
        self.metadata = {**model.metadata, "groups": [
            {"abbreviation": g, "members": []} for g in groups or ()]}
        self.name = name


def test_a_model_of_the_papers_11_classes_is_told_what_it_lacks(mockup, model):
    eleven = with_columns(model.metadata, PAPER_CLASSES, name="default-v3")
    items = preflight_warnings(mockup, eleven)
    assert codes(items) == ["classes"]
    assert items[0].message == (
        "model default-v3 was trained on 11 classes; the pigment library has 22 classes and 3 "
        "groups: not in the model: Azu, Mal, Sm, UM, LTY, NapY, TiW, CdY, Orp, YO and 4 more "
        "(their maps are not made)")
    assert items[0].value == 14.0 and "\n" not in items[0].message
    # The other checks run as before, and the class check runs when the counts are bad too.
    bad = mockup.counts.astype(np.float32)
    bad[2, 3, 100] = np.nan
    items = preflight_warnings(dataclasses.replace(mockup, counts=bad), eleven)
    assert codes(items) == ["data", "classes"]
    # An uncalibrated cube still gives its single item (prediction refuses it anyway).
    raw = XRFCube(mockup.counts, EnergyAxis.uncalibrated(mockup.n_channels))
    assert codes(preflight_warnings(raw, eleven)) == ["uncalibrated"]


def test_columns_only_in_the_model_or_named_otherwise_are_listed(mockup, model):
    library = load_pigment_library()
    pairs = [(a, library.name_of(a)) for a in library.labels if a != "Orp"]
    pairs.insert(3, ("NY", "Naples yellow (old)"))
    pairs[pairs.index(("CM", "Carmine"))] = ("CM", "Carmine lake")
    fake = FakeModel(pairs, model, groups=["LW+RL", "IO+PB+YO", "Azu+Mal"])
    item = by_code(preflight_warnings(mockup, fake), "classes")
    assert item.message == (
        "model mine was trained on 22 classes and 3 groups; the pigment library has 22 classes "
        "and 3 groups: not in the model: Orp (their maps are not made); only in the model: NY "
        "(no evidence check); named differently: CM ('Carmine lake' in the model, 'Carmine' in "
        "the library) (no evidence check)")
    assert item.value == 3.0


def test_the_same_labels_in_another_order_give_no_warning(mockup, model):
    library = load_pigment_library()
    pairs = [(a, library.name_of(a)) for a in reversed(library.labels)]
    assert preflight_warnings(mockup, FakeModel(pairs, model)) == []
    # PigmentLabel columns, as a loaded model has them, work alike.
    labels = tuple(PigmentLabel(a, n) for a, n in pairs)
    assert preflight_warnings(mockup, FakeModel(labels, model)) == []


def test_a_model_without_group_columns_and_a_user_library(mockup, model):
    library = load_pigment_library()
    fake = FakeModel([(c, library.name_of(c)) for c in library.classes], model)
    item = by_code(preflight_warnings(mockup, fake), "classes")
    assert item.message.endswith(
        "trained on 22 classes; the pigment library has 22 classes and 3 groups: not in the "
        "model: LW+RL, IO+PB+YO, Azu+Mal (their maps are not made)")
    # The library to compare with can be given (one extended with a user's pigment).
    extended = load_pigment_library(extra={"materials": [
        {"abbreviation": "MnV", "name": "Manganese violet", "formula": "N1H4Mn1P2O7",
         "density": 2.6}]})
    item = by_code(preflight_warnings(mockup, model, library=extended), "classes")
    assert "has 23 classes and 3 groups: not in the model: MnV (their maps" in item.message
    # Group columns count as groups even when the metadata does not record them.
    unrecorded = FakeModel([(a, library.name_of(a)) for a in library.labels], model)
    assert preflight_warnings(mockup, unrecorded, library=extended)[0].message.startswith(
        "model mine was trained on 22 classes and 3 groups; the pigment library has 23")


def test_long_lists_are_cut_and_models_without_columns_are_not_checked(mockup, model):
    fake = FakeModel([(f"X{i}", f"pigment {i}") for i in range(30)], model, name="")
    message = by_code(preflight_warnings(mockup, fake), "classes").message
    assert message.startswith("the model was trained on 30 classes;")
    assert "only in the model: X0, X1, X2, X3, X4, X5, X6, X7, X8, X9 and 20 more (no " in message
    assert "not in the model: CrG, CrY, CB, EG, IO, LW, PB, RL, CM, VM and 15 more" in message
    assert len(message) < 400
    bare = FakeModel([], model)
    del bare.pigments
    assert preflight_warnings(mockup, bare) == []


def test_a_failing_class_check_becomes_could_not_check(mockup, model, monkeypatch):
    from napari_xrf_pigments import pigments

    def broken(*args, **kwargs):
        raise pigments.PigmentLibraryError("library.json is not valid")

    monkeypatch.setattr(pigments, "load_pigment_library", broken)
    assert preflight_warnings(mockup, model) == [Preflight(
        "classes", "could not check the model's classes: library.json is not valid")]


# -- where the training conditions and the tube come from --------------------------------------


def test_training_conditions_of_the_shipped_model(model):
    cond = training_conditions(model)
    assert cond.counts_range == (1e3, 1e6) and cond.counts_source == "augmentation"
    assert (cond.anode, cond.kv) == ("Rh", 40.0)
    # The tubes its training set drew (listed in the provenance).
    assert cond.anodes == ("Rh", "W", "Mo") and cond.kv_range == pytest.approx((30.55, 49.01), abs=0.01)


def test_training_conditions_fall_back(model):
    meta = copy.deepcopy(model.metadata)
    meta["training"]["augmentation"]["counts"] = None
    cond = training_conditions(meta)
    # 0.1-10 s live time x 0.5-2 current factor x the typical 2e4 counts/s at 40 uA.
    assert cond.counts_source == "live time"
    assert cond.counts_range == pytest.approx((1e3, 4e5))

    # A training set that does not list its tubes: the anodes its variants could draw, or the
    # base tube alone.
    del meta["training"]["data"]["provenance"]["tubes"]
    cond = training_conditions(meta)
    assert cond.anodes == ("Rh", "W", "Mo", "Ag", "Cu") and cond.kv_range == (30.0, 50.0)
    meta["training"]["data"]["provenance"]["recipe"]["n_instruments"] = 1
    cond = training_conditions(meta)
    assert cond.anodes == ("Rh",) and cond.kv_range == (40.0, 40.0)

    # A finetuned model: the base model's training record is used.
    finetuned = {"training": {"kind": "finetune", "base_model": {"training": model.metadata[
        "training"]}}}
    assert training_conditions(finetuned).counts_range == (1e3, 1e6)

    bare = training_conditions({})
    assert bare.counts_range == DEFAULT_COUNT_RANGE and bare.counts_source == "default"
    assert bare.anode is None


def test_a_model_without_training_records(mockup, model):
    meta = {k: v for k, v in model.metadata.items() if k != "training"}
    items = preflight_warnings(mockup, metadata_model(meta))
    assert codes(items) == ["tube"]
    assert items[0].message.startswith("could not check the tube: the model's metadata")


def test_cube_tube_reads_the_readers_keys():
    assert cube_tube({"excitation_kV": 50}) == (None, 50.0, None)
    assert cube_tube({"instrument": Instrument().to_dict()}) == ("Rh", 40.0, None)
    assert cube_tube({"tube": {"target": "w", "voltage": 35000}}) == ("W", 35.0, None)
    assert cube_tube({"Tube_Anode": 45, "tube_kV": "40"}) == ("Rh", 40.0, None)
    assert cube_tube({"instrument": "M6 Jetstream", "voltage": 40}) == (None, None, None)
    mono = Instrument(tube=None, beam=Beam((17.5,), (1.0,))).to_dict()
    assert cube_tube({"instrument": mono}) == (None, None, "17.5 keV")


def test_measure_calibration_on_a_synthetic_spectrum():
    from napari_xrf_pigments.lines import element_lines

    e = -0.02 + 0.01 * np.arange(2048)
    y = 50.0 * np.exp(-e / 8.0) + 5.0
    true_offset = 0.045
    for element, family, area in (("Ca", "K", 4e5), ("Fe", "K", 2e5), ("Pb", "L", 3e5)):
        for line in element_lines(element, (family,)):
            energy = line.energy + true_offset
            sigma = np.sqrt(0.065**2 + 0.00385 * energy * 0.114 * 2.3548**2) / 2.3548
            y = y + area * line.rate * 0.01 * np.exp(-0.5 * ((e - energy) / sigma) ** 2) / (
                sigma * np.sqrt(2 * np.pi))
    counts = np.random.default_rng(1).poisson(y)
    check = measure_calibration(e, counts, resolution_keV=0.136)
    assert check.offset_keV == pytest.approx(true_offset, abs=0.005)
    assert {"Ca Ka", "Fe Ka", "Pb La", "Pb Lb"} <= {m.line for m in check.lines}
    assert check.off  # 45 eV is more than a quarter of the FWHM (~36 eV at 6.4 keV)


# -- real data ---------------------------------------------------------------------------------


@pytest.mark.realdata
def test_the_real_bruker_m6_spectrum_is_calibrated_right(real_data, model):
    from napari_xrf_pigments.io import open_cube

    cube = open_cube(real_data / M6_SPX)
    check = measure_cube_calibration(cube)
    assert abs(check.offset_keV) < 0.015, check
    assert len(check.lines) >= 3  # e.g. Ar, Ca, Fe, Zn, Sr
    items = preflight_warnings(cube, model)
    # The .spx's XRF header names its tube (Rh, 50 kV), one the model was trained with;
    # nothing is wrong.
    assert cube_tube(cube.metadata)[:2] == ("Rh", 50.0)
    assert codes(items) == []
    shifted_items = preflight_warnings(shifted(cube, 0.06), model)
    assert abs(by_code(shifted_items, "calibration").value - 0.06) < 0.015
