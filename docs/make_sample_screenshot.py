"""Regenerate the sample-data screenshot of docs/widgets.md (docs/images/sample-data.png).

Opens the plugin's sample (File > Open Sample > XRF Pigments > Simulated XRF mock-up painting)
in napari: the cube, its total counts and the ground truth as labelled shapes, with the
Finetune widget docked and one shape selected (helpers from ``make_screenshots.py``)::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_sample_screenshot.py

The sample is simulated into a temporary cache folder, so the user's cache is left alone.
Options: ``--out DIR`` (default: docs/images next to this script).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_screenshots import _close_toasts, _new_viewer, _save, _settle  # noqa: E402

PLUGIN = "napari-xrf-pigments"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from napari_xrf_pigments._napari._sample import TRUTH_LAYER

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XRF_PIGMENTS_CACHE"] = tmp
        viewer = _new_viewer()
        viewer.open_sample(PLUGIN, "mockup")  # what the File > Open Sample entry calls
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Finetune on labelled shapes")
        shapes = viewer.layers[TRUTH_LAYER]
        # A shape whose label shows a layered paint: the widget's checkboxes show it.
        labels = list(shapes.features["label"])
        shapes.selected_data = {max(range(len(labels)), key=lambda i: (labels[i].count(","), -i))}
        viewer.layers.selection.active = shapes
        shapes.mode = "select"
        # The whole mock-up: its labels overlap at this zoom (the widget shows the selected one).
        shapes.text.visible = False
        viewer.window._qt_window.resize(1700, 1060)
        _settle(viewer, 800)  # docks laid out first, so the view fits the canvas
        viewer.reset_view()
        _close_toasts(viewer)
        _save(viewer, args.out / "sample-data.png")
        viewer.close()


if __name__ == "__main__":
    main()
