"""Model files: a directory with the Keras weights and a JSON metadata sidecar.

::

    MODEL/
      model.keras     Keras 3 archive (architecture + weights, no optimizer state)
      metadata.json   format, pigments (abbreviation + name, in output order), outputs,
                      preprocessing (version, crop, reference counts, energy grid in keV),
                      architecture (builder arguments), training (data provenance, seed, folds,
                      epochs, fold losses), metrics (test split), package/keras versions

Model files are data, not code: they load with Keras ``safe_mode=True`` and their metadata is
checked against the network before use. Loading is cached per path (a changed file reloads).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import check_output_path, naming_write_errors, normal_permissions
from ..datasets.trainset import PigmentLabel, as_pigment_labels
from ..errors import InvalidDataError, XRFPigmentsError
from ..preprocess import Preprocessing
from .predictor import Predictor

MODEL_FORMAT = "napari-xrf-pigments/model"
MODEL_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.keras"
METADATA_FILE = "metadata.json"
#: Where the shipped model lives inside the package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default"


class ModelFileError(XRFPigmentsError, ValueError):
    """A model file is missing, incomplete, inconsistent or does not fit the request."""


class PigmentMismatchError(ModelFileError):
    """The model predicts other pigments than the caller asked for."""


@dataclass(eq=False)
class PigmentModel:
    """A loaded (or freshly trained) pigment model.

    Attributes
    ----------
    keras_model : keras.Model
        Input (batch, n_channels, 1); dict outputs ``"present"`` (and ``"top"``), each
        (batch, n_pigments) probabilities.
    pigments : tuple of PigmentLabel
        In output column order.
    preprocessing : Preprocessing
        Energy grid and transform of the input.
    metadata : dict
        Everything in ``metadata.json``.
    path : Path or None
        Directory it was loaded from.
    """

    keras_model: object
    pigments: tuple[PigmentLabel, ...]
    preprocessing: Preprocessing
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False)
    _lock: object = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.pigments = as_pigment_labels(self.pigments)  # plain pairs are accepted

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.keras_model.output_names)

    @property
    def has_top(self) -> bool:
        return "top" in self.outputs

    @property
    def abbreviations(self) -> list[str]:
        return [p.abbreviation for p in self.pigments]

    @property
    def name(self) -> str:
        return self.metadata.get("name") or (self.path.name if self.path else "unsaved model")

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Output columns that stand for a group of pigments: abbreviation -> member abbreviations."""
        return {g["abbreviation"]: tuple(g["members"]) for g in self.metadata.get("groups", ())}

    def check_pigments(self, pigments) -> None:
        """Raise :class:`PigmentMismatchError` unless ``pigments`` equals the model's list.

        Compared by abbreviation, in order (the order of the output columns).
        """
        wanted = [p.abbreviation for p in as_pigment_labels(pigments)]
        have = self.abbreviations
        if wanted != have:
            missing = [a for a in wanted if a not in have]
            extra = [a for a in have if a not in wanted]
            detail = []
            if missing:
                detail.append(f"not in the model: {', '.join(missing)}")
            if extra:
                detail.append(f"only in the model: {', '.join(extra)}")
            if not detail:
                detail.append("same pigments in another order")
            raise PigmentMismatchError(
                f"model {self.name} predicts {', '.join(have)}, but {', '.join(wanted)} was "
                f"requested ({'; '.join(detail)})"
            )

    def predictor(self, **kwargs):
        """A cached :class:`~napari_xrf_pigments.model.predictor.Predictor` for this model."""
        key = tuple(sorted(kwargs.items()))
        with self._lock:
            pred = self._cache.get(("predictor", key))
            if pred is None:
                pred = Predictor(self, **kwargs)
                self._cache[("predictor", key)] = pred
        return pred

    def save(self, path, *, force: bool = False) -> Path:
        """Write this model to a directory (see :func:`save_model`)."""
        meta = dict(self.metadata)
        return save_model(
            path,
            self.keras_model,
            pigments=self.pigments,
            preprocessing=self.preprocessing,
            architecture=meta.get("architecture"),
            training=meta.get("training"),
            metrics=meta.get("metrics"),
            name=meta.get("name"),
            calibration=meta.get("calibration"),
            groups=meta.get("groups"),
            force=force,
        )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def build_metadata(
    keras_model,
    *,
    pigments,
    preprocessing,
    architecture=None,
    training=None,
    metrics=None,
    name=None,
    calibration=None,
    groups=None,
) -> dict:
    """The metadata dictionary stored beside the weights (JSON-ready)."""
    # lazy: keras loads TensorFlow/JAX
    import keras


    pigments = as_pigment_labels(pigments)
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "name": name or keras_model.name,
        "created": _now(),
        "package_version": __version__,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "pigments": [p._asdict() for p in pigments],
        "outputs": list(keras_model.output_names),
        "n_parameters": int(keras_model.count_params()),
        "preprocessing": preprocessing.to_dict(),
        "architecture": architecture or {},
        "training": training or {},
        "metrics": metrics or {},
        **({"calibration": calibration} if calibration else {}),
        **({"groups": list(groups)} if groups else {}),
    }


