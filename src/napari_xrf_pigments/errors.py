"""Exceptions with messages meant for users: what is wrong and what to do."""


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


class Cancelled(XRFPigmentsError):
    """A long job was stopped by its user; nothing half-written was left behind."""
