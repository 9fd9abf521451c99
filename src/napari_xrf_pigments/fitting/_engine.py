"""Chunked, parallel batch fit of a cube with PyMca's fast linear fit.

How this equals one ``FastXRFLinearFit.fitMultipleSpectra`` call on the whole cube
---------------------------------------------------------------------------------
PyMca's call does three things:

1. It builds one linear model (peak shapes of unit area) from the configuration. In linear mode
   the model does not depend on the data (the reference spectrum only feeds an unused
   background estimate), so the parent builds it once, with PyMca's own helper methods, and
   sends it to every worker.
2. It fits every spectrum independently: SNIP background, then least squares against the model.
   The only cross-spectrum input is ``weight=1``, whose uncertainties come from the sum spectrum
   over *all* spectra divided by their number; the parent computes that once for the whole cube.
   Workers run this step chunk by chunk of rows, with the same code and dtypes.
3. With ``refit``, it removes negative peak areas iteratively, and each step is a decision over
   the *whole* image (the parameter with most negative pixels, masks combined across
   parameters, a "not worth refitting" threshold of 0.25 % of all pixels). Refitting chunk by
   chunk would decide differently, so the parent runs that loop on the whole parameter maps
   (they fit in memory), exactly as PyMca does, and only the per-spectrum re-solves are spread
   out. Background-subtracted spectra from step 2 are kept (up to ``cache_mb``) so the refit does
   not read and strip them again; the rest are re-read and re-stripped, as PyMca does.

The fit statistics (chi-square, residual, sum; PyMca's fast fit has none) are computed after the
refit, from the kept spectra; spectra that were not kept and whose areas the refit changed are
read and stripped once more for them.
"""

from __future__ import annotations

import datetime
import math
import multiprocessing
import os
import pickle
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..cube import XRFCube, default_rows_per_block
from ..errors import InvalidDataError, XRFPigmentsError, unguarded_script_hint
from ..progress import Progress, run
from . import _worker
from ._config import FitSetup, build_config, config_text, load_config, prepare_config

STATISTICS = {
    "chi2": ("1", "reduced chi-square of the fit over the fitted channels"),
    "residual": ("counts", "sum of data - background - peaks over the fitted channels"),
    "sum": ("counts", "total counts over the fitted channels"),
}
# Below this many spectra, starting worker processes costs more than it saves.
MIN_SPECTRA_FOR_WORKERS = 2048
DEFAULT_CACHE_MB = 1024


class FitError(XRFPigmentsError, RuntimeError):
    """The fit could not run (a worker process died, PyMca refused the configuration...)."""


@dataclass
class FitResult:
    """Maps from a batch fit.

    Attributes
    ----------
    maps : dict of str -> ndarray of float32, shape (rows, columns)
        Fitted peak area of each group (``"Pb L"``: counts in all Pb L lines), scatter groups,
        and the fit statistics ``"chi2"``, ``"residual"``, ``"sum"``.
    kinds : dict of str -> str
        ``"element"``, ``"scatter"`` or ``"fit-statistic"`` for each map.
    units : dict of str -> str
    groups : list of str
        The element groups, in PyMca's order (by atomic number).
    config : dict
        The PyMca configuration that was used.
    attrs : dict
        Provenance, written on the root of a maps file.
    notes : list of str
        Changes made to the configuration, groups left out, etc.
    """

    maps: dict[str, np.ndarray]
    kinds: dict[str, str]
    units: dict[str, str]
    groups: list[str]
    config: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def element_maps(self) -> dict:
        """Only the element maps, ``{"Pb L": array, ...}``."""
        return {name: self.maps[name] for name in self.groups}


def result_dtype(dtype) -> np.dtype:
    """dtype PyMca stores fit results in for counts of ``dtype`` (``_fitDtypeResult``)."""
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return dtype
    return np.dtype(np.float32) if dtype.itemsize < 5 else np.dtype(np.float64)


