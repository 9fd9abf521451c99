"""The steps of a trial that crashed napari in Mesa's glDrawArrays (#15), as a script.

Two cubes of very different pixel sizes (1 mm and 8.7 um), two element maps and the model's
pigment maps over the second, the pigment widget's prediction on the first, a shapes layer of
truth labels, then the finetune widget docked; then every layer shown and a zoom. Run in its
own process by tests/test_napari_two_cubes.py (a native crash must fail the test, not end
pytest). Prints "survived" and whether a model backend got into napari's process.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(screenshot=None):
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_xrf_pigments._napari._maps import PIGMENT_ROLE, geometry, map_layers, put_element_map, put_pigment_map
    from napari_xrf_pigments._napari._reader import cube_layer_data
    from napari_xrf_pigments.cube import XRFCube
    from napari_xrf_pigments.model.files import PigmentLabel, default_model_path, read_metadata

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()

    def settle(seconds=0.5):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    rng = np.random.default_rng(0)
    for name, shape, pixel in (("big_pixels", (60, 80), 1.0), ("tiny_pixels", (200, 300), 0.0087)):
        cube = XRFCube.from_array(rng.poisson(3, (*shape, 512)).astype(np.uint16), zero=0.0,
                                  gain=0.04, pixel_size=(pixel, pixel), source=f"/tmp/{name}.h5")
        for data, kwargs, kind in cube_layer_data(cube):
            viewer._add_layer_from_data(data, kwargs, kind)
        settle()
    geo = geometry(viewer.layers["tiny_pixels"])
    for element in ("Hg L", "Pb L"):
        put_element_map(viewer, element, rng.random((200, 300)).astype(np.float32),
                        source="tiny_pixels", **geo)
    pigments = read_metadata(default_model_path())["pigments"]
    for i, p in enumerate(pigments):
        put_pigment_map(viewer, PigmentLabel(p["abbreviation"], p["name"]),
                        rng.random((200, 300)).astype(np.float32), index=i,
                        source="tiny_pixels", model_name="default-v4", **geo)
        settle(0.02)
    # A real prediction through the pigment widget: the trial's crash came with it, when the
    # network ran in napari's process (see test_napari_two_cubes.py).
    from napari_xrf_pigments._napari._pigment_widget import PigmentMapsWidget

    maps = PigmentMapsWidget(viewer)
    viewer.window.add_dock_widget(maps, name="Pigment maps")
    maps.cube_combo.value = "big_pixels"
    maps.run()
    end = time.monotonic() + 240
    while maps.runner.running and time.monotonic() < end:
        settle(0.1)
    predicted = [la for la in map_layers(viewer, PIGMENT_ROLE) if la.metadata.get("xrf_source") == "big_pixels"]
    if {la.metadata.get("xrf_pigment") for la in predicted} != {p["abbreviation"] for p in pigments}:
        raise SystemExit(f"the prediction did not add its maps: {maps.status.value}")
    square = np.array([[0, 0], [100, 0], [100, 150], [0, 150]], dtype=float)
    viewer.add_shapes([square], shape_type="polygon", name="truth", text={"string": "VM"},
                      scale=geo["scale"], units=geo["units"])
    viewer.reset_view()
    settle()
    viewer.window.add_plugin_dock_widget("napari-xrf-pigments", "Finetune on labelled shapes")
    settle(2)
    for layer in viewer.layers:
        layer.visible = True
    viewer.reset_view()
    settle(1)
    viewer.camera.zoom *= 50
    settle(1)
    if screenshot:
        viewer.screenshot(screenshot, canvas_only=False)
    backends = [m for m in ("tensorflow", "keras", "jax") if m in sys.modules]
    print("survived; model backends in napari's process:", ", ".join(backends) or "none")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
