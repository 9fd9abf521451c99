"""Benchmark: how long napari's main thread stalls while the widgets fit and predict.

One command (needs a display; on a headless machine under Xvfb)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_gui_stall.py

A 10 ms QTimer runs on the main (GUI) thread; every gap between its ticks beyond 10 ms is time
the event loop could not run (no repaint, no mouse). Measured on a 100 x 100 simulated mock-up
cube (4096 channels), in a shown napari window:

- *idle*: the timer alone for 2 s (the baseline jitter of this machine);
- *suggest*: the element maps widget's sum spectrum + element suggestions (worker thread);
- *fit*: the element maps widget fitting the suggested elements (worker thread + processes),
  from the click to the last layer added;
- *predict cold* / *predict warm*: the pigment maps widget with the paper network (3815
  channels, the library's 22 classes and 3 groups; random weights unless ``--model``), first run (the child process
  imports TensorFlow and compiles) and a second run.

For each: wall time, the longest stall, the 99th percentile of the gaps, the longest stall
before the result handler starts adding layers, and the longest one from then on (while the
results land, and the window repaints with them). Options: ``--model DIR``, ``--size N``
(default 100), ``--in-memory`` (the cube is not written to a file first, so the pigment widget
sends its counts to the TensorFlow process instead of the file name).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

TICK_MS = 10


def make_model_job(out):
    """Child job (runs in the widget's TensorFlow process): save a paper-size random model."""
    from napari_xrf_pigments.model.architecture import build_paper_model
    from napari_xrf_pigments.model.files import save_model
    from napari_xrf_pigments.pigments import load_pigment_library
    from napari_xrf_pigments.preprocess import Preprocessing
    from napari_xrf_pigments.progress import Progress

    yield Progress(0, 1, "building the paper network")
    rng = np.random.default_rng(0)
    library = load_pigment_library()
    # The library's classes and groups, as the shipped model's outputs.
    pigments = [(c, library.name_of(c)) for c in library.labels]
    net = build_paper_model(n_pigments=len(pigments))
    for layer in net.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2, v.shape)])
    save_model(out, net, pigments=pigments, preprocessing=Preprocessing.paper(), name="random-paper-net")
    return str(out)


def mockup_cube(size):
    """A size x size mock-up cube: a small simulated one tiled (the simulation is per pixel)."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    layout = crossed_strips(("Top 4", "Top 1", "Top 2"), ("Bottom 2A", "Bottom 3A", "Bottom 1B"),
                            strip_px=4, gap_px=2, margin_px=1)
    cube, _ = run(simulate_mockup(layout, seed=1, live_time_s=1.0))
    rows, cols = cube.shape[:2]
    reps = (-(-size // rows), -(-size // cols), 1)
    counts = np.tile(cube.counts, reps)[:size, :size]
    import dataclasses

    return dataclasses.replace(cube, counts=np.ascontiguousarray(counts), positions=None)


class StallMeter:
    """Gaps between ticks of a 10 ms timer on the GUI thread."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.gaps = []
        self.last = None

    def _tick(self):
        now = time.perf_counter()
        if self.last is not None:
            self.gaps.append(now - self.last)
        self.last = now

    def start(self):
        self.gaps, self.last = [], time.perf_counter()
        self.timer.start()

    def stop(self):
        self._tick()  # a stall in progress at the end counts too
        self.timer.stop()
        return np.asarray(self.gaps) * 1000.0


def wait(app, condition, timeout=600.0):
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the widget did not finish")
        app.processEvents()
        time.sleep(0.002)


