"""Labelled shapes: the labels file, rasterisation, checks, ground-truth labels, extraction."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.cube import XRFCube
from napari_xrf_pigments.errors import OutputExistsError, UnreadableFileError
from napari_xrf_pigments.labels import (
    LABELS_FORMAT,
    LabelledShape,
    LabelsError,
    PixelLabels,
    ShapeLabels,
    extract_training_set,
    from_layer_columns,
    label_text,
    labels_from_truth,
    rasterise,
    read_labels,
    shape_mask,
    to_layer_columns,
    write_labels,
)

PIGMENTS = [("VM", "Vermilion"), ("LW", "Lead white"), ("CB", "Cobalt blue")]


def rect(r0, c0, r1, c1, present=(), top=(), note=""):
    """Axis-aligned rectangle covering pixels r0..r1 x c0..c1 (edges on half pixels)."""
    v = [[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 + 0.5], [r1 + 0.5, c1 + 0.5], [r1 + 0.5, c0 - 0.5]]
    return LabelledShape("rectangle", v, present, top, note)


def example_labels():
    return ShapeLabels(
        PIGMENTS,
        [
            rect(0, 0, 2, 3, ("VM", "LW"), ("VM",), "Top 4 over lead white"),
            LabelledShape("polygon", [[5, 0], [5, 4], [8, 0]], ("CB",), ("CB",)),
            LabelledShape("ellipse", [[0, 6], [0, 9], [4, 9], [4, 6]], ()),
            LabelledShape("polygon", [[9, 8], [9, 9], [9.5, 9]], None),
        ],
        {"source": "mockup.h5", "shape": [10, 10]},
    )


def test_labels_file_round_trip(tmp_path):
    labels = example_labels()
    path = write_labels(tmp_path / "labels.json", labels)
    content = json.loads(path.read_text())
    assert content["format"] == LABELS_FORMAT and content["format_version"] == 1
    assert content["pigments"][0] == {"abbreviation": "VM", "name": "Vermilion"}
    assert content["shapes"][0]["type"] == "rectangle"
    assert content["shapes"][0]["present"] == ["VM", "LW"] and content["shapes"][0]["top"] == ["VM"]
    assert content["shapes"][3]["present"] is None  # not labelled yet
    back = read_labels(path)
    assert isinstance(back, ShapeLabels) and back.path == str(path)
    assert back.pigments == labels.pigments and back.cube == labels.cube
    for a, b in zip(labels.shapes, back.shapes):
        assert a.shape_type == b.shape_type and a.present == b.present and a.top == b.top
        assert a.note == b.note
        np.testing.assert_array_equal(a.vertices, b.vertices)
    with pytest.raises(OutputExistsError):
        write_labels(path, labels)
    write_labels(path, labels, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name != "labels.json"]  # no temporary left


def test_pixel_centres_inside_or_on_the_border_count():
    m = shape_mask(rect(1, 2, 3, 4), (6, 7))
    assert m.sum() == 9 and m[1:4, 2:5].all()
    # A vertex exactly on a pixel centre includes it (border counts).
    m = shape_mask(LabelledShape("rectangle", [[1, 1], [1, 3], [3, 3], [3, 1]]), (5, 5))
    assert m.sum() == 9
    # Triangle: (0,0),(0,4),(4,0) holds the centres with r + c <= 4.
    tri = LabelledShape("polygon", [[0, 0], [0, 4], [4, 0]])
    m = shape_mask(tri, (6, 6))
    rr, cc = np.indices((6, 6))
    np.testing.assert_array_equal(m, rr + cc <= 4)
    # Same with the vertices in the other order.
    m2 = shape_mask(LabelledShape("polygon", [[4, 0], [0, 4], [0, 0]]), (6, 6))
    np.testing.assert_array_equal(m2, m)
    # Rotated square (diamond) centred at (5, 5), "radius" 2: |dr| + |dc| <= 2.
    diamond = LabelledShape("rectangle", [[3, 5], [5, 7], [7, 5], [5, 3]])
    rr, cc = np.indices((11, 11))
    np.testing.assert_array_equal(shape_mask(diamond, (11, 11)), abs(rr - 5) + abs(cc - 5) <= 2)
    # Ellipse from its bounding box: centre (5, 5), semi-axes 2 (rows) and 4 (columns).
    ell = LabelledShape("ellipse", [[3, 1], [3, 9], [7, 9], [7, 1]])
    expected = ((rr - 5) / 2.0) ** 2 + ((cc - 5) / 4.0) ** 2 <= 1
    np.testing.assert_array_equal(shape_mask(ell, (11, 11)), expected)


def test_rasterise_gives_per_pixel_labels():
    px = rasterise(example_labels().__class__(PIGMENTS, example_labels().shapes[:3]), (10, 10))
    assert isinstance(px, PixelLabels) and px.shape == (10, 10)
    assert px.present[1, 1].tolist() == [True, True, False] and px.top[1, 1].tolist() == [True, False, False]
    assert px.present[6, 1].tolist() == [False, False, True]
    assert px.mask[2, 7] and not px.present[2, 7].any()  # ellipse: bare ground
    assert not px.mask[9, 9] and px.shape_index[9, 9] == -1 and px.shape_index[0, 0] == 0
    # 3 x 4 rectangle, 5 + 3 + 2 + 1 triangle centres, 8 in the ellipse.
    assert px.n_pixels == 12 + 11 + 8 == 12 + 11 + int(shape_mask(example_labels().shapes[2], (10, 10)).sum())
    # Label columns in another order (a model's), or a subset.
    px2 = rasterise(ShapeLabels(PIGMENTS, example_labels().shapes[:1]), (10, 10), pigments=["LW", "VM"])
    assert px2.present[0, 0].tolist() == [True, True] and px2.top[0, 0].tolist() == [False, True]
    with pytest.raises(LabelsError, match="do not say whether ZW"):
        rasterise(example_labels(), (10, 10), pigments=["VM", "ZW"])


def test_overlapping_shapes_with_conflicting_labels_are_refused():
    same = ShapeLabels(PIGMENTS, [rect(0, 0, 3, 3, ("VM",)), rect(2, 2, 5, 5, ("VM",))])
    px = rasterise(same, (8, 8))
    assert px.n_pixels == 16 + 16 - 4  # overlap counted once
    clash = ShapeLabels(PIGMENTS, [rect(0, 0, 3, 3, ("VM",)), rect(2, 2, 5, 5, ("VM", "LW"), ("LW",))])
    with pytest.raises(LabelsError) as err:
        rasterise(clash, (8, 8))
    text = str(err.value)
    assert "shapes 0 and 1 overlap on 4 pixels with different labels" in text
    assert "(VM vs VM, LW (top LW))" in text


def test_empty_outside_and_unlabelled_shapes_are_listed_in_one_message():
    labels = ShapeLabels(
        PIGMENTS,
        [
            rect(0, 0, 1, 1, ("VM",)),
            LabelledShape("rectangle", [[2.1, 2.1], [2.1, 2.4], [2.4, 2.4], [2.4, 2.1]], ("LW",)),
            rect(20, 20, 25, 25, ("CB",)),
            rect(4, 4, 5, 5, None),
        ],
    )
    with pytest.raises(LabelsError) as err:
        rasterise(labels, (10, 10))
    text = str(err.value)
    assert text.startswith("3 problems with the labelled shapes")
    assert "shape 1 (rectangle" in text and "covers no pixel centre" in text
    assert "shape 2 (rectangle" in text and "lies outside the cube (rows 0..9, columns 0..9)" in text
    assert "shape 3 (rectangle" in text and "has no label yet" in text
    # A shape over the edge is clipped, with a note.
    px = rasterise(ShapeLabels(PIGMENTS, [rect(8, 8, 12, 12, ("VM",))]), (10, 10))
    assert px.n_pixels == 4 and "extends beyond the cube" in px.notes[0]
    with pytest.raises(LabelsError, match="no shapes"):
        rasterise(ShapeLabels(PIGMENTS, []), (10, 10))


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(LabelsError, match="must also be present: LW"):
        LabelledShape("rectangle", rect(0, 0, 1, 1).vertices, ("VM",), ("LW",))
    with pytest.raises(LabelsError, match="line shape encloses no pixels"):
        LabelledShape("line", [[0, 0], [3, 3]], ("VM",))
    with pytest.raises(LabelsError, match="at least 3 vertices"):
        LabelledShape("polygon", [[0, 0], [3, 3]], ("VM",))
    with pytest.raises(LabelsError, match="shape 0 is labelled with ZW"):
        ShapeLabels(PIGMENTS, [rect(0, 0, 1, 1, ("ZW",))])
    assert label_text(("LW", "VM"), ("VM",)) == "LW, VM (top VM)"
    assert label_text(()) == "bare ground" and label_text(None) == "unlabelled"


def test_malformed_labels_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LabelsError, match="not a napari-xrf-pigments labels file"):
        read_labels(bad)
    content = json.loads(json.dumps({
        "format": LABELS_FORMAT, "format_version": 1, "pigments": PIGMENTS,
        "shapes": [{"type": "rectangle", "vertices": [[0, 0], [0, 1]], "present": ["VM"]}],
    }))
    bad.write_text(json.dumps(content))
    with pytest.raises(LabelsError, match="shape 0: a rectangle needs 4 vertices"):
        read_labels(bad)
    content["format_version"] = 99
    bad.write_text(json.dumps(content))
    with pytest.raises(LabelsError, match="newer"):
        read_labels(bad)
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01 not json")
    with pytest.raises(UnreadableFileError, match="neither a labels file"):
        read_labels(tmp_path / "junk.bin")
    with pytest.raises(UnreadableFileError, match="no such file"):
        read_labels(tmp_path / "missing.json")


def _truth(rows=4, cols=5):
    present = {a: np.zeros((rows, cols), bool) for a in ("VM", "LW", "CB")}
    top = {a: np.zeros((rows, cols), bool) for a in present}
    present["VM"][:2] = top["VM"][:2] = True
    present["LW"][:, :3] = True
    top["LW"][2:, :3] = True
    return {
        "present": present, "top": top,
        "top_index": np.where(np.arange(rows)[:, None] < 2, 0, -1).repeat(cols, 1).astype(np.int16),
        "bottom_index": np.where(np.arange(cols)[None, :] < 3, 0, -1).repeat(rows, 0).astype(np.int16),
        "attrs": {"tops": ["Top 4"], "bottoms": ["Bottom 2A"]},
    }


def test_ground_truth_file_gives_every_pixel_a_label(tmp_path):
    from napari_xrf_pigments.datasets.mockup import write_truth

    truth = _truth()
    # A truth file with a .json name is still recognised by content.
    path = write_truth(tmp_path / "truth.json", truth)
    px = read_labels(path)
    assert isinstance(px, PixelLabels) and px.source["kind"] == "truth"
    assert px.abbreviations == ["VM", "LW", "CB"] and px.pigments[0].name == "Vermilion"
    assert px.mask.all() and px.shape == (4, 5)
    assert not px.present[3, 4].any()  # all false = bare ground, still a labelled example
    assert px.present[0, 0].tolist() == [True, True, False] and px.top[0, 0].tolist() == [True, False, False]
    assert px.top[3, 0].tolist() == [False, True, False]
    px2 = labels_from_truth(truth, pigments=["CB", "VM"])
    assert px2.present[0, 0].tolist() == [False, True]
    with pytest.raises(LabelsError, match="no map for ZW"):
        labels_from_truth(truth, pigments=["ZW"])
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(UnreadableFileError, match="not a ground-truth file"):
        read_labels(tmp_path / "other.h5")


def _cube(rows=10, cols=10, channels=64):
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, (rows, cols, channels)).astype(np.uint16)
    return XRFCube.from_array(counts, zero=2.0, gain=0.1, source="cube.h5")


def test_extract_training_set_reads_the_labelled_pixels(tmp_path):
    cube = _cube()
    labels = ShapeLabels(PIGMENTS, example_labels().shapes[:3], {"shape": [10, 10]})
    data = extract_training_set(cube, labels, pigments=["CB", "VM", "LW"], labels_path="lab.json")
    px = rasterise(labels, (10, 10))
    assert len(data) == px.n_pixels and data.abbreviations == ["CB", "VM", "LW"]
    rows, cols = data.params["row"], data.params["col"]
    np.testing.assert_array_equal(data.spectra, cube.counts[rows, cols].astype(np.float32))
    np.testing.assert_allclose(data.energy, cube.energy.energies())
    i = int(np.nonzero((rows == 0) & (cols == 0))[0][0])
    assert data.present[i].tolist() == [False, True, True] and data.top[i].tolist() == [False, True, False]
    assert data.params["shape"][i] == 0
    assert data.provenance["labels"]["path"] == "lab.json" and data.provenance["cube"]["source"] == "cube.h5"
    # An HDF5 (lazy) cube gives the same spectra.
    from napari_xrf_pigments.io import open_cube, write_cube

    lazy = open_cube(write_cube(tmp_path / "cube.h5", cube))
    again = extract_training_set(lazy, labels)
    np.testing.assert_array_equal(again.spectra, cube.counts[again.params["row"], again.params["col"]])


def test_extraction_checks_the_cube():
    cube = _cube()
    other = {"shape": [12, 10], "source": "a.h5"}
    with pytest.raises(LabelsError, match=r"drawn on a 12 x 10 cube \(a.h5\), this cube is 10 x 10"):
        extract_training_set(cube, ShapeLabels(PIGMENTS, [rect(0, 0, 1, 1, ())], other))
    with pytest.raises(LabelsError, match="belong to another cube"):
        extract_training_set(cube, labels_from_truth(_truth()))
    counts = np.array(cube.counts)
    counts[0, 0] = 0
    zero = XRFCube.from_array(counts, zero=2.0, gain=0.1)
    data = extract_training_set(zero, ShapeLabels(PIGMENTS, [rect(0, 0, 1, 1, ("VM",))]))
    assert len(data) == 3 and "1 labelled pixels without counts were left out" in data.provenance["notes"]
    from napari_xrf_pigments.errors import CalibrationError

    with pytest.raises(CalibrationError, match="no energy calibration"):
        extract_training_set(XRFCube.from_array(counts), ShapeLabels(PIGMENTS, [rect(0, 0, 1, 1, ())]))


def test_layer_columns_round_trip():
    labels = example_labels()
    data, types, features = to_layer_columns(labels)
    assert types == ["rectangle", "polygon", "ellipse", "polygon"]
    assert features["labelled"] == [True, True, True, False]
    assert features["present_VM"] == [True, False, False, False]
    assert features["top_CB"] == [False, True, False, False]
    assert features["label"][0] == "VM, LW (top VM)" or features["label"][0] == "LW, VM (top VM)"
    back = from_layer_columns(data, types, features, PIGMENTS, cube=labels.cube)
    for a, b in zip(labels.shapes, back.shapes):
        assert set(a.present or ()) == set(b.present or ()) and a.labelled == b.labelled
        assert set(a.top) == set(b.top) and a.note == b.note
        np.testing.assert_array_equal(a.vertices, b.vertices)
    # Shapes of a layer without label columns are not labelled (not "bare ground").
    plain = from_layer_columns(data, types, {}, PIGMENTS)
    assert not any(s.labelled for s in plain.shapes)
    # 3-D vertices (a shapes layer over the (channels, rows, columns) cube) keep row, column.
    data3 = [np.column_stack([np.full(len(v), 7.0), v]) for v in data]
    back3 = from_layer_columns(data3, types, features, PIGMENTS)
    np.testing.assert_array_equal(back3.shapes[0].vertices, labels.shapes[0].vertices)


def test_label_modules_load_no_napari_qt_or_keras():
    code = (
        "import sys, json\n"
        "import napari_xrf_pigments.labels, napari_xrf_pigments.model.finetuning\n"
        "heavy = ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'keras', 'tensorflow')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_strip_shapes_label_a_crossed_strip_mockup_like_its_truth(tmp_path):
    from napari_xrf_pigments.datasets.mockup import crossed_strips, write_truth
    from napari_xrf_pigments.labels import strip_shapes

    layout = crossed_strips(("Top 4", "Top 1"), ("Bottom 2A", "Bottom 3A", "Bottom 6"),
                            strip_px=3, gap_px=2, margin_px=2)
    rows, cols = layout.shape
    # Truth of the layout, built by hand: VM in Top 4; LW, CM, PB, CB in Top 1, bottoms below.
    recipes_top = [("VM",), ("LW", "CM", "PB", "CB")]
    recipes_bottom = [("ZW", "LW", "VM"), ("ZW", "LW", "CB", "CrG"), ("VM",)]
    abbrs = ["CB", "CM", "CrG", "LW", "PB", "VM", "ZW"]
    present = {a: np.zeros((rows, cols), bool) for a in abbrs}
    top = {a: np.zeros((rows, cols), bool) for a in abbrs}
    for r in range(rows):
        for c in range(cols):
            t, b = layout.top_index[r, c], layout.bottom_index[r, c]
            for a in (recipes_bottom[b] if b >= 0 else ()):
                present[a][r, c] = True
                if t < 0:
                    top[a][r, c] = True
            for a in (recipes_top[t] if t >= 0 else ()):
                present[a][r, c] = top[a][r, c] = True
    truth = {"present": present, "top": top, "top_index": layout.top_index,
             "bottom_index": layout.bottom_index, "attrs": {}}
    labels = strip_shapes(truth)
    px = rasterise(labels, (rows, cols))
    assert px.mask.all()  # every pixel covered exactly once, no conflicts
    expected = labels_from_truth(truth)
    np.testing.assert_array_equal(px.present, expected.present)
    np.testing.assert_array_equal(px.top, expected.top)
    # (2 tops + 3 gaps/margins) x (3 bottoms + 4 gaps/margins) cells.
    assert len(labels.shapes) == 5 * 7
    inset = strip_shapes(truth, inset=1)
    px1 = rasterise(inset, (rows, cols))
    assert 0 < px1.n_pixels < rows * cols and not px1.mask[0].any()
    # From the ground-truth file, with the library's full names.
    path = write_truth(tmp_path / "truth.h5", truth)
    from_file = strip_shapes(path)
    assert from_file.pigments[0].name != from_file.pigments[0].abbreviation
    assert len(from_file.shapes) == 35


def test_extraction_refuses_more_spectra_than_memory_allows(monkeypatch):
    from napari_xrf_pigments.labels import extract

    monkeypatch.setattr(extract, "MAX_EXTRACT_BYTES", 64 * 50)
    with pytest.raises(LabelsError, match="100 labelled pixels x 64 channels need"):
        extract_training_set(_cube(), ShapeLabels(PIGMENTS, [rect(0, 0, 9, 9, ("VM",))]))
