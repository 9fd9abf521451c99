"""Finetuning a pretrained pigment model on labelled spectra of a scanned mock-up.

Transfer learning as in the paper (sections 2.3-2.4, 4.1): the model pretrained on simulations
starts from its weights and learns from spectra whose pigments are known. Recipe of
:func:`finetune` (a progress generator):

1. the labelled pixels (shapes or ground truth, :mod:`napari_xrf_pigments.labels`) become
   spectra on the base model's grid;
2. a seeded random split: ``fraction`` (20 %, as the paper) finetunes, the rest is the test
   set; a ``validation_fraction`` slice of the finetuning part drives early stopping;
3. Table-3 metrics of the base model on the test pixels ("before");
4. stage 1: convolutional layers frozen (their batch norms in inference mode), only the dense
   head(s) train, Adam ``head_learning_rate`` (1e-3);
5. stage 2: the convolutional and dense layers trainable, Adam ``learning_rate`` (paper:
   5e-4); the batch normalisations keep their pretrained statistics (``train_batchnorm``);
6. early stopping on the validation loss throughout (:func:`.epochs.fit_epochs`): the weights
   with the lowest validation loss seen (base model included) are kept;
7. metrics on the same test pixels ("after").

The base model is never modified (its network is cloned) and never overwritten:
:meth:`FinetuneResult.save` refuses the base model's folder and the shipped model's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import check_output_path
from ..datasets.trainset import TrainingSet
from ..errors import InvalidDataError
from ..labels import PixelLabels, ShapeLabels, extract_training_set
from ..progress import Progress
from .defaults import FINETUNE_DEFAULTS as _D
from .defaults import THRESHOLD
from .epochs import fit_epochs
from .files import DEFAULT_MODEL_DIR, ModelFileError, PigmentModel, load_model
from .metrics import evaluate_predictions, format_comparison


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune`.

    Attributes
    ----------
    model : PigmentModel
        The finetuned network with its metadata (not yet saved).
    before, after : dict
        :func:`~.metrics.evaluate_predictions` of the base and the finetuned model on the same
        test pixels.
    split : dict
        ``seed``, ``fraction``, ``validation_fraction``, ``n_labelled``, ``n_finetune``,
        ``n_train``, ``n_validation``, ``n_test``.
    stages : list of dict
        Per stage: ``stage``, ``trainable``, ``learning_rate``, ``epochs_run``, ``best_epoch``
        (0: no epoch of the stage improved), ``best_val_loss``.
    history : list of dict
        One entry per epoch: ``stage``, ``epoch`` and the Keras logs (``loss``, ``val_loss``...).
    base_path : Path or None
        Folder of the base model.
    indices : dict of str -> ndarray of int
        ``train``, ``validation``, ``test``: rows of the labelled set.
    """

    model: PigmentModel
    before: dict[str, Any]
    after: dict[str, Any]
    split: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    base_path: Path | None = None
    indices: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self, title: str | None = None) -> str:
        """Before/after metrics side by side (:func:`~.metrics.format_comparison`)."""
        return format_comparison(self.before, self.after, title=title)

    def save(self, path, *, force: bool = False) -> Path:
        """Write the finetuned model directory (atomic).

        Raises
        ------
        ModelFileError
            If ``path`` is (or contains, or lies in) the base model or the shipped model.
        OutputExistsError
            If ``path`` exists and ``force`` is false.
        """
        check_finetune_output(path, self.base_path, force=force)
        return self.model.save(path, force=force)


def check_finetune_output(path, base_path=None, *, force: bool = False) -> Path:
    """Refuse an output that would overwrite the base or the shipped model; see
    :func:`~napari_xrf_pigments.atomic.check_output_path` for the rest.

    Raises
    ------
    ModelFileError, OutputExistsError, FileNotFoundError
    """
    out = Path(path).resolve()
    protected = [("the shipped model", Path(DEFAULT_MODEL_DIR).resolve())]
    if base_path is not None:
        protected.insert(0, ("the base model", Path(base_path).resolve()))
    for what, p in protected:
        # Equal, inside it, or a folder holding it (which --force would replace whole).
        if out == p or p in out.parents or out in p.parents:
            raise ModelFileError(
                f"{path} would overwrite {what} ({p}); write the finetuned model to a new folder"
            )
    return check_output_path(path, force=force)


