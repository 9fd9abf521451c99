"""The child process that runs model jobs for napari (no Qt, no TensorFlow needed)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from napari_xrf_pigments.errors import (
    CalibrationError,
    OutputExistsError,
    OutputWriteError,
    UnreadableFileError,
)
from napari_xrf_pigments.model import isolated
from napari_xrf_pigments.progress import Progress, run

JOBS = "_child_jobs"


@pytest.fixture(autouse=True)
def fresh_server():
    isolated.shutdown()
    yield
    isolated.shutdown()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone too
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_progress_and_result_come_back_and_the_child_stays_up():
    steps = []
    job = isolated.isolated(f"{JOBS}:counting_job", 3)
    result = None
    try:
        while True:
            step = next(job)
            if isinstance(step, Progress):
                steps.append(step.done)
    except StopIteration as stop:
        result = stop.value
    assert steps == [0, 1, 2] and result["n"] == 3 and result["pid"] != os.getpid()
    assert run(isolated.isolated(f"{JOBS}:counting_job", 1))["pid"] == result["pid"]  # reused


@pytest.mark.parametrize("kind, cls, attributes", [
    ("calibration", CalibrationError, {}),
    ("exists", OutputExistsError, {}),
    ("unreadable", UnreadableFileError, {"path": "scan.h5", "reason": "the file is cut short"}),
    ("write", OutputWriteError, {"path": "maps.h5", "errno": 28}),
])
def test_the_childs_errors_keep_their_class_message_and_attributes(kind, cls, attributes):
    from _child_jobs import RAISED

    with pytest.raises(cls) as raised:
        run(isolated.isolated(f"{JOBS}:raising_job", kind))
    assert type(raised.value) is cls and str(raised.value) == str(RAISED[kind]())
    for name, value in attributes.items():
        assert getattr(raised.value, name) == value


def test_a_foreign_error_is_child_process_failed_with_the_childs_traceback():
    with pytest.raises(isolated.ChildProcessFailed, match="KeyError: 'not one of ours'") as raised:
        run(isolated.isolated(f"{JOBS}:raising_job", "foreign"))
    assert "raising_job" in str(raised.value)  # the child's traceback


def test_a_dying_child_is_a_clear_error_and_the_next_job_starts_a_new_one():
    with pytest.raises(isolated.ChildProcessFailed, match="exit code 3"):
        run(isolated.isolated(f"{JOBS}:dying_job"))
    assert run(isolated.isolated(f"{JOBS}:counting_job", 1))["n"] == 1


def test_a_connection_reset_by_the_child_is_the_same_clear_error(monkeypatch):
    # A child dying while it sends can reset the pipe instead of closing it.
    def reset(connection):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(isolated, "_recv", reset)
    with pytest.raises(isolated.ChildProcessFailed, match="stopped unexpectedly"):
        run(isolated.isolated(f"{JOBS}:counting_job", 1))


def test_a_child_that_cannot_start_is_its_own_error_and_the_next_job_starts_one(monkeypatch):
    # As in a worker of an unguarded script: multiprocessing refuses to start a process there.
    refusal = RuntimeError("An attempt has been made to start a new process before the current "
                           "process has finished its bootstrapping phase.")
    real_start = isolated._SPAWN.Process.start

    def refuse(process):
        raise refusal

    monkeypatch.setattr(isolated._SPAWN.Process, "start", refuse)
    for _ in range(2):  # the second job gets the same error, not "can only join ..."
        with pytest.raises(RuntimeError) as raised:
            run(isolated.isolated(f"{JOBS}:counting_job", 1))
        assert raised.value is refusal
    monkeypatch.setattr(isolated._SPAWN.Process, "start", real_start)
    assert run(isolated.isolated(f"{JOBS}:counting_job", 1))["n"] == 1


def test_cancel_while_running_stops_the_child():
    job = isolated.isolated(f"{JOBS}:sleeping_job", 60)
    while not isinstance(next(job), Progress):
        pass
    pid = isolated._SERVER.process.pid
    assert _alive(pid)
    job.close()  # what a runner's cancel does
    assert not _alive(pid) and isolated._SERVER.process is None
    assert run(isolated.isolated(f"{JOBS}:counting_job", 1))["pid"] != pid


@pytest.mark.slow  # ~1.5 s: waits for a running job
def test_cancel_while_queued_leaves_the_running_job_alone():
    first = {}
    def first_job():
        first["pid"] = run(isolated.isolated(f"{JOBS}:sleeping_job", 1.5))

    thread = threading.Thread(target=first_job)
    thread.start()
    deadline = time.monotonic() + 60
    while not isolated._SERVER.lock.locked():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    queued = isolated.isolated(f"{JOBS}:counting_job", 1)
    assert next(queued) is None  # waiting for the server
    queued.close()
    thread.join(60)
    assert first["pid"] == isolated._SERVER.process.pid  # finished in the same child


def test_an_idle_child_exits_by_itself(monkeypatch):
    monkeypatch.setattr(isolated, "IDLE_EXIT_S", 0.5)
    run(isolated.isolated(f"{JOBS}:counting_job", 1))
    process = isolated._SERVER.process
    process.join(30)
    assert process.exitcode == 0


def test_portable_cube_specs(tmp_path):
    import numpy as np

    from napari_xrf_pigments.cube import XRFCube
    from napari_xrf_pigments.errors import InvalidDataError
    from napari_xrf_pigments.io import open_cube, write_cube

    cube = XRFCube.from_array(np.ones((2, 3, 64), np.uint16), zero=0.0, gain=0.02)
    assert isolated.open_portable(isolated.portable_cube(cube)) is cube  # in memory: sent whole
    write_cube(tmp_path / "c.h5", cube)
    opened = open_cube(tmp_path / "c.h5").with_calibration(0.1, 0.02)  # calibrated in napari
    spec = isolated.portable_cube(opened)
    assert set(spec) == {"path", "energy", "shape"}  # a file: opened again in the child
    again = isolated.open_portable(spec)
    assert again.energy == opened.energy and again.shape == cube.shape
    with pytest.raises(InvalidDataError, match="changed on disk"):
        isolated.open_portable({**spec, "shape": (9, 9, 64)})
