"""One set of defaults for the CLI, the napari widgets and the Python API (no Keras import)."""

#: :func:`~napari_xrf_pigments.model.training.train` (paper section 2.4).
TRAIN_DEFAULTS = {
    "folds": 5,
    "epochs": 150,
    "seed": 0,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "lr_schedule": "constant",
    "patience": 10,
    "test_fraction": 0.2,
}

#: Learning-rate schedules of :func:`~napari_xrf_pigments.model.training.train`.
LR_SCHEDULES = ("constant", "cosine")

#: ``--augment``: Poisson resampling to 1e3-1e6 total counts and up to +-20 eV calibration shift.
AUGMENT_COUNTS = (1e3, 1e6)
AUGMENT_SHIFT_KEV = 0.02

#: Probability at or above which a pigment counts as predicted (metrics, evaluate).
THRESHOLD = 0.5

#: :func:`~napari_xrf_pigments.model.finetuning.finetune` (paper sections 2.3-2.4): 20 % of the
#: labelled pixels finetune, 80 % test; a validation slice of the finetuning part drives early
#: stopping. Stage 1 trains the dense head(s) only, stage 2 every layer at Adam 5e-4, the
#: batch normalisations keeping their pretrained statistics (``train_batchnorm``).
FINETUNE_DEFAULTS = {
    "fraction": 0.2,
    "seed": 0,
    "validation_fraction": 0.2,
    "head_epochs": 50,
    "head_learning_rate": 1e-3,
    "epochs": 100,
    "learning_rate": 5e-4,
    "batch_size": 64,
    "patience": 10,
    "train_batchnorm": False,
}

#: :func:`~napari_xrf_pigments.model.adapt.adapt_job`: spectra simulated with the user's
#: instrument (2.5 minutes of simulation and finetuning on 2 CPU cores, benchmarks/bench_adapt.py)
#: and the share of them finetuned on; the rest scores the model before and after.
ADAPT_DEFAULTS = {
    "n": 10000,
    "fraction": 0.8,
}
