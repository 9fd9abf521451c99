"""Compiled inference for one model: :class:`Predictor`, and the maps it makes.

Spectra are resampled onto the model grid in numpy (a background thread reads and resamples the
next block of rows while the current one is on the CPU/GPU), then one compiled function does
Eq. 1, normalisation and the network (:mod:`.engine` on CPU; the Keras model itself, compiled, on
a GPU). Memory is bounded by a few blocks of rows (about 64 MB of counts each) whatever the cube
size, so numpy, h5py and dask cubes larger than RAM work alike.

Pixels with no counts in the model's energy range get NaN (no data, not "absent").

A :class:`Predictor` takes a loaded :class:`~.files.PigmentModel` and never loads one itself, so
this module does not depend on :mod:`.files` (which makes predictors, cached per model);
:mod:`.predict` loads models and writes maps files.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..cube import XRFCube, default_rows_per_block
from ..errors import InvalidDataError
from ..preprocess import transform_ops
from ..progress import Progress
from .engine import compile_forward, fold, make_forward
from .metrics import apply_temperature

if TYPE_CHECKING:
    from ..datasets.trainset import PigmentLabel

#: Spectra per compiled call. Small batches keep activations in cache on a CPU; a GPU wants more.
DEFAULT_BATCH_CPU = 32
DEFAULT_BATCH_GPU = 1024
#: Spectra per block of rows read from the cube (also bounded to ~64 MB of counts).
SPECTRA_PER_BLOCK = 4096
_VERIFY_ATOL = 1e-4


def gpu_available() -> bool:
    """True when the Keras backend sees a GPU."""
    # lazy: keras loads TensorFlow/JAX
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False


@dataclass
class PigmentPrediction:
    """Probability maps of one cube.

    Attributes
    ----------
    maps : dict of output name -> ndarray of float32, shape (rows, columns, n_pigments)
        ``"present"`` (any layer) and, for two-headed models, ``"top"``: the network's
        probabilities checked against element evidence (:mod:`napari_xrf_pigments.evidence`),
        or the raw ones when evidence is unavailable. NaN where the pixel has no counts in the
        model's energy range. (Where :meth:`Predictor.predict_cube` was given a ``store``,
        what the store made.)
    pigments : tuple of PigmentLabel
    model_name : str
    raw : dict, optional
        The network's own probabilities, same layout as ``maps`` (None without evidence).
    unexplained : ndarray of float32, shape (rows, columns), optional
        Score in [0, 1] that the pixel holds signal no called pigment explains.
    unexplained_elements : mapping of element -> ndarray of float32 (rows, columns)
        Per element that is unexplained (score >= 0.5) somewhere; each map is made when
        accessed.
    evidence : str
        ``"checked"`` or ``"unavailable"``.
    warnings : list of str
        What the user should know about these maps (one line each).
    groups : dict of str -> tuple of str
        Output columns that stand for pigments XRF cannot tell apart: abbreviation -> the
        members' names (written as the maps' ``members`` attribute).
    """

    maps: dict[str, np.ndarray]
    pigments: tuple[PigmentLabel, ...]
    model_name: str = ""
    raw: dict[str, np.ndarray] | None = None
    unexplained: np.ndarray | None = None
    unexplained_elements: Mapping[str, np.ndarray] = field(default_factory=dict)
    evidence: str = "unavailable"
    warnings: list[str] = field(default_factory=list)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_maps(self) -> dict:
        """Maps in :func:`~napari_xrf_pigments.io.maps.write_maps` form.

        Names are the abbreviation (``"VM"``, layer "any"), ``"<abbreviation>_top"`` (layer
        "top"), ``"unexplained"`` and ``"unexplained_<element>"``.
        """
        out = _pigment_maps(self.maps, self.pigments, self.evidence, self.groups)
        out.update(self.unexplained_maps())
        return out

    def unexplained_maps(self):
        """The unexplained maps in :meth:`to_maps` form, one at a time (generator of
        (name, (array, attrs)))."""
        if self.unexplained is None:
            return
        yield "unexplained", (self.unexplained, {"kind": "unexplained", "unit": "score"})
        for element, values in self.unexplained_elements.items():
            yield f"unexplained_{element}", (
                values, {"kind": "unexplained", "unit": "score", "element": element})

    def describe_pixel(self, row: int, column: int, *, threshold: float = 0.5) -> str:
        """One line for a pixel: the pigments called there and the elements left unexplained.

        E.g. ``"Vermilion 0.98, Lead white 0.83 | unexplained: Ti 1.00"``.
        """
        present = self.maps["present"][row, column]
        if not np.isfinite(present).any():
            return "no counts in the model's energy range"
        called = sorted(((float(p), label.name) for p, label in zip(present, self.pigments)
                         if p >= threshold), reverse=True)
        text = ", ".join(f"{name} {p:.2f}" for p, name in called) or "no pigment called"
        elements = self.unexplained_elements
        # ElementScores answers one pixel without making whole maps (a cursor readout).
        scores = elements.at(row, column) if hasattr(elements, "at") else {
            el: m[row, column] for el, m in elements.items()}
        left = sorted(((float(s), el) for el, s in scores.items() if s >= 0.5), reverse=True)
        if left:
            text += " | unexplained: " + ", ".join(f"{el} {s:.2f}" for s, el in left)
        return text

    def dominant(self, *, threshold: float = 0.5) -> np.ndarray:
        """The most probable pigment of each pixel among those called there.

        Returns
        -------
        ndarray of int16, shape (rows, columns)
            0 where no pigment reaches ``threshold`` (or the pixel has no counts), else 1 + the
            pigment's index in :attr:`pigments`.
        """
        present = np.nan_to_num(np.asarray(self.maps["present"][:]), nan=0.0)
        best = np.argmax(present, axis=-1).astype(np.int16) + 1
        best[np.max(present, axis=-1) < threshold] = 0
        return best


def _pigment_entries(outputs, pigments, evidence: str, groups=None):
    """(output, column, map name, attributes) of every pigment map of a prediction."""
    groups = groups or {}
    for output, layer, suffix in (("present", "any", ""), ("top", "top", "_top")):
        if output not in outputs:
            continue
        for i, p in enumerate(pigments):
            attrs = {
                "kind": "pigment",
                "abbreviation": p.abbreviation,
                "pigment": p.name,
                "layer": layer,
                "unit": "probability",
                "evidence": evidence,
            }
            if p.abbreviation in groups:
                attrs["members"] = list(groups[p.abbreviation])
            yield output, i, f"{p.abbreviation}{suffix}", attrs


def _pigment_maps(maps: dict, pigments, evidence: str, groups=None) -> dict:
    return {name: (maps[output][..., i], attrs)
            for output, i, name, attrs in _pigment_entries(maps, pigments, evidence, groups)}



class Predictor:
    """Compiled inference for one model.

    Parameters
    ----------
    model : PigmentModel
    batch_size : int, optional
        Spectra per compiled call (default 32 on CPU, 1024 on GPU).
    engine : {"auto", "fast", "keras"}
        "fast": :mod:`.engine` (Winograd, fused; best on CPU); "keras": the Keras model in a
        compiled function (cuDNN on GPU); "auto": fast on CPU, keras on GPU.

    Attributes
    ----------
    engine : str
        The engine in use ("fast" falls back to "keras" for networks it does not recognise or
        whose outputs it does not reproduce).
    """

    def __init__(self, model, *, batch_size: int | None = None, engine: str = "auto"):
        if engine not in ("auto", "fast", "keras"):
            raise ValueError(f"unknown engine {engine!r}")
        gpu = gpu_available()
        self.model = model
        self.requested_engine = engine
        self.engine = ("keras" if gpu else "fast") if engine == "auto" else engine
        self.batch_size = int(batch_size or (DEFAULT_BATCH_GPU if gpu else DEFAULT_BATCH_CPU))
        if self.batch_size < 1:
            raise InvalidDataError("batch size must be at least 1")
        self.n_channels = model.preprocessing.n_channels
        self.outputs = model.outputs
        self.workers = 1 if gpu else 2
        # Temperature scaling fitted at training time (model metadata), per output.
        self.temperature = dict(((model.metadata or {}).get("calibration") or {}).get("temperature") or {})
        self._fn = None
        self._pool = None
        self._lock = threading.Lock()

    # -- compiled function -------------------------------------------------------------------

    def _keras_forward(self):
        net = self.model.keras_model
        ref = float(self.model.preprocessing.reference_counts)

        def forward(counts):
            x = transform_ops(counts, reference_counts=ref)
            return dict(net(x[..., None], training=False))

        return forward

    def _build(self):
        ref = float(self.model.preprocessing.reference_counts)
        if self.engine == "fast":
            folded = fold(self.model.keras_model)
            if folded is not None:
                fn = compile_forward(
                    make_forward(folded, reference_counts=ref),
                    batch_size=self.batch_size,
                    n_channels=self.n_channels,
                )
                if self._verify(fn):
                    return fn
            self.engine = "keras"
        # No XLA here: TensorFlow's own (oneDNN / cuDNN) convolutions are faster than XLA's.
        return compile_forward(
            self._keras_forward(), batch_size=self.batch_size, n_channels=self.n_channels, jit=False
        )

    def _verify(self, fn) -> bool:
        """Check the fast engine against the Keras model on a few random spectra."""
        rng = np.random.default_rng(0)
        n = min(self.batch_size, 4)
        counts = rng.poisson(rng.uniform(0, 20, (n, self.n_channels))).astype(np.float32)
        features = self.model.preprocessing.transform(counts)
        want = self.model.keras_model(features[..., None], training=False)
        got = fn(_pad(counts, self.batch_size))
        import keras

        return all(
            np.allclose(got[k][:n], keras.ops.convert_to_numpy(want[k]), atol=_VERIFY_ATOL)
            for k in self.outputs
        )

    @property
    def function(self):
        """The compiled function: counts (batch_size, n_channels) float32 -> dict of arrays."""
        with self._lock:
            if self._fn is None:
                self._fn = self._build()
        return self._fn

    # -- spectra -----------------------------------------------------------------------------

    def predict_counts(self, counts_on_grid) -> dict:
        """Probabilities for spectra already on the model grid.

        Parameters
        ----------
        counts_on_grid : array-like, shape (n, n_channels)
            Counts per model channel.

        Returns
        -------
        dict of output name -> ndarray of float32, shape (n, n_pigments)
            NaN rows for spectra with no counts.
        """
        x = np.asarray(counts_on_grid, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise InvalidDataError(f"expected (n, {self.n_channels}) counts, got {x.shape}")
        fn = self.function
        n, bs = x.shape[0], self.batch_size
        out = {k: np.full((n, len(self.model.pigments)), np.nan, np.float32) for k in self.outputs}
        # Spectra without counts (outside the painting, dead pixels) are NaN: skip their compute.
        keep = np.flatnonzero(x.sum(axis=1) > 0)
        if keep.size < n:
            x = x[keep]

        def one(start):
            chunk = x[start : start + bs]
            return start, chunk.shape[0], fn(_pad(chunk, bs))

        starts = range(0, x.shape[0], bs)
        if self.workers > 1 and len(starts) > 1:
            # Two calls in flight keep both cores busy between XLA's parallel sections.
            results = self._executor().map(one, starts)
        else:
            results = map(one, starts)
        for start, size, res in results:
            rows = keep[start : start + size]
            for k in self.outputs:
                out[k][rows] = res[k][:size]
        if self.temperature:
            for k, t in self.temperature.items():
                if k in out and t != 1.0:
                    out[k] = apply_temperature(out[k], t).astype(np.float32)
        return out

    def _executor(self):
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="xrf-pigments")
        return self._pool

    def predict_spectra(self, counts, energy, *, what: str = "input") -> dict:
        """Probabilities for spectra on their own energy axis.

        Parameters
        ----------
        counts : array-like, shape (n, channels) or (channels,)
        energy : XRFCube, EnergyAxis or array of keV, shape (channels,)

        Returns
        -------
        dict of output name -> ndarray of float32, shape (n, n_pigments)
        """
        counts = np.asarray(counts)
        if counts.ndim == 1:
            counts = counts[None]
        grid = self.model.preprocessing.counts_on_grid(counts, energy, what=what)
        return self.predict_counts(grid)

    # -- cubes -------------------------------------------------------------------------------

    def predict_cube(self, cube: XRFCube, *, rows_per_block: int | None = None, evidence: bool = True,
                     store=None):
        """Predict every pixel of a cube (generator).

        With ``evidence`` (default) every block is also fitted for element lines: pigment
        probabilities are checked against the elements each pigment needs and an
        ``unexplained`` score is computed (:mod:`napari_xrf_pigments.evidence`); the network's
        own probabilities are kept as ``raw``.

        Parameters
        ----------
        cube : XRFCube
        rows_per_block : int, optional
            Rows predicted at a time (default: about :data:`SPECTRA_PER_BLOCK` spectra).
        evidence : bool
        store : callable, optional
            ``store(group, output, rows_per_block)``: where the probabilities of ``output``
            go, for ``group`` "maps" (checked) or "raw" (the network's own); anything taking and
            giving blocks of rows like an array of shape (rows, columns, n_pigments). Default:
            arrays in memory; :func:`~.predict.predict_to_file` streams them to the maps file
            instead.

        Yields
        ------
        Progress
            After each block of rows (``done``/``total`` in rows). Closing the generator stops
            between blocks.

        Returns
        -------
        PigmentPrediction

        Raises
        ------
        CalibrationError
            Uncalibrated cube, or its energy range misses the model's.
        InvalidDataError
            NaN/negative counts, or no counts at all in the model's energy range.
        """
        what = cube.name
        resampler = self.model.preprocessing.resampler(cube.energy, what=what)
        rows, cols, _ = cube.shape
        rows_per_block = rows_per_block or self.rows_per_block(cube)
        n_p = len(self.model.pigments)
        maps, raw, checker = self.prepare_outputs(cube, rows_per_block, evidence=evidence, store=store)
        _ = self.function  # compile before the first block is read

        items: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()

        def put(item):
            while not stop.is_set():
                try:
                    items.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def reader():
            # Reads and resamples block k+1 while block k is being predicted.
            try:
                for sl, block in cube.iter_blocks(rows_per_block):
                    if stop.is_set():
                        return
                    put((sl, resampler(block.reshape(-1, block.shape[-1]))))
                put(None)
            except BaseException as exc:  # handed to the consumer, re-raised there
                put(exc)

        thread = threading.Thread(target=reader, name="xrf-pigments-reader", daemon=True)
        thread.start()
        any_counts = False
        try:
            yield Progress(0, rows, f"predicting {what}")
            while True:
                item = items.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                sl, grid = item
                result = self.predict_counts(grid)
                any_counts = any_counts or bool(np.isfinite(result["present"]).any())
                n_rows = sl.stop - sl.start
                if raw is not None:
                    for k, v in result.items():
                        raw[k][sl] = v.reshape(n_rows, cols, n_p)
                    result = checker.check(sl, grid, result)
                for k, v in result.items():
                    maps[k][sl] = v.reshape(n_rows, cols, n_p)
                yield Progress(sl.stop, rows, f"rows {sl.stop}/{rows}")
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    items.get(timeout=0.05)
                except queue.Empty:
                    pass
            thread.join()
        return self.finish(cube, rows_per_block, maps, raw, checker, any_counts=any_counts)

    def rows_per_block(self, cube: XRFCube) -> int:
        """Rows predicted at a time by default: about :data:`SPECTRA_PER_BLOCK` spectra (and at
        least four compiled batches), at most ~64 MB of counts.

        The evidence fit takes its weights and residual components from each block, so every
        way of running a prediction (here, or block by block on a cluster,
        :mod:`napari_xrf_pigments.cluster`) must cut the cube at the same rows to give the same
        maps.
        """
        rows, cols, _ = cube.shape
        by_spectra = max(1, math.ceil(max(SPECTRA_PER_BLOCK, 4 * self.batch_size) / cols))
        return min(by_spectra, default_rows_per_block(cube.shape, cube.dtype))

    def prepare_outputs(self, cube: XRFCube, rows_per_block: int, *, evidence: bool = True, store=None):
        """Where a cube's probabilities go, and its evidence checker.

        Returns
        -------
        maps : dict of output name -> array-like (rows, columns, n_pigments)
            The checked probabilities (made by ``store``, see :meth:`predict_cube`).
        raw : dict or None
            The network's own probabilities (None without an evidence check).
        checker : EvidenceChecker or None
        """
        rows, cols, _ = cube.shape
        n_p = len(self.model.pigments)
        if store is None:
            def store(group, output, rows_per_block):
                return np.full((rows, cols, n_p), np.nan, np.float32)
        maps = {k: store("maps", k, rows_per_block) for k in self.outputs}
        checker = raw = None
        if evidence:
            from ..evidence import EvidenceChecker

            checker = EvidenceChecker(self.model, cube, (rows, cols))
        if checker is not None and checker.available:
            raw = {k: store("raw", k, rows_per_block) for k in self.outputs}
        return maps, raw, checker

    def finish(self, cube: XRFCube, rows_per_block: int, maps, raw, checker, *, any_counts: bool):
        """The :class:`PigmentPrediction` once every block is in ``maps`` (and ``raw``).

        Raises
        ------
        InvalidDataError
            ``any_counts`` is false: no block had counts in the model's energy range.
        """
        rows = cube.shape[0]
        if not any_counts:
            lo, hi = self.model.preprocessing.range_keV
            raise InvalidDataError(
                f"{cube.name} holds no counts between {lo:.2f} and {hi:.2f} keV (the model's energy "
                "range): the cube is empty there, or its calibration is wrong"
            )
        warnings = checker.warnings if checker is not None else []
        names = {p.abbreviation: p.name for p in self.model.pigments}
        groups = {g: tuple(names.get(m, m) for m in members)
                  for g, members in self.model.groups.items()}
        if raw is not None and not checker.available:
            # The check failed part way: every map becomes the network's own.
            for k in self.outputs:
                for start in range(0, rows, rows_per_block):
                    done = slice(start, min(rows, start + rows_per_block))
                    maps[k][done] = raw[k][done]
            raw = None
        if raw is None:
            return PigmentPrediction(maps, self.model.pigments, self.model.name,
                                     warnings=warnings, groups=groups)
        return PigmentPrediction(
            maps, self.model.pigments, self.model.name, raw=raw,
            unexplained=checker.unexplained, unexplained_elements=checker.unexplained_elements(),
            evidence="checked", warnings=warnings, groups=groups,
        )


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    """Pad ``x`` with zero rows to exactly ``n`` rows (the compiled batch shape)."""
    if x.shape[0] == n:
        return np.ascontiguousarray(x, dtype=np.float32)
    out = np.zeros((n, x.shape[1]), np.float32)
    out[: x.shape[0]] = x
    return out

