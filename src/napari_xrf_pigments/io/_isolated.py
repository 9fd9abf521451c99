"""Native code that can crash or hang on damaged files runs first in a child process.

RosettaSciIO's compiled Bruker decoder (``rsciio.bruker.unbcf_fast``) trusts the offsets and
lengths stored in a ``.bcf``: one changed byte can make it read or write outside its buffers
(SIGSEGV, SIGBUS) and kill the process that called it -- napari with the user's work, or a fit
half done. The spectra of a ``.bcf`` are therefore decoded here, in a fresh interpreter: the
counts come back through a pipe into an array allocated by the caller, and a crash, a Python
error or a decoder that never finishes becomes one :class:`UnreadableFileError` naming the file
("damaged data: ...").

Run as ``python -m napari_xrf_pigments.io._isolated bcf FILE INDEX DTYPE ROWS COLS CHANNELS``: the
counts are written to stdout as raw bytes in that dtype; errors are one line on stderr, exit 3.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import UnreadableFileError
from . import hdf5

_EXIT_ERROR = 3


def _reason(exc: BaseException) -> str:
    """The decoder's error in words (zlib's "Error -3 while decompressing" is a damaged block)."""
    if isinstance(exc, zlib.error):
        return "a compressed block of the spectra does not decompress"
    if isinstance(exc, (StopIteration, EOFError)):
        return "the spectra end before the map does (the file is cut short or damaged)"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the spectra"
    if isinstance(exc, (EOFError, IndexError, ValueError, KeyError, OverflowError, TypeError)):
        text = " ".join(str(exc).split())[:200]
        return f"the spectra are inconsistent ({type(exc).__name__}{': ' + text if text else ''})"
    text = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def _can_spawn() -> bool:
    """Whether ``sys.executable -m`` starts a Python (not so in frozen, PyInstaller-style apps)."""
    return bool(sys.executable) and not getattr(sys, "frozen", False)


def _timeout_s(path: Path) -> float:
    """Generous: the compiled decoder reads tens of MB/s; a damaged file may loop forever."""
    return 120.0 + 10.0 * path.stat().st_size / 2**20


def decode_bcf(path, index: int, shape: tuple, dtype) -> np.ndarray:
    """The spectrum image ``index`` of a Bruker ``.bcf``, decoded in a child process.

    Parameters
    ----------
    path : str or Path
        The ``.bcf``.
    index : int
        Hypermap index (rsciio's ``def_index`` for the first).
    shape : tuple of int
        (rows, columns, channels) the header declares.
    dtype : numpy dtype
        Counts type the header declares.

    Returns
    -------
    ndarray, shape ``shape``

    Raises
    ------
    UnreadableFileError
        "damaged data: ..." when the decoder crashes, fails, stops early or does not finish.
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if not _can_spawn():  # a frozen app cannot run `python -m`: decode here (unprotected)
        # lazy: rosettasciio is heavy
        from rsciio.bruker._api import BCF_reader

        try:
            data = BCF_reader(str(path)).parse_hypermap(index=index, lazy=False)
        except Exception as exc:
            raise UnreadableFileError(path, f"damaged data: {_reason(exc)}") from exc
        return np.ascontiguousarray(data, dtype=dtype).reshape(shape)
    out = np.empty(shape, dtype=dtype)
    args = [sys.executable, "-m", __name__, "bcf", str(path), str(index), dtype.str, *map(str, shape)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONFAULTHANDLER", None)
    timeout = _timeout_s(path)
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          stdin=subprocess.DEVNULL) as proc:
        # A decoder looping on damaged data never writes: the pipe read below would wait
        # forever, so a timer kills the child (the read then ends).
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = 0
        try:
            while got < len(view):
                n = proc.stdout.readinto(view[got:])
                if not n:
                    break
                got += n
            stderr = proc.stderr.read().decode("utf-8", "replace")
            rc = proc.wait()
        except BaseException:
            proc.kill()  # Ctrl-C / SIGTERM while decoding: the child goes with us
            proc.wait()
            raise
        finally:
            timer.cancel()
    if timed_out.is_set():
        raise UnreadableFileError(
            path, f"damaged data: decoding the spectra did not finish in {timeout:.0f} s"
        )
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        raise UnreadableFileError(
            path, f"damaged data: the Bruker spectrum decoder crashed on it ({name}); "
                  "the file is corrupt or cut short"
        )
    if rc != 0:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        reason = lines[-1] if lines and rc == _EXIT_ERROR else f"the decoder stopped (exit code {rc})"
        raise UnreadableFileError(path, f"damaged data: {reason}")
    if got != len(view):
        raise UnreadableFileError(path, "damaged data: the decoder returned fewer spectra than declared")
    return out


#: Longest a file's HDF5 structure may take to read in the probe (a damaged heap or B-tree can
#: make the HDF5 library loop forever inside one call, holding the interpreter).
PROBE_TIMEOUT_S = 15.0
_probe_cache: dict = {}


def probe_hdf5(path, timeout: float | None = None) -> str | None:
    """Why reading ``path``'s HDF5 structure hangs or crashes, or None when it finishes.

    The HDF5 library, given damaged metadata, can loop forever inside a single call (an
    attribute read) or crash; neither can be stopped from Python in the same process. So the
    reader's whole structure pass (the same calls sniffing and opening make, plus the three
    sample spectra) runs once in a child process with a timeout; only when it finishes does the
    caller make the same calls itself. Results are cached per file version (path, size, mtime).
    """
    path = Path(path)
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    if not _can_spawn():
        return None
    key = _version(path)
    if key is None:
        return None
    if key in _probe_cache:
        return _probe_cache[key]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONFAULTHANDLER", None)
    result = None
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, "h5probe", str(path)], env=env, check=False,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            result = f"the HDF5 file is damaged (reading its structure crashes the HDF5 library: {name})"
    except subprocess.TimeoutExpired:
        result = (f"the HDF5 file is damaged (reading its structure did not finish in {timeout:.0f} s; "
                  "the HDF5 library loops on it)")
    _remember(key, result)
    return result


