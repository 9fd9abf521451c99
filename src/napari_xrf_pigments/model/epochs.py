"""The epoch loop with early stopping, shared by training (per fold) and finetuning (per stage).

:func:`fit_epochs` is a progress generator: it fits one epoch at a time, yields a Progress
after each, keeps the weights of the epoch with the lowest validation loss and stops after
``patience`` epochs without a lower one. Keras is driven, not imported: the caller builds and
compiles the network (optimizer, learning-rate schedule, trainable layers) and seeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..progress import Progress

if TYPE_CHECKING:
    import numpy as np

#: A validation loss must fall by more than this to count as lower (float noise is not progress).
MIN_DELTA = 1e-6


@dataclass
class EpochsRun:
    """Outcome of :func:`fit_epochs`.

    Attributes
    ----------
    best_loss : float
        Lowest validation loss: ``best_loss`` given to :func:`fit_epochs` when no epoch beat it.
    best_epoch : int
        1-based epoch of ``best_loss``; 0 when no epoch beat the given one.
    best_weights : list of ndarray or None
        Weights after ``best_epoch``; None when no epoch beat the given loss.
    epochs_run : int
    lowest_val_loss : float
        Lowest validation loss of these epochs, whether or not it beat ``best_loss``.
    history : list of dict
        One per epoch: ``tag``, ``epoch`` and the Keras logs.
    """

    best_loss: float
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    epochs_run: int = 0
    lowest_val_loss: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


def fit_epochs(
    net,
    x,
    y,
    *,
    validation_data,
    epochs: int,
    batch_size: int,
    patience: int,
    label: str,
    tag: dict,
    done: int,
    total: int,
    best_loss: float = math.inf,
    keep=None,
    log_learning_rate: bool = False,
    mark_best: bool = False,
):
    """Fit ``net`` up to ``epochs`` epochs with early stopping (generator).

    Parameters
    ----------
    net : keras.Model
        Compiled; fitted one epoch at a time with shuffling.
    x : ndarray or callable
        Training inputs, or a function returning new ones, called before every epoch
        (augmentation).
    y : dict of ndarray
        Training targets per output.
    validation_data : tuple
        ``(x, y)`` whose loss drives early stopping.
    epochs, batch_size, patience : int
        Most epochs; batch size; epochs without a lower validation loss before stopping.
    label : str
        Start of each progress message (``"fold 1/5"``, ``"stage 1 (dense head)"``).
    tag : dict
        Leads every progress ``info`` and history entry (``{"fold": 1}``, ``{"stage": 1}``).
    done, total : int
        Epochs finished before this loop, and in the whole job (for ``Progress``); an early
        stop counts all ``epochs`` as done.
    best_loss : float
        Validation loss an epoch must beat to be kept (finetuning: the best so far).
    keep : keras.Model, optional
        Model whose weights are kept (default ``net``; finetuning fits a view of a model).
    log_learning_rate : bool
        Add the optimizer's learning rate after each epoch to the logs.
    mark_best : bool
        Add ``best`` (this epoch's weights are kept) to each progress ``info``.

    Yields
    ------
    Progress
        One per epoch; ``info`` has the tag, ``epoch`` and the logs.

    Returns
    -------
    EpochsRun
    """
    keep = net if keep is None else keep
    run = EpochsRun(best_loss)
    wait = 0
    for epoch in range(1, epochs + 1):
        fit = net.fit(
            x() if callable(x) else x, y, batch_size=batch_size, epochs=1,
            validation_data=validation_data, shuffle=True, verbose=0,
        )
        logs = {k: float(v[-1]) for k, v in fit.history.items()}
        if log_learning_rate:
            # lazy: keras loads TensorFlow/JAX
            import keras

            # The rate the next step would use (the schedule's value at the end of the epoch).
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(net.optimizer.learning_rate))
        run.epochs_run = epoch
        run.history.append({**tag, "epoch": epoch, **logs})
        run.lowest_val_loss = min(run.lowest_val_loss, logs["val_loss"])
        improved = logs["val_loss"] < run.best_loss - MIN_DELTA
        if improved:
            run.best_loss, run.best_epoch, wait = logs["val_loss"], epoch, 0
            run.best_weights = keep.get_weights()
        else:
            wait += 1
        stopping = wait >= patience or epoch == epochs
        info = {**tag, "epoch": epoch, **logs}
        if mark_best:
            info["best"] = improved
        yield Progress(
            done + (epochs if stopping else epoch),
            total,
            f"{label} epoch {epoch}: loss {logs['loss']:.4f} val_loss {logs['val_loss']:.4f}",
            info,
        )
        if stopping:
            break
    return run
