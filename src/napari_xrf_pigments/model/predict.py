"""Pigment probability maps from XRF cubes and model files, chunk by chunk.

:func:`predict_cube` and :func:`predict_to_file` load the model (a path, or the shipped one) and
run its :class:`~.predictor.Predictor` (compiled inference, in :mod:`.predictor`); the maps file
is written block by block (:func:`file_store`, :func:`finish_maps_file`).

Pixels with no counts in the model's energy range get NaN (no data, not "absent").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import check_output_path
from ..cube import XRFCube
from ..io import open_cube
from ..io.maps import open_maps_writer
from .files import PigmentModel, load_model
from .predictor import PigmentPrediction, _pigment_entries


class _MapColumns:
    """One output's probabilities, (rows, columns, n_pigments), kept as n 2-D maps of a file.

    Takes and gives blocks of rows like an array: ``columns[rows] = block`` writes
    ``block[..., i]`` to map i.
    """

    def __init__(self, datasets):
        self.datasets = list(datasets)

    def __setitem__(self, rows: slice, block) -> None:
        for i, ds in enumerate(self.datasets):
            ds[rows] = block[..., i]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.stack([ds[rows] for ds in self.datasets], axis=-1)


def predict_cube(cube: XRFCube, model=None, *, batch_size: int | None = None, engine: str = "auto",
                 evidence: bool = True, store=None):
    """Pigment maps of ``cube`` (generator yielding Progress, returning PigmentPrediction).

    Parameters
    ----------
    cube : XRFCube
        Counts as numpy, h5py or dask; must be energy-calibrated.
    model : PigmentModel, str or Path, optional
        A loaded model or a model directory (default: the shipped model).
    batch_size : int, optional
    engine : {"auto", "fast", "keras"}
    evidence : bool
        Check the probabilities against element evidence and score unexplained signal.
    store : callable, optional
        Where the maps go (see :meth:`Predictor.predict_cube`); default: memory.
    """
    if not isinstance(model, PigmentModel):
        model = load_model(model)
    kwargs = {"engine": engine}
    if batch_size:
        kwargs["batch_size"] = int(batch_size)
    return (yield from model.predictor(**kwargs).predict_cube(cube, evidence=evidence, store=store))


def predict_to_file(
    cube,
    out,
    model=None,
    *,
    batch_size: int | None = None,
    engine: str = "auto",
    force: bool = False,
    input_file: str | None = None,
    evidence: bool = True,
    warnings=(),
):
    """Predict ``cube`` and write its maps file (generator; atomic, nothing left if cancelled).

    Parameters
    ----------
    cube : XRFCube, or path of an XRF file (read with :func:`~napari_xrf_pigments.io.open_cube`)
    out : str or Path
        Maps file to write (layout: :mod:`napari_xrf_pigments.io.maps`).
    model : PigmentModel, str or Path, optional
        Default: the shipped model.
    force : bool
        Replace an existing ``out``.
    input_file : str, optional
        Recorded as the ``input_file`` root attribute (default: the cube's source).
    evidence : bool
        Check the maps against element evidence (the raw maps go to ``/raw``).
    warnings : sequence of str
        Warnings found before prediction, stored with those of the prediction in the root
        attribute ``warnings``.

    Returns
    -------
    Path
    """
    check_output_path(out, force=force)  # fail before hours of work, not after
    if not isinstance(cube, XRFCube):
        input_file = input_file or str(cube)
        cube = open_cube(cube)
    if not isinstance(model, PigmentModel):
        model = load_model(model)
    with open_maps_writer(out, cube.shape[:2], force=force) as writer:
        result = yield from predict_cube(cube, model, batch_size=batch_size, engine=engine,
                                         evidence=evidence, store=file_store(writer, model))
        finish_maps_file(writer, result, model, cube, input_file=input_file, warnings=warnings)
    return Path(out)


def file_store(writer, model):
    """A ``store`` for :meth:`Predictor.predict_cube` that puts the maps in a maps file
    (:class:`~napari_xrf_pigments.io.maps.MapsWriter`) block by block: a cube larger than
    memory needs no maps in memory."""
    def store(group, output, rows_per_block):
        return _MapColumns(writer.create(name, group=group, chunk_rows=rows_per_block)
                           for _, _, name, _ in _pigment_entries((output,), model.pigments, ""))

    return store


def finish_maps_file(writer, result: PigmentPrediction, model, cube: XRFCube, *, input_file=None,
                     warnings=()) -> None:
    """Attributes, unexplained maps and provenance of a maps file whose probabilities went
    through :func:`file_store`; the file's layout is this function's."""
    for _, _, name, attrs in _pigment_entries(model.outputs, model.pigments, result.evidence,
                                              result.groups):
        writer.set_attrs(name, attrs)
        if result.raw is not None:
            writer.set_attrs(name, {**attrs, "evidence": "raw"}, group="raw")
    if result.raw is None:
        writer.discard("raw")
    for name, (values, attrs) in result.unexplained_maps():
        writer.add(name, values, attrs)
    writer.set_root_attrs({
        "kind": "pigment",
        "model": str(model.path) if model.path else model.name,
        "model_name": model.name,
        "model_version": model.metadata.get("package_version", "") if model.metadata else "",
        "input_file": input_file or cube.source or "",
        "preprocessing_version": int(model.preprocessing.version),
        "package_version": __version__,
        "evidence": result.evidence,
        "warnings": [*warnings, *result.warnings],
        **({"pixel_size_mm": np.asarray(cube.pixel_size, float)} if cube.pixel_size else {}),
    })
