"""File > Open Sample > Simulated XRF mock-up painting: three layers, ready for finetuning."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments._napari._finetune_widget import (
    LABELS_ROLE,
    FinetuneWidget,
    layer_pigments,
    shapes_to_labels,
)
from napari_xrf_pigments._napari._layers import cube_of
from napari_xrf_pigments._napari._sample import TRUTH_LAYER
from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.datasets.sample import sample_paths
from napari_xrf_pigments.labels import rasterise, strip_shapes

pytestmark = pytest.mark.gui

PLUGIN = "napari-xrf-pigments"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def opened(make_napari_viewer, cache, monkeypatch):
    """(viewer, layers) with the sample opened (simulated into ``cache`` by the first test)."""
    monkeypatch.setenv("XRF_PIGMENTS_CACHE", str(cache))
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "mockup")
    return viewer, layers


def test_open_sample_adds_the_cube_its_total_counts_and_the_truth(opened, cache):
    viewer, layers = opened
    cube_path, truth_path = sample_paths()
    assert cube_path.parent.parent == cache and cube_path.is_file() and truth_path.is_file()
    name = cube_path.stem
    assert [layer.name for layer in viewer.layers] == [name, f"{name} total counts", TRUTH_LAYER]
    assert [layer._type_string for layer in layers] == ["image", "image", "shapes"]
    cube_layer, total, shapes = viewer.layers
    cube = cube_of(cube_layer)
    assert isinstance(cube, XRFCube) and cube.shape == (39, 57, 4096) and cube.calibrated
    assert cube_layer.data.shape == (4096, 39, 57)  # energy slider first
    np.testing.assert_allclose(total.data, cube.total_counts())
    assert shapes.metadata["xrf_role"] == LABELS_ROLE
    assert tuple(shapes.scale) == tuple(cube_layer.scale[-2:])
    assert len(shapes.data) == len(strip_shapes(truth_path).shapes)
    assert "bare ground" in set(shapes.features["label"])


def test_truth_layer_is_what_the_finetune_widget_makes(opened):
    viewer, _ = opened
    cube_layer, shapes = viewer.layers[0], viewer.layers[TRUTH_LAYER]
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Finetune")
    assert widget.shapes_layer() is shapes and widget.cube_layer() is cube_layer
    assert tuple(widget.pigments) == tuple(layer_pigments(shapes))
    assert list(widget.present_boxes) == [p.abbreviation for p in layer_pigments(shapes)]

    # The same pixel labels as the truth's strip shapes.
    truth_path = sample_paths()[1]
    expected = rasterise(strip_shapes(truth_path), (39, 57))
    for labels in (shapes_to_labels(shapes, cube_layer), widget.current_labels()):
        px = rasterise(labels, (39, 57))
        assert px.mask.all()
        np.testing.assert_array_equal(px.present, expected.present)
        np.testing.assert_array_equal(px.top, expected.top)

    # The same layer as the widget's own "Load labels" of the truth file.
    loaded = widget.load_labels(truth_path)
    assert loaded is not shapes
    assert loaded.features.equals(shapes.features)
    assert loaded.feature_defaults.equals(shapes.feature_defaults)
    np.testing.assert_allclose(loaded.face_color, shapes.face_color)
    np.testing.assert_allclose(loaded.edge_color, shapes.edge_color)
    np.testing.assert_allclose(loaded.edge_width, shapes.edge_width)
    assert loaded.metadata == shapes.metadata
    assert list(loaded.text.values) == list(shapes.text.values)
    for a, b in zip(loaded.data, shapes.data):
        np.testing.assert_allclose(a, b)


def test_shapes_drawn_on_the_truth_start_unlabelled_and_take_labels(opened):
    viewer, _ = opened
    shapes = viewer.layers[TRUTH_LAYER]
    widget = FinetuneWidget(viewer)
    n = len(shapes.data)
    shapes.add_rectangles([[[1, 1], [4, 4]]])
    new = shapes.features.iloc[n]
    assert new["label"] == "unlabelled" and not new["labelled"]
    shapes.selected_data = {n}
    widget.set_checked(["VM"], ["VM"])
    assert widget.apply_label()
    assert shapes.features["label"].iloc[n] == "VM (top VM)"
