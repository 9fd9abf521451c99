"""Running core jobs from widgets: one thread worker at a time, napari progress, cancel.

A core job is a generator yielding :class:`~napari_xrf_pigments.progress.Progress` and returning
its result (:mod:`napari_xrf_pigments.progress`). :class:`JobRunner` runs one in a napari
thread worker, mirrors its progress in a ``napari.utils.progress`` bar (the activity dock) and
in a callback for the widget's status line, and stops it on Cancel or when the viewer window
closes: the job is *closed* in its own thread, so its ``finally`` blocks remove worker
processes and partial output. A second start while a job runs is refused with a message.
Results and errors reach the widget on the main thread only (Qt queued signals).
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import logging
import weakref

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils.notifications import notification_manager, show_error, show_info
from qtpy.QtCore import QEvent, QObject, QTimer

from ..errors import XRFPigmentsError

log = logging.getLogger(__name__)


def error_message(exc: BaseException) -> str:
    """A one-line message for a user: ours as written, others with their type."""
    if isinstance(exc, XRFPigmentsError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobWorker(GeneratorWorker):
    """A generator worker that closes its generator when it stops, in the worker thread.

    superqt's worker just stops iterating on ``quit()``; closing runs the job's cleanup
    (``GeneratorExit`` at its current ``yield``) at once instead of whenever it is collected.
    It also reports a ``RuntimeError`` raised by the job (e.g. ``FitError``) as an error:
    superqt would take it for "worker deleted" and never emit ``finished``.
    """

    def work(self):
        try:
            while True:
                if self.abort_requested:
                    self.aborted.emit()
                    return None
                try:
                    step = next(self._gen)
                except StopIteration as stop:
                    return stop.value
                self.yielded.emit(step)
        finally:
            self._gen.close()


class GuiThreadCollector:
    """Python's cyclic garbage collection on the GUI thread only, while jobs run in threads.

    An automatic collection runs in whichever thread happens to pass the allocation threshold.
    In a job's worker thread it may free Qt objects that the GUI thread made and still uses
    (style options, palettes held in reference cycles by napari's painting code), a known
    cause of random crashes in Qt applications. While any job runs, automatic
    collection is therefore off, and a timer on the GUI thread collects with Python's own
    thresholds instead (pyqtgraph's ``GarbageCollector`` does the same).

    The objects that exist when the first job starts (napari's heap, about 300,000) are frozen
    (:func:`gc.freeze`) until the last job ends: a full collection walks all of them, 150-290 ms
    on the GUI thread while results land, to free almost nothing. Cycles among them that die
    meanwhile are collected after the jobs, by the next full collection, as they would be.
    """

    #: How often the GUI thread checks the allocation counts, ms.
    INTERVAL_MS = 250

    def __init__(self):
        self.jobs = 0
        self.held = False  # automatic collection is off (and the heap frozen)
        self.was_enabled = True
        self.froze = False
        self.landing = 0  # results being shown: collect only the youngest generation
        self.timer = None

    def acquire(self) -> None:
        """A job starts (GUI thread)."""
        self.jobs += 1
        if self.held:
            return
        self.held = True
        self.was_enabled = gc.isenabled()
        gc.disable()
        # Unless someone else froze it: unfreezing would undo theirs too.
        self.froze = gc.get_freeze_count() == 0
        if self.froze:
            gc.freeze()
        if self.timer is None:
            self.timer = QTimer()
            self.timer.setInterval(self.INTERVAL_MS)
            self.timer.timeout.connect(self.collect)
        self.timer.start()

    def release(self) -> None:
        """A job has ended (GUI thread); the last one gives automatic collection back.

        One timer interval later: the collection then owed would otherwise fall in the same
        turn of the event loop as the window's repaint with the job's new layers.
        """
        if self.jobs == 0:
            return
        self.jobs -= 1
        if self.jobs == 0:
            QTimer.singleShot(self.INTERVAL_MS, self._give_back)

    def _give_back(self) -> None:
        if self.jobs or not self.held:
            return  # a new job started meanwhile
        self.held = False
        self.timer.stop()
        self.collect()
        if self.froze:  # back into the oldest generation; that collects nothing by itself
            gc.unfreeze()
        if self.was_enabled:
            gc.enable()

    @contextlib.contextmanager
    def only_young(self):
        """While a job's result is shown, collect only the youngest generation.

        The older ones hold what the new layers made (tens of thousands of objects each): a
        collection of them took 80 ms on top of a layer's own 80-190 ms. They are collected
        once the job is over.
        """
        self.landing += 1
        try:
            yield
        finally:
            self.landing -= 1

    def collect(self) -> None:
        """Collect the oldest generation whose count (and every younger one's) is past its
        threshold, as an automatic collection would."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        generation = -1
        for g in range(1 if self.landing else 3):
            if not thresholds[g] or counts[g] <= thresholds[g]:
                break
            generation = g
        if generation >= 0:
            gc.collect(generation)


#: One for the process: jobs of every widget share Python's collector.
GUI_THREAD_GC = GuiThreadCollector()


def _drive(factory, args, kwargs):
    # The job is built here, in the worker thread: building may be slow (loading a model,
    # reading a PyMca configuration) and must not block the GUI.
    return (yield from factory(*args, **kwargs))


def _release(worker):
    """Disconnect a finished worker's signals.

    superqt keeps a finished worker in its registry until a later event, and its connections
    (to the widget, to napari's task list) must not keep a closed viewer alive.
    """
    for name in ("started", "yielded", "returned", "errored", "warned", "aborted", "finished"):
        try:
            getattr(worker, name).disconnect()
        except (TypeError, RuntimeError):  # nothing connected, or already deleted
            pass


def _without_repaints(steps, window):
    """The steps of showing a result, with ``window`` not repainted until they are done.

    Each new layer would otherwise repaint the canvas and every row of napari's layer list
    (each row's icon is an SVG rendered again), which costs more than adding the layer. Events
    are still handled between steps; the window repaints once, at the end, or when the steps
    fail or are stopped. Meanwhile only Python's youngest generation is collected.
    """
    if window is not None:
        window.setUpdatesEnabled(False)
    try:
        with GUI_THREAD_GC.only_young():
            yield from steps
    finally:
        if window is not None:
            try:
                window.setUpdatesEnabled(True)
            except RuntimeError:  # the window is gone
                pass


class _CloseWatcher(QObject):
    """Cancels the runner's job when the window holding the widget closes for good."""

    def __init__(self, runner, window):
        # A Qt child of the window holding no Python reference to it: a strong one would keep
        # a closed viewer alive (window -> child -> window).
        super().__init__(window)
        self._runner = weakref.ref(runner)

    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Close:
            # The close may still be refused (napari asks about running tasks): decide once the
            # event has been handled. Not a slot of this object: it dies with the window; and
            # the window is held weakly, a pending check must not keep a closed viewer alive.
            runner, window = self._runner, weakref.ref(obj)
            QTimer.singleShot(0, lambda: _after_close(runner, window))
        return False


def _after_close(runner_ref, window_ref):
    runner, window = runner_ref(), window_ref()
    if runner is None:
        return
    try:
        still_open = window is not None and window.isVisible()
    except RuntimeError:  # the window is already deleted
        still_open = False
    if not still_open:
        runner.cancel(reason="the viewer was closed")


class JobRunner:
    """Runs one job at a time for a widget.

    Parameters
    ----------
    widget : QWidget
        The widget's native Qt widget: its window is watched, so closing the viewer cancels
        the job.
    title : str
        Shown in the progress bar and in messages (``"Element maps"``).
    on_state : callable, optional
        ``on_state(running: bool)``: enable/disable the widget's Run and Cancel buttons.
    on_status : callable, optional
        ``on_status(text)``: the widget's status line.
    show_progress : bool
        Show a progress bar in napari's activity dock (not for quick background checks).
    """

    def __init__(self, widget, title: str, *, on_state=None, on_status=None, show_progress=True):
        self.widget = widget
        self.title = title
        self.show_progress = show_progress
        self.on_state = on_state
        self.on_status = on_status
        self.worker = None
        self.pbar = None
        self.cancel_reason = None
        self._returned = False
        self._description = title
        self._showing = None
        self._stepping = False
        self._holds_gc = False
        self._watchers = weakref.WeakKeyDictionary()

    @property
    def running(self) -> bool:
        """True from start until the result has been shown (or the job failed or stopped)."""
        return self.worker is not None or self._showing is not None

    def start(self, factory, *args, on_returned, description: str | None = None, **kwargs):
        """Run ``factory(*args, **kwargs)`` (a job) in a thread worker.

        ``on_returned(result)`` runs on the main thread when the job finished without error
        and was not cancelled. If it returns a generator, that is advanced one step per turn
        of the event loop (e.g. one layer added per step: the GUI stays responsive while many
        layers are added), and the runner counts as running until it is exhausted.
        Returns the worker, or None when a job is already running.
        """
        if self.running:
            show_info(f"{self.title} is already running: wait for it, or press Cancel first.")
            return None
        description = description or self.title
        worker = create_worker(
            _drive,
            factory,
            args,
            kwargs,
            _worker_class=JobWorker,
            _start_thread=False,
            # Errors are ours to show: connecting "errored" stops superqt re-raising them.
            _connect={"errored": self._on_errored},
            # napari's progress bar (its activity dock, from when the worker starts); total 0:
            # the steps' own totals are set as they come (_on_yielded).
            _progress={"total": 0, "desc": description} if self.show_progress else None,
        )
        self.worker = worker
        self.cancel_reason = None
        self._returned = False
        self._description = description
        self._watch_window()
        self.pbar = getattr(worker, "pbar", None)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(lambda result: self._on_returned(on_returned, result))
        worker.warned.connect(self._on_warned)
        worker.finished.connect(self._on_finished)
        self._set_state(True)
        self._status(f"{description}: starting…")
        GUI_THREAD_GC.acquire()  # given back once the result has been shown (_ended)
        self._holds_gc = True
        worker.start()
        return worker

    def cancel(self, reason: str = "cancelled") -> bool:
        """Ask the running job to stop after its current step; False if none runs."""
        if self.worker is None:
            if self._showing is not None:  # only the result is still being shown: stop that
                self._showing.close()
                self._showing = None
                self._status(f"{self._description}: stopped ({reason}).")
                self._ended()
                return True
            return False
        self.cancel_reason = reason
        self.worker.quit()
        self._status(f"{self._description}: stopping ({reason})…")
        return True

    # -- handlers (main thread) ---------------------------------------------------------------

    def _window(self):
        try:
            return self.widget.window()
        except RuntimeError:  # the widget is gone
            return None

    def _watch_window(self):
        window = self._window()
        if window is None or window in self._watchers:
            return
        watcher = _CloseWatcher(self, window)
        window.installEventFilter(watcher)
        self._watchers[window] = watcher

    def _on_yielded(self, step):
        if self._returned or not hasattr(step, "done"):
            return
        total = int(step.total or 0)
        # The status first: napari's progress bar processes pending events when it is updated,
        # so later steps, the result and the end of the job may be handled inside the calls
        # below, and nothing may be written after them.
        if step.message:
            percent = f" {100 * step.done // total}%" if total else ""
            self._status(f"{self._description}: {step.message}{percent}")
        pbar = self.pbar
        if pbar is None:
            return
        if pbar.total != total:
            pbar.total = total
        if self.pbar is pbar:
            pbar.update(int(step.done) - pbar.n)
        if self.pbar is pbar and step.message:
            pbar.set_description(f"{self._description}: {step.message}")

    def _on_returned(self, callback, result):
        self._returned = True  # a late progress step must not overwrite the result's status
        try:
            shown = callback(result)
        except Exception as exc:  # noqa: BLE001 - never raise into Qt's event loop
            self._show_failed(exc)
            return
        if inspect.isgenerator(shown):
            self._showing = _without_repaints(shown, self._window())
            self._step_showing()

    def _step_showing(self):
        if self._showing is None:
            return
        if self._stepping:
            # Re-entered from inside a step (napari processes events while adding a layer).
            QTimer.singleShot(1, self._step_showing)
            return
        self._stepping = True
        try:
            next(self._showing)
        except StopIteration:
            self._showing = None
        except Exception as exc:  # noqa: BLE001
            self._showing = None
            self._show_failed(exc)
        finally:
            self._stepping = False
        if self._showing is not None:
            QTimer.singleShot(1, self._step_showing)
        elif self.worker is None:
            self._ended()

    def _show_failed(self, exc):
        log.exception("%s: showing the result failed", self.title, exc_info=exc)
        show_error(f"{self.title}: {error_message(exc)}")
        self._status(f"failed: {error_message(exc)}")

    def _on_errored(self, exc):
        if not isinstance(exc, XRFPigmentsError):
            log.error("%s failed", self.title, exc_info=(type(exc), exc, exc.__traceback__))
        message = error_message(exc)
        show_error(f"{self.title}: {message}")
        self._status(f"failed: {message}")

    def _on_warned(self, args):
        notification_manager.receive_warning(*args)

    def _on_finished(self):
        worker, self.worker = self.worker, None
        if worker is not None:
            # Later, once every slot of this signal has run (disconnecting now would skip them).
            QTimer.singleShot(0, lambda: _release(worker))
        if self.pbar is not None:
            self.pbar.close()
        self.pbar = None
        if self.cancel_reason is not None:
            self._status(f"{self._description}: stopped ({self.cancel_reason}).")
        if self._showing is None:
            self._ended()

    def _ended(self):
        """The job has finished and its result has been shown (or it failed or stopped)."""
        if self._holds_gc:
            self._holds_gc = False
            GUI_THREAD_GC.release()
        self._set_state(False)

    def _set_state(self, running):
        if self.on_state is not None:
            try:
                self.on_state(running)
            except RuntimeError:  # the widget is gone (viewer closed during the run)
                pass

    def _status(self, text):
        if self.on_status is not None:
            try:
                self.on_status(text)
            except RuntimeError:
                pass
