"""Atomic output files: written under a temporary name, renamed into place when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import OutputExistsError

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def normal_permissions(path) -> None:
    """Give a file or folder made by mkstemp/mkdtemp (private, 0600/0700) the usual permissions."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_UMASK)


def check_output_path(path, *, force: bool = False) -> Path:
    """Refuse an existing output unless ``force``; make sure its folder exists.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists; choose another name or pass --force to replace it")
    if not path.parent.exists():
        raise FileNotFoundError(f"the folder {path.parent} does not exist")
    return path


@contextlib.contextmanager
def atomic_output(path, *, force: bool = False):
    """Yield a temporary path beside ``path``; rename it to ``path`` only on success.

    If the block raises (including cancellation via ``GeneratorExit``), the temporary file is
    removed and an existing ``path`` is left untouched.
    """
    path = check_output_path(path, force=force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        normal_permissions(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