def resolve_setup(
    cube: XRFCube,
    config=None,
    *,
    elements=None,
    tube=None,
    kv=None,
    excitation_keV=None,
    calibration="cube",
    **build_kwargs,
) -> FitSetup:
    """The fit configuration for a cube, from a ``.cfg`` path, a config dict or elements.

    Raises
    ------
    CalibrationError, InvalidDataError, UnreadableFileError
        See :func:`build_config`, :func:`load_config` and :func:`prepare_config`.
    """
    if config is not None and elements is not None:
        raise InvalidDataError("give either a fit configuration or elements, not both")
    if config is None and elements is None:
        raise InvalidDataError("give a PyMca fit configuration (.cfg) or a list of elements")
    if elements is not None:
        return build_config(
            elements, cube.energy, tube=tube, kv=kv, excitation_keV=excitation_keV, **build_kwargs
        )
    options = dict(tube=tube, kv=kv, excitation_keV=excitation_keV, **build_kwargs)
    extra = [name for name, value in options.items() if value is not None]
    if extra:
        raise InvalidDataError(
            f"{', '.join(extra)} go with a list of elements; a fit configuration sets its own"
        )
    source = "config"
    if isinstance(config, (str, os.PathLike)):
        source = str(config)
        config = load_config(config)
    return prepare_config(config, cube.energy, source=source, calibration=calibration)


def build_model(config, n_channels, dtype, weight, yref, n_spectra):
    """PyMca's linear model for a configuration, built as ``fitMultipleSpectra`` builds it.

    Parameters
    ----------
    config : dict
    n_channels : int
    dtype : dtype of the counts
    weight : {0, 1, 2}
        0 no weights, 1 Poisson weights from the sum spectrum, 2 per-spectrum (slow).
    yref : ndarray, shape (n_channels,)
        Reference spectrum (the sum spectrum for ``weight=1``).
    n_spectra : int
        Spectra in the whole cube.

    Returns
    -------
    model : LinearModel
    config : dict
        The configuration as PyMca completed it.
    """
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit import FastXRFLinearFit

    fast = FastXRFLinearFit()
    try:
        _, cfg, weight, policy, _, _ = fast._fitConfigure(
            configuration=config, concentrations=False, livetime=None, weight=weight, nSpectra=n_spectra
        )
    except Exception as exc:  # KeyError for unknown elements, ValueError/RuntimeError...
        raise InvalidDataError(f"PyMca cannot use this fit configuration: {_message(exc)}") from None
    xmin, xmax = cfg["fit"]["xmin"], cfg["fit"]["xmax"]
    if xmin is None or xmax is None or xmin > n_channels - 1 or xmax <= xmin:
        raise InvalidDataError(
            f"the fit configuration's channel range xmin={xmin}, xmax={xmax} does not overlap "
            f"the cube's {n_channels} channels"
        )
    try:
        fast._mcaTheory.setData(x=None, y=np.asarray(yref, dtype=np.float64), xmin=xmin, xmax=xmax)
        derivatives, free_names, n_free, n_free_bkg = fast._fitCreateModel(dtype=np.float64)
    except ValueError as exc:
        if "No free parameters" in str(exc):
            raise InvalidDataError(_no_lines_message(cfg, n_channels)) from None
        raise InvalidDataError(f"PyMca cannot build the fit model: {_message(exc)}") from None
    anchors = [int(a) for a in fast._fitBkgAnchorList(config=cfg)] if cfg["fit"]["stripflag"] else []
    first, stop = (int(v) for v in fast._fitMcaTrimInfo(x=None))
    if policy == 2:
        kwargs = {"svd": False, "sigma_b": None, "weight": weight}
    elif policy == 1:
        sigma_b = 1 + np.sqrt(np.asarray(yref, dtype=np.float64)[first:stop]) / n_spectra
        kwargs = {"svd": True, "sigma_b": sigma_b.reshape(-1, 1), "weight": weight}
    else:
        kwargs = {"svd": True, "sigma_b": None, "weight": weight}
    model = _worker.LinearModel(
        derivatives=np.ascontiguousarray(derivatives, dtype=np.float64),
        free_names=list(free_names),
        n_free_bkg=int(n_free_bkg),
        first=first,
        stop=stop,
        strip=bool(cfg["fit"]["stripflag"]),
        snip_width=int(cfg["fit"]["snipwidth"]),
        filter_width=int(cfg["fit"]["stripfilterwidth"]),
        anchors=anchors,
        lstsq_kwargs=kwargs,
        result_dtype=result_dtype(dtype).name,
    )
    return model, cfg, policy


