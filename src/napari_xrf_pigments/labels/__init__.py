"""Labelled regions of a cube: shapes with pigment labels, their file, and the labelled spectra.

Finetuning (paper sections 2.4, 4.1) needs spectra whose pigments are known. Users draw shapes
over a scanned mock-up and label each one: which pigments are in the paint stack ("present")
and which of them are in the top layer. A pixel belongs to a shape when its centre lies inside
the shape or on its border (napari puts pixel centres on integer coordinates).

Labels file (JSON, format ``napari-xrf-pigments/labels``, version 1)::

    {
      "format": "napari-xrf-pigments/labels",
      "format_version": 1,
      "pigments": [{"abbreviation": "VM", "name": "Vermilion"}, ...],
      "coordinates": "cube pixels (row, column); pixel centres on integers",
      "cube": {"source": "mockup.h5", "shape": [39, 57]},
      "shapes": [
        {"type": "rectangle", "vertices": [[2.5, 2.5], [2.5, 8.5], [8.5, 8.5], [8.5, 2.5]],
         "present": ["LW", "VM"], "top": ["VM"], "note": "Top 4 over Bottom 1A"},
        {"type": "polygon", "vertices": [[r, c], ...], "present": [], "top": []},
        ...
      ]
    }

- ``pigments`` is the label vocabulary: a labelled shape says, for each of them, whether it is
  present; pigments not listed in ``present`` are absent. ``present: []`` is bare ground.
  ``present: null`` marks a shape not labelled yet (kept in the file, refused by extraction).
- ``type`` is ``rectangle`` (4 corners, may be rotated), ``polygon`` (>= 3 vertices) or
  ``ellipse`` (the 4 corners of its bounding box, as napari stores it).
- ``top`` must be a subset of ``present``. ``cube`` is optional; when it records a shape,
  extraction from a cube of another size is refused.

The ground-truth file of the mock-up simulator (``/present/<ABBR>``, ``/top/<ABBR>`` boolean
(rows, columns) maps) is read as per-pixel labels of every pixel (:func:`labels_from_truth`);
:func:`read_labels` tells the two apart by content. Core package: no napari, no Qt.

One module per job: :mod:`.shapes` (the label model), :mod:`.raster` (pixels of shapes),
:mod:`.truth` (labels from ground-truth maps), :mod:`.files` (the labels file),
:mod:`.extract` (labelled spectra of a cube), :mod:`.layers` (a napari Shapes layer's columns).
Import from the package: ``from napari_xrf_pigments.labels import read_labels``.
"""

from ..datasets.trainset import PigmentLabel
from .extract import extract_training_set, read_pixels, to_pixel_labels
from .files import LABELS_FORMAT, labels_from_json, labels_to_json, read_labels, write_labels
from .layers import feature_columns, from_layer_columns, to_layer_columns
from .raster import rasterise, shape_mask
from .shapes import LabelledShape, LabelsError, PixelLabels, ShapeLabels, label_text
from .truth import labels_from_truth, strip_shapes

__all__ = [
    "LABELS_FORMAT",
    "LabelledShape",
    "LabelsError",
    "PigmentLabel",
    "PixelLabels",
    "ShapeLabels",
    "extract_training_set",
    "feature_columns",
    "from_layer_columns",
    "label_text",
    "labels_from_json",
    "labels_from_truth",
    "labels_to_json",
    "rasterise",
    "read_labels",
    "read_pixels",
    "shape_mask",
    "strip_shapes",
    "to_layer_columns",
    "to_pixel_labels",
    "write_labels",
]
