"""The built-in sample mock-up: simulated once into the cache, then read from it (no napari)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments import __version__
from napari_xrf_pigments.datasets.mockup import read_truth
from napari_xrf_pigments.datasets.sample import cache_dir, sample_mockup, sample_paths
from napari_xrf_pigments.io import open_cube
from napari_xrf_pigments.labels import rasterise, strip_shapes
from napari_xrf_pigments.progress import Progress, run

# Every test needs the sample mock-up simulated first (the module's fixture, ~5 s).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """(cache folder, steps yielded, result) of the first call: it simulates (a few seconds)."""
    folder = tmp_path_factory.mktemp("cache")
    steps = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRF_PIGMENTS_CACHE", str(folder))
        result = run(sample_mockup(), steps.append)
    return folder, steps, result


@pytest.fixture(autouse=True)
def cache(first_run, monkeypatch):
    """Every test uses the module's cache folder, never the user's."""
    monkeypatch.setenv("XRF_PIGMENTS_CACHE", str(first_run[0]))
    return first_run[0]


def test_cache_folder_comes_from_the_environment(cache, monkeypatch):
    assert cache_dir() == cache
    monkeypatch.delenv("XRF_PIGMENTS_CACHE")
    assert cache_dir().name == "napari-xrf-pigments"  # the user's cache folder (not created)


def test_first_call_simulates_with_progress(first_run, cache):
    _, steps, (cube_path, truth_path) = first_run
    assert steps and all(isinstance(s, Progress) for s in steps)
    assert any(s.total == 39 and s.done == 39 for s in steps)  # every row simulated
    assert (cube_path, truth_path) == sample_paths()
    assert cube_path.parent == truth_path.parent and cube_path.parent.parent == cache
    folder = cube_path.parent
    assert [p.name for p in cache.iterdir()] == [folder.name]
    assert sorted(p.name for p in folder.iterdir()) == sorted([cube_path.name, truth_path.name])


def test_second_call_reads_the_cache(first_run, cache):
    _, _, paths = first_run
    stamps = [p.stat().st_mtime_ns for p in paths]
    steps = []
    assert run(sample_mockup(), steps.append) == paths
    assert steps == []  # nothing simulated
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_file_names_carry_the_version_and_the_library(tmp_path, monkeypatch):
    import napari_xrf_pigments.pigments as pigments

    cube_path, truth_path = sample_paths(tmp_path)
    assert cube_path.parent == truth_path.parent and cube_path.parent.parent == tmp_path
    for path in (cube_path, truth_path):
        assert f"-v{__version__}" in path.name and path.suffix == ".h5"
    assert cube_path != truth_path
    # Another pigment library (other classes in the truth) gets a sample of its own.
    other = tmp_path / "library.json"
    other.write_bytes(pigments.BUILTIN_PATH.read_bytes() + b"\n")
    monkeypatch.setattr(pigments, "BUILTIN_PATH", other)
    assert sample_paths(tmp_path)[0].parent != cube_path.parent
    assert sample_paths(tmp_path)[0].name == cube_path.name


def test_files_open_and_agree(first_run):
    cube_path, truth_path = first_run[2]
    cube = open_cube(cube_path)
    assert cube.shape == (39, 57, 4096) and cube.calibrated
    truth = read_truth(truth_path)
    assert set(truth) == {"present", "top", "detectable", "distractor"} and truth["distractor"] == {}
    assert truth["present"]["VM"].shape == cube.shape[:2]
    for abbr, present in truth["present"].items():
        assert not (truth["top"][abbr] & ~present).any(), abbr  # top-layer pigments are present
    # Vermilion (Hg) lies where the truth says: more Hg L counts there.
    energy = cube.energy.energies()
    hg = np.asarray(cube.counts)[..., (energy > 9.8) & (energy < 10.1)].sum(axis=2)
    vm = truth["present"]["VM"]
    assert vm.any() and (~vm).any() and hg[vm].mean() > 3 * hg[~vm].mean()


def test_truth_gives_strip_shapes_covering_the_scan(first_run):
    labels = strip_shapes(first_run[2][1])
    assert labels.cube["shape"] == [39, 57]
    px = rasterise(labels, (39, 57))
    assert px.mask.all()  # one rectangle per uniform region, nothing left out
    truth = read_truth(first_run[2][1])
    for i, abbr in enumerate(px.abbreviations):
        np.testing.assert_array_equal(px.present[..., i], truth["present"][abbr])