def save_model(
    path,
    keras_model,
    *,
    pigments,
    preprocessing: Preprocessing,
    architecture: dict | None = None,
    training: dict | None = None,
    metrics: dict | None = None,
    name: str | None = None,
    calibration: dict | None = None,
    groups=None,
    force: bool = False,
) -> Path:
    """Save weights and metadata into the directory ``path`` (written atomically).

    Parameters
    ----------
    path : str or Path
        Model directory to create.
    keras_model : keras.Model
        Built by :func:`~napari_xrf_pigments.model.architecture.build_model`.
    pigments : sequence of (abbreviation, name)
        One per output column.
    preprocessing : Preprocessing
    architecture, training, metrics : dict, optional
        JSON-serialisable; ``training`` should hold the training data provenance.
    name : str, optional
    calibration : dict, optional
        Temperature scaling of the outputs (``{"temperature": {"present": T, ...}}``),
        applied by the predictor.
    groups : list of dict, optional
        Output columns that stand for pigments XRF cannot tell apart:
        ``{"abbreviation", "name", "members"}`` each (see :class:`~napari_xrf_pigments.pigments.Group`).
    force : bool
        Replace an existing model directory.

    Raises
    ------
    ModelFileError
        If the network does not match the pigments or the grid.
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    import keras


    pigments = as_pigment_labels(pigments)
    meta = build_metadata(
        keras_model, pigments=pigments, preprocessing=preprocessing, architecture=architecture,
        training=training, metrics=metrics, name=name, calibration=calibration, groups=groups,
    )
    _check_network(keras_model, meta, where="the model to save")
    path = check_output_path(path, force=force)
    with naming_write_errors(path):  # a full or read-only disk: one line naming the model
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        try:
            # An uncompiled copy: no optimizer state in the file (about 1 MB for the paper net).
            clean = keras.models.clone_model(keras_model)
            clean.set_weights(keras_model.get_weights())
            clean.save(tmp / WEIGHTS_FILE)
            text = json.dumps(_jsonable(meta), indent=1, allow_nan=False)
            (tmp / METADATA_FILE).write_text(text, encoding="utf-8")
            normal_permissions(tmp)
            if path.exists():
                # Move the old model aside first, so a crash never leaves a half-replaced folder.
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                old.rmdir()
                os.replace(path, old)
                os.replace(tmp, path)
                if old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink()
            else:
                os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    clear_cache()
    return path


def _jsonable(obj):
    """Replace NaN/inf by None and numpy scalars/arrays by Python types (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def default_model_path() -> Path:
    """Directory of the shipped model.

    Raises
    ------
    ModelFileError
        If this installation has no default model.
    """
    if not (DEFAULT_MODEL_DIR / METADATA_FILE).is_file() or not (
        DEFAULT_MODEL_DIR / WEIGHTS_FILE
    ).is_file():
        raise ModelFileError(
            "no default pigment model is installed in this version of napari-xrf-pigments; "
            "pass --model MODEL_DIR (train one with `xrf-pigments train`)"
        )
    return DEFAULT_MODEL_DIR


def model_directory(path=None) -> Path:
    """The directory of a model: ``path`` (or its ``model.keras`` / ``metadata.json``), or the
    shipped model's when None.

    Raises
    ------
    ModelFileError
        The path is not a model directory, or there is no shipped model.
    """
    return default_model_path() if path is None else _resolve(path)


def _resolve(path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, METADATA_FILE):
        path = path.parent
    if not path.exists():
        raise ModelFileError(f"model {path} does not exist")
    if not path.is_dir():
        raise ModelFileError(
            f"{path} is not a model directory (expected a folder with {WEIGHTS_FILE} and "
            f"{METADATA_FILE}, as written by `xrf-pigments train`)"
        )
    return path


def read_metadata(path) -> dict:
    """Read and check ``metadata.json`` of a model directory (no Keras needed).

    Raises
    ------
    ModelFileError
        Missing or unreadable metadata, unknown format or version, missing fields.
    """
    path = _resolve(path)
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise ModelFileError(
            f"model {path} has no {METADATA_FILE}: its pigments, energy grid and preprocessing "
            "are unknown, so it cannot be used"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{meta_path} is not napari-xrf-pigments model metadata")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path} has format version {version!r}; this package reads up to "
            f"{MODEL_FORMAT_VERSION} (upgrade napari-xrf-pigments)"
        )
    for key in ("pigments", "outputs", "preprocessing"):
        if key not in meta:
            raise ModelFileError(f"{meta_path} lacks the field {key!r}")
    try:
        as_pigment_labels(meta["pigments"])
        Preprocessing.from_dict(meta["preprocessing"])
    except (InvalidDataError, ValueError) as exc:
        raise ModelFileError(f"{meta_path}: {exc}") from None
    return meta


def _check_network(keras_model, meta: dict, *, where: str) -> None:
    n_pigments = len(meta["pigments"])
    n_channels = len(meta["preprocessing"]["energy_keV"])
    shape = tuple(keras_model.input_shape)
    if len(shape) != 3 or shape[1] != n_channels or shape[2] != 1:
        raise ModelFileError(
            f"{where}: the network takes input {shape[1:]}, the metadata's energy grid has "
            f"{n_channels} channels"
        )
    outputs = list(keras_model.output_names)
    if "present" not in outputs or list(meta["outputs"]) != outputs:
        raise ModelFileError(
            f"{where}: the network's outputs {outputs} do not match the metadata "
            f"{meta['outputs']} (a 'present' output is required)"
        )
    out_shapes = keras_model.output_shape
    if isinstance(out_shapes, dict):
        out_shapes = [out_shapes[k] for k in outputs]
    elif not isinstance(out_shapes, list):
        out_shapes = [out_shapes]
    for name, s in zip(outputs, out_shapes):
        if tuple(s)[-1] != n_pigments:
            raise ModelFileError(
                f"{where}: output {name!r} has {tuple(s)[-1]} columns for {n_pigments} pigments"
            )


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded model (the next :func:`load_model` reads the files again)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_model(path=None, *, pigments=None, cache: bool = True) -> PigmentModel:
    """Load a model directory, checking its metadata; cached per path.

    Parameters
    ----------
    path : str or Path, optional
        Model directory (or its ``model.keras`` / ``metadata.json``). Default: the shipped
        model.
    pigments : sequence, optional
        Require exactly these pigments (abbreviations, in output order).
    cache : bool
        Reuse an already loaded model when its files are unchanged.

    Raises
    ------
    ModelFileError
        Missing/invalid files or metadata that contradicts the network; no default model.
    PigmentMismatchError
        If ``pigments`` is given and differs from the model's.
    """
    path = model_directory(path)
    meta = read_metadata(path)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFileError(f"model {path} has no {WEIGHTS_FILE}")
    key = (
        str(path.resolve()),
        weights.stat().st_mtime_ns,
        weights.stat().st_size,
        (path / METADATA_FILE).stat().st_mtime_ns,
    )
    model = None
    if cache:
        with _CACHE_LOCK:
            model = _CACHE.get(key)
    if model is None:
        model = _load_uncached(path, meta)
        if cache:
            with _CACHE_LOCK:
                for k in [k for k in _CACHE if k[0] == key[0]]:
                    del _CACHE[k]
                _CACHE[key] = model
    if pigments is not None:
        model.check_pigments(pigments)
    return model


def _load_uncached(path: Path, meta: dict) -> PigmentModel:
    import keras

    try:
        # safe_mode=True: a model file must never run code (no Lambda layers, no pickles).
        net = keras.saving.load_model(path / WEIGHTS_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError variants
        raise ModelFileError(f"cannot load {path / WEIGHTS_FILE}: {exc}") from None
    _check_network(net, meta, where=f"model {path}")
    pigments = tuple(PigmentLabel(*p) for p in as_pigment_labels(meta["pigments"]))
    return PigmentModel(net, pigments, Preprocessing.from_dict(meta["preprocessing"]), meta, path)
