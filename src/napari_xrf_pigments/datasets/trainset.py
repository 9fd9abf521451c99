"""Training-set files: labelled spectra for the pigment CNN (HDF5).

Layout (format ``napari-xrf-pigments/training-set``, version 1)::

    /spectra          (n, channels) float32   counts per channel (>= 0, finite; expected
                                              values or Poisson-noisy, either is fine)
    /energy           (channels,)   float64   channel centres in keV, strictly increasing
    /labels/present   (n, pigments) bool      pigment is in the paint stack (any layer)
    /labels/top       (n, pigments) bool      pigment is in the top layer (optional; a
                                              subset of present)
    /labels/detectable (n, pigments) bool     the pigment's own lines reach the detector
                                              above noise (optional; a subset of present;
                                              :mod:`napari_xrf_pigments.datasets.detectable`)
    /params/<name>    (n, ...)                optional per-spectrum parameters (layer
                                              thicknesses, count level...), free names
    root attributes:
      format          "napari-xrf-pigments/training-set"
      format_version  1
      pigments        JSON list of {"abbreviation": "VM", "name": "Vermilion"}, in label
                      column order
      provenance      JSON object: how the set was made (generator, version, seed,
                      instrument, command line...)

The spectra may be on any calibrated grid: training resamples them onto the model grid
(:mod:`napari_xrf_pigments.preprocess`). Write with :func:`write_training_set`, read with
:func:`read_training_set`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..atomic import atomic_hdf5
from ..errors import InvalidDataError, UnreadableFileError

TRAINING_SET_FORMAT = "napari-xrf-pigments/training-set"
TRAINING_SET_VERSION = 1


class PigmentLabel(NamedTuple):
    """A label column: the paper's abbreviation (e.g. ``"VM"``) and the full name."""

    abbreviation: str
    name: str


def as_pigment_labels(pigments) -> tuple[PigmentLabel, ...]:
    """Normalise a pigment list.

    Parameters
    ----------
    pigments : sequence
        Items are ``(abbreviation, name)`` pairs, dicts with those keys, objects with those
        attributes, or bare abbreviation strings (name = abbreviation).

    Raises
    ------
    InvalidDataError
        If the list is empty, an item is malformed or abbreviations repeat.
    """
    out = []
    for item in pigments:
        if isinstance(item, str):
            abbr, name = item, item
        elif isinstance(item, dict):
            abbr, name = item.get("abbreviation"), item.get("name", item.get("abbreviation"))
        elif hasattr(item, "abbreviation"):
            abbr, name = item.abbreviation, getattr(item, "name", item.abbreviation)
        else:
            try:
                abbr, name = item
            except (TypeError, ValueError):
                raise InvalidDataError(f"cannot read a pigment from {item!r}") from None
        if not isinstance(abbr, str) or not abbr.strip() or not isinstance(name, str):
            raise InvalidDataError(f"a pigment needs a non-empty abbreviation and a name: {item!r}")
        out.append(PigmentLabel(abbr.strip(), name.strip()))
    if not out:
        raise InvalidDataError("the pigment list is empty")
    abbrs = [p.abbreviation for p in out]
    dup = sorted({a for a in abbrs if abbrs.count(a) > 1})
    if dup:
        raise InvalidDataError(f"pigment abbreviations repeat: {', '.join(dup)}")
    return tuple(out)


def pigments_to_json(pigments) -> str:
    return json.dumps([p._asdict() for p in as_pigment_labels(pigments)])