def _message(exc) -> str:
    text = str(exc).strip().replace("\n", " ")
    return text or type(exc).__name__


def _no_lines_message(cfg, n_channels) -> str:
    zero, gain = cfg["detector"]["zero"], cfg["detector"]["gain"]
    lo = zero + gain * max(0, cfg["fit"]["xmin"])
    hi = zero + gain * min(n_channels - 1, cfg["fit"]["xmax"])
    peaks = ", ".join(f"{el} {v if isinstance(v, str) else '+'.join(v)}" for el, v in cfg["peaks"].items())
    return f"no element line in the fitted energy range {lo:.2f}-{hi:.2f} keV (configured: {peaks})"


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _rows_per_chunk(shape, itemsize, workers, rows_per_chunk=None) -> int:
    rows, cols, chans = shape
    if rows_per_chunk:
        return int(max(1, min(rows, rows_per_chunk)))
    # ~500 spectra (a tenth of a second of work: the pool stays balanced to the end) and at
    # most 16 MB of counts per chunk...
    n = min(math.ceil(512 / cols), max(1, (16 * 2**20) // max(1, cols * chans * itemsize)))
    # ...and at least 4 chunks per worker so that the pool stays balanced.
    if workers:
        n = min(n, math.ceil(rows / (4 * workers)))
    return int(max(1, min(rows, n)))


class _Pool:
    """A spawn-context process pool that can be stopped at once, leaving no process behind."""

    def __init__(self, workers):
        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker.init_worker,
            initargs=(True, os.getpid()),
        )
        # Start the processes now so they boot while the parent builds the model (each submit
        # spawns one). Each worker limits BLAS to one thread in its initializer: the workers
        # are the parallelism, and idle OpenBLAS threads spin and steal the cores.
        self.warm = [self.executor.submit(_worker.warm_up) for _ in range(workers)]
        self._release = None

    @property
    def slots(self) -> int:
        """Chunks computed at once (one per worker process)."""
        return len(self.warm)

    def submit(self, fn, *args):
        """Queue a chunk; a pool whose workers have died already is a :class:`FitError`."""
        try:
            return self.executor.submit(fn, *args)
        except BrokenProcessPool:  # the workers died before this chunk was queued
            raise FitError(_broken_pool_message()) from None

    def result(self, future):
        """The chunk's result; a dead worker process is a :class:`FitError`."""
        return _result(future)

    def release(self):
        """Let the workers exit once idle (they are joined by :meth:`close`)."""
        # shutdown(wait=True) returns once the executor has joined its processes; in a thread,
        # so that the fit goes on meanwhile (with wait=False nothing public would join them).
        self._release = threading.Thread(target=self.executor.shutdown, name="xrf-fit-release", daemon=True)
        self._release.start()

    def close(self, kill: bool):
        """Join the workers; ``kill`` (cancel, error): drop the chunks not yet started.

        Chunks in progress are short (about 0.1 s), so they are waited for rather than the
        workers terminated: a worker killed while sending its result leaves the executor's
        manager thread blocked on a half-written message, which hangs interpreter exit.
        """
        if self._release is not None:
            self._release.join()
        # With wait=True the executor joins its worker processes before returning.
        self.executor.shutdown(wait=True, cancel_futures=kill)


def _result(future):
    try:
        return future.result()
    except BrokenProcessPool:
        raise FitError(_broken_pool_message()) from None


def _broken_pool_message() -> str:
    """Why worker processes may have died, in the words of the likely cause."""
    hint = unguarded_script_hint()
    if hint:
        return (f"the fit worker processes could not start or died. {hint[0].upper()}{hint[1:]}, "
                "or fit in this process with workers=0 (out of memory is the other usual "
                "cause: try fewer workers)")
    return ("a fit worker process died or could not start (out of memory?); try fewer workers, "
            "or --workers 0 to fit in this process")


def fit_cube_job(
    cube: XRFCube,
    config=None,
    *,
    elements=None,
    tube: str | None = None,
    kv: float | None = None,
    excitation_keV: float | None = None,
    weight: int = 0,
    refit: bool = True,
    workers: int | None = None,
    rows_per_chunk: int | None = None,
    cache_mb: float = DEFAULT_CACHE_MB,
    calibration: str = "cube",
    pool=None,
    **build_kwargs,
):
    """Fit every spectrum of a cube with PyMca's fast linear fit; a cancellable job.

    Checks the inputs and builds the configuration now (errors are raised here), and returns a
    generator (see :mod:`napari_xrf_pigments.progress`) that yields ``Progress`` (spectra done
    out of all) after each chunk of rows and each refit step, and returns a :class:`FitResult`.
    Closing it stops and removes the worker processes. The maps equal those of one
    ``FastXRFLinearFit.fitMultipleSpectra(y=counts, weight=weight, refit=refit,
    concentrations=False)`` call on the whole cube (see the module docstring).

    Parameters
    ----------
    cube : XRFCube
        Counts (rows, columns, channels); numpy, h5py or dask, read chunk by chunk of rows.
    config : str, path or dict, optional
        A PyMca ``.cfg`` (or its dict). Its calibration is replaced by the cube's
        (``calibration="config"`` keeps it, for uncalibrated cubes).
    elements : str or list of str, optional
        Instead of ``config``: elements to fit (``"Ca,Fe,Pb"``, ``["Pb L", "Pb M"]``), with lines
        chosen by :func:`choose_lines`; see :func:`build_config` for ``tube``, ``kv``,
        ``excitation_keV`` and ``build_kwargs``.
    weight : {0, 1, 2}
        Least-squares weights: none (PyMca's batch default), Poisson from the sum spectrum,
        or per spectrum (slow).
    refit : bool
        Refit spectra with negative peak areas without those peaks, as PyMca does.
    workers : int, optional
        Worker processes; 0 fits in this process. Default: one per available CPU, or none for
        small cubes (under 2048 spectra).
    rows_per_chunk : int, optional
        Rows per chunk (default: about 500 spectra and at most 16 MB).
    cache_mb : float
        Memory (MB) for keeping background-subtracted spectra between the first pass and the
        refit.
    pool : ClusterPool, optional
        Run the chunks on a dask.distributed cluster instead
        (:class:`napari_xrf_pigments.cluster.ClusterPool`): its workers read their chunks from
        the cube's file themselves, ``workers`` and ``cache_mb`` are not used, and the maps are
        those of the run here. The caller owns the pool (it is not closed, only its chunks
        cancelled if the job stops).

    Raises
    ------
    CalibrationError
        If the cube is not calibrated.
    InvalidDataError, UnreadableFileError
        For a ``.cfg`` that does not parse or names no elements, elements without a line in the
        range, or counts that are negative or NaN.
    """
    if weight not in (0, 1, 2):
        raise InvalidDataError(f"weight must be 0, 1 or 2, not {weight!r}")
    setup = resolve_setup(
        cube, config, elements=elements, tube=tube, kv=kv, excitation_keV=excitation_keV,
        calibration=calibration, **build_kwargs,
    )
    remote = pool.cube_ref(cube) if pool is not None else None  # errors now, not in the job
    return _fit_job(cube, setup, weight, refit, workers, rows_per_chunk, cache_mb, pool, remote)


def _fit_job(cube, setup: FitSetup, weight, refit, workers, rows_per_chunk, cache_mb, cluster=None,
             remote=None):
    started = time.perf_counter()
    rows, cols, n_channels = cube.shape
    n_spectra = rows * cols
    yield Progress(0, n_spectra, "preparing the fit")

    if cluster is not None:
        # The workers read their chunks; nothing is kept here (the refit and the statistics
        # re-read and re-strip the chunks they need there, with the same arithmetic).
        workers, cache_mb = cluster.slots, 0
    elif workers is None:
        workers = _available_cpus() if n_spectra >= MIN_SPECTRA_FOR_WORKERS else 0
        workers = 0 if workers < 2 else workers
    workers = max(0, int(workers))
    chunk_rows = _rows_per_chunk(cube.shape, cube.dtype.itemsize, workers, rows_per_chunk)
    chunks = [slice(r, min(r + chunk_rows, rows)) for r in range(0, rows, chunk_rows)]
    if cluster is not None:
        pool = started_pool = cluster
    else:
        workers = min(workers, len(chunks))
        pool = _Pool(workers) if workers else None
        started_pool = pool
    threads = None
    finished = False
    try:
        if weight == 1:
            # The weights come from the sum spectrum of the whole cube: one pass to add it up
            # (on a cluster, block sums made there, added here in the same order).
            yref = np.zeros(n_channels, dtype=np.float64)
            if remote is not None:
                step = default_rows_per_block(cube.shape, cube.dtype)
                blocks = [slice(r, min(r + step, rows)) for r in range(0, rows, step)]
                sums = [pool.submit(_worker.block_sum, remote.block(sl, flat=False)) for sl in blocks]
                for sl, future in zip(blocks, sums):
                    yref += pool.result(future)
                    yield Progress(0, n_spectra, f"sum spectrum (rows {sl.start}-{sl.stop - 1})")
            else:
                for sl, block in cube.iter_blocks():
                    yref += _worker.block_sum(block)
                    yield Progress(0, n_spectra, f"sum spectrum (rows {sl.start}-{sl.stop - 1})")
        else:
            # What fitMultipleSpectra uses when no weights need the sum: the first spectrum.
            yref = np.asarray(cube.counts[0, 0], dtype=np.float64)
        model, cfg, policy = build_model(setup.config, n_channels, cube.dtype, weight, yref, n_spectra)
        if not _element_indices(model, setup):
            raise InvalidDataError(_no_lines_message(cfg, n_channels))
        token, blob = uuid.uuid4().hex, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        threads = ThreadPoolExecutor(max_workers=_available_cpus(), thread_name_prefix="xrf-fit")
        state = _State(cube, model, chunks, cache_mb, threads, remote)

        # First pass: every spectrum with the full model.
        for done in _first_pass(state, pool, token, blob):
            yield Progress(done, n_spectra, "fitting spectra")
        if pool is not None and len(state.cache) == len(chunks) and policy != 2:
            # Everything left is done here: let the workers exit while it runs.
            pool.release()
            pool = None
        # Refit of negative peak areas, decided on the whole maps as PyMca does.
        if refit:
            for message in _refit(state, pool, token, blob, policy):
                yield Progress(n_spectra, n_spectra, message)
        for _ in _update_statistics(state, pool, token, blob):
            yield Progress(n_spectra, n_spectra, "fit statistics")
        finished = True
    finally:
        if threads is not None:
            threads.shutdown(wait=True)
        if started_pool is not None and started_pool is not cluster:
            started_pool.close(kill=not finished)
        elif cluster is not None and not finished:
            cluster.cancel()

    elapsed = time.perf_counter() - started
    run_info = dict(weight=weight, refit=refit, workers=workers, seconds=elapsed)
    return _make_result(cube, setup, cfg, model, state, run_info)


class _State:
    """Parameter maps, statistics and cached spectra of a fit in progress."""

    def __init__(self, cube, model, chunks, cache_mb, threads, remote=None):
        rows, cols, _ = cube.shape
        self.threads = threads
        self.remote = remote
        self.cube, self.model, self.chunks, self.cols = cube, model, chunks, cols
        n_pixels = rows * cols
        self.params = np.zeros((model.n_free, n_pixels), dtype=model.result_dtype)
        self.n_free = np.full(n_pixels, model.n_free, dtype=np.int32)
        self.stats = np.zeros((3, n_pixels), dtype=np.float64)
        self.changed = np.zeros(n_pixels, dtype=bool)
        self.cache: dict[int, tuple] = {}
        self.cache_left = float(cache_mb) * 2**20
        # Kept: the background-subtracted spectra and the raw block they came from.
        self.bytes_per_spectrum = (
            model.n_obs * np.dtype(model.result_dtype).itemsize + cube.n_channels * cube.dtype.itemsize
        )

    def pixels(self, i) -> slice:
        sl = self.chunks[i]
        return slice(sl.start * self.cols, sl.stop * self.cols)

    def read(self, i) -> np.ndarray:
        block = self.cube.read_rows(self.chunks[i])
        return block.reshape(-1, block.shape[-1])

    def spectra(self, i, local=None):
        """Raw spectra (n, n_channels) of chunk ``i`` (those of the mask ``local`` only) for a
        pool: read here, or on a cluster a reference its worker reads them from."""
        if self.remote is not None:
            return self.remote.block(self.chunks[i], local)
        raw = self.read(i)
        return raw if local is None else raw[local]

    def reserve(self, i) -> bool:
        need = (self.chunks[i].stop - self.chunks[i].start) * self.cols * self.bytes_per_spectrum
        if need <= self.cache_left:
            self.cache_left -= need
            return True
        return False


def _first_pass(state: _State, pool, token, blob):
    """Fit all chunks; yields the number of spectra done after each chunk."""
    model, done = state.model, 0

    def store(i, params, extra, raw_obs):
        px = state.pixels(i)
        state.params[:, px] = params
        if raw_obs is None:
            state.stats[:, px] = extra
        else:
            # Statistics of kept chunks are computed once, after the refit.
            state.cache[i] = (extra, raw_obs)

    if pool is None:
        for i in range(len(state.chunks)):
            raw = state.read(i)
            keep = state.reserve(i)
            params, extra = _worker.fit_spectra(token, blob, raw, keep)
            store(i, params, extra, raw[:, model.first : model.stop] if keep else None)
            done += raw.shape[0]
            yield done
        return

    pending = {}
    todo = iter(range(len(state.chunks)))
    in_flight = 2 * pool.slots

    def submit_next() -> bool:
        i = next(todo, None)
        if i is None:
            return False
        keep = state.reserve(i)
        raw = state.read(i) if keep else state.spectra(i)
        future = pool.submit(_worker.fit_spectra, token, blob, raw, keep)
        n = (state.chunks[i].stop - state.chunks[i].start) * state.cols
        pending[future] = (i, raw[:, model.first : model.stop] if keep else None, n)
        return True

    while len(pending) < in_flight and submit_next():
        pass
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            i, raw_obs, n = pending.pop(future)
            params, extra = pool.result(future)
            store(i, params, extra, raw_obs)
            done += n
            submit_next()
        yield done


def _refit(state: _State, pool, token, blob, policy):
    """PyMca's ``_fitLstSqNegative`` on the whole maps; yields a message after each step."""
    params, model = state.params, state.model
    n_free, n_free_bkg = model.n_free, model.n_free_bkg
    max_iter = 2 * (n_free - n_free_bkg) + 1
    iteration = 1
    while True:
        negatives = []
        for j in range(n_free_bkg, n_free):
            mask = params[j] < 0
            count = int(mask.sum())
            if count:
                negatives.append((count, j, mask))
        if not negatives:
            return
        if iteration > max_iter:
            # PyMca's last resort: remaining negative areas are set to zero.
            for _, j, mask in negatives:
                params[j][mask] = 0
                state.changed |= mask
            continue
        # PyMca sorts (count, index, mask) tuples and takes the largest count first.
        negatives.sort(key=lambda t: (t[0], t[1]), reverse=True)
        bad, bad_mask = [negatives[0][1]], negatives[0][2]
        for count, j, mask in negatives:
            if j not in bad and count:
                combined = bad_mask & mask
                if combined.any():
                    bad.append(j)
                    bad_mask = combined
        names = ", ".join(model.free_names[j] for j in bad)
        n_bad = int(bad_mask.sum())
        if n_bad < 0.0025 * bad_mask.size:
            # Too few pixels to be worth refitting: PyMca zeroes the offending areas.
            for j in bad:
                params[j][bad_mask] = 0
        else:
            yield from _refit_pixels(state, pool, token, blob, policy, bad, bad_mask)
        state.n_free[bad_mask] = n_free - len(bad)
        state.changed |= bad_mask
        yield f"refit {iteration}: {n_bad} spectra without {names}"
        iteration += 1


def _refit_pixels(state: _State, pool, token, blob, policy, bad, bad_mask):
    """Solve the spectra of ``bad_mask`` again without the parameters ``bad``."""
    model = state.model
    keep_columns = [j for j in range(model.n_free) if j not in bad]
    derivatives = model.derivatives[:, keep_columns]
    key = (token, tuple(keep_columns))

    def store(px_index, solved):
        for row, j in enumerate(keep_columns):
            state.params[j, px_index] = solved[row]
        for j in bad:
            state.params[j, px_index] = 0

    def solve_kept(net, local, index):
        store(index, _worker.solve(net[local], derivatives, model.lstsq_kwargs, key=key))

    local_jobs, pending, batched = [], {}, []
    for i in range(len(state.chunks)):
        px = state.pixels(i)
        local = bad_mask[px]
        if not local.any():
            continue
        index = np.flatnonzero(local) + px.start
        cached = state.cache.get(i)
        # Kept spectra are solved here (a small matrix product), except with per-spectrum
        # weights (policy 2: one SVD per spectrum), which are worth the workers.
        if cached is not None and (pool is None or policy != 2):
            local_jobs.append((cached[0], local, index))
            continue
        spectra, is_raw = (cached[0][local], False) if cached is not None else (state.spectra(i, local), True)
        if pool is None:
            store(index, _worker.refit_spectra(token, blob, spectra, is_raw, keep_columns))
        elif state.remote is not None:  # a cluster: one task per worker, not per chunk
            batched.append((index, (token, blob, spectra, is_raw, keep_columns)))
        else:
            pending[pool.submit(_worker.refit_spectra, token, blob, spectra, is_raw, keep_columns)] = index
            if len(pending) >= 2 * pool.slots:
                finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in finished:
                    store(pending.pop(future), pool.result(future))
                yield "refitting"
    if batched:
        futures = pool.submit_many(_worker.refit_spectra, [args for _, args in batched])
        pending.update(zip(futures, [index for index, _ in batched]))
    # numpy releases the GIL: the parent's share runs on all cores.
    for _ in state.threads.map(lambda job: solve_kept(*job), local_jobs):
        pass
    while pending:
        finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in finished:
            store(pending.pop(future), pool.result(future))
        yield "refitting"


def _update_statistics(state: _State, pool, token, blob):
    """Statistics of the final fit: all kept spectra, and those the refit changed."""
    model = state.model

    def kept_statistics(i):
        net, raw_obs = state.cache[i]
        px = state.pixels(i)
        state.stats[:, px] = _worker.statistics(
            net, raw_obs, model.derivatives, state.params[:, px], state.n_free[px]
        )

    pending, batched = {}, []
    for i in range(len(state.chunks)):
        if i in state.cache:
            continue
        px = state.pixels(i)
        local = state.changed[px]
        if not local.any():
            continue
        index = np.flatnonzero(local) + px.start
        params, n_free = state.params[:, index], state.n_free[index]
        spectra = state.spectra(i, local)
        if pool is None:
            state.stats[:, index] = _worker.spectra_statistics(token, blob, spectra, params, n_free)
        elif state.remote is not None:  # a cluster: one task per worker, not per chunk
            batched.append((index, (token, blob, spectra, params, n_free)))
        else:
            pending[pool.submit(_worker.spectra_statistics, token, blob, spectra, params, n_free)] = index
            yield
    if batched:
        futures = pool.submit_many(_worker.spectra_statistics, [args for _, args in batched])
        pending.update(zip(futures, [index for index, _ in batched]))
    for _ in state.threads.map(kept_statistics, sorted(state.cache)):
        pass
    if pending:
        wait(list(pending))
        for future, index in pending.items():
            state.stats[:, index] = pool.result(future)
        yield


def _make_result(cube, setup: FitSetup, cfg, model, state: _State, run_info) -> FitResult:
    rows, cols, _ = cube.shape
    maps, kinds, units, groups = {}, {}, {}, []
    elements = _element_indices(model, setup)
    for j in range(model.n_free_bkg, model.n_free):
        name = model.free_names[j]
        maps[name] = state.params[j].reshape(rows, cols).astype(np.float32)
        units[name] = "counts"
        kinds[name] = "element" if j in elements else "scatter"
        if j in elements:
            groups.append(name)
    for k, (name, (unit, _)) in enumerate(STATISTICS.items()):
        maps[name] = state.stats[k].reshape(rows, cols).astype(np.float32)
        kinds[name], units[name] = "fit-statistic", unit

    notes = list(setup.notes)
    configured = _configured_groups(cfg)
    missing = [g for g in configured if g not in model.free_names]
    if missing:
        notes.append("left out (no line inside the fitted channels): " + ", ".join(missing))
    zero, gain = cfg["detector"]["zero"], cfg["detector"]["gain"]
    seconds = run_info["seconds"]
    attrs = {
        "package_version": __version__,
        "pymca_version": _pymca_version(),
        "method": "PyMca5 FastXRFLinearFit: linear least squares, SNIP background"
        if model.strip
        else "PyMca5 FastXRFLinearFit: linear least squares, no background",
        "input_file": str(cube.source or ""),
        "input_format": cube.format,
        "config_source": setup.source,
        "fit_config": config_text(cfg),
        "groups": list(groups),
        "fit_range_keV": [zero + gain * model.first, zero + gain * (model.stop - 1)],
        "weight": int(run_info["weight"]),
        "refit": bool(run_info["refit"]),
        "workers": int(run_info["workers"]),
        "elapsed_s": float(seconds),
        "notes": "\n".join(notes),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if cube.pixel_size:
        attrs["pixel_size_mm"] = np.asarray(cube.pixel_size, float)
    return FitResult(maps, kinds, units, groups, cfg, attrs, notes)


def _element_indices(model, setup: FitSetup) -> list[int]:
    """Indices of the free parameters that are element peak areas (not background, scatter)."""
    return [
        j
        for j in range(model.n_free_bkg, model.n_free)
        if not model.free_names[j].startswith("Scatter") and model.free_names[j] not in setup.scatter_groups
    ]


def _configured_groups(cfg) -> list[str]:
    out = []
    for element, families in (cfg.get("peaks") or {}).items():
        for family in [families] if isinstance(families, str) else families:
            out.append(f"{element} {family}")
    return out


def _pymca_version() -> str:
    try:
        from importlib.metadata import version

        return version("PyMca5")
    except Exception:  # pragma: no cover
        return "unknown"


def fit_cube(cube: XRFCube, config=None, *, callback=None, **kwargs) -> FitResult:
    """Run :func:`fit_cube_job` to the end and return its :class:`FitResult` (for scripts).

    ``callback(progress)`` may return True to cancel (raises ``Cancelled``).
    """
    return run(fit_cube_job(cube, config, **kwargs), callback)
