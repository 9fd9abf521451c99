"""A model for your instrument: the shipped model finetuned on spectra simulated with it.

The paper's answer to a new instrument is finetuning on scanned mock-ups, which most labs do not
have for every scanner. Here the mock-up is replaced by the simulator: a training set is
simulated with the user's instrument description (``xrf-pigments instrument``, a PyMca
``.cfg`` or a hand-written file) and, when given, the measured background of one of their
scans; the base model is finetuned on part of it with the finetuning recipe
(:mod:`.finetuning`: dense head first, then all layers, early stopping) and scored before and
after on the rest.

The simulated set uses the recipe the base model was trained with (from its metadata), and the
network learns the same targets: a model trained on detectable labels is finetuned on detectable
labels (what reaches the detector of *this* instrument), as ``train --targets detectable``.
"""

from __future__ import annotations

from ..datasets.training import TrainingRecipe, generate_training_set
from ..datasets.trainset import TrainingSet
from ..errors import InvalidDataError
from ..progress import Progress
from .defaults import ADAPT_DEFAULTS as _D
from .files import PigmentModel, load_model
from .finetuning import check_finetune_output, finetune_to_dir


def learned_labels(data: TrainingSet, targets: str) -> TrainingSet:
    """``data`` with the labels a model of ``targets`` learns in ``present`` (and ``top``).

    ``"detectable"``: a pigment counts where its own lines reach the detector, and is on top
    only where it also does (as :func:`~.training.train` restricts them).
    """
    if targets != "detectable":
        return data
    if data.detectable is None:
        raise InvalidDataError("the simulated set has no detectable labels")
    top = None if data.top is None else data.top & data.detectable
    return TrainingSet(data.spectra, data.energy, data.detectable, top, data.pigments,
                       data.provenance, data.params, data.path, detectable=data.detectable)


def _recipe_of(base):
    """The training-set recipe the base model was trained with, or the default."""
    recipe = (((base.metadata or {}).get("training") or {}).get("data") or {}).get(
        "provenance", {}).get("recipe")
    if isinstance(recipe, dict):
        try:
            return TrainingRecipe(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in recipe.items()})
        except TypeError:  # a recipe of another version: its keys differ
            pass
    return TrainingRecipe()


def adapt_job(out, instrument, *, base_model=None, background_cps=None, n: int = _D["n"],
              seed: int = 0, fraction: float = _D["fraction"], force: bool = False,
              command: str | None = None, **finetune_kwargs):
    """Simulate ``n`` spectra with ``instrument`` and finetune the base model on them; save to
    ``out`` (generator; nothing is written unless it completes).

    Parameters
    ----------
    out : str or Path
        New model directory (never the base model's).
    instrument : Instrument
    base_model : PigmentModel, str, Path or None
        None: the shipped model.
    background_cps : ndarray, optional
        Measured background (counts/s per channel of ``instrument.readout``), as
        ``simulate --background`` uses it.
    n, seed : int
        Spectra simulated, and the seed of the simulation and of the split.
    fraction : float
        Share of the spectra finetuned on; the rest scores the model before and after.
    force : bool
        Replace an existing ``out``.
    command : str, optional
        Recorded in the model's metadata.
    finetune_kwargs
        :func:`~.finetuning.finetune` options (``epochs``, ``head_epochs``, ``learning_rate``...).

    Yields
    ------
    Progress
        The simulation's, then the finetuning's (``info["stage"]``).

    Returns
    -------
    (FinetuneResult, Path)
    """
    base = base_model if isinstance(base_model, PigmentModel) else load_model(base_model)
    check_finetune_output(out, base.path, force=force)  # fail now, not after the work
    yield Progress(0, n, f"simulating {n} spectra with {instrument.name}")
    data = yield from generate_training_set(n, seed=seed, instrument=instrument,
                                            background_cps=background_cps,
                                            recipe=_recipe_of(base))
    targets = ((base.metadata or {}).get("training") or {}).get("targets", "present")
    data = learned_labels(data, targets)
    data.provenance["instrument"] = instrument.to_dict()
    name = finetune_kwargs.pop("name", None) or f"{base.name}-{instrument.name}"
    return (yield from finetune_to_dir(out, base, None, data, force=force, command=command,
                                       fraction=fraction, seed=seed, name=name,
                                       **finetune_kwargs))
