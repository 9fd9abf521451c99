"""Training with k-fold cross-validation (paper section 2.4), and evaluation.

:func:`train` is a generator: it yields a Progress after every epoch (loss and validation
figures in ``info``) and returns a :class:`TrainResult`. Recipe:

1. a seeded 80/20 split into a training part and a test split the folds never see;
2. k-fold cross-validation on the training part: fold i validates on the i-th of k equal groups
   and trains on the others (``folds=1``: one 80/20 train/validation split);
3. every fold trains with Adam, binary cross-entropy on each head, batch 64, early stopping on
   the validation loss (the best epoch's weights are kept; :func:`.epochs.fit_epochs`); the
   learning rate is constant (the paper) or, with ``lr_schedule="cosine"``, decays along a
   cosine from ``learning_rate`` to 1 % of it at the last epoch, which lets a fixed epoch
   budget end in a finer minimum;
4. the fold with the lowest validation loss is the model; its test-split metrics
   (:mod:`.metrics`) go into the model metadata.

Optional augmentation for robustness to count level and calibration: each epoch, every training
spectrum is Poisson-resampled at a total count drawn log-uniformly from ``augment_counts`` and
shifted by a random whole number of channels up to ``augment_shift_keV``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets.trainset import TrainingSet, as_pigment_labels, read_training_set
from ..errors import InvalidDataError
from ..preprocess import Preprocessing
from ..progress import Progress
from .architecture import PAPER_CONFIG, build_model, compile_model
from .defaults import LR_SCHEDULES, THRESHOLD
from .defaults import TRAIN_DEFAULTS as _D
from .epochs import fit_epochs
from .files import PigmentModel, load_model
from .metrics import apply_temperature, evaluate_predictions, fit_calibration

#: Builder arguments used unless ``architecture`` overrides them (the paper's network).
DEFAULT_ARCHITECTURE = {
    k: v for k, v in PAPER_CONFIG.items() if k not in ("n_channels", "n_pigments", "top_head")
}


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    model : PigmentModel
        The best fold's network with its metadata (not yet saved).
    metrics : dict
        Test-split figures (:func:`~.metrics.evaluate_predictions`).
    folds : list of dict
        Per fold: ``fold``, ``best_val_loss``, ``best_epoch``, ``epochs_run``.
    history : list of dict
        Per epoch of every fold: ``fold``, ``epoch``, the Keras logs and ``learning_rate``.
    best_fold : int
        1-based.
    """

    model: PigmentModel
    metrics: dict[str, Any]
    folds: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_fold: int = 1

    def save(self, path, *, force: bool = False) -> Path:
        """Write the model directory (weights + metadata)."""
        return self.model.save(path, force=force)


def split_indices(n: int, *, folds: int, seed: int, test_fraction: float = _D["test_fraction"]):
    """Seeded test split and fold assignment.

    Returns
    -------
    test : ndarray of int
    pairs : list of (train, validation) index arrays, one per fold
    """
    if not 0 < test_fraction < 1:
        raise InvalidDataError("test_fraction must be between 0 and 1")
    if folds < 1:
        raise InvalidDataError("folds must be at least 1")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    test, rest = np.sort(perm[:n_test]), perm[n_test:]
    min_needed = max(2 * folds, 4)
    if n_test < 1 or rest.size < min_needed:
        raise InvalidDataError(
            f"{n} spectra are too few for a {test_fraction:.0%} test split and {folds} fold(s)"
        )
    if folds == 1:
        n_val = max(1, int(round(0.2 * rest.size)))
        return test, [(np.sort(rest[n_val:]), np.sort(rest[:n_val]))]
    groups = np.array_split(rest, folds)
    pairs = []
    for i in range(folds):
        train = np.concatenate([g for j, g in enumerate(groups) if j != i])
        pairs.append((np.sort(train), np.sort(groups[i])))
    return test, pairs


