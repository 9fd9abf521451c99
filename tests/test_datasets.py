"""Training-set and mock-up generators: labels follow the stratigraphy, physics shows through."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.datasets.mockup import (
    crossed_strips,
    read_truth,
    simulate_mockup,
    write_truth,
)
from napari_xrf_pigments.datasets.training import TrainingRecipe, generate_training_set
from napari_xrf_pigments.datasets.trainset import read_training_set
from napari_xrf_pigments.io import open_cube
from napari_xrf_pigments.pigments import load_pigment_library
from napari_xrf_pigments.progress import run

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


@pytest.mark.slow  # simulates a second mock-up
def test_mockup_is_deterministic_for_a_seed(small_mockup):
    again, _ = run(simulate_mockup(SMALL, seed=3))
    other, _ = run(simulate_mockup(SMALL, seed=4))
    assert np.array_equal(again.counts, small_mockup[0].counts)
    assert not np.array_equal(other.counts, small_mockup[0].counts)


@pytest.mark.slow  # simulates training sets
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


@pytest.mark.slow  # simulates a mock-up and a training set
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
    assert [p.abbreviation for p in ts.pigments] == list(load_pigment_library().labels)
    # Detectable labels travel with the file: present ones whose own lines reach the detector.
    assert ts.detectable is not None and not (ts.detectable & ~ts.present).any()
    assert 0 < ts.detectable.sum() < ts.present.sum()


# -- out-of-library distractors in mock-ups and training sets ---------------------------------

# Zirconium white (a training distractor) as a top strip over a Table 2 bottom and a mixture
# with a test distractor (cerulean blue + zinc white).
FOREIGN = crossed_strips(("ZrW", "Top 4"), ("Bottom 2A", "Cerulean blue + zinc white"),
                         strip_px=2, gap_px=2, margin_px=1)


@pytest.fixture(scope="module")
def foreign_mockup():
    return run(simulate_mockup(FOREIGN, seed=3, live_time_s=2.0))


@pytest.mark.slow  # its fixture simulates a mock-up
def test_mockup_with_distractor_strips(foreign_mockup):
    cube, truth = foreign_mockup
    top, bottom = truth["top_index"], truth["bottom_index"]
    assert set(truth["distractor"]) == {"ZrW", "CeB"}
    assert np.array_equal(truth["distractor"]["ZrW"], top == 0)
    assert np.array_equal(truth["distractor"]["CeB"], bottom == 1)
    # Distractors are no class: pure zirconium white over the ground has no label at all.
    alone = (top == 0) & (bottom < 0)
    assert alone.any() and not any(m[alone].any() for m in truth["present"].values())
    assert not any(m[top == 0].any() for m in truth["top"].values())
    # Under the zirconium white, the zinc white of Bottom 2A and of the cerulean mixture counts.
    assert truth["present"]["ZW"][(top == 0) & (bottom >= 0)].all()
    assert "CeB" not in truth["present"] and "ZrW" not in truth["top"]
    zr = band(cube, 15.6, 15.9)  # Zr Ka
    sn = band(cube, 25.0, 25.5)  # Sn Ka
    assert zr[top == 0].mean() > 20 * zr[top != 0].mean()
    exposed = (bottom == 1) & (top < 0)
    assert sn[exposed].mean() > 20 * sn[bottom != 1].mean()


@pytest.mark.slow  # its fixture simulates a mock-up
def test_mockup_truth_with_distractors_round_trips(tmp_path, foreign_mockup, small_mockup):
    import h5py

    from napari_xrf_pigments.datasets.mockup import write_truth

    _, truth = foreign_mockup
    back = read_truth(write_truth(tmp_path / "t.h5", truth))
    assert set(back["distractor"]) == {"ZrW", "CeB"}
    for abbr, mask in truth["distractor"].items():
        assert np.array_equal(back["distractor"][abbr], mask)
    # Mock-ups without distractors write no /distractor group, as before; reading gives {}.
    path = write_truth(tmp_path / "old.h5", small_mockup[1])
    with h5py.File(path) as h5:
        assert "distractor" not in h5
    assert small_mockup[1]["distractor"] == {} and read_truth(path)["distractor"] == {}


def test_mockup_strips_may_be_pure_materials_and_unknown_names_fail():
    from napari_xrf_pigments.datasets.mockup import strip_pigments
    from napari_xrf_pigments.errors import InvalidDataError
    from napari_xrf_pigments.pigments import load_pigment_library

    lib = load_pigment_library()
    assert strip_pigments("VM", lib) == {"VM": 1.0} and strip_pigments("Mal", lib) == {"Mal": 1.0}
    assert strip_pigments("Top 4", lib) == dict(lib.mixture("Top 4").pigments)
    for name in ("Top 9", "CC", "alkyd"):  # unknown; the ground and binders are no paint
        with pytest.raises(InvalidDataError, match="Top 1.*TiW"):
            run(simulate_mockup(crossed_strips((name,), ("Bottom 1A",)), live_time_s=0.1))


def test_mockup_strips_may_be_mass_parts_of_materials():
    from napari_xrf_pigments.datasets.mockup import strip_pigments
    from napari_xrf_pigments.errors import InvalidDataError

    lib = load_pigment_library()
    assert strip_pigments("LTY:50+Azu:50", lib) == {"LTY": 0.5, "Azu": 0.5}
    assert strip_pigments("LW:3 + UM:1", lib) == {"LW": 0.75, "UM": 0.25}
    for bad, why in (("LTY:0+Azu:50", "positive"), ("LTY:x", "positive"),
                     ("Foo:1+LW:1", "LTY:50\\+Azu:50"), ("CC:1", "unknown strip")):
        with pytest.raises(InvalidDataError, match=why):
            strip_pigments(bad, lib)


@pytest.mark.slow  # simulates training sets
def test_noise_free_training_set_has_the_same_paint():
    recipe = TrainingRecipe(**TINY)
    noisy = run(generate_training_set(40, seed=4, recipe=recipe))
    clean = run(generate_training_set(40, seed=4, recipe=recipe, noise=False))
    assert np.array_equal(noisy.present, clean.present)
    assert np.array_equal(noisy.detectable, clean.detectable)
    assert clean.provenance["noise"] is False and noisy.provenance["noise"] is True
    assert not np.array_equal(np.round(clean.spectra), clean.spectra)  # expected, not counts
    # Poisson counts scatter around the expected counts.
    total_noisy, total_clean = noisy.spectra.sum(axis=1), clean.spectra.sum(axis=1)
    assert np.all(np.abs(total_noisy - total_clean) < 6 * np.sqrt(total_clean) + 5)


@pytest.mark.slow  # simulates a training set
def test_group_labels_follow_their_members():
    lib = load_pigment_library()
    ts = run(generate_training_set(120, seed=6, recipe=TrainingRecipe(**TINY)))
    assert ts.abbreviations == list(lib.labels)
    for group in lib.groups:
        members = [ts.abbreviations.index(m) for m in group.members]
        column = ts.abbreviations.index(group.abbreviation)
        for labels in (ts.present, ts.top):
            assert np.array_equal(labels[:, column], labels[:, members].any(axis=1))
        # A group is detectable where any member is (its lines together reach the detector).
        assert not (ts.detectable[:, members].any(axis=1) & ~ts.detectable[:, column]).any()
        assert not (ts.detectable[:, column] & ~ts.present[:, column]).any()


@pytest.mark.slow  # simulates mock-ups
def test_distractors_in_the_library_leave_mockups_unchanged(small_mockup):
    from napari_xrf_pigments.pigments import load_pigment_library

    # The library as it was before distractors: same counts, bit for bit.
    bare = load_pigment_library().without_distractors()
    cube, truth = run(simulate_mockup(SMALL, seed=3, library=bare))
    assert np.array_equal(cube.counts, small_mockup[0].counts)


TINY = dict(n_instruments=2, readouts_per_instrument=2)


@pytest.mark.slow  # simulates training sets
def test_default_recipe_draws_no_distractors_and_is_unchanged():
    from napari_xrf_pigments.pigments import load_pigment_library

    ts = run(generate_training_set(200, seed=7, recipe=TrainingRecipe(**TINY)))
    explicit = run(generate_training_set(
        200, seed=7, recipe=TrainingRecipe(**TINY, p_distractor=0.0, distractor_split="train")))
    before = run(generate_training_set(200, seed=7, recipe=TrainingRecipe(**TINY),
                                       library=load_pigment_library().without_distractors()))
    for other in (explicit, before):
        assert np.array_equal(ts.spectra, other.spectra)
        assert np.array_equal(ts.present, other.present) and np.array_equal(ts.top, other.top)
        assert ts.params.keys() == other.params.keys()
        for key in ts.params:
            assert np.array_equal(ts.params[key], other.params[key])
    assert "distractor_present" not in ts.params


def test_recipe_checks_distractor_settings():
    with pytest.raises(ValueError, match="p_distractor"):
        TrainingRecipe(p_distractor=1.5)
    with pytest.raises(ValueError, match="distractor_split"):
        TrainingRecipe(distractor_split="validation")


def test_sampler_draws_only_distractors_of_the_split():
    from napari_xrf_pigments.datasets.training import _LayerSampler
    from napari_xrf_pigments.pigments import load_pigment_library

    lib = load_pigment_library()
    for split in ("train", "test"):
        allowed = {m.abbreviation for m in lib.distractors(split)}
        sampler = _LayerSampler(lib, TrainingRecipe(p_distractor=1.0, distractor_split=split),
                                np.random.default_rng(0))
        pure = 0
        for _ in range(400):
            comp = sampler.composition()
            foreign = {a for a in comp if lib[a].kind == "distractor"}
            assert foreign and foreign <= allowed and len(foreign) <= 2
            classes = {lib[a].label for a in comp if lib[a].label}
            assert len(classes) <= 3
            pure += not classes
        assert 150 < pure < 250  # half of the layers are a pure distractor


@pytest.mark.slow  # simulates a training set
def test_training_set_with_distractors():
    from napari_xrf_pigments.pigments import load_pigment_library

    # One paint layer of cadmium red (a test distractor), pure or with class pigments.
    lib = load_pigment_library().without_distractors(keep=("CdR",))
    recipe = TrainingRecipe(**TINY, p_distractor=1.0, distractor_split="test",
                            p_two_layers=0.0, p_bare_ground=0.0)
    ts = run(generate_training_set(120, seed=2, recipe=recipe, library=lib))
    assert ts.params["distractor_present"].all() and ts.params["distractor_top"].all()
    assert [p.abbreviation for p in ts.pigments] == list(lib.labels)
    pure = ~ts.present.any(axis=1)  # a pure distractor over the ground: no label at all
    assert 30 < pure.sum() < 90 and np.array_equal(ts.present, ts.top)
    e = ts.energy
    cd = ts.spectra[:, (e > 23.0) & (e < 23.35)].sum(axis=1) / ts.params["live_time_s"]  # Cd Ka
    plain = run(generate_training_set(120, seed=2, recipe=TrainingRecipe(**TINY)))
    cd_plain = plain.spectra[:, (e > 23.0) & (e < 23.35)].sum(axis=1) / plain.params["live_time_s"]
    assert np.median(cd) > 5 * np.median(cd_plain)


@pytest.mark.slow  # simulates a training set
def test_cli_simulate_with_distractors(tmp_path, capsys):
    path = tmp_path / "s.h5"
    assert main(["simulate", "--out", str(path), "--n", "48", "--seed", "1",
                 "--distractors", "0.5"]) == 0
    ts = read_training_set(path)
    assert ts.provenance["recipe"]["p_distractor"] == 0.5
    assert ts.params["distractor_present"].any() and not ts.params["distractor_present"].all()
    for bad in ("1.5", "-0.1", "x"):
        with pytest.raises(SystemExit):
            main(["simulate", "--out", str(tmp_path / "t.h5"), "--distractors", bad])
        assert "--distractors" in capsys.readouterr().err


@pytest.mark.slow  # simulates spectra
def test_detectable_labels_follow_the_physics():
    """Chrome oxide green under 150 um of vermilion sends no Cr K to the detector; exposed,
    or under a thin lead-free layer, it does."""
    from napari_xrf_pigments.datasets.detectable import detectable_labels, without_class
    from napari_xrf_pigments.physics import FastSimulator, Instrument
    from napari_xrf_pigments.pigments import Layer, Stratigraphy, ground_layer, load_pigment_library

    library = load_pigment_library()
    simulator = FastSimulator(Instrument(), library.without_distractors())
    green = Layer({"CrG": 1.0}, 60.0, binder="alkyd", binder_fraction=0.25)
    strata = [
        Stratigraphy((green, ground_layer(150.0))),
        Stratigraphy((Layer({"VM": 1.0}, 150.0), green, ground_layer(150.0))),
        Stratigraphy((Layer({"ZW": 1.0}, 10.0), green, ground_layer(150.0))),
    ]
    classes = library.classes
    present = np.array([s.labels(library, classes)[0] for s in strata])
    detectable = detectable_labels(strata, present, classes, simulator, library, live_time_s=1.0)
    crg, vm = classes.index("CrG"), classes.index("VM")
    assert present[:, crg].all()
    assert detectable[:, crg].tolist() == [True, False, True]
    assert detectable[1, vm] and not (detectable & ~present).any()
    # The counterfactual keeps the layer's mass: chrome oxide green becomes alkyd.
    swapped = without_class(strata[0], "CrG", library)
    assert dict(swapped.layers[0].pigments) == {"alkyd": 1.0}
    assert swapped.layers[0].thickness_um == 60.0


@pytest.mark.slow  # simulates a mock-up
def test_mockup_truth_has_detectable_labels(tmp_path):
    layout = crossed_strips(("Top 4",), ("Bottom 3A",), strip_px=3, gap_px=2, margin_px=2)
    _, truth = run(simulate_mockup(layout, seed=1, live_time_s=1.0))
    crg_present, crg_seen = truth["present"]["CrG"], truth["detectable"]["CrG"]
    under_vermilion = (layout.top_index == 0) & (layout.bottom_index == 0)
    exposed = (layout.top_index < 0) & (layout.bottom_index == 0)
    assert crg_present[under_vermilion].all() and not crg_seen[under_vermilion].any()
    assert crg_seen[exposed].all()
    path = write_truth(tmp_path / "truth.h5", truth)
    back = read_truth(path)
    np.testing.assert_array_equal(back["detectable"]["CrG"], crg_seen)


@pytest.mark.slow  # simulates a mock-up
def test_cli_mockup_with_a_user_library(tmp_path, capsys):
    import json

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({
        "format": "napari-xrf-pigments pigment library", "version": 1,
        "materials": [{"abbreviation": "MyW", "name": "My white", "formula": "Zr1O2",
                       "density": 5.7, "evidence": ["Zr"]}]}))
    cube_path, truth_path = tmp_path / "plan.h5", tmp_path / "plan-truth.h5"
    assert main(["mockup", "--out", str(cube_path), "--truth", str(truth_path),
                 "--tops", "MyW,LW:1+MyW:1", "--bottoms", "Bottom 2A", "--library", str(mine),
                 "--live-time", "0.1"]) == 0
    truth = read_truth(truth_path)
    assert truth["present"]["MyW"].any() and truth["top"]["MyW"].any()
    assert "MyW" in truth["detectable"]
    # Without the user's file the strip is unknown: one line, exit code 2.
    assert main(["mockup", "--out", str(tmp_path / "x.h5"), "--tops", "MyW"]) == 2
    assert "unknown strip 'MyW'" in capsys.readouterr().err
