"""Finetuning (paper sections 2.3-2.4, 4.1): split, two stages, metrics before/after, model files,
cancellation, the ``finetune`` command, and the quality check on a simulated mock-up."""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("keras")

from _model_data import (  # noqa: E402
    ENERGY,
    PIGMENTS,
    TINY_ARCH,
    make_set,
    spectrum_shape,
    tiny_trained,
)

from napari_xrf_pigments.cli import main  # noqa: E402
from napari_xrf_pigments.cube import XRFCube  # noqa: E402
from napari_xrf_pigments.datasets.trainset import TrainingSet  # noqa: E402
from napari_xrf_pigments.errors import InvalidDataError, OutputExistsError  # noqa: E402
from napari_xrf_pigments.labels import (  # noqa: E402
    LabelledShape,
    ShapeLabels,
    to_pixel_labels,
    write_labels,
)
from napari_xrf_pigments.model import files  # noqa: E402
from napari_xrf_pigments.model.files import ModelFileError, load_model, read_metadata  # noqa: E402
from napari_xrf_pigments.model.finetuning import (  # noqa: E402
    check_finetune_output,
    finetune,
    finetune_to_dir,
    split_labelled,
)
from napari_xrf_pigments.model.metrics import format_comparison  # noqa: E402
from napari_xrf_pigments.progress import run  # noqa: E402

FAST = {"head_epochs": 2, "epochs": 2, "patience": 5, "batch_size": 32}


def shifted_set(n=200, seed=7):
    """Synthetic spectra as another instrument would see them: +60 eV calibration offset."""
    spectra, present, top = make_set(n, seed=seed)
    return TrainingSet(spectra, ENERGY - 0.06, present, top, tuple(PIGMENTS))


@functools.lru_cache(maxsize=1)
def fast_result():
    """(FinetuneResult, Progress steps) of a short finetuning of the tiny model."""
    _, base_dir = tiny_trained()
    steps = []
    result = run(finetune(base_dir, None, shifted_set(), seed=3, **FAST), steps.append)
    return result, steps


def test_split_is_seeded_disjoint_20_80():
    s = split_labelled(1000, fraction=0.2, validation_fraction=0.2, seed=1)
    assert s["train"].size == 160 and s["validation"].size == 40 and s["test"].size == 800
    parts = np.concatenate([s["train"], s["validation"], s["test"]])
    assert np.unique(parts).size == 1000
    again = split_labelled(1000, fraction=0.2, validation_fraction=0.2, seed=1)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    other = split_labelled(1000, fraction=0.2, validation_fraction=0.2, seed=2)
    assert not np.array_equal(s["test"], other["test"])
    with pytest.raises(InvalidDataError, match="too few"):
        split_labelled(10, fraction=0.2, validation_fraction=0.2, seed=0)
    with pytest.raises(InvalidDataError, match="between 0 and 1"):
        split_labelled(100, fraction=1.0, validation_fraction=0.2, seed=0)


@pytest.mark.slow  # finetunes the tiny model
def test_two_stages_yield_progress_per_epoch():
    result, steps = fast_result()
    assert steps[0].info is None and steps[1].info["stage"] == 0  # extraction, base losses
    epochs = [s.info for s in steps if s.info and s.info["stage"] > 0]
    assert [(e["stage"], e["epoch"]) for e in epochs] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert all("loss" in e and "val_loss" in e for e in epochs)
    assert [s.done for s in steps] == sorted(s.done for s in steps)
    assert steps[-1].done == steps[-1].total == 4
    assert [s["stage"] for s in result.stages] == [1, 2]
    assert result.stages[0]["learning_rate"] == 1e-3 and result.stages[1]["learning_rate"] == 5e-4
    assert result.split == {
        "seed": 3, "fraction": 0.2, "validation_fraction": 0.2, "n_labelled": 200,
        "n_finetune": 40, "n_train": 32, "n_validation": 8, "n_test": 160,
    }
    assert result.before["n_spectra"] == result.after["n_spectra"] == 160
    assert set(result.indices["test"]).isdisjoint(result.indices["train"])
    # Early stopping keeps the lowest validation loss seen, the base model's included.
    kept = result.model.metadata["training"]["kept"]
    assert kept["val_loss"] <= steps[1].info["val_loss"]
    seen = [steps[1].info["val_loss"]] + [e["val_loss"] for e in epochs]
    assert kept["val_loss"] == pytest.approx(min(seen))


