"""The pigment CNN: architecture, training, evaluation, model files and fast prediction.

Submodules load Keras (and TensorFlow) only when used; importing this package does not.

- :mod:`.architecture` -- :func:`build_model` (paper configuration: :data:`PAPER_CONFIG`)
- :mod:`.training` -- :func:`train` (k-fold cross-validation, a progress generator)
- :mod:`.metrics` -- per-pigment accuracy, sensitivity, precision, F1; Table-3 layout
- :mod:`.files` -- :func:`save_model`, :func:`load_model` (cached, safe_mode)
- :mod:`.predictor` -- :class:`Predictor` (compiled inference on blocks of spectra)
- :mod:`.predict` -- :func:`predict_cube`, :func:`predict_to_file` (a cube or file to maps)
- :mod:`.finetuning` -- :func:`finetune` (two-stage transfer learning on labelled pixels)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "build_model": "architecture",
    "build_paper_model": "architecture",
    "PAPER_CONFIG": "architecture",
    "train": "training",
    "TrainResult": "training",
    "evaluate": "training",
    "evaluate_predictions": "metrics",
    "format_table": "metrics",
    "PigmentModel": "files",
    "save_model": "files",
    "load_model": "files",
    "read_metadata": "files",
    "default_model_path": "files",
    "ModelFileError": "files",
    "Predictor": "predictor",
    "predict_cube": "predict",
    "predict_to_file": "predict",
    "finetune": "finetuning",
    "FinetuneResult": "finetuning",
    "format_comparison": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
