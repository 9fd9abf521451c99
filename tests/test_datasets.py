"""Training-set and mock-up generators: labels follow the stratigraphy, physics shows through."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.datasets.mockup import crossed_strips, read_truth, simulate_mockup
from napari_xrf_pigments.datasets.training import TrainingRecipe, generate_training_set
from napari_xrf_pigments.io import open_cube
from napari_xrf_pigments.progress import run
from napari_xrf_pigments.trainset import read_training_set

SMALL = crossed_strips(("Top 4", "Top 1"), ("Bottom 2A", "Bottom 3A"), strip_px=2, gap_px=2, margin_px=1)


def band(cube, lo_keV, hi_keV):
    e = cube.energy.energies()
    return np.asarray(cube.counts)[:, :, (e > lo_keV) & (e < hi_keV)].sum(axis=2)


@pytest.fixture(scope="module")
def small_mockup():
    return run(simulate_mockup(SMALL, seed=3))


def test_strip_layout_has_every_combination():
    layout = crossed_strips()
    t, b = layout.top_index >= 0, layout.bottom_index >= 0
    for where in (t & b, t & ~b, ~t & b, ~t & ~b):
        assert where.any()
    assert layout.shape == (4 * 6 + 3 * 3 + 6, 6 * 6 + 5 * 3 + 6)


def test_mockup_truth_follows_strips(small_mockup):
    cube, truth = small_mockup
    top, bottom = truth["top_index"], truth["bottom_index"]
    vm_top = top == 0  # Top 4 is pure vermilion
    assert np.array_equal(truth["top"]["VM"], vm_top | ((top < 0) & (bottom == 0)))
    # Bottom 2A (LW) under Top 4: present, not on top.
    under = vm_top & (bottom == 0)
    assert truth["present"]["LW"][under].all() and not truth["top"]["LW"][under].any()
    bare = (top < 0) & (bottom < 0)
    assert not any(mask[bare].any() for mask in truth["present"].values())
    # Emerald-green substitutes are absent from these recipes; carmine is in Top 1.
    assert not truth["present"]["EG"].any() and truth["top"]["CM"][top == 1].all()


def test_mockup_counts_follow_the_physics(small_mockup):
    cube, truth = small_mockup
    assert cube.dtype == np.uint32 and cube.calibrated
    hg = band(cube, 9.85, 10.1)  # Hg La
    assert hg[truth["present"]["VM"]].mean() > 20 * hg[~truth["present"]["VM"]].mean()
    cr = band(cube, 5.3, 5.5)  # Cr Ka: chrome oxide green in Bottom 3A
    cr_where = truth["present"]["CrG"]
    exposed = cr_where & truth["top"]["CrG"]
    buried = cr_where & ~truth["top"]["CrG"]
    # Vermilion and lead white on top absorb most of the Cr K radiation from below.
    assert cr[exposed].mean() > 5 * cr[buried].mean() > 5 * cr[~cr_where].mean()


def test_mockup_is_deterministic_for_a_seed(small_mockup):
    again, _ = run(simulate_mockup(SMALL, seed=3))
    other, _ = run(simulate_mockup(SMALL, seed=4))
    assert np.array_equal(again.counts, small_mockup[0].counts)
    assert not np.array_equal(other.counts, small_mockup[0].counts)


def test_training_set_labels_and_determinism():
    recipe = TrainingRecipe(n_instruments=2, readouts_per_instrument=2)
    ts = run(generate_training_set(300, seed=5, recipe=recipe))
    again = run(generate_training_set(300, seed=5, recipe=recipe))
    assert np.array_equal(ts.spectra, again.spectra)
    assert ts.spectra.shape == (300, ts.energy.size) and np.all(ts.spectra >= 0)
    assert not (ts.top & ~ts.present).any()
    n_layers = ts.params["n_layers"]
    assert not ts.present[n_layers == 0].any()
    assert (ts.top[n_layers > 0].sum(axis=1) >= 1).all()
    # Every class occurs, mixtures occur, and counts follow the counting time.
    assert ts.present.any(axis=0).all() and (ts.top.sum(axis=1) > 1).any()
    live = ts.params["live_time_s"]
    assert ts.spectra[live > 3].sum(axis=1).mean() > 5 * ts.spectra[live < 0.3].sum(axis=1).mean()


def test_cli_mockup_and_simulate_write_readable_files(tmp_path, capsys):
    cube_path, truth_path, train_path = tmp_path / "m.h5", tmp_path / "t.h5", tmp_path / "s.h5"
    assert main(["mockup", "--out", str(cube_path), "--truth", str(truth_path), "--seed", "1",
                 "--live-time", "0.5"]) == 0
    cube = open_cube(cube_path)
    truth = read_truth(truth_path)
    assert cube.shape[:2] == truth["present"]["VM"].shape == crossed_strips().shape
    assert main(["mockup", "--out", str(cube_path)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["simulate", "--out", str(train_path), "--n", "64", "--seed", "2"]) == 0
    ts = read_training_set(train_path)
    assert len(ts) == 64 and ts.provenance["seed"] == 2
    assert [p.abbreviation for p in ts.pigments] == ["CrG", "CrY", "CB", "EG", "IO", "LW", "PB", "RL", "CM", "VM", "ZW"]
