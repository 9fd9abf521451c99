"""Regenerate docs/images/widgets-unexplained.png (docs/widgets.md, "Unexplained signal").

Simulates a mock-up whose strips mix library paint with pigments the model does not know
(strontium yellow, pyrolusite, cadmium red, Egyptian blue: test distractors of the pigment
library), runs the Pigment maps widget with the shipped model and captures the window with the
"Unexplained signal" layer shown and the cursor readout over a strontium yellow pixel::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_unexplained_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_screenshots import _close_toasts, _new_viewer, _save  # noqa: E402
from make_widget_screenshots import PLUGIN, _wait  # noqa: E402

TOPS = ("Top 1", "SrY", "Top 4")
BOTTOMS = ("Pyr", "Bottom 2A", "CdR", "EgB")


def main():
    import numpy as np

    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.model import isolated as _isolated
    from napari_xrf_pigments.progress import run_with_tqdm

    layout = crossed_strips(TOPS, BOTTOMS)
    cube, _ = run_with_tqdm(simulate_mockup(layout, seed=5, live_time_s=1.0), desc="mock-up")
    with tempfile.TemporaryDirectory() as tmp:
        path = write_cube(Path(tmp) / "open-set mockup.h5", cube)
        viewer = _new_viewer()
        viewer.open(str(path), plugin=PLUGIN)
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Pigment maps")
        _wait(widget.gpu_check)
        widget.run()
        _wait(widget.runner)
        widget.show_any.value = False
        widget.show_unexplained.value = True
        for layer in viewer.layers:
            if layer.name.startswith("open-set mockup"):
                layer.visible = False
        layer = viewer.layers["Unexplained signal"]
        viewer.layers.selection.active = layer
        viewer.reset_view()
        foreign = np.argwhere((layout.top_index == 1) & (layout.bottom_index < 0))
        viewer.cursor.position = tuple(layer.data_to_world(foreign[len(foreign) // 2]))
        widget._on_mouse_move(viewer, None)
        viewer.text_overlay.font_size = 14
        _close_toasts(viewer)
        out = HERE / "images" / "widgets-unexplained.png"
        _save(viewer, out)
        print(out)
        viewer.close()
        _isolated.shutdown()


if __name__ == "__main__":
    main()
