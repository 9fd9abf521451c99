"""Regenerate the screenshots of docs/finetuning.md (docs/images/finetune-*.png).

Simulates the paper's Fig. 7 mock-up as a W-tube scanner would see it (1 s per pixel), opens
it in napari through the plugin's reader, loads its ground truth into the finetuning widget
(one labelled rectangle per strip region), captures the labelling, finetunes the base model
(in the widget's child process) and captures the widget: loss curve, before/after table.

Run it where napari can open a window; on a headless machine under Xvfb::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_finetune_screenshots.py --model MODEL

Options: ``--model DIR`` (default: the shipped model), ``--epochs N`` (default 30),
``--out DIR`` (default: docs/images next to this script).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

WINDOW = (1700, 1060)
MAX_BYTES = 350_000


def _settle(ms=400):
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()
    QApplication.processEvents()


def _close_toasts(viewer):
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private module moved: the toasts just stay
        return
    _settle(200)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def _save(viewer, path: Path):
    """Window screenshot as PNG, shrunk and quantised until it is below MAX_BYTES."""
    from PIL import Image

    _close_toasts(viewer)
    _settle()
    image = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).convert("RGB")
    width = image.width
    while True:
        small = image if width == image.width else image.resize(
            (width, round(image.height * width / image.width)), Image.LANCZOS
        )
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
        if path.stat().st_size <= MAX_BYTES or width < 700:
            break
        width = int(width * 0.9)
    print(f"{path} {small.width}x{small.height} {path.stat().st_size // 1024} KB")


def _scene(tmp: Path, model: Path, show: bool):
    """Viewer with the simulated mock-up, the widget docked and the labels loaded."""
    import napari

    from napari_xrf_pigments._napari._finetune_widget import FinetuneWidget

    viewer = napari.Viewer(title="napari-xrf-pigments", show=show)
    viewer.window._qt_window.resize(*WINDOW)
    viewer.open(str(tmp / "mockup_w.h5"), plugin="napari-xrf-pigments")
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Finetune on labelled shapes", area="right")
    widget.set_model_folder(model)
    layer = widget.load_labels(tmp / "mockup_w_truth.h5")
    return viewer, widget, layer


def labels_screenshot(viewer, layer, out: Path):
    """The labelled shapes over the mock-up, one selected."""
    # Shape 14: top strip 1 over bottom strip 1 (cells go row band by row band, 13 per band).
    layer.selected_data = {14}
    viewer.layers.selection.active = layer
    viewer.reset_view()
    # Close enough to read the labels: the top-left quarter of the mock-up.
    viewer.camera.center = (0, 13.0, 19.0)
    viewer.camera.zoom *= 1.9
    _save(viewer, out / "finetune-labels.png")


def results_screenshot(widget, layer, tmp: Path, out: Path, epochs: int):
    """The widget after finetuning (in its child process): loss curve and before/after table."""
    from PIL import Image

    layer.selected_data = set()
    widget.head_epochs.setValue(epochs)
    widget.epochs.setValue(epochs)
    widget.out_edit.setText(str(tmp / "finetuned"))
    if widget.run() is None:
        raise SystemExit(f"finetuning did not start: {widget.status.text()}")
    while widget.runner.running:
        _settle(500)
    if widget.result is None:
        raise SystemExit(f"finetuning failed: {widget.status.text()}")
    # Out of the dock, wide enough for the table.
    widget.setParent(None)
    widget.table.setMinimumSize(820, 430)
    widget.resize(860, 1500)
    widget.show()
    _settle()
    path = out / "finetune-results.png"
    widget.grab().save(str(path))
    Image.open(path).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                             dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="base model folder (default: shipped)")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs per stage")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_finetune import LAYOUTS, w_scanner

    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup, write_truth
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.model import isolated as _isolated
    from napari_xrf_pigments.model.files import default_model_path
    from napari_xrf_pigments.progress import run

    model = Path(args.model).resolve() if args.model else default_model_path()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cube, truth = run(simulate_mockup(crossed_strips(*LAYOUTS["fig7"]), seed=0,
                                          instrument=w_scanner(), live_time_s=1.0))
        write_cube(tmp / "mockup_w.h5", cube)
        write_truth(tmp / "mockup_w_truth.h5", truth)
        viewer, widget, layer = _scene(tmp, model, show=True)
        labels_screenshot(viewer, layer, args.out)
        results_screenshot(widget, layer, tmp, args.out, args.epochs)
        _isolated.shutdown()
        viewer.close()


if __name__ == "__main__":
    main()
