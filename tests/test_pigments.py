"""Pigment library and stratigraphies: Table 1 content and the classes added to it, groups,
user extensions, validation, labels."""

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
#: Classes added to the paper's Table 1 (historical and modern pigments that XRF can see).
NEW_CLASSES = ("Azu", "Mal", "Sm", "UM", "LTY", "NapY", "TiW", "CdY", "Orp", "YO", "RU")
CLASSES = PAPER_CLASSES + NEW_CLASSES
GROUPS = ("LW+RL", "IO+PB+YO", "Azu+Mal")


@pytest.fixture(scope="module")
def lib():
    return load_pigment_library()


def test_builtin_library_is_table_1(lib):
    assert lib.classes[: len(PAPER_CLASSES)] == PAPER_CLASSES
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
        {"name": "Mine", "pigments": {"VM": 40, "XX": 60}}]}))
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


def test_user_pigments_extend_and_refuse_a_redefinition(tmp_path, lib):
    # Manganese violet and aureolin: in no built-in list (not CdY, NapY, CoV, ...).
    path = _write(tmp_path, "mine.json", [
        {"abbreviation": "MnV", "name": "Manganese violet", "formula": "N1H4Mn1P2O7",
         "density": 2.6, "evidence": ["Mn"]},
    ])
    toml = tmp_path / "more.toml"
    toml.write_text('[[materials]]\nabbreviation = "CoY"\nname = "Aureolin"\n'
                    'formula = "K3Co1N6O12"\ndensity = 2.6\n')
    ext = load_pigment_library(extra=[path, toml])
    assert ext["MnV"].label == "MnV" and ext["MnV"].kind == "pigment"
    assert ext["CoY"].elements == ("K", "Co", "N", "O")
    assert ext.classes[: len(CLASSES)] == CLASSES
    assert ext.classes[-2:] == ("MnV", "CoY")
    assert ext.labels == (*ext.classes, *GROUPS)  # groups stay after every class
    assert len(ext) == len(lib) + 2
    assert ext["LW"] == lib["LW"]
    # The library round-trips through its own file format.
    ext.save(tmp_path / "saved.json")
    again = load_pigment_library(tmp_path / "saved.json")
    assert again.materials == ext.materials and again.mixtures == ext.mixtures
    assert again.groups == ext.groups

    # Redefining a built-in material is refused (it used to replace it silently).
    redefine = _write(tmp_path, "redefine.json", [
        {"abbreviation": "MnV", "formula": "N1H4Mn1P2O7", "density": 2.6},
        {"abbreviation": "LW", "name": "Lead white (porous)", "formula": "Pb3C2O8H2",
         "density": 5.5},
    ])
    with pytest.raises(PigmentLibraryError) as info:
        load_pigment_library(extra=redefine)
    text = str(info.value)
    assert "redefine.json: entry 1 ('LW')" in text and "already defined" in text
    assert "library.json" in text  # where the first definition is
    # ... also when the first definition is in another user file.
    with pytest.raises(PigmentLibraryError,
                       match=r"redefine.json: entry 0 \('MnV'\): 'MnV' is already defined by "
                             r".*mine.json: entry 0 \('MnV'\)"):
        load_pigment_library(extra=[path, redefine])


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
    assert p.shape == t.shape == (2, len(CLASSES)) and p.dtype == bool
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
    "Azu": ("Cu",), "Mal": ("Cu",), "Sm": ("Co",), "UM": (), "LTY": ("Sn", "Pb"),
    "NapY": ("Sb", "Pb"), "TiW": ("Ti",), "CdY": ("Cd",), "Orp": ("As",), "YO": ("Fe",),
    "RU": ("Mn", "Fe"),
}
#: Elements with lines XRF sees that a material's evidence leaves out on purpose: smalt's K
#: and As vary from batch to batch (K2O 2-21 %, As2O5 0-8 %), only its cobalt is required;
#: bismuth oxychloride's Cl has only its K-beta line just above the 2.8 keV crop.
NOT_EVIDENCE = {"Sm": {"K", "As"}, "BiOC": {"Cl"}}


