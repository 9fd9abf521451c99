"""Jobs in widgets: Python's garbage collection stays on the GUI thread while they run."""

from __future__ import annotations

import gc
import threading
import time

import pytest

pytestmark = pytest.mark.gui


@pytest.fixture
def collections_by_thread():
    """Thread ids of the collections that freed something, while the test runs."""
    threads = []

    def record(phase, info):
        if phase == "stop" and info["collected"]:
            threads.append(threading.get_ident())

    gc.callbacks.append(record)
    yield threads
    gc.callbacks.remove(record)


def make_cycles(seconds: float) -> None:
    """Allocate reference cycles for ``seconds`` (enough to pass every GC threshold)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(5000):
            a = {}
            a["self"] = a


def test_a_job_thread_never_collects_the_gui_thread_collects_for_it(qtbot, collections_by_thread):
    from napari_xrf_pigments._napari._jobs import GuiThreadCollector

    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    collector = GuiThreadCollector()
    collector.acquire()
    collector.acquire()  # a second job
    try:
        assert not gc.isenabled()
        # What existed before the jobs is not walked by the collections meanwhile.
        assert gc.get_freeze_count() > 0
        worker = threading.Thread(target=make_cycles, args=(1.0,))
        worker.start()
        qtbot.waitUntil(lambda: not worker.is_alive(), timeout=10_000)
        qtbot.wait(3 * GuiThreadCollector.INTERVAL_MS)
        # Every collection that freed the worker's cycles ran on this (the GUI) thread.
        assert collections_by_thread
        assert set(collections_by_thread) == {threading.get_ident()}
        collector.release()
        qtbot.wait(2 * GuiThreadCollector.INTERVAL_MS)
        assert not gc.isenabled()  # the other job still runs
    finally:
        collector.release()
    # Given back one interval later (not in the turn that repaints the job's layers).
    assert not gc.isenabled()
    qtbot.waitUntil(gc.isenabled, timeout=2_000)
    assert gc.get_freeze_count() == 0
    assert not collector.timer.isActive()
    collector.release()  # one release too many changes nothing
    assert gc.isenabled()


def test_a_job_that_starts_before_the_give_back_keeps_collection_on_the_gui_thread(qtbot):
    from napari_xrf_pigments._napari._jobs import GuiThreadCollector

    collector = GuiThreadCollector()
    collector.acquire()
    collector.release()
    collector.acquire()  # before the first job's give-back has run
    qtbot.wait(2 * GuiThreadCollector.INTERVAL_MS)
    assert not gc.isenabled()
    assert collector.timer.isActive()
    collector.release()
    qtbot.waitUntil(gc.isenabled, timeout=2_000)
    assert gc.get_freeze_count() == 0


def test_without_it_a_thread_collects_itself(collections_by_thread):
    # The hazard the collector removes: automatic collection in whichever thread allocates.
    worker = threading.Thread(target=make_cycles, args=(0.5,))
    worker.start()
    worker.join()
    assert worker.ident in collections_by_thread


def test_a_widget_job_turns_automatic_collection_off_until_it_ends(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QWidget

    from napari_xrf_pigments._napari._jobs import GUI_THREAD_GC, JobRunner
    from napari_xrf_pigments.progress import Progress

    viewer = make_napari_viewer()
    seen = {}

    def job():
        seen["enabled_during"] = gc.isenabled()
        yield Progress(1, 1, "done")
        return 42

    widget = QWidget()
    qtbot.addWidget(widget)
    viewer.window.add_dock_widget(widget)
    runner = JobRunner(widget, "test job")
    runner.start(job, on_returned=lambda result: seen.setdefault("result", result))
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert seen == {"enabled_during": False, "result": 42}
    assert GUI_THREAD_GC.jobs == 0
    qtbot.waitUntil(gc.isenabled, timeout=2_000)


def _docked_runner(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QWidget

    from napari_xrf_pigments._napari._jobs import JobRunner

    viewer = make_napari_viewer()
    widget = QWidget()
    viewer.window.add_dock_widget(widget)
    return JobRunner(widget, "test job"), widget.window()


def _quick_job():
    from napari_xrf_pigments.progress import Progress

    yield Progress(1, 1, "done")
    return 3


def test_the_window_repaints_once_after_the_result_is_shown(make_napari_viewer, qtbot):
    runner, window = _docked_runner(make_napari_viewer, qtbot)
    during = []

    def show(n):
        for _ in range(n):  # e.g. one layer per step
            during.append((window.updatesEnabled(), gc.isenabled()))
            yield

    runner.start(_quick_job, on_returned=show)
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    # Collection stays on the GUI thread's timer until the result has been shown.
    assert during == [(False, False)] * 3
    assert window.updatesEnabled()
    qtbot.waitUntil(gc.isenabled, timeout=2_000)


@pytest.mark.parametrize("how", ["cancel", "error"])
def test_the_window_repaints_again_when_showing_stops(make_napari_viewer, qtbot, how,
                                                     monkeypatch, caplog):
    from napari_xrf_pigments._napari import _jobs

    shown_errors = []
    monkeypatch.setattr(_jobs, "show_error", shown_errors.append)
    runner, window = _docked_runner(make_napari_viewer, qtbot)
    steps = []

    def show(n):
        while True:
            steps.append(window.updatesEnabled())
            if how == "error" and len(steps) == 2:
                raise ValueError("a layer could not be added")
            yield

    runner.start(_quick_job, on_returned=show)
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=10_000)
    if how == "cancel":
        assert runner.cancel()
    qtbot.waitUntil(lambda: not runner.running, timeout=10_000)
    assert steps[:2] == [False, False]
    assert window.updatesEnabled()
    assert shown_errors == (["test job: ValueError: a layer could not be added"]
                            if how == "error" else [])
    # The logged traceback holds the window (through the frames): napari's fixture would call
    # the viewer leaked.
    caplog.clear()