def augment(counts, rng, *, count_range=None, max_shift: int = 0) -> np.ndarray:
    """Count-level and calibration augmentation of spectra on the model grid.

    Parameters
    ----------
    counts : ndarray, shape (n, n_channels)
    rng : numpy Generator
    count_range : (low, high) or None
        Total counts to resample each spectrum at (Poisson), drawn log-uniformly.
    max_shift : int
        Largest random shift in channels (zeros enter at the ends).

    Returns
    -------
    ndarray of float32, shape (n, n_channels)
    """
    out = np.asarray(counts, dtype=np.float32)
    n = out.shape[0]
    if count_range is not None:
        lo, hi = (float(v) for v in count_range)
        target = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
        total = out.sum(axis=1, dtype=np.float64)
        scale = np.where(total > 0, target / np.where(total > 0, total, 1.0), 0.0)
        out = rng.poisson(out * scale[:, None].astype(np.float32)).astype(np.float32)
    if max_shift:
        shifts = rng.integers(-max_shift, max_shift + 1, n)
        shifted = np.zeros_like(out)
        for s in np.unique(shifts):
            rows = np.nonzero(shifts == s)[0]
            if s > 0:
                shifted[rows, s:] = out[rows, :-s]
            elif s < 0:
                shifted[rows, :s] = out[rows, -s:]
            else:
                shifted[rows] = out[rows]
        out = shifted
    return out


#: What the "present" head learns: any pigment in the stack, or only those it can see.
TARGETS = ("present", "detectable")


def _labels(data: TrainingSet, index, heads, targets="present"):
    present = data.present[index] if targets == "present" else data.detectable[index]
    y = {"present": present.astype(np.float32)}
    if "top" in heads:
        y["top"] = (data.top[index] & present).astype(np.float32)
    return y


