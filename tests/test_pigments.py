"""Pigment library and stratigraphies: Table 1 content, user extensions, validation, labels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.errors import InvalidDataError
from napari_xrf_pigments.pigments import (
    Layer,
    PigmentLibraryError,
    Stratigraphy,
    ground_layer,
    load_pigment_library,
    stratigraphy_labels,
)
from napari_xrf_pigments.pigments._elements import mass_fractions, parse_formula

PAPER_CLASSES = ("CrG", "CrY", "CB", "EG", "IO", "LW", "PB", "RL", "CM", "VM", "ZW")


@pytest.fixture(scope="module")
def lib():
    return load_pigment_library()


def test_builtin_library_is_table_1(lib):
    assert lib.classes == PAPER_CLASSES
    expected = {
        "CC": "Ca1C1O3", "CrG": "Cr2O3", "CrY": "Pb1Cr1O4", "CB": "Co1Al2O4",
        "EG": "Cu4As6C4H6O16", "IO": "Fe2O3", "LW": "Pb3C2O8H2", "PB": "Fe7C18N18",
        "RL": "Pb3O4", "CM": "Sn1O2", "VM": "Hg1S1", "ZW": "Zn1O1",
    }
    for abbr, formula in expected.items():
        assert lib[abbr].formula == formula
        assert lib[abbr].density > 0
    assert lib["CC"].kind == "ground" and lib["CC"].label is None
    assert {b.abbreviation for b in lib.of_kind("binder")} == {"linseed_oil", "alkyd"}
    for binder in lib.of_kind("binder"):
        assert set(binder.elements) == {"C", "H", "O"}


def test_table_1_element_signatures(lib):
    # The elements XRF sees are what tells pigments apart (paper section 4.2).
    assert set(lib["VM"].elements) == {"Hg", "S"}
    assert set(lib["PB"].elements) - {"C", "N"} == {"Fe"}
    assert set(lib["IO"].elements) - {"O"} == {"Fe"}
    assert {"Pb", "Cr"} <= set(lib["CrY"].elements)
    assert lib["LW"].composition == {"Pb": 3, "C": 2, "O": 8, "H": 2}


def test_emerald_green_substitutes_count_as_eg_at_its_cu_as_ratio(lib):
    assert lib.class_of("VG") == "EG" and lib.class_of("SA") == "EG"
    mix = lib.expand_substitutes({"EG": 1.0})
    assert set(mix) == {"VG", "SA"} and sum(mix.values()) == pytest.approx(1.0)
    cu = mix["VG"] * lib["VG"].mass_fractions["Cu"]
    as_ = mix["SA"] * lib["SA"].mass_fractions["As"]
    eg = lib["EG"].mass_fractions
    assert cu / as_ == pytest.approx(eg["Cu"] / eg["As"], rel=0.01)
    # The paper's mock-ups used VG:SA = 2:3, close to the same ratio.
    assert mix["VG"] / mix["SA"] == pytest.approx(2 / 3, rel=0.05)


def test_table_2_mixtures(lib):
    tops = [m for m in lib.mixtures if m.position == "top"]
    bottoms = [m for m in lib.mixtures if m.position == "bottom"]
    assert len(tops) == 4 and len(bottoms) == 16  # 64 layer structures in the mock-ups
    for mix in lib.mixtures:
        assert sum(f for _, f in mix.pigments) == pytest.approx(1.0)
    assert dict(lib.mixture("Bottom 2B").pigments) == pytest.approx(
        {"ZW": 0.107, "LW": 0.887, "VM": 0.006})
    layer = lib.mixture("Top 3").layer(80, binder="alkyd", binder_fraction=0.25)
    assert layer.classes(lib) == {"VM", "CrY", "IO", "EG"}
    with pytest.raises(KeyError, match="Top 9"):
        lib.mixture("Top 9")


def test_mixture_with_unknown_pigment_is_rejected(tmp_path):
    path = tmp_path / "mix.json"
    path.write_text(json.dumps({"materials": [], "mixtures": [
        {"name": "Mine", "pigments": {"VM": 1, "XX": 2}}]}))
    with pytest.raises(PigmentLibraryError, match="mixture 'Mine': pigment 'XX'"):
        load_pigment_library(extra=path)


def test_formula_parser_needs_explicit_counts():
    assert parse_formula("Pb3C2O8H2") == {"Pb": 3, "C": 2, "O": 8, "H": 2}
    assert sum(mass_fractions("Hg1S1").values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="explicit integer count"):
        parse_formula("CoAl2O4")
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        parse_formula("Xx1O2")
    with pytest.raises(ValueError):
        parse_formula("Hg1S")


def _write(tmp_path, name, entries):
    path = tmp_path / name
    path.write_text(json.dumps({"format": "napari-xrf-pigments pigment library", "version": 1,
                                "materials": entries}))
    return path


def test_user_pigments_extend_and_replace(tmp_path, lib):
    path = _write(tmp_path, "mine.json", [
        {"abbreviation": "NY", "name": "Naples yellow", "formula": "Pb2Sb2O7", "density": 6.6},
        {"abbreviation": "LW", "name": "Lead white (porous)", "formula": "Pb3C2O8H2",
         "density": 5.5},
    ])
    toml = tmp_path / "more.toml"
    toml.write_text('[[materials]]\nabbreviation = "CdY"\nname = "Cadmium yellow"\n'
                    'formula = "Cd1S1"\ndensity = 4.8\n')
    ext = load_pigment_library(extra=[path, toml])
    assert ext["NY"].label == "NY" and ext["NY"].kind == "pigment"
    assert ext["CdY"].elements == ("Cd", "S")
    assert ext["LW"].density == 5.5
    assert ext.classes[: len(PAPER_CLASSES)] == PAPER_CLASSES
    assert ext.classes[-2:] == ("NY", "CdY")
    assert len(ext) == len(lib) + 2
    # The library round-trips through its own file format.
    ext.save(tmp_path / "saved.json")
    again = load_pigment_library(tmp_path / "saved.json")
    assert again.materials == ext.materials and again.mixtures == ext.mixtures


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"abbreviation": "XX", "formula": "Xx1O2", "density": 3.0}, "unknown element 'Xx'"),
        ({"abbreviation": "CB2", "formula": "CoAl2O4", "density": 4.4}, "explicit integer count"),
        ({"abbreviation": "ZZ", "formula": "Zn1O1", "density": 0}, "density must be > 0"),
        ({"abbreviation": "ZZ", "formula": "Zn1O1", "density": -1.0}, "density must be > 0"),
        ({"abbreviation": "ZZ", "formula": "Zn1O1"}, "missing 'density'"),
        ({"abbreviation": "ZZ", "formula": "Zn1O1", "density": 5, "colour": "white"},
         "unknown keys"),
    ],
)
def test_invalid_entries_name_the_entry(tmp_path, entry, message):
    path = _write(tmp_path, "bad.json", [
        {"abbreviation": "OK", "formula": "Fe2O3", "density": 5.2}, entry])
    with pytest.raises(PigmentLibraryError, match=message) as info:
        load_pigment_library(extra=path)
    text = str(info.value)
    assert "bad.json" in text and "entry 1" in text and repr(entry["abbreviation"]) in text


def test_unreadable_library_files(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(PigmentLibraryError, match="broken.json"):
        load_pigment_library(extra=bad)
    with pytest.raises(PigmentLibraryError, match="cannot read"):
        load_pigment_library(tmp_path / "missing.json")
    dup = _write(tmp_path, "dup.json", [{"abbreviation": "A", "formula": "Fe1", "density": 7},
                                        {"abbreviation": "A", "formula": "Fe1", "density": 7}])
    with pytest.raises(PigmentLibraryError, match="twice"):
        load_pigment_library(extra=dup)


def test_layer_mixture_density_and_binder(lib):
    layer = Layer({"LW": 55, "CM": 10, "PB": 25, "CB": 10}, 50, binder="alkyd",
                  binder_fraction=0.25)
    fractions = layer.mass_fractions()
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions["LW"] == pytest.approx(0.55 * 0.75) and fractions["alkyd"] == 0.25
    expected = 1.0 / sum(w / lib[a].density for a, w in fractions.items())
    assert layer.density_g_cm3(lib) == pytest.approx(expected)
    # Binder is much lighter than the pigments: it lowers the density.
    assert layer.density_g_cm3(lib) < Layer({"LW": 55, "CM": 10, "PB": 25, "CB": 10},
                                            50).density_g_cm3(lib)
    assert Layer({"VM": 1}, 10, density=5.0).density_g_cm3(lib) == 5.0
    assert Layer({"VM": 1}, 100).mass_thickness_g_cm2(lib) == pytest.approx(8.1 * 0.01)


@pytest.mark.parametrize(
    "kwargs",
    [dict(pigments={}, thickness_um=10), dict(pigments={"VM": 1}, thickness_um=0),
     dict(pigments={"VM": 1}, thickness_um=10, binder_fraction=1.0),
     dict(pigments={"VM": -1, "LW": 2}, thickness_um=10),
     dict(pigments={"VM": 1}, thickness_um=10, density=0)],
)
def test_invalid_layers(kwargs):
    with pytest.raises(InvalidDataError):
        Layer(**kwargs)


def test_unknown_pigment_in_layer_is_reported(lib):
    with pytest.raises(InvalidDataError, match="'XX' is not in the pigment library"):
        Stratigraphy([Layer({"XX": 1}, 10)]).check(lib)


def test_labels_present_and_top(lib):
    top = Layer({"VM": 39, "CrY": 6, "IO": 39, "VG": 6, "SA": 10}, 60, binder_fraction=0.25)
    bottom = Layer({"ZW": 10, "LW": 45, "CrY": 15}, 120)
    strat = Stratigraphy.with_ground(top, bottom, ground_um=175)
    assert strat.layers[-1] == ground_layer(175)
    present, on_top = strat.labels(lib)
    named = dict(zip(lib.classes, zip(present, on_top)))
    assert named["EG"] == (True, True)  # verdigris + sodium arsenite count as emerald green
    assert named["LW"] == (True, False) and named["ZW"] == (True, False)
    assert named["CrY"] == (True, True) and named["PB"] == (False, False)
    assert "CC" not in lib.classes  # the ground is no pigment class
    p, t = stratigraphy_labels([strat, Stratigraphy([bottom])], lib)
    assert p.shape == t.shape == (2, len(PAPER_CLASSES)) and p.dtype == bool
    assert np.array_equal(t[1], p[1])


def test_stratigraphy_round_trips_through_dicts():
    strat = Stratigraphy.with_ground(Layer({"VM": 1}, 30, binder_fraction=0.2),
                                     Layer({"LW": 0.5, "RL": 0.5}, 120, density=7.0))
    again = Stratigraphy.from_dict(json.loads(json.dumps(strat.to_dict())))
    assert again == strat and hash(again) == hash(strat)


def test_importing_pigments_and_instrument_loads_no_pymca():
    code = ("import sys, napari_xrf_pigments, napari_xrf_pigments.pigments as p\n"
            "import napari_xrf_pigments.physics as ph\n"
            "p.load_pigment_library(); ph.Instrument().to_dict()\n"
            "print([m for m in ('PyMca5', 'napari', 'qtpy') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