def test_every_class_has_its_evidence_elements(lib):
    assert lib.classes == CLASSES  # distractors add no class and keep the order
    assert {c: lib.evidence_of(c) for c in lib.classes} == CLASS_EVIDENCE
    assert lib["EG"].evidence == ("Cu", "As")
    assert lib["VG"].evidence == ("Cu",) and lib["SA"].evidence == ("As",)
    assert lib.class_of("TiA") == "TiW" and lib["TiA"].evidence == ("Ti",)
    for m in (*lib.of_kind("ground"), *lib.of_kind("binder")):
        assert m.evidence == ()
    assert "substrate" in lib["CM"].note and "no element evidence" in lib["CM"].note
    with pytest.raises(KeyError, match="no class 'XX'"):
        lib.evidence_of("XX")
    with pytest.raises(KeyError, match="no class 'VG'"):  # a material, but no class
        lib.evidence_of("VG")


def test_builtin_library_has_22_classes_with_compositions_and_sources(lib):
    assert len(lib.classes) == 22 and lib.classes == CLASSES
    for cls in NEW_CLASSES:
        materials = [m for m in lib if m.label == cls]
        assert materials, cls
        for m in materials:
            assert m.kind == "pigment", m.abbreviation
            assert parse_formula(m.formula) == m.composition, m.abbreviation
            assert m.density > 0, m.abbreviation
            assert m.source.strip(), m.abbreviation
            assert m.typical.strip(), m.abbreviation
    # Anatase counts as titanium white; every other new class is one material.
    assert [m.abbreviation for m in lib if m.label == "TiW"] == ["TiW", "TiA"]
    assert lib["TiA"].formula == lib["TiW"].formula and lib["TiA"].density < lib["TiW"].density
    assert lib["LTY"].formula == "Pb2Sn1O4" and lib["NapY"].formula == "Pb2Sb2O7"
    assert lib["CdY"].formula == "Cd1S1" and lib["Orp"].formula == "As2S3"


def test_train_distractors_hold_no_element_of_any_class(lib):
    # Design rule: a training distractor may never teach the network that a class's element
    # means "no class"; test distractors may (they test the open set).
    train, test = lib.distractors("train"), lib.distractors("test")
    assert len(train) >= 15 and len(test) >= 9
    class_elements = {el for cls in lib.classes for el in lib.evidence_of(cls)}
    assert class_elements == {el for ev in CLASS_EVIDENCE.values() for el in ev}
    for m in train:
        assert m.evidence, m.abbreviation
        assert not set(m.elements) & class_elements, m.abbreviation
        assert not set(m.evidence) & class_elements, m.abbreviation
    assert {m.abbreviation for m in train}.isdisjoint(m.abbreviation for m in test)
    assert {m.name for m in train}.isdisjoint(m.name for m in test)


def test_distractors_are_never_classes_and_splits_are_disjoint(lib):
    train, test = lib.distractors("train"), lib.distractors("test")
    assert len(train) >= 15 and len(test) >= 9
    assert lib.distractors() == tuple(m for m in lib if m.kind == "distractor")
    assert set(lib.distractors()) == set(train) | set(test)
    for attr in ("abbreviation", "name"):
        assert not {getattr(m, attr) for m in train} & {getattr(m, attr) for m in test}
    for m in lib.distractors():
        assert m.label is None and m.abbreviation not in lib.labels and m.note
    # Code that iterates the pigments sees the Table 1 pigments first, as before.
    assert [m.abbreviation for m in lib.of_kind("pigment")] == [
        *PAPER_CLASSES, "VG", "SA", "Azu", "Mal", "Sm", "UM", "LTY", "NapY", "TiW", "TiA",
        "CdY", "Orp", "YO", "RU"]
    with pytest.raises(ValueError, match="split"):
        lib.distractors("validation")


def test_distractor_splits_hold_foreign_elements_and_test_holds_confusing_combinations(lib):
    class_elements = {el for ev in CLASS_EVIDENCE.values() for el in ev}
    for split in ("train", "test"):
        evidence = [set(m.evidence) for m in lib.distractors(split)]
        assert any(ev - class_elements - {"K", "Ca"} for ev in evidence)  # Ba, Zr, Bi, Se, ...
    # The test split holds class elements in combinations no class has, which a closed-set
    # model would misread.
    evidence = [set(m.evidence) for m in lib.distractors("test")]
    assert any("Cu" in ev and "As" not in ev for ev in evidence)  # copper without arsenic
    assert any("Cr" in ev and "Pb" not in ev for ev in evidence)
    assert any("Co" in ev and len(ev) > 1 for ev in evidence)
    assert any("Sb" in ev and "Pb" not in ev for ev in evidence)
    assert any("Mn" in ev and "Fe" not in ev for ev in evidence)
    # A distractor that XRF cannot tell from a class (an Fe-only ochre, a Pb-only white)
    # would teach the network to contradict the physics, or test what no model can know.
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
            seen = {el for el in m.elements if visible(el)}
            assert set(m.evidence) <= seen, m.abbreviation
            assert seen - set(m.evidence) == NOT_EVIDENCE.get(m.abbreviation, set()), \
                m.abbreviation