def train(
    data,
    *,
    folds: int = _D["folds"],
    epochs: int = _D["epochs"],
    seed: int = _D["seed"],
    batch_size: int = _D["batch_size"],
    learning_rate: float = _D["learning_rate"],
    lr_schedule: str = _D["lr_schedule"],
    patience: int = _D["patience"],
    test_fraction: float = _D["test_fraction"],
    preprocessing: Preprocessing | None = None,
    architecture: dict | None = None,
    top_head: bool | None = None,
    augment_counts=None,
    augment_shift_keV: float = 0.0,
    name: str | None = None,
    targets: str = "present",
):
    """Train a pigment model (generator; see the module docstring for the recipe).

    Parameters
    ----------
    data : TrainingSet, str or Path
        Labelled spectra (:mod:`napari_xrf_pigments.datasets.trainset`).
    folds : int
        Cross-validation folds (1: a single train/validation split).
    epochs : int
        Upper limit per fold; early stopping usually ends sooner.
    seed : int
        Seeds the split, the weight initialisation, shuffling and augmentation (through
        ``keras.utils.set_random_seed``, which also seeds Python's and numpy's global RNGs).
    batch_size, learning_rate : int, float
        Paper: 64 and 1e-3 (Adam).
    lr_schedule : {"constant", "cosine"}
        Learning rate over the epochs (see the module docstring).
    patience : int
        Epochs without a lower validation loss before a fold stops.
    test_fraction : float
    preprocessing : Preprocessing, optional
        Model grid and transform; default: the data's own channels from 2.80 keV.
    architecture : dict, optional
        :func:`~.architecture.build_model` arguments overriding the paper's.
    top_head : bool, optional
        Train the "top layer" head; default: when the data have top-layer labels.
    augment_counts : (low, high), optional
        Total-count range for Poisson augmentation (e.g. ``(1e3, 1e6)``).
    augment_shift_keV : float
        Largest random calibration shift, rounded to the nearest whole model channel (halves
        up: 0.02 keV is 2 channels of 10 eV, 1 of 20 eV or 40 eV).
    name : str, optional
        Model name for the metadata.
    targets : {"present", "detectable"}
        What the heads learn: the paper's labels (pigment anywhere in the stack), or only the
        pigments whose own lines reach the detector (``/labels/detectable``; top-layer labels
        restricted alike). The test split is scored against both when the data have both.

    Yields
    ------
    Progress
        ``done``/``total`` in epochs over all folds; ``info`` has fold, epoch and the logs.

    Returns
    -------
    TrainResult
    """
    # lazy: keras loads TensorFlow/JAX
    import keras

    started = time.time()
    if not isinstance(data, TrainingSet):
        data = read_training_set(data)
    if top_head is None:
        top_head = data.top is not None
    if top_head and data.top is None:
        raise InvalidDataError("a top-layer head needs /labels/top in the training data")
    if targets not in TARGETS:
        raise InvalidDataError(f"unknown targets {targets!r}; use one of {', '.join(TARGETS)}")
    if targets == "detectable" and data.detectable is None:
        raise InvalidDataError(
            "the training data have no detectable labels (/labels/detectable): simulate them "
            "again with this version's `xrf-pigments simulate`")
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise InvalidDataError("epochs, batch size and patience must be at least 1")
    if lr_schedule not in LR_SCHEDULES:
        raise InvalidDataError(
            f"unknown learning-rate schedule {lr_schedule!r}; use one of {', '.join(LR_SCHEDULES)}"
        )
    preprocessing = preprocessing or Preprocessing.from_energies(data.energy)
    arch = {**DEFAULT_ARCHITECTURE, **(architecture or {})}
    heads = ("present", "top") if top_head else ("present",)
    test, pairs = split_indices(len(data), folds=folds, seed=seed, test_fraction=test_fraction)

    counts = preprocessing.counts_on_grid(data.spectra, data.energy, what="the training data")
    features = preprocessing.transform(counts)[..., None]
    step = float(np.median(np.diff(preprocessing.grid)))
    # Nearest whole channel, halves up: 20 eV is one channel of 40 eV too (as the shipped model
    # was trained), not zero by round-half-even or float noise.
    max_shift = int(math.floor(augment_shift_keV / step + 0.5 + 1e-6)) if augment_shift_keV else 0
    augmenting = augment_counts is not None or max_shift > 0
    rng = np.random.default_rng(seed + 1)
    keras.utils.set_random_seed(seed)

    total = len(pairs) * epochs
    history, fold_results, best = [], [], None
    yield Progress(0, total, "training")
    for f, (tr, va) in enumerate(pairs, start=1):
        net = build_model(
            preprocessing.n_channels, len(data.pigments), top_head=top_head, **arch
        )
        rate = learning_rate
        if lr_schedule == "cosine":
            rate = keras.optimizers.schedules.CosineDecay(
                learning_rate, decay_steps=epochs * math.ceil(tr.size / batch_size), alpha=0.01
            )
        compile_model(net, learning_rate=rate)
        y_tr = _labels(data, tr, heads, targets)
        val = (features[va], _labels(data, va, heads, targets))

        def augmented(tr=tr):
            aug = augment(counts[tr], rng, count_range=augment_counts, max_shift=max_shift)
            return preprocessing.transform(aug)[..., None]

        run = yield from fit_epochs(
            net, augmented if augmenting else features[tr], y_tr, validation_data=val,
            epochs=epochs, batch_size=batch_size, patience=patience,
            label=f"fold {f}/{len(pairs)}", tag={"fold": f}, done=(f - 1) * epochs,
            total=total, log_learning_rate=True,
        )
        history.extend(run.history)
        fold_results.append({"fold": f, "best_val_loss": run.best_loss,
                             "best_epoch": run.best_epoch, "epochs_run": run.epochs_run})
        if best is None or run.best_loss < best[0]:
            best = (run.best_loss, f, run.best_weights)
        del net

    best_loss, best_fold, weights = best
    net = build_model(preprocessing.n_channels, len(data.pigments), top_head=top_head, **arch)
    net.set_weights(weights)
    # Temperature scaling on the best fold's validation split (the test split stays unseen);
    # it moves probabilities, never which side of 0.5 they are on, so F1 does not change.
    va = pairs[best_fold - 1][1]
    val_pred = net.predict(features[va], batch_size=256, verbose=0)
    calibration = fit_calibration({k: np.asarray(val_pred[k]) for k in heads},
                                  _labels(data, va, heads, targets))
    pred = net.predict(features[test], batch_size=256, verbose=0)
    pred = {k: apply_temperature(np.asarray(pred[k]), calibration["temperature"][k]) for k in heads}
    metrics = evaluate_predictions(
        data.pigments,
        data.present[test],
        pred["present"],
        data.top[test] if top_head else None,
        pred["top"] if top_head else None,
        detectable=None if data.detectable is None else data.detectable[test],
    )
    metrics["split"] = "test"
    training = {
        "data": {
            "path": data.path,
            "n_spectra": len(data),
            "provenance": data.provenance,
        },
        "seed": seed,
        "folds": folds,
        "epochs": epochs,
        "patience": patience,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "lr_schedule": lr_schedule,
        "targets": targets,
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "test_fraction": test_fraction,
        "n_test": int(test.size),
        "n_train": int(pairs[0][0].size),
        "n_validation": int(pairs[0][1].size),
        "augmentation": {
            "counts": list(augment_counts) if augment_counts is not None else None,
            "shift_channels": max_shift,
        },
        "best_fold": best_fold,
        "fold_results": fold_results,
        "duration_s": round(time.time() - started, 1),
    }
    architecture_meta = {
        k: list(v) if isinstance(v, tuple) else v for k, v in {**arch, "top_head": top_head}.items()
    }
    meta = {
        "name": name or "pigment-cnn",
        "calibration": calibration,
        "architecture": architecture_meta,
        "training": training,
        "metrics": metrics,
        "pigments": [p._asdict() for p in data.pigments],
        "outputs": list(net.output_names),
        "groups": [g for g in data.provenance.get("groups", ())
                   if g["abbreviation"] in data.abbreviations],
    }
    model = PigmentModel(net, data.pigments, preprocessing, meta, None)
    return TrainResult(model, metrics, fold_results, history, best_fold)