@dataclass
class TrainingSet:
    """Labelled spectra in memory.

    Attributes
    ----------
    spectra : ndarray of float32, shape (n, channels)
        Counts.
    energy : ndarray of float64, shape (channels,)
        Channel centres in keV.
    present, top : ndarray of bool, shape (n, n_pigments)
        Labels; ``top`` is None when the file has no top-layer labels.
    pigments : tuple of PigmentLabel
    provenance : dict
    params : dict of name -> ndarray with first axis n
    path : str or None
    detectable : ndarray of bool, shape (n, n_pigments), or None
        Present and seen: the pigment's own lines reach the detector above noise.
    """

    spectra: np.ndarray
    energy: np.ndarray
    present: np.ndarray
    top: np.ndarray | None
    pigments: tuple[PigmentLabel, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    path: str | None = None
    detectable: np.ndarray | None = None

    def __post_init__(self):
        self.pigments = as_pigment_labels(self.pigments)

    def __len__(self) -> int:
        return int(self.spectra.shape[0])

    @property
    def abbreviations(self) -> list[str]:
        return [p.abbreviation for p in self.pigments]

    def subset(self, index) -> TrainingSet:
        """The spectra (and labels, params) selected by ``index`` (indices or boolean mask)."""
        return TrainingSet(
            self.spectra[index],
            self.energy,
            self.present[index],
            None if self.top is None else self.top[index],
            self.pigments,
            self.provenance,
            {k: v[index] for k, v in self.params.items()},
            self.path,
            None if self.detectable is None else self.detectable[index],
        )


def _validate(spectra, energy, present, top, pigments, detectable=None):
    spectra = np.asarray(spectra)
    if spectra.ndim != 2 or spectra.shape[0] == 0 or spectra.shape[1] < 2:
        raise InvalidDataError(f"spectra must be (n, channels) with n >= 1, got {spectra.shape}")
    if spectra.dtype.kind not in "fiu":
        raise InvalidDataError(f"spectra must be numeric, got {spectra.dtype}")
    spectra = spectra.astype(np.float32, copy=False)
    if not np.all(np.isfinite(spectra)):
        raise InvalidDataError("spectra contain NaN or infinite values")
    if spectra.min() < 0:
        raise InvalidDataError("spectra contain negative counts")
    energy = np.asarray(energy, dtype=np.float64).ravel()
    if energy.shape != (spectra.shape[1],):
        raise InvalidDataError(
            f"energy has {energy.size} values but spectra have {spectra.shape[1]} channels"
        )
    if not np.all(np.isfinite(energy)) or not np.all(np.diff(energy) > 0):
        raise InvalidDataError("energy must be finite and strictly increasing (keV)")
    pigments = as_pigment_labels(pigments)
    shape = (spectra.shape[0], len(pigments))

    def labels(a, name):
        a = np.asarray(a)
        if a.shape != shape:
            raise InvalidDataError(f"labels/{name} must have shape {shape}, got {a.shape}")
        if a.dtype != bool:
            if not np.all((a == 0) | (a == 1)):
                raise InvalidDataError(f"labels/{name} must be 0/1 or boolean")
            a = a.astype(bool)
        return a

    present = labels(present, "present")
    if top is not None:
        top = labels(top, "top")
        if np.any(top & ~present):
            raise InvalidDataError("labels/top marks pigments that labels/present does not")
    if detectable is not None:
        detectable = labels(detectable, "detectable")
        if np.any(detectable & ~present):
            raise InvalidDataError("labels/detectable marks pigments that labels/present does not")
    return spectra, energy, present, top, pigments, detectable


def write_training_set(
    path,
    spectra,
    energy,
    present,
    top,
    pigments,
    provenance=None,
    *,
    params=None,
    detectable=None,
    force: bool = False,
) -> Path:
    """Write a training set (layout in the module docstring); atomic.

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` file.
    spectra : array-like, shape (n, channels)
        Counts (>= 0).
    energy : array-like, shape (channels,)
        Channel centres in keV.
    present : array-like of bool, shape (n, n_pigments)
    top : array-like of bool, shape (n, n_pigments), or None
    pigments : sequence of (abbreviation, name) or dicts, length n_pigments
    provenance : dict, optional
        JSON-serialisable description of how the data were made.
    params : dict of name -> array with first axis n, optional
    detectable : array-like of bool, shape (n, n_pigments), optional
    force : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    InvalidDataError, OutputExistsError
    """
    spectra, energy, present, top, pigments, detectable = _validate(
        spectra, energy, present, top, pigments, detectable)
    provenance_json = json.dumps(provenance or {})
    params = dict(params or {})
    for name, value in params.items():
        if "/" in name or not name:
            raise InvalidDataError(f"bad parameter name {name!r}")
        if np.shape(value)[:1] != (spectra.shape[0],):
            raise InvalidDataError(f"params/{name} must have {spectra.shape[0]} rows")
    with atomic_hdf5(path, force=force) as f:
        f.attrs["format"] = TRAINING_SET_FORMAT
        f.attrs["format_version"] = TRAINING_SET_VERSION
        f.attrs["pigments"] = pigments_to_json(pigments)
        f.attrs["provenance"] = provenance_json
        chunks = (min(spectra.shape[0], 256), spectra.shape[1])
        f.create_dataset(
            "spectra", data=spectra, chunks=chunks, compression="gzip",
            compression_opts=4, shuffle=True,
        )
        f["spectra"].attrs["unit"] = "counts"
        f.create_dataset("energy", data=energy)
        f["energy"].attrs["unit"] = "keV"
        f.create_dataset("labels/present", data=present)
        if top is not None:
            f.create_dataset("labels/top", data=top)
        if detectable is not None:
            f.create_dataset("labels/detectable", data=detectable)
        for name, value in params.items():
            f.create_dataset(f"params/{name}", data=np.asarray(value))
    return Path(path)


def read_training_set(path, *, require_top: bool = False) -> TrainingSet:
    """Read a training set into memory.

    Parameters
    ----------
    path : str or Path
    require_top : bool
        Fail if the file has no ``/labels/top``.

    Raises
    ------
    UnreadableFileError
        Missing file, not HDF5, not a training set, or labels missing / inconsistent.
    """
    # lazy: h5py loads only where HDF5 is read or written
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(path, f"not an HDF5 file ({exc})") from None
    with f:
        for name in ("spectra", "energy"):
            if name not in f:
                raise UnreadableFileError(path, f"not a training set: /{name} is missing")
        if "labels/present" not in f:
            raise UnreadableFileError(
                path,
                "the file has no labels (/labels/present is missing); training and evaluation "
                "need labelled spectra, e.g. from `xrf-pigments simulate`",
            )
        if require_top and "labels/top" not in f:
            raise UnreadableFileError(path, "the file has no top-layer labels (/labels/top)")
        if "pigments" not in f.attrs:
            raise UnreadableFileError(path, "the root attribute 'pigments' is missing")
        version = int(f.attrs.get("format_version", 0))
        if version > TRAINING_SET_VERSION:
            raise UnreadableFileError(
                path, f"training-set format version {version} is newer than this package reads"
            )
        try:
            pigments = as_pigment_labels(json.loads(_text(f.attrs["pigments"])))
            provenance = json.loads(_text(f.attrs.get("provenance", "{}")))
        except (ValueError, InvalidDataError) as exc:
            raise UnreadableFileError(path, f"bad pigments/provenance attribute: {exc}") from None
        spectra = f["spectra"][()]
        energy = f["energy"][()]
        present = f["labels/present"][()]
        top = f["labels/top"][()] if "labels/top" in f else None
        detectable = f["labels/detectable"][()] if "labels/detectable" in f else None
        params = {k: v[()] for k, v in f["params"].items()} if "params" in f else {}
    try:
        spectra, energy, present, top, pigments, detectable = _validate(
            spectra, energy, present, top, pigments, detectable)
    except InvalidDataError as exc:
        raise UnreadableFileError(path, str(exc)) from None
    return TrainingSet(spectra, energy, present, top, pigments, provenance, params, str(path),
                       detectable)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