@pytest.mark.slow  # finetunes the tiny model
def test_stage_one_trains_only_the_dense_head_and_the_base_is_untouched():
    result0, base_dir = tiny_trained()
    base = load_model(base_dir)
    before = [w.copy() for w in base.keras_model.get_weights()]
    result = run(finetune(base, None, shifted_set(), head_epochs=3, epochs=0, patience=5, batch_size=32))
    for a, b in zip(before, base.keras_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    changed = set()
    for layer in result.model.keras_model.layers:
        old = base.keras_model.get_layer(layer.name).get_weights()
        if any(not np.array_equal(a, b) for a, b in zip(old, layer.get_weights())):
            changed.add(layer.name)
    if result.model.metadata["training"]["kept"]["stage"] == 1:
        assert changed and changed <= {"present", "top"}
    else:  # no epoch beat the base model on validation: it is kept as it was
        assert not changed


@pytest.mark.slow  # finetunes the tiny model
def test_saved_model_records_base_labels_and_split(tmp_path):
    result, _ = fast_result()
    _, base_dir = tiny_trained()
    path = result.save(tmp_path / "finetuned")
    meta = read_metadata(path)
    t = meta["training"]
    assert t["kind"] == "finetune" and t["base_model"]["path"] == str(base_dir)
    assert t["base_model"]["name"] == "tiny-test-model" and meta["name"] == "tiny-test-model-finetuned"
    assert t["split"]["n_test"] == 160 and t["split"]["seed"] == 3
    assert t["labels"]["kind"] == "spectra" and t["heads"] == ["present", "top"]
    assert t["metrics_before"]["n_spectra"] == 160 and meta["metrics"]["split"] == "finetune-test"
    assert [s["stage"] for s in t["stages"]] == [1, 2]
    model = load_model(path)  # safe_mode load, metadata checked against the network
    assert model.abbreviations == [p[0] for p in PIGMENTS]
    np.testing.assert_allclose(model.preprocessing.grid, load_model(base_dir).preprocessing.grid)
    with pytest.raises(OutputExistsError):
        result.save(path)


@pytest.mark.slow  # finetunes the tiny model
def test_never_overwrites_the_base_or_the_shipped_model(tmp_path):
    result, _ = fast_result()
    _, base_dir = tiny_trained()
    stamp = (base_dir / "model.keras").stat().st_mtime_ns
    for target in (base_dir, base_dir / "inner", base_dir.parent, files.DEFAULT_MODEL_DIR):
        with pytest.raises(ModelFileError, match="would overwrite the (base|shipped) model"):
            result.save(target, force=True)
    assert (base_dir / "model.keras").stat().st_mtime_ns == stamp
    with pytest.raises(ModelFileError, match="base model"):
        check_finetune_output(base_dir, base_dir)
    assert check_finetune_output(tmp_path / "new", base_dir) == tmp_path / "new"


@pytest.mark.slow  # finetunes the tiny model
def test_cancel_between_epochs_leaves_no_output(tmp_path):
    _, base_dir = tiny_trained()
    out = tmp_path / "finetuned"
    job = finetune_to_dir(out, base_dir, None, shifted_set(), **FAST)
    for step in job:
        if step.info and step.info["stage"] == 1:
            break
    job.close()
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_labels_must_cover_the_model_pigments():
    _, base_dir = tiny_trained()
    spectra, present, top = make_set(100)
    other = TrainingSet(spectra, ENERGY, present[:, :3], top[:, :3], tuple(PIGMENTS[:3]))
    with pytest.raises(InvalidDataError, match="do not say whether DD is present"):
        run(finetune(base_dir, None, other, **FAST))


@pytest.mark.slow  # finetunes the tiny model
def test_comparison_table_sits_before_and_after_side_by_side():
    result, _ = fast_result()
    text = format_comparison(result.before, result.after, title="T")
    lines = text.splitlines()
    assert lines[0] == "T" and "Before" in lines[1] and "After" in lines[1]
    assert lines[1].index("Before") < lines[1].index("After")
    assert "Alpha (AA)" in text and "Top layer" in text
    assert "present F1 mean (macro)" in text and " -> " in text
    rows = [line for line in lines if line.startswith(("Pigment", "Alpha", "Beta", "Gamma", "Delta"))]
    assert len({len(r) for r in rows}) == 1  # aligned columns
    assert result.table() == format_comparison(result.before, result.after)


# -- shapes over a cube, through the command line ------------------------------------------------

REGIONS = {  # quadrant -> (top pigment, bottom pigment or None), pigment indices of PIGMENTS
    (0, 0): (0, None), (0, 1): (1, 2), (1, 0): (3, 0), (1, 1): (2, None),
}


def synthetic_cube(rows=12, cols=16, seed=0, offset_keV=0.0):
    """Four quadrants of known paint; spectra like ``make_set``'s."""
    rng = np.random.default_rng(seed)
    counts = np.empty((rows, cols, ENERGY.size), np.uint32)
    background = 3.0 * np.exp(-(ENERGY - 2.0) / 6.0)
    for r in range(rows):
        for c in range(cols):
            t, b = REGIONS[(2 * r // rows, 2 * c // cols)]
            expected = background + rng.uniform(150, 300) * spectrum_shape(ENERGY, t)
            if b is not None:
                expected = expected + rng.uniform(25, 60) * spectrum_shape(ENERGY, b)
            counts[r, c] = rng.poisson(expected)
    return XRFCube.from_array(counts, energy=ENERGY + offset_keV, source="synthetic")


def quadrant_labels(rows=12, cols=16):
    shapes = []
    for (qr, qc), (t, b) in REGIONS.items():
        r0, r1 = qr * rows // 2, (qr + 1) * rows // 2 - 1
        c0, c1 = qc * cols // 2, (qc + 1) * cols // 2 - 1
        v = [[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 + 0.5], [r1 + 0.5, c1 + 0.5], [r1 + 0.5, c0 - 0.5]]
        present = [PIGMENTS[t][0]] + ([PIGMENTS[b][0]] if b is not None else [])
        shapes.append(LabelledShape("rectangle", v, present, [PIGMENTS[t][0]]))
    return ShapeLabels(PIGMENTS, shapes, {"shape": [rows, cols]})


@pytest.mark.slow
def test_finetune_command_from_a_labels_file(tmp_path, capsys):
    from napari_xrf_pigments.io import write_cube

    _, base_dir = tiny_trained()
    cube = write_cube(tmp_path / "cube.h5", synthetic_cube(offset_keV=0.05))
    labels = write_labels(tmp_path / "labels.json", quadrant_labels())
    out = tmp_path / "finetuned"
    code = main(["finetune", "--cube", str(cube), "--labels", str(labels), "--out", str(out),
                 "--model", str(base_dir), "--epochs", "2", "--seed", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Before" in captured.out and "After" in captured.out and "Delta (DD)" in captured.out
    assert f"finetuned model written to {out}" in captured.out
    t = read_metadata(out)["training"]
    assert t["labels"]["path"] == str(labels) and t["labels"]["kind"] == "shapes"
    assert t["labels"]["n_shapes"] == 4 and t["labels"]["cube"]["source"] == str(cube)
    assert t["split"]["n_labelled"] == 192 and t["split"]["n_test"] == 154
    assert t["command"].startswith("xrf-pigments")
    # Again into the same folder: refused without --force; the base is refused even with it.
    assert main(["finetune", "--cube", str(cube), "--labels", str(labels), "--out", str(out),
                 "--model", str(base_dir), "--epochs", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["finetune", "--cube", str(cube), "--labels", str(labels), "--out",
                 str(base_dir), "--model", str(base_dir), "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would overwrite the base model" in err[0]
    # A ground-truth file (the mock-up generator's layout) as --labels: every pixel labelled.
    import h5py

    px = to_pixel_labels(quadrant_labels(), (12, 16))
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        for j, (abbr, _) in enumerate(PIGMENTS):
            h5[f"present/{abbr}"] = px.present[..., j]
            h5[f"top/{abbr}"] = px.top[..., j]
    out2 = tmp_path / "from-truth"
    assert main(["finetune", "--cube", str(cube), "--labels", str(tmp_path / "truth.h5"), "--out",
                 str(out2), "--model", str(base_dir), "--epochs", "1"]) == 0
    t = read_metadata(out2)["training"]
    assert t["labels"]["kind"] == "truth" and t["split"]["n_labelled"] == 192


def test_finetune_command_without_a_shipped_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_MODEL_DIR", tmp_path / "no-default")
    code = main(["finetune", "--cube", "c.h5", "--labels", "l.json", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no default pigment model is installed" in err[0]


# -- the quality check on a simulated mock-up (another instrument than the base model's) ---------

@pytest.mark.slow
def test_finetuning_on_a_mockup_raises_held_back_f1(tmp_path):
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.datasets.training import TrainingRecipe, generate_training_set
    from napari_xrf_pigments.labels import read_labels, strip_shapes
    from napari_xrf_pigments.model.training import train
    from napari_xrf_pigments.physics import Instrument
    from napari_xrf_pigments.preprocess import Preprocessing, make_grid

    # A tiny base model pretrained on simulations of the default (ELIO-like) instrument...
    data = run(generate_training_set(
        1500, seed=0, recipe=TrainingRecipe(n_instruments=2, readouts_per_instrument=2)
    ))
    base = run(train(data, folds=1, epochs=6, patience=3, seed=0, batch_size=32, learning_rate=3e-3,
                     preprocessing=Preprocessing(make_grid(2.8, 0.04, 300)), architecture=TINY_ARCH,
                     name="tiny-sim")).model
    # ...meets a mock-up scanned by another instrument (W tube, 40 kV, other geometry, 1 s).
    w = Instrument.from_dict({
        **Instrument().to_dict(), "name": "W-tube test scanner",
        "tube": {**Instrument().to_dict()["tube"], "anode": "W", "voltage_kV": 40.0},
        "incidence_deg": 70.0, "takeoff_deg": 40.0, "air_in_cm": 2.0, "air_out_cm": 1.5,
    })
    layout = crossed_strips(("Top 2", "Top 4", "Top 1"), ("Bottom 2A", "Bottom 1A", "Bottom 3A", "Bottom 4A"),
                            strip_px=5, gap_px=2, margin_px=2)
    cube, truth = run(simulate_mockup(layout, seed=1, instrument=w, live_time_s=1.0))
    # Shapes over the strips, labelled as a user who knows the recipes would.
    labels = write_labels(tmp_path / "labels.json", strip_shapes(truth))
    steps = []
    result = run(finetune(base, cube, read_labels(labels), epochs=15, head_epochs=15, batch_size=32),
                 steps.append)
    f1_before = result.before["summary"]["present_f1_mean"]
    f1_after = result.after["summary"]["present_f1_mean"]
    print(result.table(title=f"tiny model, {result.split}"))
    assert result.split["n_test"] > 250
    assert f1_after > f1_before + 0.05, (f1_before, f1_after)
    assert result.after["summary"]["top_f1_mean"] >= result.before["summary"]["top_f1_mean"] - 0.02
    assert any(s.info and s.info["stage"] == 2 for s in steps)