def measure(app, meter, name, start, done, results, marks=None):
    """Run ``start()`` and wait for ``done()``; record the gaps."""
    meter.start()
    t0 = time.perf_counter()
    start()
    wait(app, done)
    wall = time.perf_counter() - t0
    # Let the last layer draw.
    end = time.perf_counter() + 0.3
    wait(app, lambda: time.perf_counter() > end)
    gaps = meter.stop()
    before_layers, landing = gaps, gaps[:0]
    if marks is not None and marks.get("returned") is not None:
        # Gaps that ended before the result handler started adding layers, and the others.
        times = t0 + np.cumsum(gaps / 1000.0)
        before_layers = gaps[times < marks["returned"]]
        landing = gaps[times >= marks["returned"]]
    results.append((name, wall, gaps.max(), np.percentile(gaps, 99),
                    before_layers.max() if before_layers.size else float("nan"),
                    landing.max() if landing.size else float("nan"), len(gaps)))
    print(f"  {name}: {wall:.1f} s, longest stall {gaps.max():.0f} ms", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: random paper net)")
    parser.add_argument("--size", type=int, default=100, help="cube rows and columns (default 100)")
    parser.add_argument("--in-memory", action="store_true",
                        help="keep the cube in memory (no file): it is sent to the TensorFlow process")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_xrf_pigments._napari import _pigment_widget as pw
    from napari_xrf_pigments._napari._fit_widget import ElementMapsWidget
    from napari_xrf_pigments._napari._reader import cube_layer_data
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.model import isolated as _isolated
    from napari_xrf_pigments.progress import run

    print(f"simulating a {args.size} x {args.size} mock-up cube...", flush=True)
    cube = mockup_cube(args.size)
    workdir = tempfile.TemporaryDirectory()
    path = Path(workdir.name) / "mockup.h5"
    if args.in_memory:
        layers = cube_layer_data(cube)
    else:
        write_cube(path, cube)  # as users work: a cube opened from a file
    viewer = napari.Viewer(title="stall benchmark", show=True)
    viewer.window._qt_window.resize(1500, 950)
    if args.in_memory:
        for data, kwargs, _ in layers:
            viewer.add_image(data, **kwargs)
    else:
        viewer.open(str(path), plugin="napari-xrf-pigments")
    app = QApplication.instance()
    meter = StallMeter()
    results = []

    def settle(seconds):
        end = time.perf_counter() + seconds
        wait(app, lambda: time.perf_counter() > end)

    settle(1.0)
    measure(app, meter, "idle (2 s)", lambda: settle(2.0), lambda: True, results)

    fit = ElementMapsWidget(viewer)
    settle(0.5)  # the widget starts its suggestion job at once: measure a fresh one
    wait(app, lambda: not fit.suggester.running)
    viewer.window.add_dock_widget(fit, name="Element maps")
    measure(app, meter, "suggest", lambda: fit.suggest(force=True),
            lambda: not fit.suggester.running, results)
    print(f"  elements: {', '.join(fit.elements())}", flush=True)
    marks = {}
    original = fit._show_maps

    def timed_show(*a):
        marks["returned"] = time.perf_counter()
        return original(*a)

    fit._show_maps = timed_show
    measure(app, meter, f"fit ({len(fit.elements())} groups)", fit.run, lambda: not fit.runner.running,
            results, marks)
    print(f"  {fit.status.value}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            model = Path(tmp) / "paper-random"
            run(_isolated.isolated("bench_gui_stall:make_model_job", str(model)))
            _isolated.shutdown()  # the cold run below starts a fresh TensorFlow process
        pigments = pw.PigmentMapsWidget(viewer)
        viewer.window.add_dock_widget(pigments, name="Pigment maps")
        wait(app, lambda: not pigments.gpu_check.running)
        pigments.model_source.value = pw.MODEL_FOLDER
        pigments.model_dir.value = model
        for label in ("predict cold", "predict warm"):
            marks = {}
            original = pigments._show_maps

            def timed_show(*a, original=original, marks=marks):
                marks["returned"] = time.perf_counter()
                return original(*a)

            pigments._show_maps = timed_show
            measure(app, meter, label, pigments.run, lambda: not pigments.runner.running, results, marks)
            pigments._show_maps = original
            print(f"  {pigments.status.value}", flush=True)
        _isolated.shutdown()

    where = "in memory" if args.in_memory else "opened from a NeXus file"
    print(f"\nMain-thread stalls, {args.size} x {args.size} x {cube.n_channels} cube {where} "
          f"({TICK_MS} ms timer; a stall is a gap between ticks):")
    print(f"{'run':<22}{'wall s':>8}{'max ms':>9}{'p99 ms':>9}{'max before layers ms':>22}"
          f"{'max while layers land ms':>26}{'ticks':>8}")
    for name, wall, worst, p99, before, landing, ticks in results:
        print(f"{name:<22}{wall:>8.1f}{worst:>9.0f}{p99:>9.0f}{before:>22.0f}{landing:>26.0f}{ticks:>8d}")
    viewer.close()
    workdir.cleanup()


if __name__ == "__main__":
    main()