def test_library_with_distractors_round_trips(tmp_path, lib):
    lib.save(tmp_path / "lib.json")
    again = load_pigment_library(tmp_path / "lib.json")
    assert again.materials == lib.materials and again.mixtures == lib.mixtures
    assert again.groups == lib.groups and again.labels == lib.labels
    saved = json.loads((tmp_path / "lib.json").read_text())
    zr = next(e for e in saved["materials"] if e["abbreviation"] == "ZrW")
    assert zr["kind"] == "distractor" and zr["split"] == "train" and "class" not in zr
    assert zr["evidence"] == ["Zr"]
    tiw = next(e for e in saved["materials"] if e["abbreviation"] == "TiW")
    assert tiw["typical"] == lib["TiW"].typical
    assert [g["abbreviation"] for g in saved["groups"]] == list(GROUPS)


def test_library_without_distractors(lib):
    bare = lib.without_distractors()
    assert not bare.distractors() and bare.classes == lib.classes
    assert bare.groups == lib.groups and bare.labels == lib.labels
    assert [m.abbreviation for m in bare] == [m.abbreviation for m in lib
                                              if m.kind != "distractor"]
    # Table 2 and one mock-up strip per new class; mixtures with distractors are dropped.
    assert len(bare.mixtures) == 20 + 10
    assert all(lib[a].kind != "distractor" for mix in bare.mixtures for a, _ in mix.pigments)
    some = lib.without_distractors(keep=("CeB", "Chk"))
    assert [m.abbreviation for m in some.distractors()] == ["Chk", "CeB"]
    names = [m.name for m in some.mixtures]
    assert "Cerulean blue + zinc white" in names and "Raw umber + chalk" in names
    assert "Raw umber + chalk" not in [m.name for m in lib.without_distractors(keep=["CeB"])
                                       .mixtures]
    assert lib.without_distractors(keep=[m.abbreviation for m in lib.distractors()]) is lib


def test_distractor_mixtures_for_mockup_strips(lib):
    mix = lib.mixture("Azurite + lead white")
    assert mix.position is None and dict(mix.pigments) == pytest.approx({"Azu": 0.5, "LW": 0.5})
    assert mix.layer(50).classes(lib) == {"Azu", "LW"}  # azurite is a class now
    mix = lib.mixture("Cerulean blue + zinc white")
    assert mix.layer(50).classes(lib) == {"ZW"}  # cerulean blue is no class
    for mix in lib.mixtures:  # a mixture never mixes the two splits
        splits = {lib[a].split for a, _ in mix.pigments if lib[a].kind == "distractor"}
        assert len(splits) <= 1, mix.name
    # Every new class is in at least one mock-up strip.
    used = {lib.class_of(a) for mix in lib.mixtures for a, _ in mix.pigments}
    assert set(NEW_CLASSES) <= used


def test_evidence_may_sit_in_a_substitute(tmp_path):
    ok = _write(tmp_path, "ok.json", [
        {"abbreviation": "EG2", "formula": "C1H4", "density": 1.0, "evidence": ["Cu", "As"],
         "substitute": {"VG": 0.5, "SA": 0.5}}])
    assert load_pigment_library(extra=ok).evidence_of("EG2") == ("Cu", "As")
    bad = _write(tmp_path, "bad.json", [
        {"abbreviation": "EG3", "formula": "C1H4", "density": 1.0, "evidence": ["Cu", "Zn"],
         "substitute": {"VG": 1, "SA": 1}}])
    with pytest.raises(PigmentLibraryError,
                       match=r"bad.json: entry 0 \('EG3'\): substitute: fractions sum to 2"):
        load_pigment_library(extra=bad)
    bad = _write(tmp_path, "bad.json", [
        {"abbreviation": "EG3", "formula": "C1H4", "density": 1.0, "evidence": ["Cu", "Zn"],
         "substitute": {"VG": 40, "SA": 60}}])
    with pytest.raises(PigmentLibraryError,
                       match=r"bad.json: entry 0 \('EG3'\): evidence element 'Zn'.*substitutes"):
        load_pigment_library(extra=bad)


