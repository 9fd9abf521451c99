"""#15's crash trial (two cubes of very different pixel sizes, maps, a prediction, truth shapes,
the finetune widget docked) runs to its end, in a process of its own so that a native crash fails
the test.

The cause of the trial's crash: TensorFlow in napari's process. Both bundle LLVM, and the
symbols of whichever loads first are used by the other: with the network loaded into the
scenario's process it crashes every time, in Mesa's llvmpipe (``swrast_dri.so`` calling
``llvm::FixedVectorType::get``, found in ``libtensorflow_framework.so.2``) when TensorFlow came
first, or in TensorFlow's LLVM initialisers when napari's OpenGL came first. The widgets run
the network in a child process (``model/isolated.py``); this test keeps it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui


def test_two_cubes_maps_and_the_finetune_dock_do_not_crash_napari(tmp_path, xvfb):
    # The display pytest-xvfb started; the script opens its own viewer on it.
    script = Path(__file__).with_name("_two_cubes_scenario.py")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "shot.png")],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, DISPLAY=os.environ["DISPLAY"]))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "survived; model backends in napari's process: none" in done.stdout
    assert (tmp_path / "shot.png").stat().st_size > 0
