"""Compare widget: pigment vs element layers, scatter plot, click <-> pixel, export."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_xrf_pigments import compare
from napari_xrf_pigments._napari._compare_widget import BLUE, GREEN, MARKER, NONE, RED, CompareWidget
from napari_xrf_pigments._napari._maps import ELEMENT_ROLE, PIGMENT_ROLE, put_image

pytestmark = pytest.mark.gui

ROWS, COLS = 12, 16
SCALE = (0.5, 0.5)
TRANSLATE = (10.0, -3.0)


@pytest.fixture
def maps_viewer(make_napari_viewer):
    """A viewer with pigment maps and element maps as the map widgets make them."""
    viewer = make_napari_viewer()
    rng = np.random.default_rng(4)
    geo = {"scale": SCALE, "translate": TRANSLATE}
    vermilion = np.zeros((ROWS, COLS), bool)
    vermilion[2:7] = True
    hg = np.where(vermilion, rng.uniform(800, 1200, (ROWS, COLS)), rng.uniform(0, 40, (ROWS, COLS)))
    hg[0, 0] = 1e6  # one hot pixel: clipped by the 99th percentile
    maps = {
        "Hg L": hg,
        "Pb L": rng.uniform(0, 500, (ROWS, COLS)),
        "Cu K": rng.uniform(0, 300, (ROWS, COLS)),
        "As K": rng.uniform(0, 2000, (ROWS, COLS)),
    }
    for name, data in maps.items():
        put_image(viewer, name, data.astype(np.float32), role=ELEMENT_ROLE,
                  metadata={"xrf_group": name}, contrast_limits=[0, 1], **geo)
    p_vm = np.clip(np.where(vermilion, 0.9, 0.05) + rng.normal(0, 0.03, (ROWS, COLS)), 0, 1)
    p_vm[11, 15] = np.nan  # a pixel without data
    p_eg = rng.uniform(0, 1, (ROWS, COLS))
    for abbr, name, data in (("VM", "Vermilion", p_vm), ("EG", "Emerald green", p_eg)):
        put_image(viewer, f"P({name.lower()})", data.astype(np.float32), role=PIGMENT_ROLE,
                  metadata={"xrf_pigment": abbr, "xrf_pigment_name": name, "xrf_layer": "any"},
                  contrast_limits=[0, 1], **geo)
    return viewer, maps, {"VM": p_vm, "EG": p_eg}


def own(viewer, role):
    return [la for la in viewer.layers if la.metadata.get("xrf_role") == role]


def test_pairing_layers_and_scatter(maps_viewer, qtbot):
    viewer, maps, pigments = maps_viewer
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare")
    # Pigment maps come first in the list; the library pairs vermilion with Hg L.
    assert widget.pigment_combo.value == "P(vermilion)"
    assert widget.element1_combo.value == "Hg L" and widget.element2_combo.value == NONE
    red, green = own(viewer, RED)[0], own(viewer, GREEN)[0]
    assert own(viewer, BLUE) == []
    assert red.colormap.name == "red" and green.colormap.name == "green"
    assert red.blending == green.blending == "additive"
    assert red.contrast_limits == [0.0, 1.0]
    assert green.contrast_limits == pytest.approx([0.0, np.percentile(maps["Hg L"], 99)])
    assert green.contrast_limits[1] < 2000  # the hot pixel is clipped
    assert tuple(red.scale) == SCALE and tuple(red.translate) == TRANSLATE
    # Only the comparison is shown.
    assert {la.name for la in viewer.layers if la.visible} == {red.name, green.name}

    # One point per pixel: probability against the clipped, normalised element map.
    x, y = widget.points_line.get_data()
    assert len(x) == ROWS * COLS
    np.testing.assert_array_equal(y, pigments["VM"].ravel().astype(np.float32))
    np.testing.assert_allclose(x, compare.normalise(maps["Hg L"]).ravel())

    # Emerald green: Cu K in green and As K in blue; x is the minimum of the two.
    widget.pigment_combo.value = "P(emerald green)"
    assert (widget.element1_combo.value, widget.element2_combo.value) == ("Cu K", "As K")
    assert len(own(viewer, RED)) == len(own(viewer, GREEN)) == len(own(viewer, BLUE)) == 1
    assert own(viewer, BLUE)[0].colormap.name == "blue"
    x, _ = widget.points_line.get_data()
    expected = np.minimum(compare.normalise(maps["Cu K"]), compare.normalise(maps["As K"]))
    np.testing.assert_allclose(x, expected.ravel())
    # Back to one element: the blue layer goes, nothing piles up.
    widget.pigment_combo.value = "P(vermilion)"
    n = len(viewer.layers)
    widget.element2_combo.value = "Pb L"
    widget.element2_combo.value = NONE
    assert own(viewer, BLUE) == [] and len(viewer.layers) == n


def test_click_point_marks_pixel_and_hover_highlights_point(maps_viewer, qtbot):
    from matplotlib.backend_bases import MouseEvent

    viewer, _, pigments = maps_viewer
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare")
    widget.canvas.draw()
    # The point farthest from its neighbours on screen, so that a click is unambiguous.
    screen = widget.ax.transData.transform(np.column_stack([widget.x, widget.y]))
    gaps = np.linalg.norm(screen[:, None] - screen[None], axis=-1)
    gaps[np.eye(len(gaps), dtype=bool) | np.isnan(gaps)] = np.inf
    i = int(np.argmax(np.where(np.isfinite(screen).all(1), gaps.min(1), -1)))
    assert gaps[i].min() > 6
    row, col = compare.pixel_of_point(i, COLS)
    x, y = widget.x[i], widget.y[i]
    assert y == np.float32(pigments["VM"][row, col])
    # A click next to the point (in display pixels) marks its pixel in the viewer.
    px, py = screen[i]
    MouseEvent("button_press_event", widget.canvas, px + 2, py - 1, button=1)._process()
    assert widget.selected_pixel == (row, col)
    marker = own(viewer, MARKER)[0]
    np.testing.assert_array_equal(marker.data, [[row, col]])
    assert tuple(marker.scale) == SCALE and tuple(marker.translate) == TRANSLATE
    np.testing.assert_allclose(widget.highlight.get_data(), ([x], [y]))
    assert f"row {row}, column {col}" in widget.info.value
    # A click far from every point selects nothing new.
    MouseEvent("button_press_event", widget.canvas, 1, 1, button=1)._process()
    assert widget.selected_pixel == (row, col)

    # Hovering a pixel of the image highlights its point (through napari's mouse callbacks).
    hover = (1, 6) if (row, col) != (1, 6) else (1, 7)
    world = np.array(hover) * SCALE + TRANSLATE
    event = SimpleNamespace(position=(0.0, *world))  # a 3-D viewer position works too
    for callback in list(viewer.mouse_move_callbacks):
        callback(viewer, event)
    qtbot.waitUntil(lambda: widget.hover_pixel == hover, timeout=2000)
    j = compare.point_of_pixel(*hover, COLS)
    np.testing.assert_allclose(widget.highlight.get_data(), ([widget.x[j]], [widget.y[j]]))
    # Outside the maps: back to the selected pixel's point.
    widget.hover((0.0, -100.0, -100.0))
    assert widget.hover_pixel is None
    np.testing.assert_allclose(widget.highlight.get_data(), ([x], [y]))


def test_export_png_and_bad_inputs(maps_viewer, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager
    from PIL import Image

    viewer, _, _ = maps_viewer
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare")
    widget.select_pixel((3, 3))
    path = widget.export_png(tmp_path / "vermilion.png", dpi=50)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 3 * image.height

    # Maps of another size: a message, no exception, nothing compared.
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    try:
        viewer.add_image(np.ones((3, 3), np.float32), name="other scan")
        widget.element1_combo.value = "other scan"
    finally:
        notification_manager.notification_ready.disconnect(seen.append)
    assert widget.x is None and "differ in size" in widget.info.value
    assert any("differ in size" in note.message for note in seen)
    with pytest.raises(ValueError, match="nothing to export"):
        widget.export_png(tmp_path / "nothing.png")
    # Removing the compared layers leaves the widget usable.
    widget.element1_combo.value = "Hg L"
    assert widget.x is not None
    viewer.layers.remove("Hg L")
    assert widget.element1_combo.value != "Hg L"
