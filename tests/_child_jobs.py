"""Jobs for tests/test_model_isolated.py, importable by the child process (no Qt, no TensorFlow)."""

from __future__ import annotations

import os
import time

from napari_xrf_pigments.errors import (
    CalibrationError,
    OutputExistsError,
    OutputWriteError,
    UnreadableFileError,
)
from napari_xrf_pigments.progress import Progress

RAISED = {
    "calibration": lambda: CalibrationError("the cube's energy axis is not calibrated"),
    "exists": lambda: OutputExistsError("maps.h5 exists; choose another name or pass --force"),
    "unreadable": lambda: UnreadableFileError("scan.h5", "the file is cut short"),
    "write": lambda: OutputWriteError("maps.h5", "no space left on the device", 28),
}


def counting_job(n):
    for i in range(n):
        yield Progress(i, n, "counting")
    return {"pid": os.getpid(), "n": n}


def raising_job(kind):
    yield Progress(0, 1, "about to fail")
    if kind == "foreign":
        raise KeyError("not one of ours")
    raise RAISED[kind]()


def dying_job():
    yield Progress(0, 1, "about to die")
    os._exit(3)


def sleeping_job(seconds):
    yield Progress(0, 1, "sleeping")
    time.sleep(seconds)
    return os.getpid()
