"""Model jobs run in a child process, so that TensorFlow never loads into napari's process.

Why: TensorFlow carries its own LLVM (XLA), and Mesa's OpenGL drivers (llvmpipe under Xvfb and
on many Linux desktops, radeonsi on AMD GPUs) load the system's libLLVM. The two in one process
crash: a segmentation fault in the first XLA-compiled call once napari has an OpenGL context,
an invalid ``free()`` at exit, or a crash creating a context after TensorFlow was imported.
A child process also keeps TensorFlow's Python-side work off napari's GIL and can be stopped
at once.

:func:`isolated` is itself a job (a generator yielding Progress, see
:mod:`napari_xrf_pigments.progress`): it relays the child job's progress and returns its
result, so the napari widgets' job runner runs it like any other. The child stays up between
jobs (TensorFlow imported, models loaded and compiled) until it has been idle for ten minutes;
cancelling a job stops it. An error of this package raised in the child is raised again in the
parent as the same class, with the same message and attributes (a ``CalibrationError`` stays a
``CalibrationError``); any other error becomes :class:`ChildProcessFailed` with the child's
traceback. This module imports neither Qt nor napari (the child imports it), nor TensorFlow.

The jobs the widgets run: :func:`predict_job`, :func:`finetune_job`, :func:`adapt_job`,
:func:`gpu_job`; cubes go to the child as :func:`portable_cube` specs.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing
import os
import pickle
import sys
import threading
import traceback
from pathlib import Path

from ..errors import InvalidDataError, XRFPigmentsError, unguarded_script_hint
from ..io import open_cube
from ..progress import Progress

#: Seconds between checks for a message from the child; also how often the job yields None,
#: the chance for a runner to stop it while the child works without reporting.
HEARTBEAT_S = 0.1
#: The child exits after this long without a job (it holds TensorFlow and the loaded models).
IDLE_EXIT_S = 600.0
_SPAWN = multiprocessing.get_context("spawn")


class ChildProcessFailed(XRFPigmentsError):
    """The child process died, or its job raised an error that is not one of ours."""


class _Server:
    """One long-lived child process that runs jobs one after the other.

    It keeps TensorFlow imported and models loaded and compiled between runs (the first run
    pays for them). Stopping a running job stops the process; the next job starts a new one.
    """

    def __init__(self):
        self.process = None
        self.connection = None
        self.lock = threading.Lock()

    def _start(self):
        parent, child = _SPAWN.Pipe(duplex=True)
        process = _SPAWN.Process(
            target=_serve, args=(child, IDLE_EXIT_S), name="xrf-pigments-server", daemon=True
        )
        try:
            process.start()
        except BaseException:
            # Nothing kept: a process that never started cannot be joined ("can only join a
            # started process" would hide this error at the next job).
            parent.close()
            raise
        finally:
            child.close()  # the child holds the only other end: EOF once it is gone
        self.process, self.connection = process, parent

    def stop(self):
        """Stop the child process (a running job is killed)."""
        process, connection, self.process, self.connection = self.process, self.connection, None, None
        if connection is not None:
            connection.close()
        if process is None:
            return
        if process.is_alive():
            process.terminate()
            process.join(5)
            if process.is_alive():  # pragma: no cover - a child ignoring SIGTERM
                process.kill()
        process.join(5)

    def run(self, target, args, kwargs):
        # One job at a time: a second caller waits here (and can still be cancelled).
        while not self.lock.acquire(timeout=HEARTBEAT_S):
            yield None
        finished = False
        try:
            if self.process is None or not self.process.is_alive():
                self.stop()
                self._start()
            connection, process = self.connection, self.process
            _send(connection, (target, args, kwargs))
            while True:
                if not connection.poll(HEARTBEAT_S):
                    if not process.is_alive() and not connection.poll(0):
                        raise _died(process)
                    yield None
                    continue
                try:
                    kind, payload = _recv(connection)
                except (EOFError, ConnectionError):  # closed, or reset by a dying child
                    process.join(5)
                    raise _died(process) from None
                if kind == "progress":
                    yield payload
                elif kind == "result":
                    finished = True
                    return payload
                else:
                    finished = True
                    raise _error(payload)
        finally:
            if not finished:
                # Cancelled (closed) or broken in the middle of a job: the child may be deep in
                # TensorFlow; stopping the process is the only prompt way out.
                self.stop()
            self.lock.release()


_SERVER = _Server()


def shutdown(timeout: float = 10.0):
    """Stop the child process (after its current job, or at once after ``timeout`` s).

    It also stops by itself when idle, and when napari exits.
    """
    locked = _SERVER.lock.acquire(timeout=timeout)
    try:
        _SERVER.stop()
    finally:
        if locked:
            _SERVER.lock.release()


def isolated(target: str, *args, **kwargs):
    """Job: run the job ``target(*args, **kwargs)`` in the child process.

    Parameters
    ----------
    target : str
        ``"module:function"`` of a job function; the module must not import Qt or napari.
    args, kwargs
        Picklable arguments.

    Yields
    ------
    Progress or None
        The child's progress; None between messages (a chance to cancel).

    Returns
    -------
    The child job's result (pickled back).

    Raises
    ------
    XRFPigmentsError
        The child's error of this package (same message), or :class:`ChildProcessFailed`.
    """
    return (yield from _SERVER.run(target, args, kwargs))


def _send(connection, obj):
    """Send ``obj`` with numpy arrays as out-of-band buffers (pickle protocol 5).

    Copying a big array into a pickle holds the GIL for the whole copy (a frozen GUI while a
    cube goes to the child); writing its buffer straight to the pipe releases it at each write.
    """
    buffers = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    connection.send_bytes(header)
    connection.send(len(buffers))
    for buffer in buffers:
        connection.send_bytes(buffer.raw())


def _recv(connection):
    header = connection.recv_bytes()
    buffers = [connection.recv_bytes() for _ in range(connection.recv())]
    return pickle.loads(header, buffers=buffers)


def _died(process) -> ChildProcessFailed:
    hint = unguarded_script_hint()
    return ChildProcessFailed(f"the worker process stopped unexpectedly (exit code {process.exitcode})"
                              + (f"; {hint}" if hint else ""))


def _error(info) -> XRFPigmentsError:
    """The parent's exception for the child's error report (see :func:`_run_one`)."""
    if not info["ours"]:
        return ChildProcessFailed(f"{info['type']}: {info['message']}\n{info['traceback']}")
    try:
        cls = getattr(importlib.import_module(info["module"]), info["type"])
    except (ImportError, AttributeError):
        cls = XRFPigmentsError
    if not (isinstance(cls, type) and issubclass(cls, XRFPigmentsError)):
        cls = XRFPigmentsError
    # Not cls(message): subclasses take other arguments (UnreadableFileError(path, reason)).
    exc = cls.__new__(cls)
    Exception.__init__(exc, info["message"])
    for name, value in info["attributes"].items():
        setattr(exc, name, value)
    return exc


def _os_error_fields(exc) -> list:
    """``errno`` of an OSError (kept by the exception itself, not in its ``__dict__``)."""
    return [("errno", exc.errno)] if isinstance(exc, OSError) else []


#: The child runs at a lower CPU priority: on a machine with few cores, TensorFlow's threads
#: would otherwise take the CPU from napari's GUI thread (a stalled viewer while predicting).
CHILD_NICENESS = 5


def _serve(connection, idle_exit_s):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no C++ log lines in napari's terminal
    if hasattr(os, "nice"):
        try:
            os.nice(CHILD_NICENESS)
        except OSError:  # pragma: no cover - not allowed here: run at normal priority
            pass
    try:
        while connection.poll(idle_exit_s):
            try:
                target, args, kwargs = _recv(connection)
            except EOFError:  # napari went away
                return
            _run_one(connection, target, args, kwargs)
    finally:
        connection.close()


def _run_one(connection, target, args, kwargs):
    try:
        module, name = target.split(":")
        job = getattr(importlib.import_module(module), name)(*args, **kwargs)
        while True:
            try:
                step = next(job)
            except StopIteration as stop:
                _send(connection, ("result", stop.value))
                return
            _send(connection, ("progress", step))
    except Exception as exc:  # noqa: BLE001 - everything goes back to the parent
        ours = isinstance(exc, XRFPigmentsError)
        lines = str(exc).strip().splitlines()
        _send(connection, ("error", {
            "ours": ours,
            "module": type(exc).__module__,
            "type": type(exc).__qualname__,
            "message": str(exc) if ours else (lines[0] if lines else ""),
            # What the parent's handlers read (path, reason, errno...): plain values only.
            "attributes": {k: v for k, v in [*vars(exc).items(), *_os_error_fields(exc)]
                           if isinstance(v, (str, int, float, bool, type(None)))},
            "traceback": traceback.format_exc(limit=-8),
        }))


# -- what the pigment widget runs in the child -------------------------------------------------


def portable_cube(cube):
    """What the child needs to get ``cube``: its file (re-opened there) or the cube itself.

    A cube read from a file is opened again in the child, as ``xrf-pigments predict`` opens it
    (h5py datasets cannot be pickled, and large cubes are not copied); the energy axis goes
    along, so a calibration made in napari applies. In-memory cubes are pickled.
    """
    source = getattr(cube, "source", None)
    if source and Path(source).is_file():
        return {"path": str(source), "energy": cube.energy, "shape": tuple(cube.shape)}
    return {"cube": cube}


def open_portable(spec):
    """The XRFCube a :func:`portable_cube` spec stands for (a cube or a path passes through).

    Raises
    ------
    InvalidDataError
        If the file changed shape since it was opened in napari.
    """
    if not isinstance(spec, dict):
        return spec
    if "cube" in spec:
        return spec["cube"]


    cube = open_cube(spec["path"])
    if "shape" in spec and tuple(cube.shape) != tuple(spec["shape"]):
        raise InvalidDataError(
            f"{spec['path']} changed on disk since it was opened (now {cube.shape}, was "
            f"{tuple(spec['shape'])}); open it again"
        )
    # The energy axis goes along: a calibration set in napari applies.
    return dataclasses.replace(cube, energy=spec["energy"]) if "energy" in spec else cube


def predict_job(cube_spec, model_path=None, *, device: str | None = None):
    """Child job: load the model and predict the cube, as ``xrf-pigments predict`` does
    (warnings found before prediction first in ``PigmentPrediction.warnings``).

    ``device="CPU"`` keeps the network on the CPU when a GPU is present.

    Returns
    -------
    (PigmentPrediction, model name)
    """
    # lazy: loads numpy
    from .files import load_model
    from .predict import predict_cube
    from .predictor import DEFAULT_BATCH_CPU
    from .preflight import preflight_warnings

    cube = open_portable(cube_spec)
    yield Progress(0, cube.shape[0], "loading the model")
    model = load_model(model_path)
    before = [str(w) for w in preflight_warnings(cube, model)]
    if device != "CPU":
        prediction = yield from predict_cube(cube, model)
    else:
        import keras

        with keras.device("cpu:0"):  # whatever the Keras backend (TensorFlow, JAX)
            prediction = yield from predict_cube(cube, model, batch_size=DEFAULT_BATCH_CPU,
                                                 engine="fast")
    prediction.warnings[:0] = before
    return prediction, model.name


def finetune_job(out, base_model=None, cube=None, labels=None, *, force: bool = False,
                 command: str | None = None, **kwargs):
    """Child job: :func:`~napari_xrf_pigments.model.finetuning.finetune_to_dir`, returning plain,
    picklable figures instead of the Keras model.

    ``cube`` is a :func:`portable_cube` spec (or a cube, or a path).

    Returns
    -------
    dict
        ``path`` (str, the new model), ``name``, ``before``, ``after``, ``split``, ``stages``,
        ``history`` (as in :class:`~napari_xrf_pigments.model.finetuning.FinetuneResult`).
    """
    from .finetuning import finetune_to_dir

    result, path = yield from finetune_to_dir(
        out, base_model, open_portable(cube), labels, force=force, command=command, **kwargs
    )
    return {
        "path": str(path),
        "name": result.model.name,
        "before": result.before,
        "after": result.after,
        "split": result.split,
        "stages": result.stages,
        "history": result.history,
    }


def adapt_job(out, instrument, base_model=None, background=None, *, n: int, seed: int = 0,
              force: bool = False, **kwargs):
    """Child job: :func:`~napari_xrf_pigments.model.adapt.adapt_job` (simulate spectra with the
    instrument, finetune the base model on them), returning plain figures.

    ``instrument`` is an instrument description (``Instrument.to_dict()``); ``background`` a
    :func:`portable_cube` spec of a scan whose measured background the spectra get, or None.

    Returns
    -------
    dict
        ``path``, ``name``, ``before``, ``after``, ``split``, ``stages``, ``history``.
    """
    from ..physics import Instrument, estimate_background
    from .adapt import adapt_job as _adapt_job

    instrument = Instrument.from_dict(instrument)
    background_cps = (None if background is None
                      else estimate_background(open_portable(background), instrument.readout))
    result, path = yield from _adapt_job(out, instrument, base_model=base_model,
                                         background_cps=background_cps, n=n, seed=seed,
                                         force=force, **kwargs)
    return {"path": str(path), "name": result.model.name, "before": result.before,
            "after": result.after, "split": result.split, "stages": result.stages,
            "history": result.history}


def gpu_job():
    """Child job: whether the Keras backend sees a GPU."""
    from .predictor import gpu_available

    yield Progress(0, 1, "looking for a GPU")
    return gpu_available()


def gpu_device_present() -> bool:
    """A cheap guess, without TensorFlow: could this machine have a GPU for it?

    NVIDIA (``/dev/nvidia*``), ROCm (``/dev/kfd``) or macOS (Metal). Only then is TensorFlow
    asked, in a child process.
    """
    if sys.platform == "darwin":
        return True
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd"))
