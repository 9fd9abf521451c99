"""Shared fixtures.

Real instrument data lives in ``../shared/data/real`` beside the project (never copied into the
repository). Tests that need it use the ``real_data`` fixture: it skips with a reason in a
user's clone without ``../shared``, and fails in CI (``CI=true``), where the data must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("XRF_PIGMENTS_REAL_DATA", PROJECT_ROOT.parent / "shared" / "data" / "real"))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Folder of real XRF files (see its README.txt)."""
    if not (REAL_DATA / "README.txt").is_file():
        message = f"real XRF data not found at {REAL_DATA} (set XRF_PIGMENTS_REAL_DATA)"
        if in_ci():
            pytest.fail(message + "; CI must run the real-data tests")
        pytest.skip(message)
    return REAL_DATA


# TensorFlow's bundled LLVM and the libLLVM that Mesa's OpenGL driver loads crash at interpreter
# teardown when both live in one process ("free(): invalid pointer", exit code 134). The plugin
# keeps them apart (in napari, TensorFlow runs in a child process: model/isolated.py), and the
# README runs GUI and non-GUI tests as two processes; should a run still hold both, it ends here,
# after pytest has reported, with pytest's own exit status instead of the crash.
_EXIT_STATUS = None


def pytest_sessionfinish(session, exitstatus):
    global _EXIT_STATUS
    _EXIT_STATUS = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    import sys

    if _EXIT_STATUS is not None and "tensorflow" in sys.modules and "vispy.gloo" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS)
