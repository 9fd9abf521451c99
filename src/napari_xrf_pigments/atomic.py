"""Atomic output files: written under a temporary name, renamed into place when complete.

A full, read-only or failing disk becomes :class:`~napari_xrf_pigments.errors.OutputWriteError`
naming the output; the temporary file is removed and an existing output is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import tempfile
import threading
from pathlib import Path

from .errors import OutputExistsError, OutputWriteError

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

#: Errors of the device rather than of the program, by errno, in the words of the messages.
WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device (free some space, or write to another disk)",
    errno.EDQUOT: "the disk quota is exceeded (free some space, or write to another disk)",
    errno.EROFS: "the file system is read-only (write to another folder)",
    errno.EIO: "input/output error on the device (check the disk, or write to another one)",
    errno.EFBIG: "the file is too large for this file system (write to another disk)",
}


def normal_permissions(path) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private, 0600/0700) the usual permissions."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


def check_output_path(path, *, force: bool = False) -> Path:
    """Refuse an existing output unless ``force``; make sure its folder exists.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    OutputWriteError
        If the folder is on a read-only file system.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; choose another name or pass --force to replace it")
    if not path.parent.exists():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
    if hasattr(os, "statvfs") and os.statvfs(path.parent).f_flag & os.ST_RDONLY:
        raise OutputWriteError(path, WRITE_ERRORS[errno.EROFS], errno.EROFS)
    return path


@contextlib.contextmanager
def naming_write_errors(path):
    """Raise a full, read-only or failing device met in the block as OutputWriteError naming ``path``.

    Other errors pass unchanged; an OutputWriteError from an inner output (a file inside an
    output folder) is named after ``path``.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        raise OutputWriteError(path, WRITE_ERRORS[exc.errno], exc.errno) from exc


@contextlib.contextmanager
def atomic_output(path, *, force: bool = False):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    If the block raises (including cancellation via ``GeneratorExit``), the temporary file is
    removed and an existing ``path`` is left untouched.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    OutputWriteError
        If the disk is full, read-only or failing (see :data:`WRITE_ERRORS`).
    """
    path = check_output_path(path, force=force)
    with naming_write_errors(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        try:
            yield tmp
            # Some devices report a failed write only when the data reach the disk (NFS
            # quotas, I/O errors): learn it here, before the old output is replaced.
            fd = os.open(tmp, os.O_RDWR)  # Windows cannot fsync a read-only descriptor
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            normal_permissions(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class _KeepFirstError(io.FileIO):
    """A file HDF5 writes through (h5py's ``fileobj`` driver) without ever seeing a failure.

    The first OSError of a write is kept in :attr:`error` and the later writes are dropped as if
    they had succeeded; :func:`atomic_hdf5` raises the error once HDF5 has closed the file.
    """

    error: OSError | None = None

    def write(self, data):
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # a raw write may write less than asked
                    done += super().write(view[done:])
            except OSError as exc:
                self.error = exc
        return len(view)

    def truncate(self, size=None):
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as exc:
                self.error = exc
        return size


#: Code HDF5 runs in the middle of its own work (through h5py's ``fileobj`` driver).
_CALLBACK_CODES = frozenset({_KeepFirstError.write.__code__, _KeepFirstError.truncate.__code__})


@contextlib.contextmanager
def _signal_handlers_outside_callbacks():
    """Run the Python handlers of SIGINT and SIGTERM only outside :class:`_KeepFirstError`'s methods.

    A signal that comes while HDF5 computes is handled in the next Python code to run, most
    often the write HDF5 calls back; a KeyboardInterrupt there fails HDF5's write and closing the
    file then crashes the process. Such a signal is sent again 20 ms later instead, until it
    comes outside a callback.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_kill"):
        yield  # Python runs signal handlers in the main thread only
        return
    wrapped = {}

    def handler(signum, frame):
        if frame is not None and frame.f_code in _CALLBACK_CODES:
            main = threading.main_thread().ident
            threading.Timer(0.02, signal.pthread_kill, (main, signum)).start()
            return
        wrapped[signum](signum, frame)

    for signum in (signal.SIGINT, signal.SIGTERM):
        if callable(signal.getsignal(signum)):
            wrapped[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in wrapped.items():
            if signal.getsignal(signum) is handler:  # not replaced meanwhile (e.g. by SIG_IGN)
                signal.signal(signum, previous)


@contextlib.contextmanager
def atomic_hdf5(path, *, force: bool = False):
    """:func:`atomic_output` for an HDF5 file: yield an ``h5py.File`` open for writing.

    HDF5 cannot recover from a failed write: closing the file afterwards crashes the process
    (SIGSEGV in ``H5D__flush_all_cb`` with HDF5 1.14 on a full disk; h5py issues 914, 2160). So
    HDF5 writes through a file that keeps the first error and drops what follows, the error is
    raised, as OutputWriteError, once HDF5 has closed the file, and Ctrl-C or SIGTERM never
    interrupt HDF5's own writes.

    Raises
    ------
    OutputExistsError, OutputWriteError
        As :func:`atomic_output`.
    """
    # lazy: h5py loads only where HDF5 is read or written
    import h5py

    with atomic_output(path, force=force) as tmp, _KeepFirstError(tmp, "r+b") as target, \
            _signal_handlers_outside_callbacks():
        try:
            with h5py.File(target, "w") as f:
                yield f
        except Exception:
            if target.error is None:
                raise
        if target.error is not None:
            raise target.error
