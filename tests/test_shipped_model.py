"""The model shipped in the package: real weights, checked metadata, sensible maps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
from napari_xrf_pigments.model.files import default_model_path, load_model
from napari_xrf_pigments.model.predict import predict_cube
from napari_xrf_pigments.pigments import load_pigment_library
from napari_xrf_pigments.progress import run

PAPER_CLASSES = ["CrG", "CrY", "CB", "EG", "IO", "LW", "PB", "RL", "CM", "VM", "ZW"]


@pytest.fixture(scope="module")
def shipped():
    return load_model(default_model_path())


def test_shipped_model_metadata(shipped):
    library = load_pigment_library()
    # The library's classes (the paper's first) and groups, under the library's names.
    assert [tuple(p) for p in shipped.pigments] == [(a, library.name_of(a)) for a in library.labels]
    assert shipped.abbreviations[: len(PAPER_CLASSES)] == PAPER_CLASSES
    assert shipped.groups == {g.abbreviation: g.members for g in library.groups}
    meta = shipped.metadata
    assert meta["training"]["data"]["n_spectra"] >= 10000  # trained, not a placeholder
    # Trained on what the detector can see (open set, distractors), with calibrated outputs.
    assert meta["training"]["targets"] == "detectable"
    assert meta["training"]["data"]["provenance"]["recipe"]["p_distractor"] > 0
    summary = meta["metrics"]["summary"]
    assert summary["detectable_f1_mean"] >= 0.75 and summary["top1_accuracy"] >= 0.9
    assert summary["detectable_ece"] < 0.02
    # The groups are what XRF can tell: each well above its members.
    for group in library.groups:
        f1 = meta["metrics"]["detectable"][group.abbreviation]["f1"]
        assert f1 >= 0.85 and all(f1 > meta["metrics"]["detectable"][m]["f1"] for m in group.members)
    assert set(meta["calibration"]["temperature"]) == {"present", "top"}
    assert shipped.preprocessing.grid[0] >= 2.8


@pytest.mark.slow
def test_shipped_model_finds_the_strips_of_an_unseen_mockup(shipped):
    layout = crossed_strips(("Top 4", "Top 2"), ("Bottom 3A", "Bottom 2A"), strip_px=3, gap_px=2, margin_px=2)
    cube, truth = run(simulate_mockup(layout, seed=123, live_time_s=1.0))
    maps = run(predict_cube(cube, shipped)).maps["present"]
    for abbr in PAPER_CLASSES:
        k = shipped.abbreviations.index(abbr)
        where = truth["present"][abbr]
        if where.any() and (~where).any():
            # Exposed or buried, a pigment scores higher where it is than where it is not.
            assert np.nanmean(maps[..., k][where]) > np.nanmean(maps[..., k][~where]), abbr
    bare = (layout.top_index < 0) & (layout.bottom_index < 0)
    assert np.nanmax(maps[bare]) < 0.5
    top4 = layout.top_index == 0  # pure vermilion on top
    assert np.nanmin(maps[..., shipped.abbreviations.index("VM")][top4]) > 0.9


@pytest.mark.slow  # predicts a mock-up
def test_a_failing_evidence_step_still_gives_the_maps(shipped, monkeypatch):
    from napari_xrf_pigments import evidence

    layout = crossed_strips(("SrY",), ("VM",), strip_px=2, gap_px=1, margin_px=1)
    cube, _ = run(simulate_mockup(layout, seed=4, live_time_s=1.0))
    checked = run(predict_cube(cube, shipped))
    assert checked.evidence == "checked" and "Sr" in checked.unexplained_elements
    row, column = np.argwhere(checked.unexplained_elements["Sr"] >= 0.5)[0]
    assert "| unexplained: " in checked.describe_pixel(row, column)
    assert checked.unexplained_elements.at(row, column)["Sr"] >= 0.5

    def broken(self, counts):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(evidence.ElementFit, "fit", broken)
    result = run(predict_cube(cube, shipped))
    unchecked = run(predict_cube(cube, shipped, evidence=False))
    assert result.evidence == "unavailable" and result.unexplained is None
    assert any("element evidence is unavailable (Singular matrix)" in w for w in result.warnings)
    np.testing.assert_array_equal(result.maps["present"], unchecked.maps["present"])
    np.testing.assert_array_equal(checked.raw["present"], unchecked.maps["present"])


@pytest.mark.slow  # predicts a mock-up twice
def test_maps_streamed_to_file_equal_the_maps_in_memory(shipped, monkeypatch, tmp_path):
    """predict_to_file writes block by block; the file holds what predict_cube returns."""
    from napari_xrf_pigments import evidence
    from napari_xrf_pigments.io.maps import read_maps
    from napari_xrf_pigments.model import predictor
    from napari_xrf_pigments.model.predict import predict_to_file

    layout = crossed_strips(("SrY", "VM"), ("LW",), strip_px=2, gap_px=1, margin_px=1)
    cube, _ = run(simulate_mockup(layout, seed=5, live_time_s=1.0))
    monkeypatch.setattr(predictor, "SPECTRA_PER_BLOCK", 2 * cube.shape[1])  # blocks of 2 rows
    memory = run(predict_cube(cube, shipped, batch_size=4))
    maps, root = read_maps(run(predict_to_file(cube, tmp_path / "a.h5", shipped, batch_size=4)))
    assert root["evidence"] == "checked" and "unexplained_Sr" in maps
    expected = memory.to_maps()
    assert list(maps) == list(expected)
    for name, (values, attrs) in expected.items():
        np.testing.assert_array_equal(maps[name][0], values, err_msg=name)
        assert maps[name][1] == attrs, name
    raw, _ = read_maps(tmp_path / "a.h5", group="raw")
    np.testing.assert_array_equal(raw["VM"][0], memory.raw["present"][..., shipped.abbreviations.index("VM")])

    # The check fails from the second block on: every map, in memory and in the file, is the
    # network's own.
    from napari_xrf_pigments.model.preflight import cube_tube

    assert cube_tube(cube.metadata)[0] == "Rh" and cube.shape[0] > 2  # no tube guess; 2+ blocks
    fit, calls = evidence.ElementFit.fit, []

    def fails_later(self, counts):
        calls.append(1)
        if len(calls) > 1:
            raise np.linalg.LinAlgError("Singular matrix")
        return fit(self, counts)

    monkeypatch.setattr(evidence.ElementFit, "fit", fails_later)
    memory = run(predict_cube(cube, shipped, batch_size=4))
    calls.clear()
    maps, root = read_maps(run(predict_to_file(cube, tmp_path / "b.h5", shipped, batch_size=4)))
    unchecked = run(predict_cube(cube, shipped, batch_size=4, evidence=False))
    assert memory.evidence == root["evidence"] == "unavailable" and memory.raw is None
    np.testing.assert_array_equal(memory.maps["present"], unchecked.maps["present"])
    assert read_maps(tmp_path / "b.h5", group="raw")[0] == {} and "unexplained" not in maps
    assert maps["VM"][1]["evidence"] == "unavailable"
    np.testing.assert_array_equal(maps["VM"][0], unchecked.maps["present"][..., shipped.abbreviations.index("VM")])
