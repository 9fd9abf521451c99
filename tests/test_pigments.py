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


DISTRACTOR = {"abbreviation": "TW", "name": "Titanium white", "formula": "Ti1O2",
              "density": 4.23, "kind": "distractor", "split": "train", "evidence": ["Ti"]}


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
        ({**DISTRACTOR, "split": "validation"}, "needs 'split'"),
        ({k: v for k, v in DISTRACTOR.items() if k != "split"}, "needs 'split'"),
        ({**DISTRACTOR, "class": "TW"}, "distractor is never a class"),
        ({**DISTRACTOR, "class": None}, "distractor is never a class"),
        ({"abbreviation": "ZZ", "formula": "Zn1O1", "density": 5, "split": "train"},
         "'split' is only for distractors"),
        ({**DISTRACTOR, "evidence": ["Ti", "Ba"]}, "evidence element 'Ba' is not in the formula"),
        ({**DISTRACTOR, "evidence": ["Tx"]}, "evidence 'Tx' is not an element symbol"),
        ({**DISTRACTOR, "evidence": "Ti"}, "evidence must be a list"),
        ({**DISTRACTOR, "source": 3}, "source must be a string"),
        ({**DISTRACTOR, "splits": "train"}, "unknown keys"),
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


# -- evidence elements, sources and out-of-library distractors -------------------------------

CLASS_EVIDENCE = {
    "CrG": ("Cr",), "CrY": ("Cr", "Pb"), "CB": ("Co",), "EG": ("Cu", "As"), "IO": ("Fe",),
    "LW": ("Pb",), "PB": ("Fe",), "RL": ("Pb",), "CM": ("Sn",), "VM": ("Hg",), "ZW": ("Zn",),
}


def test_every_class_has_its_evidence_elements(lib):
    assert lib.classes == PAPER_CLASSES  # distractors add no class and keep the order
    assert {c: lib.evidence_of(c) for c in lib.classes} == CLASS_EVIDENCE
    assert lib["EG"].evidence == ("Cu", "As")
    assert lib["VG"].evidence == ("Cu",) and lib["SA"].evidence == ("As",)
    for m in (*lib.of_kind("ground"), *lib.of_kind("binder")):
        assert m.evidence == ()
    assert "substrate" in lib["CM"].note and "no element evidence" in lib["CM"].note
    with pytest.raises(KeyError, match="no class 'Azu'"):
        lib.evidence_of("Azu")


def test_distractors_are_never_classes_and_splits_are_disjoint(lib):
    train, test = lib.distractors("train"), lib.distractors("test")
    assert len(train) >= 16 and len(test) >= 9
    assert lib.distractors() == tuple(m for m in lib if m.kind == "distractor")
    assert set(lib.distractors()) == set(train) | set(test)
    for attr in ("abbreviation", "name"):
        assert not {getattr(m, attr) for m in train} & {getattr(m, attr) for m in test}
    for m in lib.distractors():
        assert m.label is None and m.abbreviation not in lib.classes and m.note
    # Code that iterates the pigments sees what it saw before distractors existed.
    assert [m.abbreviation for m in lib.of_kind("pigment")] == [*PAPER_CLASSES, "VG", "SA"]
    with pytest.raises(ValueError, match="split"):
        lib.distractors("validation")


def test_distractor_splits_both_hold_foreign_elements_and_confusing_combinations(lib):
    class_elements = {el for ev in CLASS_EVIDENCE.values() for el in ev}
    for split in ("train", "test"):
        evidence = [set(m.evidence) for m in lib.distractors(split)]
        assert any(ev - class_elements - {"K", "Ca"} for ev in evidence)  # Ti, Ba, Cd, ...
        assert {"Cu"} in evidence  # copper without arsenic
        assert any("As" in ev and "Cu" not in ev for ev in evidence)
        assert any("Cr" in ev and "Pb" not in ev for ev in evidence)
        assert any("Pb" in ev and ev & {"Sn", "Sb"} for ev in evidence)
        assert any("Co" in ev and len(ev) > 1 for ev in evidence)
    # A distractor that XRF cannot tell from a class (an Fe-only ochre, a Pb-only white)
    # would teach the network to contradict the physics.
    for m in lib.distractors():
        assert set(m.evidence) not in [set(ev) for ev in CLASS_EVIDENCE.values()], m.abbreviation