def split_labelled(n: int, *, fraction: float, validation_fraction: float, seed: int) -> dict:
    """Seeded random split of ``n`` labelled spectra.

    Returns
    -------
    dict of str -> ndarray of int (sorted)
        ``train`` + ``validation`` (together ``round(fraction * n)``) and ``test`` (the rest).

    Raises
    ------
    InvalidDataError
        Fractions outside (0, 1) or too few spectra for non-empty parts.
    """
    if not 0 < fraction < 1:
        raise InvalidDataError(f"the finetuning fraction must be between 0 and 1, got {fraction}")
    if not 0 < validation_fraction < 1:
        raise InvalidDataError(
            f"the validation fraction must be between 0 and 1, got {validation_fraction}"
        )
    perm = np.random.default_rng(seed).permutation(n)
    n_ft = int(round(fraction * n))
    n_val = max(1, int(round(validation_fraction * n_ft)))
    if n_ft - n_val < 2 or n - n_ft < 1:
        raise InvalidDataError(
            f"{n} labelled pixels are too few to finetune on {fraction:.0%} of them (at least 2 "
            f"for training and 1 for validation) and test on the rest; label more pixels"
        )
    ft, test = perm[:n_ft], perm[n_ft:]
    return {
        "train": np.sort(ft[n_val:]),
        "validation": np.sort(ft[:n_val]),
        "test": np.sort(test),
    }


def _select_columns(data: TrainingSet, pigments) -> TrainingSet:
    """``data`` with label columns in the model's pigment order."""
    have = data.abbreviations
    wanted = [p.abbreviation for p in pigments]
    missing = [a for a in wanted if a not in have]
    if missing:
        raise InvalidDataError(
            f"the labels do not say whether {', '.join(missing)} is present (the model predicts "
            f"{', '.join(wanted)}; the labels have {', '.join(have)})"
        )
    cols = [have.index(a) for a in wanted]
    return TrainingSet(
        data.spectra, data.energy, data.present[:, cols],
        None if data.top is None else data.top[:, cols], tuple(pigments),
        data.provenance, data.params, data.path,
    )


def _labelled_set(base: PigmentModel, cube, labels) -> tuple[TrainingSet, dict]:
    if isinstance(labels, TrainingSet):
        data = _select_columns(labels, base.pigments)
        source = {"kind": "spectra", "path": labels.path, "provenance": labels.provenance}
        return data, source
    if cube is None:
        raise InvalidDataError("a cube is needed to extract the spectra of the labelled pixels")
    if not isinstance(labels, (ShapeLabels, PixelLabels, str, Path)):
        raise TypeError(
            "labels must be a path, ShapeLabels, PixelLabels or TrainingSet, not "
            f"{type(labels).__name__}"
        )
    data = extract_training_set(cube, labels, pigments=base.pigments)
    source = dict(data.provenance["labels"])
    source["notes"] = data.provenance["notes"]
    source["cube"] = data.provenance["cube"]
    return data, source


def _heads_y(data: TrainingSet, index, heads) -> dict:
    y = {"present": data.present[index].astype(np.float32)}
    if "top" in heads:
        y["top"] = data.top[index].astype(np.float32)
    return y


def _scores(net, x, heads) -> dict:
    out = net.predict(x, batch_size=256, verbose=0)
    return {h: np.asarray(out[h]) for h in heads}


def _metrics(pigments, data, index, scores, heads, threshold) -> dict:
    use_top = "top" in heads
    m = evaluate_predictions(
        pigments,
        data.present[index],
        scores["present"],
        data.top[index] if use_top else None,
        scores["top"] if use_top else None,
        threshold=threshold,
    )
    m["split"] = "finetune-test"
    return m


