"""Full and read-only disks, and SIGTERM: one-line errors (exit code 2, or 143 after SIGTERM), no
``.part`` file left, an old output intact, no worker process left behind.

The disk tests mount small tmpfs file systems, which needs root and a kernel that lets this
process mount; elsewhere they are skipped with the reason. The commands that write to a full disk
run in a child process: a crash of HDF5 (as seen before ``atomic_hdf5``) must fail the test, not
end pytest.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_xrf_pigments.cli import main
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.io import write_cube

FULL = "no space left on the device (free some space, or write to another disk)"
READ_ONLY = "the file system is read-only (write to another folder)"


def _cube(path, rows, cols, n_channels=4096, seed=0):
    """A calibrated cube with an Fe Ka peak on a flat background (10 eV channels)."""
    e = 0.01 * np.arange(n_channels)
    expected = 3.0 + 200.0 * np.exp(-0.5 * ((e - 6.404) / 0.07) ** 2)
    counts = np.random.default_rng(seed).poisson(expected, (rows, cols, n_channels)).astype(np.uint16)
    return write_cube(path, XRFCube.from_array(counts, zero=0.0, gain=0.01))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    from _model_data import write_set

    return {"cube": _cube(folder / "cube.h5", 8, 8), "data": write_set(folder / "set.h5", n=64),
            "labels": _halves_labels(folder / "labels.json", 8, 8)}


def _halves_labels(path, rows, cols):
    """Shapes labelling the top half vermilion and the bottom half zinc white, over the
    shipped model's pigment list."""
    from napari_xrf_pigments.labels import LabelledShape, ShapeLabels, write_labels
    from napari_xrf_pigments.model.files import default_model_path, read_metadata

    pigments = [(p["abbreviation"], p["name"]) for p in read_metadata(default_model_path())["pigments"]]
    half = rows / 2 - 0.5
    top = [[-0.5, -0.5], [-0.5, cols - 0.5], [half, cols - 0.5], [half, -0.5]]
    bottom = [[half, -0.5], [half, cols - 0.5], [rows - 0.5, cols - 0.5], [rows - 0.5, -0.5]]
    shapes = [LabelledShape("rectangle", top, ["VM"], ["VM"]),
              LabelledShape("rectangle", bottom, ["ZW"], ["ZW"])]
    return write_labels(path, ShapeLabels(pigments, shapes, {"shape": [rows, cols]}))


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size, old=..., read_only=...)``: a folder on a tmpfs of ``size`` holding an
    old output, unmounted after the test."""
    mounted = []

    def make(size="16k", *, old=None, read_only=False):
        if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small tmpfs needs root and the mount command")
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        if old is not None:
            name, content = old
            if name.endswith("/"):
                (where / name).mkdir()
                (where / name / "keep").write_bytes(content)
            else:
                (where / name).write_bytes(content)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=False)


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def _xrf_pigments(args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "napari_xrf_pigments.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _command(name, inputs, out):
    return {
        "mockup": ["mockup", "--out", out, "--tops", "Top 4", "--bottoms", "Bottom 2A"],
        "fit": ["fit", inputs["cube"], "--out", out, "--elements", "Fe", "--workers", "0"],
        "predict": ["predict", inputs["cube"], "--out", out],
        "simulate": ["simulate", "--n", "4", "--out", out],
        "train": ["train", "--data", inputs["data"], "--out", out, "--folds", "1", "--epochs", "1",
                  "--batch-size", "32"],
        "finetune": ["finetune", "--cube", inputs["cube"], "--labels", inputs["labels"], "--out", out,
                     "--epochs", "1"],
        "demo": ["demo", "--out", out],
    }[name] + ["--force"]


def _assert_one_line_error(stderr, command, out, reason):
    assert "Traceback" not in stderr, stderr[-3000:]
    # Progress bars and warnings come before; the error is the last line.
    assert stderr.strip().splitlines()[-1] == f"xrf-pigments {command}: error: cannot write {out}: {reason}"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["mockup", "fit", "predict", "simulate", "train", "finetune", "demo"])
def test_a_full_disk_is_one_line_and_leaves_the_old_output(command, inputs, small_disk):
    if command in ("predict", "train", "finetune", "demo"):
        pytest.importorskip("keras")
    name = "out/" if command in ("train", "finetune", "demo") else "out.h5"
    disk = small_disk("16k", old=(name, b"old output"))
    before = _listing(disk)
    out = disk / name.rstrip("/")
    done = _xrf_pigments(_command(command, inputs, out))
    # Not -11: HDF5 crashes on ENOSPC unless the file is written through atomic.atomic_hdf5.
    assert done.returncode == 2, done.stderr[-3000:]
    _assert_one_line_error(done.stderr, command, out, FULL)
    assert _listing(disk) == before  # no .part file or folder
    assert (out / "keep" if name == "out/" else out).read_bytes() == b"old output"


@pytest.mark.parametrize("command", ["mockup", "fit", "predict", "simulate", "train", "finetune", "demo"])
def test_a_read_only_disk_is_one_line(command, inputs, small_disk, capsys):
    if command in ("predict", "train", "finetune"):
        pytest.importorskip("keras")
    name = "out.h5" if command in ("mockup", "fit", "predict", "simulate") else "out/"
    disk = small_disk("64k", old=(name, b"old output"), read_only=True)
    before = _listing(disk)
    out = disk / name.rstrip("/")
    assert main([str(a) for a in _command(command, inputs, out)]) == 2
    _assert_one_line_error(capsys.readouterr().err, command, out, READ_ONLY)
    assert _listing(disk) == before


# -- SIGTERM ----------------------------------------------------------------------------------


class _Stderr:
    """Collect a child's stderr in a thread (progress bars end their lines with \\r)."""

    def __init__(self, stream):
        self.text = ""
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for chunk in iter(lambda: stream.read1(4096), b""):
            self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, predicate, what, timeout=120):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{self.text[-2000:]}"
            time.sleep(0.05)

    def join(self):
        self._thread.join(timeout=30)


