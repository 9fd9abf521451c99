"""Regenerate the screenshots of docs/widgets.md (docs/images/widgets-*.png).

Simulates a mock-up painting (the paper's Fig. 7 crossed strips), opens it in napari through the
plugin's reader, runs the Element maps, Pigment maps and Compare widgets and captures the window
(helpers from ``make_screenshots.py``). Pigment maps need a trained model: the shipped default,
or ``--model DIR`` (e.g. one from ``xrf-pigments train``)::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_widget_screenshots.py --model MODEL

Options: ``--out DIR`` (default: docs/images next to this script), ``--live-time S`` (dwell per
pixel of the simulated scan, default 10 s as the paper's mock-up scans).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_screenshots import _close_toasts, _new_viewer, _save, _settle  # noqa: E402

PLUGIN = "napari-xrf-pigments"


def simulate(folder: Path, live_time: float) -> Path:
    """The Fig. 7 mock-up as a NeXus file (4 top strips over 6 bottom strips, 1 mm pixels)."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.progress import run_with_tqdm

    cube, _ = run_with_tqdm(simulate_mockup(crossed_strips(), seed=7, live_time_s=live_time), desc="mock-up")
    return write_cube(folder / "mockup.h5", cube)


def _wait(runner, timeout=1800):
    from qtpy.QtWidgets import QApplication

    start = time.time()
    while runner.running:
        if time.time() - start > timeout:
            raise TimeoutError(runner.title)
        QApplication.processEvents()
        time.sleep(0.02)


def _only(viewer, names):
    for layer in viewer.layers:
        layer.visible = layer.name in names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: shipped)")
    parser.add_argument("--live-time", type=float, default=10.0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from napari_xrf_pigments._napari import _pigment_widget as pw
    from napari_xrf_pigments.model import isolated as _isolated

    with tempfile.TemporaryDirectory() as tmp:
        path = simulate(Path(tmp), args.live_time)
        viewer = _new_viewer()
        viewer.open(str(path), plugin=PLUGIN)
        viewer.layers["mockup total counts"].visible = False

        # 1. Element maps: suggestions ticked, fitted, three maps shown additively.
        dock, fit = viewer.window.add_plugin_dock_widget(PLUGIN, "Element maps")
        _wait(fit.suggester)
        fit.run()
        _wait(fit.runner)
        _only(viewer, {"Hg L", "Co K", "Cr K"})
        viewer.layers.selection.active = viewer.layers["Hg L"]
        viewer.reset_view()
        _close_toasts(viewer)
        _save(viewer, args.out / "widgets-element-maps.png")
        viewer.window.remove_dock_widget(dock)

        # 2. Pigment maps: every pigment, vermilion alone (any layer and top layer).
        dock, pigments = viewer.window.add_plugin_dock_widget(PLUGIN, "Pigment maps")
        _wait(pigments.gpu_check)
        if args.model is not None:
            pigments.model_source.value = pw.MODEL_FOLDER
            pigments.model_dir.value = args.model
        pigments.run()
        _wait(pigments.runner)
        for layer in viewer.layers:
            if layer.metadata.get("xrf_role") == "element_map" or layer.name == "mockup":
                layer.visible = False
        pigments.solo.value = "Vermilion"
        pigments.show_top.value = False
        viewer.layers.selection.active = viewer.layers["P(vermilion)"]
        _close_toasts(viewer)
        _save(viewer, args.out / "widgets-pigment-maps.png")

        # 2b. The dominant pigment with its legend, the pigment maps hidden.
        pigments.show_any.value = False
        pigments.show_dominant.value = True
        viewer.layers.selection.active = viewer.layers["Dominant pigment"]
        _close_toasts(viewer)
        _save(viewer, args.out / "widgets-dominant-pigment.png")
        pigments.show_dominant.value = False
        pigments.show_any.value = True
        viewer.window.remove_dock_widget(dock)

        # 3. Compare: vermilion against Hg L, a pixel picked in the scatter plot.
        dock, compare = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare pigment and elements")
        compare.pigment_combo.value = "P(vermilion)"
        compare.refresh()
        rows, cols = compare.shape
        compare.select_pixel((rows // 2 + 3, cols // 3))
        _settle(viewer, 800)
        compare.hover((0, *viewer.layers["P(vermilion)"].data_to_world((rows // 2 + 3, cols // 3))))
        _close_toasts(viewer)
        _save(viewer, args.out / "widgets-compare.png")
        compare.export_png(args.out / "widgets-compare-export.png", dpi=80)
        print(args.out / "widgets-compare-export.png")
        viewer.close()
        _isolated.shutdown()


if __name__ == "__main__":
    main()
