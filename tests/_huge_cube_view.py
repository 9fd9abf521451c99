"""Open a 24 GB cube (counts that only count the bytes read) in a shown napari window, look at
it whole, then zoom in with the resolution on Auto; print the bytes read and the data levels as
JSON. Run in its own process by tests/test_napari_reader.py: a shown window in a long GUI test
run has crashed Mesa's llvmpipe (glClear), which must fail one test, not end pytest."""

from __future__ import annotations

import json
import time

import numpy as np


class CountingStore:
    """A cube's counts of any logical size that records the bytes read (ones everywhere)."""

    def __init__(self, shape, dtype=np.uint16):
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), 3
        self.bytes_read = 0

    def __getitem__(self, key):
        key = (key if isinstance(key, tuple) else (key,)) + (slice(None),) * 3
        shape = [len(range(*k.indices(n))) for k, n in zip(key[:3], self.shape)
                 if isinstance(k, slice)]
        self.bytes_read += int(np.prod(shape)) * self.dtype.itemsize
        return np.ones(shape, self.dtype)


def main():
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_xrf_pigments._napari._reader import cube_layer_data
    from napari_xrf_pigments.cube import EnergyAxis, XRFCube

    store = CountingStore((3000, 2000, 2048))
    cube = XRFCube(store, EnergyAxis.from_calibration(2048, 0.0, 0.01), pixel_size=(0.1, 0.1))
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()

    def settle(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    for data, kwargs, kind in cube_layer_data(cube):
        viewer._add_layer_from_data(data, kwargs, kind)
    viewer.reset_view()
    settle(0.5)
    report = {"first_view": {"bytes": store.bytes_read,
                             "levels": [layer.data_level for layer in viewer.layers]}}
    viewer.camera.zoom *= 40
    for layer in viewer.layers:
        layer.locked_data_level = None
    settle(0.5)
    report["zoomed_in"] = {"bytes": store.bytes_read,
                           "levels": [layer.data_level for layer in viewer.layers]}
    print(json.dumps(report))
    viewer.close()


if __name__ == "__main__":
    main()
