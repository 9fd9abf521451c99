"""Model for your instrument widget: instrument from the cube's file, simulate and finetune in
the child process, the new model offered to Pigment maps. TensorFlow stays out of this process."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import sys

import numpy as np
import pytest

from napari_xrf_pigments._napari._adapt_widget import FROM_FILE, AdaptWidget
from napari_xrf_pigments._napari._reader import cube_layer_data
from napari_xrf_pigments.cube import XRFCube

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="needs keras"),
]


@pytest.fixture(scope="module", autouse=True)
def stop_child_process():
    yield
    from napari_xrf_pigments.model import isolated

    isolated.shutdown()
    assert multiprocessing.active_children() == []


def add_scan(viewer, tmp_path):
    from napari_xrf_pigments.io import write_cube

    e = 0.01 * np.arange(4096)
    counts = np.random.default_rng(0).poisson(2 + 80 * np.exp(-0.5 * ((e - 3.69) / 0.07) ** 2),
                                              (6, 6, 4096)).astype(np.uint16)
    cube = XRFCube.from_array(counts, zero=0.0, gain=0.01, live_time=1.0)
    from napari_xrf_pigments.io import open_cube

    path = write_cube(tmp_path / "scan.h5", cube)
    for data, kwargs, kind in cube_layer_data(open_cube(path)):
        viewer._add_layer_from_data(data, kwargs, kind)
    return viewer.layers["scan"]


def test_instrument_from_the_cube_then_a_model_for_it(make_napari_viewer, qtbot, tmp_path):
    tf_before = "tensorflow" in sys.modules
    viewer = make_napari_viewer()
    add_scan(viewer, tmp_path)
    widget = AdaptWidget(viewer)
    assert "energy calibration: zero 0.00000 keV, gain 0.0100000 keV/ch" in widget.instrument_info.value
    assert widget.out_dir.value == tmp_path / "model-scan"
    widget.n_spectra.value = 200
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=600000)
    assert "macro F1 on 40 held-back simulated spectra" in widget.status.value, widget.status.value
    meta = json.loads((tmp_path / "model-scan" / "metadata.json").read_text())
    assert meta["training"]["kind"] == "finetune"
    assert meta["training"]["labels"]["provenance"]["instrument"]["readout"]["gain_keV"] == 0.01
    maps = widget.use_in_pigment_maps()
    assert maps.model_dir.value == tmp_path / "model-scan" and maps.cube_combo.value == "scan"
    assert tf_before or "tensorflow" not in sys.modules


def test_a_missing_instrument_file_is_said_and_nothing_runs(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    add_scan(viewer, tmp_path)
    widget = AdaptWidget(viewer)
    widget.source.value = FROM_FILE
    assert not widget.instrument_file.native.isHidden()  # shown (the dock itself is not)
    assert "choose an instrument file" in widget.instrument_info.value
    assert widget.run() is None and not widget.runner.running