# -- a user's library file: what it may not do ------------------------------------------------


def _toml_value(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for ASCII text
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(value)


def _user_library(tmp_path, fmt, materials=(), mixtures=(), groups=()):
    """A user library file, JSON or TOML, with these entries."""
    path = tmp_path / f"user.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"format": "napari-xrf-pigments pigment library",
                                    "version": 1, "materials": list(materials),
                                    "mixtures": list(mixtures), "groups": list(groups)}))
        return path
    lines = ['format = "napari-xrf-pigments pigment library"', "version = 1"]
    if not materials:
        lines.append("materials = []")
    for table, entries in (("materials", materials), ("mixtures", mixtures),
                           ("groups", groups)):
        for entry in entries:
            lines.append(f"[[{table}]]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = {"abbreviation": "MnV", "name": "Manganese violet", "formula": "N1H4Mn1P2O7",
        "density": 2.6, "evidence": ["Mn"]}


@pytest.mark.parametrize("fmt", ["json", "toml"])
@pytest.mark.parametrize(
    "entries, message",
    [
        ({"materials": [GOOD, {"abbreviation": "VM", "name": "My vermilion",
                               "formula": "Hg1S1", "density": 8.0}]},
         (r"user\.(json|toml): entry 1 \('VM'\): 'VM' is already defined by .*library\.json: "
          r"entry \d+ \('VM'\)")),
        ({"materials": [GOOD, {"abbreviation": "CdY", "formula": "Cd1S1", "density": 4.8}]},
         r"entry 1 \('CdY'\): 'CdY' is already defined"),  # one of the new classes
        ({"materials": [GOOD, {"abbreviation": "MyX", "formula": "Qq1O2", "density": 3.0}]},
         r"user\.(json|toml): entry 1 \('MyX'\): unknown element 'Qq' in formula 'Qq1O2'"),
        ({"materials": [GOOD, {"abbreviation": "MyW", "formula": "Zn1O1", "density": -5.6}]},
         r"user\.(json|toml): entry 1 \('MyW'\): density must be > 0 g/cm3, got -5\.6"),
        ({"materials": [GOOD, {"abbreviation": "MyG", "formula": "C1H4", "density": 1.5,
                               "substitute": {"VG": 60, "SA": 30}}]},
         (r"user\.(json|toml): entry 1 \('MyG'\): substitute: fractions sum to 90; give mass "
          r"fractions summing to 1 or mass % summing to 100")),
        ({"materials": [GOOD],
          "mixtures": [{"name": "My mix", "pigments": {"VM": 60, "MnV": 30}}]},
         r"user\.(json|toml): mixture 0 \('My mix'\): fractions sum to 90"),
        ({"materials": [GOOD],
          "mixtures": [{"name": "My mix", "pigments": {"VM": 0.6, "MnV": 0.3}}]},
         r"user\.(json|toml): mixture 0 \('My mix'\): fractions sum to 0\.9;"),
        ({"mixtures": [{"name": "Top 2", "pigments": {"VM": 100}}]},
         r"user\.(json|toml): mixture 'Top 2' is already defined"),
        ({"groups": [{"abbreviation": "LW+RL", "name": "Mine", "members": ["LW", "RL"]}]},
         r"user\.(json|toml): group 'LW\+RL' is already defined"),
    ],
    ids=["redefines-VM", "redefines-CdY", "unknown-element", "negative-density",
         "substitute-60+30", "mixture-60+30", "mixture-0.6+0.3", "redefines-mixture",
         "redefines-group"],
)
def test_bad_user_library_files_name_the_entry(tmp_path, fmt, entries, message):
    path = _user_library(tmp_path, fmt, **entries)
    with pytest.raises(PigmentLibraryError, match=message):
        load_pigment_library(extra=path)


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_fractions_may_be_mass_percent_or_fractions_within_1_percent(tmp_path, fmt):
    path = _user_library(tmp_path, fmt, materials=[
        {**GOOD, "abbreviation": "MyG", "substitute": {"VG": 40, "SA": 60.5}}, GOOD,
    ], mixtures=[{"name": "Mine", "pigments": {"VM": 0.6, "MnV": 0.395}},
                 {"name": "Mine %", "pigments": {"VM": 60, "MnV": 40}}])
    ext = load_pigment_library(extra=path)
    assert sum(f for _, f in ext["MyG"].substitute) == pytest.approx(1.0)
    assert dict(ext.mixture("Mine %").pigments) == pytest.approx({"VM": 0.6, "MnV": 0.4})
    assert sum(f for _, f in ext.mixture("Mine").pigments) == pytest.approx(1.0)
    assert ext.sources[-1] == str(path)


