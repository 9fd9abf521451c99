"""Training (k-fold CV, early stopping), metrics (paper Eq. 3-6) and evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("keras")

from _model_data import ENERGY, PIGMENTS, TINY_ARCH, make_set, tiny_trained, write_set  # noqa: E402

from napari_xrf_pigments.datasets.trainset import TrainingSet, write_training_set  # noqa: E402
from napari_xrf_pigments.errors import InvalidDataError, UnreadableFileError  # noqa: E402
from napari_xrf_pigments.model.metrics import (  # noqa: E402
    apply_temperature,
    binary_metrics,
    evaluate_predictions,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    format_table,
    top1_accuracy,
    top_assignment_accuracy,
)
from napari_xrf_pigments.model.training import augment, evaluate, split_indices, train  # noqa: E402
from napari_xrf_pigments.progress import run  # noqa: E402


def test_tiny_training_really_learns():
    result, _ = tiny_trained()
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    summary = result.metrics["summary"]
    # Chance level: always "present" gives F1 = 2p/(1+p) ~ 0.57 at prevalence p ~ 0.4.
    assert summary["present_f1_min"] > 0.85
    assert summary["top_f1_min"] > 0.8
    assert summary["top_assignment_accuracy"] > 0.85
    assert result.metrics["n_spectra"] == 120  # 20 % of 600


def test_training_yields_progress_per_epoch():
    result, _ = tiny_trained()
    steps = result.progress
    assert steps[0].done == 0
    epochs = [s for s in steps if s.info]
    assert len(epochs) == len(result.history)
    assert all("loss" in s.info and "val_loss" in s.info for s in epochs)
    assert steps[-1].done == steps[-1].total == 10
    assert [s.done for s in steps] == sorted(s.done for s in steps)


class _ScriptedNet:
    """Stands in for a Keras model: each fit returns the next scripted validation loss."""

    def __init__(self, val_losses):
        self.val_losses = list(val_losses)
        self.inputs = []
        self.fits = 0

    def fit(self, x, y, **kwargs):
        assert kwargs["epochs"] == 1 and kwargs["shuffle"] is True
        self.inputs.append(x)
        self.fits += 1
        val = self.val_losses[self.fits - 1]
        return type("History", (), {"history": {"loss": [2.0 * val], "val_loss": [val]}})()

    def get_weights(self):
        return [np.array(self.fits)]


def _fit_scripted(val_losses, **kwargs):
    from napari_xrf_pigments.model.epochs import fit_epochs

    net = _ScriptedNet(val_losses)
    x = kwargs.pop("x", "x")
    options = {"validation_data": (None, None), "epochs": len(val_losses), "batch_size": 8,
               "patience": 2, "label": "fold 1/1", "tag": {"fold": 1}, "done": 10, "total": 30,
               **kwargs}
    steps = []
    job = fit_epochs(net, x, {"y": None}, **options)
    return run(job, steps.append), steps, net


def test_epoch_loop_stops_early_and_keeps_the_best_weights():
    result, steps, net = _fit_scripted([0.9, 0.5, 0.5 - 1e-7, 0.6, 0.4])
    # 0.5 - 1e-7 is not lower by more than 1e-6; two epochs without progress stop the loop.
    assert net.fits == result.epochs_run == 4
    assert (result.best_loss, result.best_epoch, result.best_weights) == (0.5, 2, [2])
    assert result.lowest_val_loss == 0.5 - 1e-7
    assert [s.done for s in steps] == [11, 12, 13, 15]  # an early stop counts every epoch
    assert steps[0].message == "fold 1/1 epoch 1: loss 1.8000 val_loss 0.9000"
    assert steps[0].info == {"fold": 1, "epoch": 1, "loss": 1.8, "val_loss": 0.9}
    assert result.history == [s.info for s in steps]


def test_epoch_loop_must_beat_a_given_loss_and_draws_inputs_per_epoch():
    drawn = iter(range(10))
    result, steps, net = _fit_scripted(
        [0.7, 0.6, 0.3], best_loss=0.5, mark_best=True, patience=5, x=lambda: next(drawn)
    )
    assert net.inputs == [0, 1, 2]
    assert [s.info["best"] for s in steps] == [False, False, True]
    assert (result.best_loss, result.best_epoch, result.epochs_run) == (0.3, 3, 3)
    result, _, _ = _fit_scripted([0.7, 0.6], best_loss=0.5)
    assert (result.best_loss, result.best_epoch, result.best_weights) == (0.5, 0, None)


def test_split_is_seeded_disjoint_and_80_20():
    test, pairs = split_indices(100, folds=5, seed=3)
    again, _ = split_indices(100, folds=5, seed=3)
    np.testing.assert_array_equal(test, again)
    assert test.size == 20 and len(pairs) == 5
    vals = np.concatenate([v for _, v in pairs])
    assert np.unique(vals).size == 80 and not set(vals) & set(test)
    for tr, va in pairs:
        assert not set(tr) & set(va) and tr.size + va.size == 80
    _, single = split_indices(100, folds=1, seed=3)
    assert len(single) == 1 and single[0][1].size == 16
    with pytest.raises(InvalidDataError, match="too few"):
        split_indices(8, folds=5, seed=0)


def test_augmentation_changes_count_level_and_shifts():
    rng = np.random.default_rng(0)
    counts = np.tile(np.linspace(1, 100, 50, dtype=np.float32) * 100, (200, 1))
    out = augment(counts, rng, count_range=(1e3, 1e4))
    totals = out.sum(axis=1)
    assert totals.min() > 800 and totals.max() < 1.2e4
    peaks = np.argmax(augment(np.eye(50, dtype=np.float32)[[25] * 100] * 1e3, rng, max_shift=2), axis=1)
    assert set(peaks) <= {23, 24, 25, 26, 27} and len(set(peaks)) > 1


def test_training_needs_labels(tmp_path):
    import h5py

    path = tmp_path / "nolabels.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = np.ones((50, 300), np.float32)
        f["energy"] = ENERGY
        f.attrs["pigments"] = json.dumps([{"abbreviation": "AA", "name": "Alpha"}])
    with pytest.raises(UnreadableFileError, match="no labels"):
        run(train(path, epochs=1))
    spectra, present, _ = make_set(50)
    data = TrainingSet(spectra, ENERGY, present, None, tuple(PIGMENTS))
    with pytest.raises(InvalidDataError, match="top"):
        run(train(data, top_head=True, epochs=1))


def test_binary_metrics_follow_eq_3_to_6():
    truth = np.array([[1, 0], [1, 0], [0, 0], [0, 1]], bool)
    score = np.array([[0.9, 0.1], [0.2, 0.6], [0.7, 0.2], [0.1, 0.3]])
    m = binary_metrics(truth, score)
    # pigment 0: TP 1, FN 1, FP 1, TN 1
    assert m["accuracy"][0] == 0.5 and m["sensitivity"][0] == 0.5 and m["precision"][0] == 0.5
    assert m["f1"][0] == 0.5
    # pigment 1: TP 0, FN 1, FP 1, TN 2 -> precision 0/1 = 0, F1 undefined (0/0)
    assert m["precision"][1] == 0 and math.isnan(m["f1"][1])
    assert top_assignment_accuracy(truth, truth, score) == pytest.approx(1 / 3)
    assert top1_accuracy(truth, score) == pytest.approx(2 / 3)


def test_metrics_json_and_table():
    truth = np.array([[1, 0], [0, 1], [1, 1]], bool)
    res = evaluate_predictions(PIGMENTS[:2], truth, truth * 0.9, truth, truth * 0.8)
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text)["present"]["AA"]["f1"] == 1.0
    table = format_table(res, title="T")
    lines = table.splitlines()
    assert lines[0] == "T" and "Present (any layer)" in lines[1] and "Top layer" in lines[1]
    assert "Alpha (AA)" in table and "top-layer assignment accuracy 1.000" in table
    assert len({len(line) for line in lines[1:5]}) == 1  # aligned columns


def test_metrics_with_detectable_labels():
    """A pigment present but unseen (third spectrum, AA) is a miss for "present" only."""
    truth = np.array([[1, 0], [0, 1], [1, 1]], bool)
    seen = np.array([[1, 0], [0, 1], [0, 1]], bool)
    score = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.9]])
    res = evaluate_predictions(PIGMENTS[:2], truth, score, detectable=seen)
    assert res["present"]["AA"]["f1"] == pytest.approx(2 / 3)
    assert res["detectable"]["AA"]["f1"] == 1.0 and res["summary"]["detectable_f1_min"] == 1.0
    table = format_table(res)
    assert "Detectable" in table.splitlines()[0] and "detectable F1 min 1.000" in table


@pytest.mark.slow  # trains a model
def test_evaluate_scores_held_out_data(tmp_path):
    result, model_dir = tiny_trained()
    path = write_set(tmp_path / "test.h5", n=200, seed=11)
    metrics = run(evaluate(model_dir, path))
    assert metrics["n_spectra"] == 200
    assert metrics["summary"]["present_f1_min"] > 0.85
    assert metrics["model"] == str(model_dir) and metrics["data"] == str(path)


def test_evaluate_needs_labels_for_every_model_pigment(tmp_path):
    _, model_dir = tiny_trained()
    spectra, present, top = make_set(20)
    path = write_training_set(
        tmp_path / "other.h5", spectra, ENERGY, present, top,
        [("AA", "a"), ("BB", "b"), ("CC", "c"), ("VM", "Vermilion")],
    )
    with pytest.raises(InvalidDataError, match="no labels for DD"):
        run(evaluate(model_dir, path))


@pytest.mark.slow
def test_k_fold_keeps_the_best_fold():
    spectra, present, top = make_set(300, seed=4)
    data = TrainingSet(spectra, ENERGY, present, top, tuple(PIGMENTS))
    result = run(train(data, folds=3, epochs=3, patience=2, seed=2, batch_size=32,
                       architecture=TINY_ARCH, augment_counts=(1e3, 1e5), augment_shift_keV=0.04))
    assert len(result.folds) == 3
    best = min(result.folds, key=lambda f: f["best_val_loss"])
    assert result.best_fold == best["fold"]
    meta = result.model.metadata["training"]
    assert meta["best_fold"] == best["fold"] and meta["augmentation"]["shift_channels"] == 1


@pytest.mark.slow  # trains a model per schedule
@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule(schedule):
    spectra, present, top = make_set(200, seed=5)
    data = TrainingSet(spectra, ENERGY, present, top, tuple(PIGMENTS))
    result = run(train(data, folds=1, epochs=3, patience=3, batch_size=32, learning_rate=2e-3,
                       architecture=TINY_ARCH, lr_schedule=schedule))
    rates = [h["learning_rate"] for h in result.history]
    if schedule == "constant":
        assert rates == pytest.approx([2e-3] * 3)
    else:  # cosine: falling every epoch, to 1 % of the start after the last one
        assert rates[0] < 2e-3 and rates[0] > rates[1] > rates[2]
        assert rates[2] == pytest.approx(2e-5, rel=1e-3)
    assert result.model.metadata["training"]["lr_schedule"] == schedule


def test_unknown_learning_rate_schedule_is_refused():
    spectra, present, top = make_set(50, seed=6)
    data = TrainingSet(spectra, ENERGY, present, top, tuple(PIGMENTS))
    with pytest.raises(InvalidDataError, match="learning-rate schedule 'step'"):
        run(train(data, folds=1, epochs=1, architecture=TINY_ARCH, lr_schedule="step"))


@pytest.mark.slow  # trains a model
def test_half_channel_shift_rounds_up_to_one_channel():
    spectra, present, top = make_set(60, seed=7)
    data = TrainingSet(spectra, ENERGY, present, top, tuple(PIGMENTS))
    result = run(train(data, folds=1, epochs=1, architecture=TINY_ARCH, augment_shift_keV=0.02))
    assert result.model.metadata["training"]["augmentation"]["shift_channels"] == 1  # 40 eV grid


def test_calibration_error_and_temperature():
    rng = np.random.default_rng(0)
    honest = rng.uniform(0.02, 0.98, (4000, 3))  # calibrated: truth drawn with these odds
    truth = rng.random(honest.shape) < honest
    overconfident = apply_temperature(honest, 0.4)  # logits 2.5x too large
    t = fit_temperature(truth, overconfident)
    assert t == pytest.approx(2.5, rel=0.15)
    assert expected_calibration_error(truth, apply_temperature(overconfident, t)) < \
        expected_calibration_error(truth, overconfident)
    # The 0.5 threshold, and so every F1, does not move.
    assert np.array_equal(apply_temperature(overconfident, t) >= 0.5, overconfident >= 0.5)
    cal = fit_calibration({"present": overconfident}, {"present": truth})
    assert cal["temperature"]["present"] == pytest.approx(t, rel=1e-3)
    assert cal["validation_ece"]["present"][1] < cal["validation_ece"]["present"][0]
    assert expected_calibration_error(np.array([True, False]), np.array([1.0, 0.0])) == 0.0


@pytest.mark.slow  # simulates a training set and trains
def test_groups_of_the_training_set_reach_the_model(tmp_path):
    """Group columns (a label true where any member's is) are trained like the others and
    recorded in the model's metadata."""
    spectra, present, top = make_set(200, seed=3)
    either = (present[:, 0] | present[:, 1])[:, None]
    group = {"abbreviation": "AA+BB", "name": "Alpha / beta", "members": ["AA", "BB"]}
    data = TrainingSet(spectra, ENERGY, np.hstack([present, either]),
                       np.hstack([top, (top[:, 0] | top[:, 1])[:, None]]),
                       (*PIGMENTS, ("AA+BB", "Alpha / beta")), provenance={"groups": [group]})
    result = run(train(data, folds=1, epochs=1, batch_size=32, architecture=TINY_ARCH))
    assert result.model.groups == {"AA+BB": ("AA", "BB")}
    assert result.model.abbreviations[-1] == "AA+BB"
    assert "AA+BB" in result.metrics["present"]