def evaluate(
    model, data, *, threshold: float = THRESHOLD, batch_size: int | None = None, engine="auto"
):
    """Score a model on labelled spectra (generator yielding Progress, returning a metrics dict).

    Parameters
    ----------
    model : PigmentModel, str or Path
    data : TrainingSet, str or Path
        Must hold labels for every pigment of the model (matched by abbreviation); labels of
        other pigments are ignored.
    threshold : float
    batch_size : int, optional
    engine : {"auto", "fast", "keras"}

    Returns
    -------
    dict
        :func:`~.metrics.evaluate_predictions` output plus ``model`` and ``data``.
    """
    if not isinstance(model, PigmentModel):
        model = load_model(model)
    if not isinstance(data, TrainingSet):
        data = read_training_set(data)
    have = data.abbreviations
    missing = [a for a in model.abbreviations if a not in have]
    if missing:
        raise InvalidDataError(
            f"the data have no labels for {', '.join(missing)} (model {model.name} predicts "
            f"{', '.join(model.abbreviations)}; the data label {', '.join(have)})"
        )
    cols = [have.index(a) for a in model.abbreviations]
    kwargs = {"engine": engine}
    if batch_size:
        kwargs["batch_size"] = int(batch_size)
    predictor = model.predictor(**kwargs)
    resampler = model.preprocessing.resampler(data.energy, what="the evaluation data")
    n = len(data)
    scores = {k: np.empty((n, len(cols)), np.float32) for k in model.outputs}
    chunk = 4096
    yield Progress(0, n, "evaluating")
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        res = predictor.predict_counts(resampler(data.spectra[start:stop]))
        for k in model.outputs:
            scores[k][start:stop] = res[k]
        yield Progress(stop, n, f"spectra {stop}/{n}")
    use_top = model.has_top and data.top is not None
    # Spectra without counts (NaN) count as "predicted absent".
    present_score = np.nan_to_num(scores["present"], nan=0.0)
    top_score = np.nan_to_num(scores["top"], nan=0.0) if use_top else None
    result = evaluate_predictions(
        as_pigment_labels(model.pigments),
        data.present[:, cols],
        present_score,
        data.top[:, cols] if use_top else None,
        top_score,
        threshold=threshold,
        detectable=None if data.detectable is None else data.detectable[:, cols],
    )
    result["model"] = str(model.path) if model.path else model.name
    result["data"] = data.path
    ignored = [a for a in have if a not in model.abbreviations]
    if ignored:
        result["ignored_pigments"] = ignored
    return result