# -- groups of classes XRF cannot tell apart --------------------------------------------------


def test_builtin_groups(lib):
    assert [g.abbreviation for g in lib.groups] == list(GROUPS)
    assert lib.labels == CLASSES + GROUPS  # the classes, then the groups
    assert lib.members_of("LW+RL") == ("LW", "RL")
    assert lib.members_of("IO+PB+YO") == ("IO", "PB", "YO")
    assert lib.members_of("Azu+Mal") == ("Azu", "Mal")
    assert lib.members_of("VM") == ("VM",) and lib.members_of("TiW") == ("TiW",)
    for bad in ("XX", "VG", "TiA", "CC"):  # unknown, or a material that is no class
        with pytest.raises(KeyError, match=f"no class or group '{bad}'"):
            lib.members_of(bad)
    assert lib.evidence_of("LW+RL") == ("Pb",)
    assert lib.evidence_of("IO+PB+YO") == ("Fe",)
    assert lib.evidence_of("Azu+Mal") == ("Cu",)
    assert lib.name_of("LW+RL") == "Lead white / red lead"
    assert lib.name_of("VM") == "Vermilion" and lib.name_of("XX") == "XX"
    assert lib.group("LW+RL").members == ("LW", "RL") and lib.group("LW") is None
    for group in lib.groups:
        assert group.why and group.abbreviation not in lib and group.abbreviation not in lib.classes
        # XRF alone cannot tell the members apart: they need the same elements.
        assert {frozenset(lib.evidence_of(m)) for m in group.members} == {
            frozenset(lib.evidence_of(group.abbreviation))}


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_user_groups(tmp_path, fmt):
    path = _user_library(tmp_path, fmt, materials=[GOOD], groups=[
        {"abbreviation": "MnV+RU", "name": "Manganese violet / raw umber",
         "members": ["MnV", "RU"], "why": "manganese"}])
    ext = load_pigment_library(extra=path)
    assert ext.labels == (*CLASSES, "MnV", *GROUPS, "MnV+RU")
    assert ext.members_of("MnV+RU") == ("MnV", "RU")
    assert ext.evidence_of("MnV+RU") == ("Mn",)  # what both need; RU's Fe is not common
    assert ext.name_of("MnV+RU") == "Manganese violet / raw umber"


@pytest.mark.parametrize("fmt", ["json", "toml"])
@pytest.mark.parametrize(
    "group, message",
    [
        ({"abbreviation": "VM+XX", "members": ["VM", "XX"]},
         r"group 'VM\+XX': members \['XX'\] are not classes of the library"),
        ({"abbreviation": "VG+SA", "members": ["VG", "SA"]},  # materials, but no classes
         r"group 'VG\+SA': members \['VG', 'SA'\] are not classes"),
        ({"abbreviation": "CdY", "members": ["CdY", "LTY"]},
         r"group 'CdY': the abbreviation is already a material or class"),
        ({"abbreviation": "TiA", "members": ["TiW", "ZW"]},  # a material (counted as TiW)
         r"group 'TiA': the abbreviation is already a material or class"),
        ({"abbreviation": "VM+VM", "members": ["VM", "VM"]},
         r"user\.(json|toml): group 0 \('VM\+VM'\): members must list two or more"),
        ({"abbreviation": "A/B", "members": ["VM", "LW"]},
         r"user\.(json|toml): group 0 \('A/B'\): abbreviation must be a non-empty string"),
        ({"abbreviation": "VM+LW", "members": ["VM", "LW"], "colour": "red"},
         r"user\.(json|toml): group 0 \('VM\+LW'\): unknown keys \['colour'\]"),
    ],
    ids=["unknown-member", "material-members", "class-abbreviation", "material-abbreviation",
         "one-member", "slash", "unknown-key"],
)
def test_invalid_groups_name_the_group(tmp_path, fmt, group, message):
    path = _user_library(tmp_path, fmt, materials=[GOOD], groups=[group])
    with pytest.raises(PigmentLibraryError, match=message):
        load_pigment_library(extra=path)