def _remember(key: tuple, verdict: str | None) -> None:
    if len(_probe_cache) > 256:
        _probe_cache.clear()
    _probe_cache[key] = verdict


def _version(path: Path) -> tuple | None:
    """What names one version of a file: resolved path, size, mtime and inode (None: no file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def probed_version(path) -> tuple | None:
    """The version of ``path`` whose probe finished in this process (None: not probed, or
    damaged), for another process to take up with :func:`trust_probe`."""
    key = _version(Path(path))
    return key if key is not None and key in _probe_cache and _probe_cache[key] is None else None


def trust_probe(version: tuple) -> None:
    """Take another process's finished probe of a file version (:func:`probed_version`) as
    this process's own: a cluster's workers need not start a child each for a cube the client
    has probed. A file changed since is another version, and is probed again."""
    _remember(tuple(version), None)


def _child_h5probe(path: str) -> int:
    warnings.simplefilter("ignore")

    hdf5.PROBE_IN_CHILD = False  # this is the child
    try:
        hdf5.structure_pass(Path(path))
    except Exception:  # noqa: BLE001, S110 - errors are the parent's to report; hangs/crashes are ours
        pass
    return 0


def _child_bcf(path: str, index: str, dtype: str, *shape: str) -> int:
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)  # rsciio's log lines would fill the stderr pipe
    shape = tuple(int(s) for s in shape)
    try:
        from rsciio.bruker._api import BCF_reader

        bcf = BCF_reader(path)
        data = bcf.parse_hypermap(index=int(index), lazy=False)
        data = np.ascontiguousarray(data, dtype=np.dtype(dtype))
        if data.shape != shape:
            raise ValueError(f"decoded shape {data.shape} differs from the header's {shape}")
    except BaseException as exc:  # noqa: BLE001 - one line for the parent
        sys.stderr.write(_reason(exc) + "\n")
        return _EXIT_ERROR
    sys.stdout.buffer.write(memoryview(data.reshape(-1).view(np.uint8)))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - runs in the child
    if len(sys.argv) >= 3 and sys.argv[1] == "bcf":
        sys.exit(_child_bcf(*sys.argv[2:]))
    if len(sys.argv) == 3 and sys.argv[1] == "h5probe":
        sys.exit(_child_h5probe(sys.argv[2]))
    sys.exit(2)