def test_every_entry_has_a_source(lib):
    for m in lib:
        assert m.source.strip(), m.abbreviation


def test_pymca_reads_every_formula_and_evidence_is_what_xrf_sees(lib):
    pytest.importorskip("PyMca5")
    from napari_xrf_pigments.lines import element_lines
    from napari_xrf_pigments.physics import _pymca

    def visible(el):  # a K or L line above 2.8 keV that a 40 kV tube excites
        return any(2.8 < line.energy < 40 for line in element_lines(el, ("K", "L")))

    for m in lib:
        fractions = _pymca.element_mass_fractions(m.formula)
        assert set(fractions) == set(m.composition), m.abbreviation
        assert sum(fractions.values()) == pytest.approx(1.0)
        assert m.density > 0
        if m.kind in ("pigment", "distractor"):
            assert set(m.evidence) == {el for el in m.elements if visible(el)}, m.abbreviation


def test_library_with_distractors_round_trips(tmp_path, lib):
    lib.save(tmp_path / "lib.json")
    again = load_pigment_library(tmp_path / "lib.json")
    assert again.materials == lib.materials and again.mixtures == lib.mixtures
    saved = json.loads((tmp_path / "lib.json").read_text())["materials"]
    tw = next(e for e in saved if e["abbreviation"] == "TiR")
    assert tw["kind"] == "distractor" and tw["split"] == "train" and "class" not in tw
    assert tw["evidence"] == ["Ti"]


def test_library_without_distractors(lib):
    bare = lib.without_distractors()
    assert not bare.distractors() and bare.classes == lib.classes
    assert [m.abbreviation for m in bare] == [m.abbreviation for m in lib
                                              if m.kind != "distractor"]
    assert len(bare.mixtures) == 20  # Table 2; mixtures with distractors are dropped
    some = lib.without_distractors(keep=("TiR", "Azu"))
    assert [m.abbreviation for m in some.distractors()] == ["Azu", "TiR"]
    assert "Azurite + lead white" in [m.name for m in some.mixtures]
    assert lib.without_distractors(keep=[m.abbreviation for m in lib.distractors()]) is lib


def test_distractor_mixtures_for_mockup_strips(lib):
    mix = lib.mixture("Azurite + lead white")
    assert mix.position is None and dict(mix.pigments) == pytest.approx({"Azu": 0.5, "LW": 0.5})
    assert mix.layer(50).classes(lib) == {"LW"}  # azurite is no class
    for mix in lib.mixtures:  # a mixture never mixes the two splits
        splits = {lib[a].split for a, _ in mix.pigments if lib[a].kind == "distractor"}
        assert len(splits) <= 1, mix.name


def test_evidence_may_sit_in_a_substitute(tmp_path):
    ok = _write(tmp_path, "ok.json", [
        {"abbreviation": "EG2", "formula": "C1H4", "density": 1.0, "evidence": ["Cu", "As"],
         "substitute": {"VG": 1, "SA": 1}}])
    assert load_pigment_library(extra=ok).evidence_of("EG2") == ("Cu", "As")
    bad = _write(tmp_path, "bad.json", [
        {"abbreviation": "EG3", "formula": "C1H4", "density": 1.0, "evidence": ["Cu", "Zn"],
         "substitute": {"VG": 1, "SA": 1}}])
    with pytest.raises(PigmentLibraryError,
                       match=r"bad.json: entry 0 \('EG3'\): evidence element 'Zn'.*substitutes"):
        load_pigment_library(extra=bad)
