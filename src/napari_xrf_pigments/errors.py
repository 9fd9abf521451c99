"""Exceptions with messages meant for users: what is wrong and what to do."""
import sys
from pathlib import Path


class XRFPigmentsError(Exception):
    """Base class of every error this package raises on purpose."""


class UnreadableFileError(XRFPigmentsError, ValueError):
    """A file is missing, truncated, of a foreign format, or inconsistent."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read {self.path}: {reason}")


class CalibrationError(XRFPigmentsError, ValueError):
    """An energy calibration is missing or invalid."""


class InvalidDataError(XRFPigmentsError, ValueError):
    """Counts or parameters hold values that cannot be used (NaN, negative, empty...)."""


class OutputExistsError(XRFPigmentsError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputWriteError(XRFPigmentsError, OSError):
    """An output could not be written: the disk is full, read-only or failing.

    The message names the output (not its temporary file) and what to do; ``errno`` is the
    system's error number.
    """

    def __init__(self, path, reason, errno=None):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot write {self.path}: {reason}")
        self.errno = errno


class ClusterError(XRFPigmentsError, RuntimeError):
    """A dask.distributed cluster cannot be reached, or lost the work (``--scheduler``)."""


class Cancelled(XRFPigmentsError):
    """A long job was stopped by its user; nothing half-written was left behind."""


def unguarded_script_hint() -> str:
    """What to add when worker processes may have died re-running the user's script, or "".

    Spawned processes import the main script again; without ``if __name__ == "__main__":`` it
    runs its fit or prediction in each of them, which Python refuses, and only the worker's
    stderr says so.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is not None or not path:
        return ""  # python -m, an interactive session or a notebook: nothing is re-run
    return (f"running a script? Each worker process imports {Path(path).name} again: put the "
            "script's code under `if __name__ == \"__main__\":`")
