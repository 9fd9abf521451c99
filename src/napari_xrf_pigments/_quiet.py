"""Native libraries' lines on file descriptor 2, sent nowhere while they start."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 nowhere while the block runs, then restore it.

    TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) are written there before absl is
    initialised, so they ignore ``TF_CPP_MIN_LOG_LEVEL``; printed before an error they would make
    it multi-line. Python's own ``sys.stderr`` is flushed first and works again after.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)