def finetune(
    base_model=None,
    cube=None,
    labels=None,
    *,
    fraction: float = _D["fraction"],
    seed: int = _D["seed"],
    validation_fraction: float = _D["validation_fraction"],
    head_epochs: int = _D["head_epochs"],
    epochs: int = _D["epochs"],
    head_learning_rate: float = _D["head_learning_rate"],
    learning_rate: float = _D["learning_rate"],
    batch_size: int = _D["batch_size"],
    patience: int = _D["patience"],
    train_batchnorm: bool = _D["train_batchnorm"],
    threshold: float = THRESHOLD,
    name: str | None = None,
    labels_path: str | None = None,
):
    """Finetune a pigment model on labelled pixels (generator; recipe in the module docstring).

    Parameters
    ----------
    base_model : PigmentModel, str, Path or None
        The pretrained model (None: the shipped model). Never modified.
    cube : XRFCube, str or Path
        The scanned (or simulated) mock-up; may be None when ``labels`` is a TrainingSet.
    labels : ShapeLabels, PixelLabels, TrainingSet, str or Path
        Labelled shapes, per-pixel labels (ground truth), a labels / ground-truth file, or
        already extracted spectra. They must label every pigment of the model.
    fraction : float
        Share of the labelled pixels used for finetuning (train + validation); the rest tests.
    seed : int
        Seeds the split, shuffling and dropout.
    validation_fraction : float
        Share of the finetuning part kept for early stopping.
    head_epochs, epochs : int
        Most epochs of stage 1 (dense head only) and stage 2 (all layers); early stopping
        usually ends a stage sooner. ``head_epochs=0`` skips stage 1, ``epochs=0`` stage 2.
    head_learning_rate, learning_rate : float
        Adam learning rates of stages 1 and 2 (paper: 5e-4 for the finetuning).
    batch_size : int
    patience : int
        Epochs without a lower validation loss before a stage stops.
    train_batchnorm : bool
        Let stage 2 train the batch normalisations too (batch statistics in training mode,
        moving statistics updated). Default False: they keep the pretrained statistics and
        run in inference mode, while the convolutions and dense layers train. On a few
        hundred finetuning spectra, training them made every stage-2 epoch worse on the
        validation pixels (measured, docs/finetuning.md).
    threshold : float
        Probability counted as "predicted" in the metrics.
    name : str, optional
        Name of the new model (default: ``<base name>-finetuned``).
    labels_path : str, optional
        Recorded in the metadata when ``labels`` is an in-memory object read from a file.

    Yields
    ------
    Progress
        First the base model's losses (``info`` stage 0), then one per epoch: ``done``/``total``
        in epochs of both stages; ``info`` has ``stage``, ``epoch``, ``loss``, ``val_loss``
        (and per-head figures), ``best`` (this epoch's weights are the best so far).

    Returns
    -------
    FinetuneResult

    Raises
    ------
    InvalidDataError, ModelFileError, LabelsError
    """
    # lazy: keras loads TensorFlow/JAX
    import keras

    from .architecture import OUTPUTS

    started = time.time()
    head_epochs, epochs = int(head_epochs), int(epochs)
    if epochs < 0 or head_epochs < 0 or epochs + head_epochs < 1:
        raise InvalidDataError("finetuning needs at least one epoch")
    if batch_size < 1 or patience < 1:
        raise InvalidDataError("batch size and patience must be at least 1")
    if labels is None:
        raise InvalidDataError("finetuning needs labels (shapes, a labels file or ground truth)")
    if not isinstance(base_model, PigmentModel):
        base_model = load_model(base_model)
    base = base_model
    if isinstance(labels, (str, Path)):
        labels_path = str(labels)
    yield Progress(0, head_epochs + epochs, "extracting the labelled spectra")
    data, label_source = _labelled_set(base, cube, labels)
    if labels_path is not None:
        label_source["path"] = labels_path
    heads = tuple(h for h in base.outputs if h in OUTPUTS and (h != "top" or data.top is not None))
    idx = split_labelled(len(data), fraction=fraction, validation_fraction=validation_fraction, seed=seed)
    tr, va, te = idx["train"], idx["validation"], idx["test"]

    pre = base.preprocessing
    counts = pre.counts_on_grid(data.spectra, data.energy, what="the labelled spectra")
    x = pre.transform(counts)[..., None]
    y_tr, val = _heads_y(data, tr, heads), (x[va], _heads_y(data, va, heads))

    keras.utils.set_random_seed(seed)
    # A copy: the base may be the cached shipped model that the maps widget is using.
    net = keras.models.clone_model(base.keras_model)
    net.set_weights(base.keras_model.get_weights())
    # Only the heads with labels take part in the loss; a head without labels (no top-layer
    # labels) keeps the base model's weights, since only its shared layers change.
    view = keras.Model(net.inputs, {h: net.get_layer(h).output for h in heads}, name="finetune_view")

    before = _metrics(base.pigments, data, te, _scores(net, x[te], heads), heads, threshold)

    def compile_view(lr):
        view.compile(
            optimizer=keras.optimizers.Adam(learning_rate=lr),
            loss={h: "binary_crossentropy" for h in heads},
        )

    compile_view(head_learning_rate)
    start_loss = view.evaluate(x[tr], y_tr, batch_size=256, verbose=0, return_dict=True)["loss"]
    start_val = view.evaluate(*val, batch_size=256, verbose=0, return_dict=True)["loss"]
    total = head_epochs + epochs
    yield Progress(
        0, total, f"base model: loss {start_loss:.4f} val_loss {start_val:.4f}",
        {"stage": 0, "epoch": 0, "loss": float(start_loss), "val_loss": float(start_val), "best": True},
    )

    best = {"val_loss": float(start_val), "weights": net.get_weights(), "stage": 0, "epoch": 0}
    history, stages, done = [], [], 0
    plan = [
        (1, head_epochs, head_learning_rate, "dense head"),
        (2, epochs, learning_rate, "all layers" if train_batchnorm else "all but batch norms"),
    ]
    for stage, n_epochs, lr, trainable in plan:
        if n_epochs == 0:
            continue
        for layer in net.layers:
            # Stage 1: the dense head(s) only. A frozen BatchNormalization also runs in
            # inference mode (Keras 3), so the pretrained statistics stay as they are.
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = stage == 2 and train_batchnorm
            else:
                layer.trainable = stage == 2 or isinstance(layer, keras.layers.Dense)
        compile_view(lr)  # trainable flags take effect at compile time
        if stage == 2:
            net.set_weights(best["weights"])  # continue from the best so far
        # Early stopping across both stages: an epoch is kept only if it beats the best so far.
        run = yield from fit_epochs(
            view, x[tr], y_tr, validation_data=val, epochs=n_epochs, batch_size=batch_size,
            patience=patience, label=f"stage {stage} ({trainable})", tag={"stage": stage},
            done=done, total=total, best_loss=best["val_loss"], keep=net, mark_best=True,
        )
        if run.best_epoch:
            best = {"val_loss": run.best_loss, "weights": run.best_weights,
                    "stage": stage, "epoch": run.best_epoch}
        history.extend(run.history)
        done += n_epochs
        stages.append({
            "stage": stage,
            "trainable": trainable,
            "learning_rate": lr,
            "max_epochs": n_epochs,
            "epochs_run": run.epochs_run,
            "best_epoch": run.best_epoch,
            "best_val_loss": run.lowest_val_loss,
        })

    for layer in net.layers:
        layer.trainable = True
    net.set_weights(best["weights"])
    after = _metrics(base.pigments, data, te, _scores(net, x[te], heads), heads, threshold)

    split = {
        "seed": seed,
        "fraction": fraction,
        "validation_fraction": validation_fraction,
        "n_labelled": len(data),
        "n_finetune": int(tr.size + va.size),
        "n_train": int(tr.size),
        "n_validation": int(va.size),
        "n_test": int(te.size),
    }
    base_meta = base.metadata or {}
    training = {
        "kind": "finetune",
        "base_model": {
            "path": str(base.path) if base.path else None,
            "name": base.name,
            "created": base_meta.get("created"),
            "package_version": base_meta.get("package_version"),
            "training": base_meta.get("training"),
            "metrics_summary": (base_meta.get("metrics") or {}).get("summary"),
        },
        "labels": label_source,
        "split": split,
        "heads": list(heads),
        "stages": stages,
        "kept": {"stage": best["stage"], "epoch": best["epoch"], "val_loss": best["val_loss"]},
        "batch_size": batch_size,
        "patience": patience,
        "train_batchnorm": train_batchnorm,
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "metrics_before": before,
        "duration_s": round(time.time() - started, 1),
    }
    meta = {
        "name": name or f"{base.name}-finetuned",
        "architecture": base_meta.get("architecture") or {},
        "training": training,
        "metrics": after,
        "pigments": [p._asdict() for p in base.pigments],
        "outputs": list(net.output_names),
    }
    model = PigmentModel(net, base.pigments, base.preprocessing, meta, None)
    return FinetuneResult(
        model, before, after, split, stages, history, base.path,
        {"train": tr, "validation": va, "test": te},
    )


def finetune_to_dir(out, base_model=None, cube=None, labels=None, *, force: bool = False,
                    command: str | None = None, **kwargs):
    """:func:`finetune`, then save the new model to ``out`` (generator; nothing is written
    unless it completes).

    The output is checked before any work (never the base or the shipped model; existing only
    with ``force``). ``command`` is recorded in the metadata. Returns ``(FinetuneResult, Path)``.
    """
    if not isinstance(base_model, PigmentModel):
        base_model = load_model(base_model)
    check_finetune_output(out, base_model.path, force=force)
    result = yield from finetune(base_model, cube, labels, **kwargs)
    if command:
        result.model.metadata["training"]["command"] = command
    path = result.save(out, force=force)
    result.model.path = path
    return result, path


__all__ = [
    "FinetuneResult",
    "check_finetune_output",
    "finetune",
    "finetune_to_dir",
    "split_labelled",
    "ModelFileError",
]
