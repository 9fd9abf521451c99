"""Pigment vs element comparison core: pairing, clipping, scatter data, figure (no viewer)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments import compare
from napari_xrf_pigments.pigments import load_pigment_library

PAPER_PAIRING = {
    "CrG": ["Cr K"],
    "CrY": ["Cr K", "Pb L"],
    "CB": ["Co K"],
    "EG": ["Cu K", "As K"],
    "IO": ["Fe K"],
    "LW": ["Pb L"],
    "PB": ["Fe K"],
    "RL": ["Pb L"],
    "CM": ["Sn K"],
    "VM": ["Hg L"],
    "ZW": ["Zn K"],
}
NEW_PAIRING = {
    "Azu": ["Cu K"],
    "Mal": ["Cu K"],
    "Sm": ["Co K"],  # its K and As vary: not its tracers
    "UM": [],  # no element XRF sees
    "LTY": ["Sn K", "Pb L"],
    "NapY": ["Sb K", "Pb L"],
    "TiW": ["Ti K"],
    "CdY": ["Cd K"],
    "Orp": ["As K"],
    "YO": ["Fe K"],
    "RU": ["Mn K", "Fe K"],
}
GROUP_PAIRING = {"LW+RL": ["Pb L"], "IO+PB+YO": ["Fe K"], "Azu+Mal": ["Cu K"]}


def test_default_pairing_of_the_papers_pigments():
    assert compare.default_pairing(list(PAPER_PAIRING)) == PAPER_PAIRING


def test_default_pairing_covers_every_class_and_group_of_the_library():
    library = load_pigment_library()
    pairing = compare.default_pairing()
    # The library's labels in order: the classes, then the groups (a model's output columns).
    assert list(pairing) == list(library.labels)
    assert pairing == {**PAPER_PAIRING, **NEW_PAIRING, **GROUP_PAIRING}


def test_every_evidence_element_of_every_label_is_paired():
    # Fails when a class or group of the library gains an evidence element that its pairing
    # leaves out (more than MAX_ELEMENTS, or an element below MIN_Z).
    from napari_xrf_pigments.pigments._elements import ATOMIC_NUMBER

    library = load_pigment_library()
    for label in library.labels:
        evidence = library.evidence_of(label)
        assert len(evidence) <= compare.MAX_ELEMENTS, label
        paired = compare.default_elements(label, library=library)
        assert [g.split()[0] for g in paired] == sorted(evidence, key=ATOMIC_NUMBER.get), label
        for group in paired:
            symbol, family = group.split()
            assert family == compare._families(ATOMIC_NUMBER[symbol])[0], group
    # Materials that count as a class pair with their own evidence.
    for m in library.of_kind("pigment"):
        assert {g.split()[0] for g in compare.default_elements(m.abbreviation)} == set(
            m.evidence), m.abbreviation


def test_pairing_of_groups_by_abbreviation_and_name():
    assert compare.default_elements("LW+RL") == ["Pb L"]
    assert compare.default_elements("Lead white / red lead") == ["Pb L"]
    assert compare.default_elements("azu+mal") == ["Cu K"]
    assert compare.default_elements("IO+PB+YO", available=["Fe K", "Pb L"]) == ["Fe K"]
    assert compare.default_elements("LW+RL", available=["Fe K"]) == []
    # A group whose members share no evidence pairs with nothing.
    library = load_pigment_library(extra={"materials": [], "groups": [
        {"abbreviation": "VM+ZW", "members": ["VM", "ZW"]},
        {"abbreviation": "RU+YO", "name": "Earths", "members": ["RU", "YO"]}]})
    assert compare.default_elements("VM+ZW", library=library) == []
    assert compare.default_elements("Earths", library=library) == ["Fe K"]
    assert list(compare.default_pairing(library=library))[-2:] == ["VM+ZW", "RU+YO"]


def test_pairing_follows_the_available_maps():
    assert compare.default_elements("CM", available=["Sn L", "Pb L"]) == ["Sn L"]
    assert compare.default_elements("CM", available=["Sn K", "Sn L"]) == ["Sn K"]
    assert compare.default_elements("EG", available=["As K"]) == ["As K"]
    assert compare.default_elements("VM", available=["Pb L"]) == []
    # Sn, Sb and Cd: K lines when mapped, else L lines (a low-voltage tube).
    assert compare.default_elements("LTY", available=["Sn L", "Pb L"]) == ["Sn L", "Pb L"]
    assert compare.default_elements("NapY", available=["Sb L", "Pb M"]) == ["Sb L", "Pb M"]
    assert compare.default_elements("CdY", available=["Cd L"]) == ["Cd L"]
    assert compare.default_elements("RU", available=["Fe K"]) == ["Fe K"]
    # Names and substitutes' class labels work too; unknown pigments pair with nothing.
    assert compare.default_elements("Vermilion") == ["Hg L"]
    assert compare.default_elements("emerald green") == ["Cu K", "As K"]
    assert compare.default_elements("Titanium white") == ["Ti K"]
    assert compare.default_elements("VG") == ["Cu K"]
    assert compare.default_elements("TiA") == ["Ti K"]  # anatase, counted as TiW
    assert compare.default_elements("XX") == []


def test_user_pigment_without_evidence_pairs_with_its_formula():
    library = load_pigment_library(extra={"materials": [
        {"abbreviation": "CoY", "name": "Aureolin", "formula": "K3Co1N6O12", "density": 2.6},
        {"abbreviation": "MnV", "name": "Manganese violet", "formula": "N1H4Mn1P2O7",
         "density": 2.6, "evidence": ["Mn"]}]})
    assert compare.default_elements("CoY", library=library) == ["K K", "Co K"]
    assert compare.default_elements("MnV", library=library) == ["Mn K"]


def test_clip_limit_is_the_99th_percentile_of_finite_pixels():
    values = np.arange(1000, dtype=float).reshape(25, 40)
    values[0, 0] = np.nan
    assert compare.clip_limit(values) == pytest.approx(np.nanpercentile(values, 99))
    assert compare.clip_limit(np.zeros((4, 4))) == 1.0
    # Mostly zero with a few bright pixels: the maximum, not 0.
    sparse = np.zeros(1000)
    sparse[:3] = 50.0
    assert compare.clip_limit(sparse) == 50.0
    assert compare.clip_limit(np.full(3, np.nan)) == 1.0


def test_normalise_clips_at_the_limit_and_keeps_nan():
    values = np.array([[0.0, 50.0, 100.0, np.nan], [200.0, 1e6, -5.0, 100.0]])
    out = compare.normalise(values, percentile=50)
    limit = np.nanpercentile(values, 50)
    expected = np.clip(values / limit, 0, 1)
    np.testing.assert_allclose(out, expected)
    assert out.dtype == np.float32


def test_scatter_data_one_point_per_pixel_row_major():
    rng = np.random.default_rng(0)
    pigment = rng.uniform(0, 1, (6, 9)).astype(np.float32)
    cu = rng.uniform(0, 100, (6, 9))
    as_ = rng.uniform(0, 3000, (6, 9))
    x, y = compare.scatter_data(pigment, [cu])
    assert x.shape == y.shape == (54,)
    np.testing.assert_array_equal(y, pigment.ravel())
    np.testing.assert_allclose(x, compare.normalise(cu).ravel())
    # Two elements: the minimum of each normalised map.
    x2, _ = compare.scatter_data(pigment, [cu, as_])
    np.testing.assert_allclose(x2, np.minimum(compare.normalise(cu), compare.normalise(as_)).ravel())
    for index in (0, 8, 9, 53):
        row, col = compare.pixel_of_point(index, 9)
        assert compare.point_of_pixel(row, col, 9) == index
        assert y[index] == pigment[row, col]
    with pytest.raises(ValueError, match="pigment map is"):
        compare.scatter_data(pigment, [cu[:5]])
    with pytest.raises(ValueError, match="differ"):
        compare.element_concentration([cu, as_[:, :4]])


def test_nearest_point_skips_nan_and_respects_the_radius():
    points = np.array([[0.0, 0.0], [np.nan, np.nan], [10.0, 10.0], [3.0, 4.0]])
    assert compare.nearest_point(points, (2.0, 2.0)) == 3
    assert compare.nearest_point(points, (9.0, 9.5), max_distance=2.0) == 2
    assert compare.nearest_point(points, (50.0, 50.0), max_distance=5.0) is None
    assert compare.nearest_point(np.full((2, 2), np.nan), (0, 0)) is None


def test_overlay_puts_pigment_in_red_elements_in_green_and_blue():
    pigment = np.array([[0.0, 1.0], [np.nan, 0.5]], dtype=np.float32)
    hg = np.array([[0.0, 10.0], [5.0, 10.0]])
    rgb = compare.overlay_rgb(pigment, [hg, hg * 2], percentile=100)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[..., 0], [[0, 1], [0, 0.5]])
    np.testing.assert_allclose(rgb[..., 1], [[0, 1], [0.5, 1]])
    np.testing.assert_allclose(rgb[..., 2], rgb[..., 1])


def test_comparison_figure_saves_a_png(tmp_path):
    rng = np.random.default_rng(1)
    pigment = rng.uniform(0, 1, (12, 16))
    cu = rng.uniform(0, 50, (12, 16))
    fig = compare.comparison_figure(
        pigment, [cu, rng.uniform(0, 9, (12, 16))],
        pigment_name="emerald green", element_names=["Cu K", "As K"], highlight=(3, 4), dpi=60,
    )
    # Four panels, and a colour bar for the probability and for each element (0 to its clip
    # limit, the 99th percentile).
    assert len(fig.axes) == 7
    bars = {ax.get_ylabel(): ax for ax in fig.axes if ax.get_label() == "<colorbar>"}
    assert list(bars) == ["probability", "Cu K", "As K"]
    assert bars["probability"].get_ylim() == (0.0, 1.0)
    assert bars["Cu K"].get_ylim()[1] == pytest.approx(compare.clip_limit(cu, compare.CLIP_PERCENTILE))
    scatter = fig.axes[3]
    assert len(scatter.lines[0].get_xdata()) == 12 * 16
    path = tmp_path / "row.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_core_imports_no_gui():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from napari_xrf_pigments import compare;"
        "compare.comparison_figure(np.ones((2,2)), [np.ones((2,2))]);"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt5', 'matplotlib.pyplot') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
