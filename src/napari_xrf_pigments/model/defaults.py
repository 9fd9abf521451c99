"""One set of defaults for the CLI, the napari widgets and the Python API (no Keras import)."""

#: :func:`~napari_xrf_pigments.model.training.train` (paper section 2.4).
TRAIN_DEFAULTS = {
    "folds": 5,
    "epochs": 150,
    "seed": 0,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "patience": 10,
    "test_fraction": 0.2,
}

#: ``--augment``: Poisson resampling to 1e3-1e6 total counts and up to +-20 eV calibration shift.
AUGMENT_COUNTS = (1e3, 1e6)
AUGMENT_SHIFT_KEV = 0.02

#: Probability at or above which a pigment counts as predicted (metrics, evaluate).
THRESHOLD = 0.5
