"""Fit, predict and simulate on a dask.distributed cluster (``--scheduler``), with the outputs of
one process.

How the work is split
---------------------
A cube is cut into blocks of rows exactly where a run in one process cuts it: the evidence fit
of a prediction takes its weights and residual components from each block
(:meth:`~napari_xrf_pigments.model.predictor.Predictor.rows_per_block`), and the fit's chunks
are those of :mod:`napari_xrf_pigments.fitting._engine`. A task carries the cube's path, its
energy axis and a row range (:class:`CubeRef`, :class:`RemoteSpectra`), never counts: each
worker opens the shared file and reads its block itself, so one huge cube spreads over the
cluster as well as many small ones do. What comes back is a block's maps.

Each worker keeps what is costly to make (module-level caches, alive as long as the worker
process): open cubes, models (:func:`~napari_xrf_pigments.model.files.load_model`'s cache),
compiled predictors, fit models (:mod:`~napari_xrf_pigments.fitting._worker`'s).

What is decided for a whole cube is decided once: the fit's linear model and the refit of
negative areas (whole-image decisions) stay with the client, as in one process; a prediction's
tube anode and detector resolution come from the first block
(:meth:`~napari_xrf_pigments.evidence.EvidenceChecker.settings`), found by one task and handed
to all the others.

The client writes the maps file through :func:`~napari_xrf_pigments.io.maps.open_maps_writer`
(atomic: a job stopped from the client leaves no file) with the layout and attributes of the
run in one process. Workers that die are dask's to handle: their tasks run again elsewhere
(``distributed.scheduler.allowed-failures`` times), so the output is complete and the same.

A training set (``simulate``) is simulated batch by batch through :meth:`ClusterPool.spread`:
the workers do the physics only, every random draw stays with the client
(:func:`~napari_xrf_pigments.datasets.training.generate_training_set`'s ``pool``).

dask.distributed is an optional dependency (the ``cluster`` extra); it is imported only here,
inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import os
import re
import threading
import time
import weakref
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

import numpy as np

from ._quiet import native_stderr_silenced
from .atomic import check_output_path
from .cube import XRFCube
from .errors import ClusterError, InvalidDataError, XRFPigmentsError
from .fitting import _worker, fit_to_file_job
from .io import open_cube
from .io._isolated import probed_version, trust_probe
from .io.maps import open_maps_writer
from .model.files import PigmentModel, load_model, model_directory
from .model.predict import file_store, finish_maps_file
from .progress import Progress

#: Seconds to wait for a scheduler before giving up (dask's own default is 30 s and retries).
SCHEDULER_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://.+|[A-Za-z0-9_.\-\[\]:]+:\d+)$")
_INSTALL_HINT = "install it with: pip install 'napari-xrf-pigments[cluster]'"


# -- the client -----------------------------------------------------------------------------------


def parse_scheduler(text: str) -> tuple[str, object]:
    """What ``--scheduler`` names.

    Returns
    -------
    ("local", int)
        ``local:N``: a LocalCluster of N worker processes on this machine.
    ("address", str)
        ``tcp://host:port`` (any ``scheme://``) or ``host:port``: a running scheduler.
    ("file", str)
        Anything else: a scheduler file (``dask scheduler --scheduler-file PATH``).
    """
    text = str(text).strip()
    local = re.fullmatch(r"local:(\d+)", text)
    if local:
        n = int(local.group(1))
        if n < 1:
            raise InvalidDataError(f"--scheduler local:N needs at least one worker, got {text!r}")
        return "local", n
    if text.startswith("local"):
        raise InvalidDataError(f"--scheduler local:N takes a number of workers (e.g. local:4), got {text!r}")
    if _ADDRESS.match(text) and not Path(text).exists():
        return "address", text
    return "file", text


@contextlib.contextmanager
def connect(scheduler: str, *, timeout_s: float | None = None):
    """A dask.distributed ``Client`` on ``scheduler`` (see :func:`parse_scheduler`), closed after.

    A LocalCluster (``local:N``) gets N single-threaded worker processes and is shut down with
    the client; a running scheduler is left running.

    Raises
    ------
    ClusterError
        dask.distributed is not installed, or the scheduler does not answer within
        ``timeout_s`` (default :data:`SCHEDULER_TIMEOUT_S`).
    """
    kind, where = parse_scheduler(scheduler)
    timeout = SCHEDULER_TIMEOUT_S if timeout_s is None else float(timeout_s)
    try:
        # lazy: distributed is optional (the cluster extra)
        import distributed
    except ImportError:
        raise ClusterError(f"--scheduler needs dask.distributed, which is not installed: {_INSTALL_HINT}") from None

    cluster = None
    try:
        if kind == "local":
            # One thread per worker process: PyMca and numpy hold the GIL for much of a chunk,
            # so processes are the parallelism (as the fit's own pool). The workers keep this
            # process's BLAS threads (dask would set one): the evidence fit's LAPACK solve
            # rounds by its thread count, and on this machine the maps must be those of a run
            # in this process to the last bit.
            environ = {k: v for k, v in dask_config("distributed.nanny.pre-spawn-environ").items()
                       if k not in _BLAS_THREADS}
            environ.update({k: os.environ[k] for k in _BLAS_THREADS if k in os.environ})
            # N workers with as many BLAS threads as cores share the cores: an OpenBLAS thread
            # that waits for its next call spins (0.1 s by default) on a core another worker
            # needs. Here it sleeps at once; the arithmetic is the same. On 2 cores this took
            # a 10-cube prediction from 82-87 s to 70 s (docs/cluster.md).
            environ["OPENBLAS_THREAD_TIMEOUT"] = os.environ.get("OPENBLAS_THREAD_TIMEOUT", "4")
            import dask

            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = distributed.LocalCluster(
                    n_workers=where, threads_per_worker=1, processes=True, dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            client = distributed.Client(cluster, timeout=timeout)
        elif kind == "address":
            client = distributed.Client(where, timeout=timeout)
        else:
            # dask waits for a scheduler file without end: here, as long as for an address.
            client = distributed.Client(_address_in_file(where, timeout), timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(f"cannot reach the dask scheduler at {scheduler} ({reason})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


_BLAS_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def dask_config(key):
    import dask

    return dict(dask.config.get(key) or {})


def _address_in_file(path: str, timeout: float) -> str:
    """The scheduler address in a scheduler file, waiting up to ``timeout`` s for the file
    (a batch job's scheduler writes it when it starts)."""
    deadline = time.monotonic() + timeout
    while not Path(path).is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no scheduler file {path} appeared within {timeout:g} s")
        time.sleep(0.2)
    try:
        return str(json.loads(Path(path).read_text(encoding="utf-8"))["address"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not a dask scheduler file (JSON with an 'address')") from None


def describe(client) -> str:
    """One line on a client's cluster: scheduler, workers, threads and the dashboard's address.

    A scheduler without bokeh serves only a page asking for it at the dashboard's address
    (``local:N`` runs the scheduler here, and bokeh is no dependency of this package): then
    the line says how to get the dashboard instead of giving that address.
    """
    info = client.scheduler_info()
    workers = info.get("workers", {})
    threads = sum(w.get("nthreads", 1) for w in workers.values())
    line = f"dask scheduler {info.get('address', '?')}: {len(workers)} workers, {threads} threads"
    if "dashboard" not in info.get("services", {}):
        return f"{line}; no dashboard"
    if _serves_dashboard(client) is False:
        return f"{line}; no dashboard (it needs bokeh where the scheduler runs: pip install 'bokeh>=3.1')"
    return f"{line}; dashboard {client.dashboard_link}"


def _serves_dashboard(client) -> bool | None:
    """Whether the scheduler has dask's dashboard (bokeh there); None when it cannot tell."""

    def probe():  # defined here: sent by value, the scheduler need not have this package
        try:
            import distributed.dashboard.scheduler  # noqa: F401 - what the scheduler itself tries
        except ImportError:
            return False
        return True

    try:
        return bool(client.run_on_scheduler(probe))
    except Exception:  # noqa: BLE001 - a scheduler that refuses to run code: say nothing of it
        return None


# -- what a task carries: where its counts are --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CubeRef:
    """A cube as a task carries it: its file, the energy axis to use and its shape.

    Parameters
    ----------
    path : str
        The cube file, readable by every worker under this name (a shared file system).
    energy : EnergyAxis
        The client's energy axis (a calibration set in the client wins over the file's).
    shape : (int, int, int)
        Rows, columns, channels: a worker that finds another shape refuses the file.
    probed : tuple or None
        The file version whose HDF5 structure the client probed in a child process and found
        readable (:func:`~napari_xrf_pigments.io._isolated.probed_version`): workers that see
        the same version skip that child (half a second each).
    """

    path: str
    energy: object
    shape: tuple[int, int, int]
    probed: tuple | None = None

    @classmethod
    def of(cls, cube) -> CubeRef:
        """The reference of an opened cube.

        Raises
        ------
        InvalidDataError
            The cube was not read from a file (workers could not read it).
        """
        source = getattr(cube, "source", None)
        if not source or not Path(source).is_file():
            raise InvalidDataError(
                "this cube is not a file the cluster's workers can open (they read their blocks "
                "from the cube's file): write it with write_cube() and open that file")
        return cls(str(Path(source).resolve()), cube.energy, tuple(int(n) for n in cube.shape),
                   probed_version(source))

    def open(self):
        """The cube, opened once per worker process (lazily: nothing is read)."""
        stat = os.stat(self.path)
        key = (self.path, stat.st_mtime_ns, stat.st_size, self.energy)
        with _LOCK:
            cube = _CUBES.get(key)
        if cube is None:
            if self.probed is not None:
                trust_probe(self.probed)
            cube = open_cube(self.path)
            if tuple(cube.shape) != tuple(self.shape):
                raise InvalidDataError(
                    f"{self.path} holds {cube.shape} counts on this worker, {self.shape} on the "
                    "client: the file changed, or is another file under the same name")
            cube = dataclasses.replace(cube, energy=self.energy)
            with _LOCK:
                if len(_CUBES) >= 8:
                    _CUBES.pop(next(iter(_CUBES)))
                _CUBES[key] = cube
        return cube

    def read_rows(self, rows: slice) -> np.ndarray:
        """Counts (n_rows, columns, channels) of a block of rows, checked, as read."""
        import dask

        # A lazy (dask) cube is read with dask's synchronous scheduler: this is already a task.
        with dask.config.set(scheduler="synchronous"):
            return self.open().read_rows(rows)

    def block(self, rows: slice, local=None, *, flat: bool = True) -> RemoteSpectra:
        """A task argument standing for the spectra of ``rows`` (those of the mask ``local``)."""
        return RemoteSpectra(self, rows, None if local is None else np.flatnonzero(local), flat)


@dataclasses.dataclass(frozen=True)
class RemoteSpectra:
    """Spectra a worker reads itself: rows of a cube, all or some of their spectra.

    Attributes
    ----------
    cube : CubeRef
    rows : slice
    index : ndarray of int or None
        Spectra of the block (row-major over rows x columns) to keep; None: all.
    flat : bool
        Give (n, channels) spectra; False: the block as read (n_rows, columns, channels).
    """

    cube: CubeRef
    rows: slice
    index: object = None
    flat: bool = True

    def read(self) -> np.ndarray:
        block = self.cube.read_rows(self.rows)
        if not self.flat:
            return block
        spectra = block.reshape(-1, block.shape[-1])
        return spectra if self.index is None else spectra[self.index]


_LOCK = threading.Lock()
_CUBES: dict = {}
_PREDICTORS: dict = {}
_CHECKERS: dict = {}


def _call(fn, *args):
    """``fn(*args)`` on a worker, with every :class:`RemoteSpectra` read there first."""
    if fn in (_fit_chunk_keeping, _refit_keeping, _statistics_keeping):
        return _call_keeping(fn, *args)
    return fn(*(a.read() if isinstance(a, RemoteSpectra) else a for a in args))


def _call_each(fn, calls):
    """:func:`_call` of ``fn`` for every ``args`` of ``calls``: small calls as one task."""
    return [_call(fn, *args) for args in calls]


def _hand_out(futures, batch):
    """The results of a :func:`_call_each` task, one to each of ``futures`` (in their order)."""
    if batch.cancelled():
        for future in futures:
            future.cancel()
        return
    error = batch.exception()
    if error is not None:
        for future in futures:
            future.set_exception(error)
        return
    for future, value in zip(futures, batch.result()):
        future.set_result(value)


# -- a pool of cluster workers, as the fit engine uses one -------------------------------------


class ClusterPool:
    """The workers of a dask.distributed client as a pool of the fit engine (and of predict).

    ``submit`` returns ``concurrent.futures`` futures (dask's ``ClientExecutor``), so code
    written for a process pool waits on them alike; large ``bytes`` arguments (a fit model)
    go to the workers once (``scatter``), not with every task.

    Parameters
    ----------
    client : distributed.Client
    """

    def __init__(self, client):
        self.client = client
        self.executor = client.get_executor(pure=False)
        self._scattered: dict = {}
        self._futures: list = []
        self._tasks = weakref.WeakSet()  # the dask futures of task(), while someone holds them
        self._holder: dict = {}  # chunk -> address of the worker that keeps its spectra
        self._queued: dict = {}  # a campaign's next cube: its key -> its _CubeTasks
        self._preloaded: set = set()  # model directories the workers were asked to load
        self._warmed: set = set()  # (model directory, options) the workers were asked to compile
        self._cubes = itertools.count()  # cubes submitted: earlier cubes' tasks go first

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once (its worker threads; at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def cube_ref(self, cube) -> CubeRef:
        return CubeRef.of(cube)

    def _argument(self, value):
        if isinstance(value, bytes) and len(value) > 65536:
            key = id(value)
            held = self._scattered.get(key)
            if held is None or held[0] is not value:
                held = (value, self._broadcast(value))
                self._scattered = {key: held}  # one model at a time
            return held[1]
        return value

    def _broadcast(self, value, attempts: int = 3):
        """``value`` scattered to every worker. A worker that dies during the broadcast fails
        it (dask does not retry a scatter): try again once the scheduler has dropped it."""
        from distributed.comm.core import CommClosedError

        for attempt in range(attempts):
            try:
                return self.client.scatter(value, broadcast=True, hash=False)
            except (CommClosedError, OSError):
                if attempt == attempts - 1:
                    raise
                time.sleep(1.0)

    def submit(self, fn, *args, worker: str | None = None):
        """Run ``fn(*args)`` on a worker (:class:`RemoteSpectra` arguments read there).

        The fit's per-chunk functions run as their keeping variants (:func:`_keeping_table`): a
        refit or statistics task goes preferably to the worker that fitted its chunk first,
        which still holds the chunk's background-subtracted spectra. ``worker`` (an address)
        is preferred likewise: another worker takes the task if that one is gone or busy.
        """
        kwargs = {}
        keeping = _keeping_table().get(fn)
        if keeping is not None:
            fn = keeping
            worker = self._holder.get(_chunk_key(args), worker)
        if worker is not None:
            kwargs = {"workers": [worker], "allow_other_workers": True}
        future = self.executor.submit(_call, fn, *(self._argument(a) for a in args), **kwargs)
        self._futures.append(future)
        if len(self._futures) > 4096:
            self._futures = [f for f in self._futures if not f.done()]
        return future

    def task(self, fn, *args, priority: int = 0):
        """Run ``fn(*args)`` on a worker; the task's dask ``Future``.

        Unlike :meth:`submit`'s, this future can be an argument of further tasks: dask runs
        them once it is done, with its result in its place, without a round trip through
        this process. Of the tasks ready to run, those of higher ``priority`` go first.
        """
        future = self.client.submit(_call, fn, *args, pure=False, priority=priority)
        # Weakly: a dask future held here would keep its result in a worker's memory after
        # its cube is written (a block's maps, megabytes, for every cube of a campaign).
        self._tasks.add(future)
        return future

    def take_queued(self, key):
        """The tasks queued for a campaign's next cube (:func:`_queue_cube`) if ``key`` is that
        cube's, else None; tasks queued for a cube that did not come next are cancelled."""
        tasks = self._queued.pop(key, None)
        for other in self._queued.values():
            for future in [other.start, *other.blocks]:
                if future is not None:
                    future.cancel()
        self._queued.clear()
        return tasks

    def preload_model(self, model=None) -> None:
        """Start loading a model (a directory; default: the shipped model) on every worker now.

        Each worker imports TensorFlow and loads the network (seconds) while this process
        loads the model too, instead of after it. A model that cannot be loaded is left to
        this process's own loading to report.
        """
        try:
            path = str(model_directory(model).resolve())
        except XRFPigmentsError:
            return
        if path not in self._preloaded:
            self._preloaded.add(path)
            for address in self.client.nthreads():
                self.submit(preload_model_task, path, worker=address)

    def submit_many(self, fn, calls):
        """Futures of ``fn(*args)`` for every ``args`` of ``calls`` (a fit's refit or statistics
        function), as :meth:`submit` gives them, but in one task per worker: the calls whose
        chunks a worker keeps go to it together.

        A refit's calls take a few milliseconds each (about 150 for a cube of 20,000 spectra,
        in rounds that wait for each other); one task each cost more in scheduling than in work.
        """
        keeping = _keeping_table()[fn]
        batches: dict = {}
        for n, args in enumerate(calls):
            batches.setdefault(self._holder.get(_chunk_key(args)), []).append(n)
        futures = [Future() for _ in calls]
        for holder, members in batches.items():
            # The model's bytes go to the workers once (_argument), not inside every batch.
            batch_calls = [tuple(self._argument(a) for a in calls[n]) for n in members]
            batch = self.submit(_call_each, keeping, batch_calls, worker=holder)
            batch.add_done_callback(functools.partial(_hand_out, [futures[n] for n in members]))
        return futures

    def result(self, future):
        """The task's result; a task that kept killing its workers is a :class:`ClusterError`.

        Errors the task raised on purpose (unreadable blocks, negative counts) pass as they are.
        """
        try:
            value = future.result()
            if isinstance(value, _Kept):
                self._holder[value.key] = value.worker
                value = value.value
            return value
        except Exception as exc:
            if type(exc).__name__ == "KilledWorker":
                raise ClusterError(
                    "dask workers died again and again running the same block (out of memory, or "
                    f"a crash in native code): {' '.join(str(exc).split())}") from None
            raise

    def spread(self, fn, calls, *, weights=None, groups=None):
        """``fn(*args)`` for every ``args`` of ``calls``; yields ``(index, value)`` as they finish.

        Calls of one group go preferably to one worker (:func:`_owners`): what a worker builds
        for a call (a simulator, a response matrix) then serves the next ones of its group
        instead of being built again by every worker. Idle workers still take the tasks of
        busy ones, and dead workers' tasks run elsewhere. Stopping the generator (or an
        error) cancels the tasks not finished.

        Parameters
        ----------
        fn : callable
            A module-level function (workers import it).
        calls : sequence of tuple
        weights : sequence of float, optional
            Relative cost of each call (default 1 each).
        groups : sequence of hashable, optional
            What each call needs built (default: consecutive calls share what they need).
        """
        threads = self.client.nthreads()
        workers = sorted(threads)
        weights = np.ones(len(calls)) if weights is None else np.asarray(weights, dtype=np.float64)
        owner = _owners(weights, groups, [threads[w] for w in workers]) if workers else None
        futures = {}
        try:
            for i, args in enumerate(calls):
                futures[self.submit(fn, *args, worker=None if owner is None else workers[owner[i]])] = i
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=futures.get):
                    yield futures[future], self.result(future)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Drop every task of this pool not finished yet (a job stopped from the client)."""
        for future in [*self._futures, *self._tasks]:
            future.cancel()
        self._futures = []
        self._queued.clear()  # the next cube's queued tasks went too: its run starts anew


def _owners(weights, groups, threads) -> np.ndarray:
    """The worker (index into ``threads``, each worker's thread count) each call goes to.

    With at least as many groups as workers, whole groups go to workers, the heaviest first
    to the least loaded per thread: nothing is built twice. With fewer groups (or none), the
    calls in their order are cut into one run per worker of about equal weight per thread:
    only the groups cut at a run's end are built twice.
    """
    threads = np.asarray(threads, dtype=np.float64)
    if groups is not None and len(set(groups)) >= threads.size:
        totals: dict = {}
        for group, weight in zip(groups, weights):
            totals[group] = totals.get(group, 0.0) + float(weight)
        load = np.zeros(threads.size)
        where = {}
        for group in sorted(totals, key=lambda g: -totals[g]):  # stable: first seen first on ties
            where[group] = int(np.argmin((load + totals[group]) / threads))
            load[where[group]] += totals[group]
        return np.array([where[g] for g in groups], dtype=int)
    # Call i belongs to the worker whose share of the threads holds the middle of its weight.
    middle = (np.cumsum(weights) - np.asarray(weights) / 2) / max(float(np.sum(weights)), 1e-300)
    bounds = np.cumsum(threads) / threads.sum()
    return np.minimum(np.searchsorted(bounds, middle, side="right"), threads.size - 1)


# -- fit: the background-subtracted spectra stay on the worker that made them ------------------

#: Memory (bytes) a worker gives to the spectra of the chunks it fitted, for the refit.
KEEP_BYTES = 1 << 30


@dataclasses.dataclass
class _Kept:
    """A task's value, and which worker keeps the spectra of its chunk."""

    value: object
    key: tuple
    worker: str


def _chunk_key(args) -> tuple | None:
    """(model token, file, first row, last row) of a fit task's chunk; None if it has none."""
    spectra = next((a for a in args if isinstance(a, RemoteSpectra)), None)
    if spectra is None or not isinstance(args[0], str):
        return None
    return (args[0], spectra.cube.path, spectra.rows.start, spectra.rows.stop)


_KEPT: dict = {}


def _kept(key):
    with _LOCK:
        return _KEPT.get(key)


def _keep(key, net, raw_obs):
    with _LOCK:
        for old in [k for k in _KEPT if k[0] != key[0]]:  # another fit: its spectra go
            del _KEPT[old]
        used = sum(a.nbytes + b.nbytes for a, b in _KEPT.values())
        if used + net.nbytes + raw_obs.nbytes <= KEEP_BYTES:
            _KEPT[key] = (net, raw_obs)


def _tagged(value, key) -> _Kept:
    from distributed import get_worker

    return _Kept(value, key, get_worker().address)


def _fit_chunk_keeping(token, blob, raw, keep):
    """:func:`~napari_xrf_pigments.fitting._worker.fit_spectra` (``keep`` false: parameters
    and statistics), keeping the chunk's spectra on this worker (``raw`` was read here from
    a :class:`RemoteSpectra`, see :func:`_call_keeping`)."""
    spectra, raw = raw
    model = _worker._model(token, blob)
    params, net = _worker.fit_spectra(token, blob, raw, True)
    raw_obs = raw[:, model.first : model.stop]
    key = _chunk_key((token, spectra))
    _keep(key, net, raw_obs)
    statistics = _worker.statistics(net, raw_obs, model.derivatives, params, model.n_free)
    return params, (net if keep else statistics)


def _refit_keeping(token, blob, spectra, is_raw, keep_columns):
    """:func:`~napari_xrf_pigments.fitting._worker.refit_spectra` on the kept spectra of the
    chunk if this worker has them, else on the spectra read and stripped again."""
    spectra, read = spectra
    kept = _kept(_chunk_key((token, spectra)))
    if kept is None:
        return _worker.refit_spectra(token, blob, read(), True, keep_columns)
    return _worker.refit_spectra(token, blob, kept[0][spectra.index], False, keep_columns)


def _statistics_keeping(token, blob, spectra, params, n_free):
    """:func:`~napari_xrf_pigments.fitting._worker.spectra_statistics`, on the kept spectra
    of the chunk if this worker has them."""
    spectra, read = spectra
    kept = _kept(_chunk_key((token, spectra)))
    if kept is None:
        return _worker.spectra_statistics(token, blob, read(), params, n_free)
    model = _worker._model(token, blob)
    index = spectra.index
    return _worker.statistics(kept[0][index], kept[1][index], model.derivatives, params, n_free)


def _call_keeping(fn, *args):
    """Run a keeping fit function: its RemoteSpectra argument comes with a reader, not read.

    With one BLAS thread, as the fit's own pool workers (:func:`~.fitting._worker.init_worker`):
    the same arithmetic, and two workers on two cores do not run four spinning BLAS threads.
    """
    key = _chunk_key(args)
    if fn is _fit_chunk_keeping:
        resolved = [(a, a.read()) if isinstance(a, RemoteSpectra) else a for a in args]
    else:
        resolved = [(a, a.read) if isinstance(a, RemoteSpectra) else a for a in args]
    with _blas_controller().limit(limits=1):
        value = fn(*resolved)
    return _tagged(value, key) if fn is _fit_chunk_keeping else value


@functools.cache
def _blas_controller():
    """This worker's thread pools (BLAS, OpenMP), inspected once."""
    # lazy: only fit tasks need it
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _keeping_table():
    return {_worker.fit_spectra: _fit_chunk_keeping, _worker.refit_spectra: _refit_keeping,
            _worker.spectra_statistics: _statistics_keeping}


# -- predict ------------------------------------------------------------------------------------


def _predictor(model_path: str, options: tuple):
    """The compiled predictor of a model, made once per worker process."""
    key = (model_path, options)
    with _LOCK:
        predictor = _PREDICTORS.get(key)
    if predictor is None:
        with _native_startup_quiet():
            predictor = load_model(model_path).predictor(**dict(options))
            _ = predictor.function  # compile now: every block of this worker uses it
        with _LOCK:
            _PREDICTORS.clear()  # one model at a time per worker
            _PREDICTORS[key] = predictor
    return predictor


@contextlib.contextmanager
def _native_startup_quiet():
    """TensorFlow's C++ start-up lines (oneDNN, CUDA probing) go nowhere in a worker: printed
    before absl starts they ignore ``TF_CPP_MIN_LOG_LEVEL``, and a LocalCluster's workers share
    the terminal of the command. Python errors still travel back to the client with the task."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        yield


def _block_on_grid(ref: CubeRef, predictor, rows: slice) -> np.ndarray:
    cube = ref.open()
    block = ref.read_rows(rows)
    resampler = predictor.model.preprocessing.resampler(cube.energy, what=cube.name)
    return resampler(block.reshape(-1, block.shape[-1]))


def _checker(ref: CubeRef, predictor, settings):
    """An evidence checker that has adopted a cube's settings, one per worker and cube."""
    from .evidence import EvidenceChecker

    key = (ref, predictor.model.path, settings["tube"], settings["resolution_keV"])
    with _LOCK:
        checker = _CHECKERS.get(key)
    if checker is None:
        checker = EvidenceChecker(predictor.model, ref.open(), (0, 0))
        checker.adopt(settings)
        with _LOCK:
            _CHECKERS.clear()
            _CHECKERS[key] = checker
    return checker


def preload_model_task(model_path: str) -> None:
    """Task: import TensorFlow and load a model on this worker (into
    :func:`~napari_xrf_pigments.model.files.load_model`'s cache, which :func:`_predictor` uses)."""
    with _native_startup_quiet():
        load_model(model_path)


def warm_predictor_task(model_path: str, options: tuple) -> None:
    """Task: load and compile the model on this worker (:func:`_predictor`), ahead of blocks."""
    _predictor(model_path, options)


def predict_start_task(ref: CubeRef, model_path: str, options: tuple, rows: slice) -> dict:
    """Task: the evidence settings of a cube from its first block (what one process decides
    there): ``{"settings": dict}``, or ``{"failed": reason}`` when the evidence step cannot run."""
    from .evidence import EvidenceChecker

    predictor = _predictor(model_path, options)
    grid = _block_on_grid(ref, predictor, rows)
    checker = EvidenceChecker(predictor.model, ref.open(), (0, 0))
    try:
        checker.start(grid)
    except Exception as exc:  # noqa: BLE001 - as EvidenceChecker.check: the maps still come
        return {"failed": str(exc)}
    return {"settings": checker.settings()}


def predict_block_task(ref: CubeRef, model_path: str, options: tuple, rows: slice, start) -> dict:
    """Task: one block of rows predicted (and checked, given its cube's evidence ``start``).

    Parameters
    ----------
    start : dict or None
        What :func:`predict_start_task` found on the cube's first block (dask hands the result
        of that task here); None: no evidence check.

    Returns
    -------
    dict
        ``raw``: the network's probabilities (output -> (n, n_pigments) float32); ``checked``:
        the :class:`~napari_xrf_pigments.evidence.CheckedBlock`, or ``failed``: why the check
        failed; ``any_counts``: whether any spectrum had counts in the model's range.
    """
    predictor = _predictor(model_path, options)
    grid = _block_on_grid(ref, predictor, rows)
    raw = predictor.predict_counts(grid)
    out = {"raw": raw, "any_counts": bool(np.isfinite(raw["present"]).any())}
    settings = None if start is None else start.get("settings")
    if settings is not None:
        try:
            out["checked"] = _checker(ref, predictor, settings).check_block(grid, raw)
        except Exception as exc:  # noqa: BLE001 - as EvidenceChecker.check
            out["failed"] = str(exc)
    return out


@dataclasses.dataclass
class _CubeTasks:
    """The tasks of one cube's prediction: its evidence start (None without the check) and its
    blocks (dask future -> rows)."""

    start: object
    blocks: dict


def _row_blocks(rows: int, step: int) -> list[slice]:
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def _cube_key(ref: CubeRef, model_path: str, options: tuple, blocks, check: bool) -> tuple:
    return ref, model_path, options, tuple((b.start, b.stop) for b in blocks), check


def _submit_cube(pool: ClusterPool, ref: CubeRef, model_path: str, options: tuple, blocks,
                 check: bool) -> _CubeTasks:
    """Submit a cube's evidence start and its blocks at once; each block runs as soon as a
    worker is free and the start is done (the start's result goes to it worker to worker).

    The tasks of a cube submitted earlier go first: a campaign's next cube fills the time its
    current one leaves a worker idle, not that of its own blocks.
    """
    priority = -next(pool._cubes)
    start = None
    if check:
        start = pool.task(predict_start_task, ref, model_path, options, blocks[0], priority=priority)
    return _CubeTasks(start, {pool.task(predict_block_task, ref, model_path, options, sl, start,
                                        priority=priority): sl for sl in blocks})


def predict_to_file_on(
    pool: ClusterPool,
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
    rows_per_block: int | None = None,
    next_cube=None,
):
    """:func:`~napari_xrf_pigments.model.predict.predict_to_file` with the blocks on a cluster.

    A generator: yields ``Progress`` (blocks done out of all) and returns the maps file's Path.
    The file is the one a run in this process writes (pigment probabilities equal within
    float32 rounding of the same arithmetic, element evidence and unexplained maps alike);
    nothing is left of it if the job is stopped.

    Parameters
    ----------
    pool : ClusterPool
    cube : XRFCube or path
        Read from a file every worker can open under the same path.
    out : str or Path
    model : PigmentModel, str or Path, optional
        A model directory every worker can read (default: the shipped model).
    rows_per_block : int, optional
        Rows per task (default: those of the run in one process, which the evidence step needs
        to give the same maps; change it only without evidence).
    next_cube : str or Path, optional
        The cube a campaign predicts next: its tasks are queued behind this cube's blocks, so
        that workers go on with it while this cube's last blocks run and its file is written;
        its own run takes them up.
    Others
        As :func:`~napari_xrf_pigments.model.predict.predict_to_file`.
    """
    import distributed

    check_output_path(out, force=force)
    if not isinstance(cube, XRFCube):
        input_file = input_file or str(cube)
        cube = open_cube(cube)
    ref = CubeRef.of(cube)
    if not isinstance(model, PigmentModel):
        model = load_model(model)
    if model.path is None:
        raise InvalidDataError("a model held only in memory cannot go to the cluster's workers: "
                               "save it (model.save(DIR)) and give its directory")
    predictor = model.predictor(engine=engine, **({"batch_size": int(batch_size)} if batch_size else {}))
    # The client's batch size goes to every worker: the blocks depend on it, and a worker with a
    # GPU would otherwise choose another.
    options = (("batch_size", predictor.batch_size), ("engine", engine))
    rows, cols, _ = cube.shape
    step = int(rows_per_block or predictor.rows_per_block(cube))
    blocks = _row_blocks(rows, step)
    n_p = len(model.pigments)
    model_path = str(Path(model.path).resolve())
    try:
        with open_maps_writer(out, (rows, cols), force=force) as writer:
            maps, raw, checker = predictor.prepare_outputs(cube, step, evidence=evidence,
                                                          store=file_store(writer, model))
            yield Progress(0, len(blocks), f"predicting {cube.name} on the cluster")
            check = raw is not None
            if (model_path, options) not in pool._warmed:
                # Every worker loads the model now, side by side, not when its first block
                # comes: the blocks wait for the evidence start (one worker), and the others
                # would then start loading TensorFlow only after that.
                pool._warmed.add((model_path, options))
                for address in pool.client.nthreads():
                    pool.submit(warm_predictor_task, model_path, options, worker=address)
            tasks = pool.take_queued(_cube_key(ref, model_path, options, blocks, check))
            if tasks is None:
                tasks = _submit_cube(pool, ref, model_path, options, blocks, check)
            if next_cube is not None:
                _queue_cube(pool, next_cube, predictor, model_path, options, rows_per_block, check)
            if tasks.start is not None:
                first = pool.result(tasks.start)
                if "failed" in first:
                    checker.fail(first["failed"])
                else:
                    checker.adopt(first["settings"])
            any_counts, failed, done = False, {}, 0
            pending = set(tasks.blocks)
            while pending:
                finished, pending = distributed.wait(pending, return_when="FIRST_COMPLETED")
                for future in sorted(finished, key=lambda f: tasks.blocks[f].start):
                    sl = tasks.blocks[future]
                    result = pool.result(future)
                    n_rows = sl.stop - sl.start
                    any_counts = any_counts or result["any_counts"]
                    values = result["raw"]
                    if raw is not None:
                        for k, v in values.items():
                            raw[k][sl] = v.reshape(n_rows, cols, n_p)
                        if "checked" in result:
                            checker.store(sl, result["checked"])
                            values = result["checked"].maps
                        elif "failed" in result:
                            failed[sl.start] = result["failed"]
                    for k, v in values.items():
                        maps[k][sl] = v.reshape(n_rows, cols, n_p)
                    done += 1
                    yield Progress(done, len(blocks), f"blocks {done}/{len(blocks)}")
            if failed:
                # One process stops checking at its first failing block: the same reason here.
                checker.fail(failed[min(failed)])
            result = predictor.finish(cube, step, maps, raw, checker, any_counts=any_counts)
            finish_maps_file(writer, result, model, cube, input_file=input_file, warnings=warnings)
    except BaseException:
        pool.cancel()
        raise
    return Path(out)


def _queue_cube(pool: ClusterPool, cube, predictor, model_path: str, options: tuple,
                rows_per_block: int | None, check: bool) -> None:
    """Submit the tasks of a campaign's next cube, for its own run to take up.

    They go at a lower priority (:func:`_submit_cube`), so they wait behind the blocks already
    queued. A cube that cannot be opened here, or is not calibrated, is left to its own run to
    report.
    """
    try:
        cube = open_cube(cube)
        ref = CubeRef.of(cube)
    except Exception:  # noqa: BLE001 - its own run reports it, with the campaign's wording
        return
    if not cube.energy.calibrated:  # refused by its own run
        return
    step = int(rows_per_block or predictor.rows_per_block(cube))
    blocks = _row_blocks(cube.shape[0], step)
    key = _cube_key(ref, model_path, options, blocks, check)
    pool._queued[key] = _submit_cube(pool, ref, model_path, options, blocks, check)


# -- fit ----------------------------------------------------------------------------------------


def fit_to_file_on(pool: ClusterPool, cube, out, config=None, *, force: bool = False, **fit_kwargs):
    """:func:`~napari_xrf_pigments.fitting.fit_to_file_job` with the chunks on a cluster.

    Returns the generator of the job (yields ``Progress`` in spectra, returns the
    :class:`~napari_xrf_pigments.fitting.FitResult`); the maps equal those of the run in this
    process, and the file is written (atomically) once the fit has finished. ``workers`` and
    ``cache_mb`` in ``fit_kwargs`` are not used.
    """
    fit_kwargs.pop("workers", None)
    fit_kwargs.pop("cache_mb", None)
    return fit_to_file_job(cube, out, config, force=force, pool=pool, **fit_kwargs)