def _stat(pid):
    """(state, parent pid, start time) of a process from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), fields[19]


def _children(pid):
    """(pid, start time) of the processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        stat = _stat(entry) if entry.isdigit() else None
        if stat is not None and stat[1] == pid:
            found.append((int(entry), stat[2]))
    return found


def _running(child):
    stat = _stat(child[0])
    return stat is not None and stat[2] == child[1] and stat[0] != "Z"


def _start(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, **kwargs)
    return proc, _Stderr(proc.stderr)


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@needs_proc
@pytest.mark.slow
def test_sigterm_during_a_fit_ends_its_workers_and_exits_143(tmp_path):
    cube = _cube(tmp_path / "cube.h5", 150, 100, n_channels=2000)
    out = tmp_path / "maps.h5"
    proc, err = _start(["-m", "napari_xrf_pigments.cli", "fit", cube, "--out", out,
                        "--elements", "Fe", "--workers", "1"])
    try:
        err.wait_for(lambda e: "fitting spectra" in e.text, "progress of the fit")
        workers = _children(proc.pid)
        assert workers, "the fit started no worker process"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err.join()
    assert err.text.strip().splitlines()[-1] == "xrf-pigments fit: terminated"
    assert "Traceback" not in err.text
    assert _listing(tmp_path) == ["cube.h5"]  # no maps, no .part
    deadline = time.monotonic() + 10
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, workers)), "worker processes outlived the fit (adopted by init)"


# Run in the child: mockup, whose cube is written one row every 0.2 s, so that SIGTERM comes
# while the .part file is open.
_SLOW_MOCKUP = """
import sys, time
from napari_xrf_pigments import cube
from napari_xrf_pigments.cli import main

plain = cube.XRFCube.iter_blocks

def slow(self, rows_per_block=None):
    for item in plain(self, 1):
        time.sleep(0.2)
        yield item

cube.XRFCube.iter_blocks = slow
sys.exit(main(sys.argv[1:]))
"""


@needs_proc
@pytest.mark.slow
def test_sigterm_during_the_final_write_leaves_no_part_file(tmp_path):
    out = tmp_path / "mockup.h5"
    out.write_bytes(b"old output")
    proc, err = _start(["-c", _SLOW_MOCKUP, "mockup", "--out", out, "--tops", "Top 4",
                        "--bottoms", "Bottom 2A", "--force"])
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".mockup.h5.*.part")):
            assert proc.poll() is None, err.text[-2000:]
            assert time.monotonic() < deadline, "no .part file after 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err.join()
    assert err.text.strip().splitlines()[-1] == "xrf-pigments mockup: terminated"
    assert _listing(tmp_path) == ["mockup.h5"] and out.read_bytes() == b"old output"


# Run in the child: many gzip chunks written through atomic_hdf5, so that Ctrl-C most often comes
# while HDF5 compresses, and Python's handler would run inside the write HDF5 calls back.
_HDF5_WRITER = """
import signal
import sys
import numpy as np
from napari_xrf_pigments.atomic import atomic_hdf5

# Ctrl-C as in a terminal, even where the test runner ignores SIGINT (a background job does,
# and its children inherit that).
signal.signal(signal.SIGINT, signal.default_int_handler)

data = np.random.default_rng(0).random((256, 512)).astype("f4")
try:
    with atomic_hdf5(sys.argv[1], force=True) as f:
        for i in range(400):
            f.create_dataset(f"m{i}", data=data, compression="gzip", chunks=(16, 512))
except KeyboardInterrupt:
    sys.exit(130)
"""


@needs_proc
@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3])
def test_ctrl_c_during_an_hdf5_write_never_crashes(tmp_path, delay):
    out = tmp_path / "out.h5"
    proc, err = _start(["-c", _HDF5_WRITER, out])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.h5.*.part")):
            assert proc.poll() is None, err.text[-2000:]
            assert time.monotonic() < deadline, "no .part file after 60 s"
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, err.text[-2000:]  # not -11 (SIGSEGV)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err.join()
    assert _listing(tmp_path) == []
