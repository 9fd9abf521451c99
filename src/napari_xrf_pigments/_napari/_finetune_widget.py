"""Finetuning dock widget: label shapes over a mock-up, finetune a model, re-run the maps.

Thin adapter over :mod:`napari_xrf_pigments.labels` (the labels and their file) and
:mod:`napari_xrf_pigments.model.finetuning` (the training). Labels live in a Shapes layer's
features: ``labelled``, ``present_<ABBR>``, ``top_<ABBR>`` (bool), ``label`` (text shown on the
shape) and ``note``; vertices are converted to cube pixels through the layers' transforms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..datasets.trainset import as_pigment_labels
from ..errors import XRFPigmentsError
from ..labels import (
    LabelsError,
    PixelLabels,
    ShapeLabels,
    feature_columns,
    from_layer_columns,
    label_text,
    rasterise,
    read_labels,
    strip_shapes,
    to_layer_columns,
    write_labels,
)
from ..model.defaults import FINETUNE_DEFAULTS as D
from ..model.files import ModelFileError, default_model_path, read_metadata
from ..model.finetuning import check_finetune_output
from ..model.metrics import format_comparison
from ._jobs import JobRunner, error_message
from ._layers import cube_layers, cube_of

DEFAULT_MODEL, MODEL_FOLDER = "shipped default", "model folder"
LABELS_ROLE = "finetune-labels"
#: Shape colours per distinct label (RGBA, translucent faces); unlabelled shapes are grey.
PALETTE = np.array([
    [0.90, 0.25, 0.20], [0.20, 0.55, 0.90], [0.95, 0.75, 0.10], [0.30, 0.75, 0.35],
    [0.70, 0.35, 0.85], [0.95, 0.55, 0.15], [0.20, 0.80, 0.80], [0.85, 0.40, 0.60],
    [0.55, 0.55, 0.20], [0.45, 0.30, 0.20], [0.60, 0.80, 0.95], [0.75, 0.75, 0.75],
])
UNLABELLED = np.array([0.5, 0.5, 0.5])


# -- layer <-> labels (main thread) ---------------------------------------------------------------


def layer_pigments(layer):
    """The label vocabulary stored on a labels Shapes layer (from its metadata), or None."""
    pigments = layer.metadata.get("xrf_pigments") if layer is not None else None
    return as_pigment_labels(pigments) if pigments else None


def shapes_to_labels(shapes_layer, cube_layer, pigments=None) -> ShapeLabels:
    """Labels of a Shapes layer, vertices in the cube's pixel coordinates (row, column).

    Each vertex goes from the shapes layer's data coordinates to world coordinates and from
    there into the cube layer's data coordinates, so layers with other scales, translations or
    affines still label the right pixels.
    """
    cube = cube_of(cube_layer)
    pigments = as_pigment_labels(pigments or layer_pigments(shapes_layer) or ())
    data = []
    for vertices in shapes_layer.data:
        pixels = []
        for v in np.asarray(vertices, dtype=np.float64):
            world = np.asarray(shapes_layer.data_to_world(v), dtype=np.float64)
            # Rows and columns are the last two world axes of both layers.
            full = np.zeros(cube_layer.ndim)
            full[-2:] = world[-2:]
            pixels.append(np.asarray(cube_layer.world_to_data(full), dtype=np.float64)[-2:])
        data.append(np.array(pixels))
    features = shapes_layer.features
    columns = {name: features[name].tolist() for name in features.columns}
    source = {"shape": list(cube.shape[:2])}
    if cube.source:
        source["source"] = str(cube.source)
    return from_layer_columns(data, list(shapes_layer.shape_type), columns, pigments, cube=source)


def _colours(labels_text, labelled):
    keys = sorted({t for t, ok in zip(labels_text, labelled) if ok})
    faces = np.empty((len(labels_text), 4))
    edges = np.empty((len(labels_text), 4))
    for i, (text, ok) in enumerate(zip(labels_text, labelled)):
        rgb = PALETTE[keys.index(text) % len(PALETTE)] if ok else UNLABELLED
        faces[i] = [*rgb, 0.35 if ok else 0.15]
        edges[i] = [*rgb, 1.0] if ok else [0.9, 0.2, 0.2, 1.0]
    return faces, edges


def style_labels_layer(layer) -> None:
    """Colour shapes by label (one colour per distinct label) and write the label on each."""
    n = len(layer.data)
    if n == 0:
        return
    features = layer.features
    texts = [str(t) for t in features["label"]] if "label" in features else ["unlabelled"] * n
    labelled = [bool(v) for v in features["labelled"]] if "labelled" in features else [False] * n
    faces, edges = _colours(texts, labelled)
    layer.face_color = faces
    layer.edge_color = edges
    layer.refresh_text()


def _defaults(pigments) -> dict:
    d = {name: False for name in feature_columns(pigments)}
    d.update({"label": "unlabelled", "note": ""})
    return d


def labels_layer_kwargs(pigments, labels: ShapeLabels | None = None, *, scale=(1.0, 1.0),
                        translate=(0.0, 0.0), units=("pixel", "pixel"),
                        name="labels") -> tuple[list, dict]:
    """Data and ``add_shapes`` keywords of a labels Shapes layer (also a LayerDataTuple's).

    Parameters
    ----------
    pigments : sequence
        Label vocabulary (ignored when ``labels`` is given: its own is used).
    labels : ShapeLabels, optional
        Shapes in cube pixels (row, column); none gives an empty layer.
    scale, translate, units : pair
        The cube layer's last two, so that the layer's data coordinates are cube pixels.
    name : str

    Returns
    -------
    data : list of ndarray
    kwargs : dict
    """
    # lazy: pandas is heavy
    import pandas as pd

    pigments = as_pigment_labels(labels.pigments if labels is not None else pigments)
    scale, translate = tuple(scale), tuple(translate)
    data, types, columns = ([], [], {c: [] for c in feature_columns(pigments)})
    if labels is not None:
        data, types, columns = to_layer_columns(labels)
    frame = pd.DataFrame({
        # Explicit dtypes: an empty layer must still take "unlabelled" and False defaults.
        column: pd.Series(values, dtype=object if column in ("label", "note") else bool)
        for column, values in columns.items()
    })
    kwargs = {
        "shape_type": types or "rectangle",
        "name": name,
        "scale": scale,
        "translate": translate,
        "units": tuple(units),
        "features": frame,
        "text": {"string": "{label}", "size": 7, "color": "white", "anchor": "upper_left"},
        "edge_width": max(scale) * 0.15,
        "metadata": {"xrf_role": LABELS_ROLE, "xrf_pigments": [p._asdict() for p in pigments]},
        # Shapes drawn later start unlabelled (napari would copy the last shape's features).
        "feature_defaults": _defaults(pigments),
    }
    if data:
        # As style_labels_layer colours them: a LayerDataTuple gets no call after creation.
        kwargs["face_color"], kwargs["edge_color"] = _colours(
            [str(t) for t in columns["label"]], [bool(v) for v in columns["labelled"]]
        )
    return data, kwargs


def add_labels_layer(viewer, cube_layer, pigments, labels: ShapeLabels | None = None, *, name=None):
    """A Shapes layer for labels over ``cube_layer`` (aligned with it: its data coordinates are
    the cube's pixel coordinates), holding ``labels`` if given."""
    pigments = as_pigment_labels(labels.pigments if labels is not None else pigments)
    data, kwargs = labels_layer_kwargs(
        pigments, labels, scale=cube_layer.scale[-2:], translate=cube_layer.translate[-2:],
        units=tuple(str(u) for u in cube_layer.units[-2:]), name=name or f"{cube_layer.name} labels",
    )
    layer = viewer.add_shapes(data or None, **kwargs)
    style_labels_layer(layer)
    return layer


def set_labels(layer, indices, pigments, present, top) -> None:
    """Give the shapes ``indices`` of ``layer`` one label (top-layer pigments are present too)."""
    present = set(present) | set(top)
    pigments = as_pigment_labels(pigments)
    features = layer.features.copy()
    for name in feature_columns(pigments):
        if name not in features:
            features[name] = "" if name in ("label", "note") else False
    order = [p.abbreviation for p in pigments]
    text = label_text([a for a in order if a in present], [a for a in order if a in top])
    rows = sorted(int(i) for i in indices)
    features.loc[rows, "labelled"] = True
    for a in order:
        features.loc[rows, f"present_{a}"] = a in present
        features.loc[rows, f"top_{a}"] = a in top
    features.loc[rows, "label"] = text
    layer.features = features
    style_labels_layer(layer)


FINETUNE_TARGET = "napari_xrf_pigments.model.isolated:finetune_job"


def finetune_job(out, base_path, cube, labels, curve, **kwargs):
    """Job: finetune in the child process (TensorFlow never loads into napari's, see
    :mod:`~napari_xrf_pigments.model.isolated`), noting every epoch's losses in ``curve`` for the loss plot.

    Returns
    -------
    dict
        :func:`~napari_xrf_pigments.model.isolated.finetune_job`'s figures.
    """
    from ..model.isolated import isolated, portable_cube

    job = isolated(FINETUNE_TARGET, str(out), None if base_path is None else str(base_path),
                   portable_cube(cube), labels, **kwargs)
    try:
        while True:
            step = next(job)
            if step is not None and step.info:
                curve.append(dict(step.info))  # list.append is atomic: safe across threads
            yield step
    except StopIteration as stop:
        return stop.value
    finally:
        job.close()  # a cancelled job stops the child process


class FinetuneWidget(QWidget):
    """Label shapes over a mock-up and finetune a pigment model on them (paper 2.4, 4.1).

    1. Choose the cube and the base model; "New labels layer" adds a Shapes layer over the cube
       (or load a labels file, or a mock-up's ground-truth file: its strips become shapes).
    2. Draw rectangles/polygons over paint of known composition; select one or several, tick
       the pigments present and those in the top layer, "Apply to selected shapes". Shapes are
       coloured and annotated by label; selecting a shape shows its label.
    3. "Finetune": 20 % of the labelled pixels train, the rest test; the loss curve updates
       every epoch; the before/after table appears at the end and the new model is saved.
       The training runs in a child process (TensorFlow and napari's OpenGL must not share
       one, see :mod:`~napari_xrf_pigments.model.isolated`); Cancel stops it and writes nothing.
    4. "Recompute pigment maps" opens the Pigment maps widget on the new model and runs it.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.pigments = ()
        self.curve = []
        #: The last run's figures (:func:`~napari_xrf_pigments.model.isolated.finetune_job`), or None.
        self.result = None
        #: More :func:`~..model.finetuning.finetune` keywords for the next runs (scripts, tests).
        self.options = {}
        self.model_out = None
        self._watched = None

        self.cube_combo = QComboBox()
        self.shapes_combo = QComboBox()
        self.model_source = QComboBox()
        self.model_source.addItems([DEFAULT_MODEL, MODEL_FOLDER])
        self.model_dir = QLineEdit()
        self.model_dir.setPlaceholderText("base model folder")
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.new_layer_button = QPushButton("New labels layer")
        self.load_button = QPushButton("Load labels…")
        self.save_button = QPushButton("Save labels…")

        self.label_box = QGroupBox("Label of the selected shapes")
        self.label_grid = QGridLayout(self.label_box)
        self.present_boxes, self.top_boxes = {}, {}
        self.selection_info = QLabel("Select shapes to see or set their label.")
        self.selection_info.setWordWrap(True)
        self.apply_button = QPushButton("Apply to selected shapes")

        self.fraction = QDoubleSpinBox()
        self.fraction.setRange(0.05, 0.95)
        self.fraction.setSingleStep(0.05)
        self.fraction.setValue(D["fraction"])
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(D["seed"])
        # The CLI's defaults per stage, so GUI runs compare with the CLI and the docs.
        self.head_epochs = QSpinBox()
        self.head_epochs.setRange(0, 10000)
        self.head_epochs.setValue(D["head_epochs"])
        self.head_epochs.setToolTip("Most epochs of stage 1, the dense head alone (0: skip; early "
                                    "stopping usually ends sooner)")
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 10000)
        self.epochs.setValue(D["epochs"])
        self.epochs.setToolTip("Most epochs of stage 2, all layers (0: skip; early stopping "
                               "usually ends sooner)")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("new model folder (must not exist)")
        self.out_browse = QPushButton("…")
        self.run_button = QPushButton("Finetune")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.maps_button = QPushButton("Recompute pigment maps with the new model")
        self.maps_button.setEnabled(False)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.2), tight_layout=True)
        self.axes = self.figure.add_subplot(111)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(160)
        self.table = QPlainTextEdit()
        self.table.setReadOnly(True)
        self.table.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QFont("Monospace")
        font.setStyleHint(QFont.StyleHint.TypeWriter)
        self.table.setFont(font)
        self.table.setMinimumHeight(120)

        # Everything in a scroll area: the widget is taller than a 1366 x 768 screen allows.
        content = QWidget()
        layout = QVBoxLayout(content)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        form = QFormLayout()
        form.addRow("cube", self.cube_combo)
        form.addRow("base model", self.model_source)
        form.addRow("", self.model_dir)
        form.addRow("", self.model_info)
        form.addRow("labels layer", self.shapes_combo)
        layout.addLayout(form)
        row = QHBoxLayout()
        for b in (self.new_layer_button, self.load_button, self.save_button):
            row.addWidget(b)
        layout.addLayout(row)
        layout.addWidget(self.label_box)
        layout.addWidget(self.selection_info)
        layout.addWidget(self.apply_button)
        form = QFormLayout()
        form.addRow("finetune on", self.fraction)
        form.addRow("seed", self.seed)
        form.addRow("epochs, stage 1 (head)", self.head_epochs)
        form.addRow("epochs, stage 2 (all)", self.epochs)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit)
        out_row.addWidget(self.out_browse)
        form.addRow("save as", out_row)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas)
        layout.addWidget(self.table)
        layout.addWidget(self.maps_button)

        self.runner = JobRunner(self, "Finetuning", on_state=self._set_running, on_status=self._on_status)

        self.model_source.currentIndexChanged.connect(self._on_model_changed)
        self.model_dir.editingFinished.connect(self._on_model_changed)
        self.shapes_combo.currentIndexChanged.connect(self._on_shapes_changed)
        self.new_layer_button.clicked.connect(self.new_labels_layer)
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button.clicked.connect(self._save_dialog)
        self.apply_button.clicked.connect(self.apply_label)
        self.out_browse.clicked.connect(self._out_dialog)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.maps_button.clicked.connect(self.recompute_maps)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)
        self.reset_choices()
        self._on_model_changed()
        self._draw_curve()

    # ------------------------------------------------------------------ choices

    def reset_choices(self, *_):
        """Refill the cube and shapes lists from the viewer's layers (keeps the choices)."""
        for combo, names in (
            (self.cube_combo, [layer.name for layer in cube_layers(self.viewer)]),
            (self.shapes_combo, [layer.name for layer in self.viewer.layers if isinstance(layer, Shapes)]),
        ):
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._on_shapes_changed()

    def cube_layer(self):
        name = self.cube_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def shapes_layer(self):
        name = self.shapes_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def model_path(self):
        """The chosen base model folder, or None for the shipped model (checked here)."""
        if self.model_source.currentText() == DEFAULT_MODEL:
            default_model_path()  # a clear error when none is installed
            return None
        text = self.model_dir.text().strip()
        if not text:
            raise ModelFileError("choose a base model folder (one written by `xrf-pigments train`)")
        return Path(text)

    def set_model_folder(self, path) -> None:
        """Use the model in ``path`` as the base model."""
        self.model_source.setCurrentText(MODEL_FOLDER)
        self.model_dir.setText(str(path))
        self._on_model_changed()

    def _on_model_changed(self, *_):
        self.model_dir.setVisible(self.model_source.currentText() == MODEL_FOLDER)
        try:
            path = self.model_path()
            meta = read_metadata(default_model_path() if path is None else path)
        except XRFPigmentsError as exc:
            self.model_info.setText(str(exc))
            return
        pigments = as_pigment_labels(meta["pigments"])
        self.model_info.setText(
            f"{meta.get('name') or 'model'}: {', '.join(p.abbreviation for p in pigments)}"
        )
        layer = self.shapes_layer()
        if layer is None or layer_pigments(layer) is None:
            self._set_pigments(pigments)

    def _on_shapes_changed(self, *_):
        layer = self.shapes_layer()
        if self._watched is not None and self._watched is not layer:
            try:
                self._watched.selected_data.events.items_changed.disconnect(self.show_selection)
            except (TypeError, ValueError, RuntimeError):
                pass
            self._watched = None
        if layer is None:
            return
        if self._watched is None:
            layer.selected_data.events.items_changed.connect(self.show_selection)
            self._watched = layer
        pigments = layer_pigments(layer)
        if pigments is not None:
            self._set_pigments(pigments)
        self.show_selection()

    def _set_pigments(self, pigments):
        pigments = as_pigment_labels(pigments)
        if tuple(pigments) == tuple(self.pigments):
            return
        self.pigments = pigments
        while self.label_grid.count():
            item = self.label_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.present_boxes, self.top_boxes = {}, {}
        self.label_grid.addWidget(QLabel("pigment"), 0, 0)
        self.label_grid.addWidget(QLabel("present"), 0, 1)
        self.label_grid.addWidget(QLabel("top layer"), 0, 2)
        for i, p in enumerate(pigments, start=1):
            self.label_grid.addWidget(QLabel(f"{p.name} ({p.abbreviation})"), i, 0)
            present, top = QCheckBox(), QCheckBox()
            present.setToolTip(f"{p.name} is in the paint stack")
            top.setToolTip(f"{p.name} is in the top paint layer")
            # A top-layer pigment is present; an absent one is not on top.
            top.toggled.connect(lambda on, box=present: on and box.setChecked(True))
            present.toggled.connect(lambda on, box=top: (not on) and box.setChecked(False))
            self.label_grid.addWidget(present, i, 1)
            self.label_grid.addWidget(top, i, 2)
            self.present_boxes[p.abbreviation], self.top_boxes[p.abbreviation] = present, top

    # ------------------------------------------------------------------ labelling

    def checked(self) -> tuple[list, list]:
        """(present, top) abbreviations ticked in the label grid."""
        present = [a for a, box in self.present_boxes.items() if box.isChecked()]
        top = [a for a, box in self.top_boxes.items() if box.isChecked()]
        return present, top

    def set_checked(self, present=(), top=()) -> None:
        for box in self.top_boxes.values():
            box.setChecked(False)
        for a, box in self.present_boxes.items():
            box.setChecked(a in present)
        for a, box in self.top_boxes.items():
            box.setChecked(a in top)

    def show_selection(self, *_):
        """Show the label of the (first) selected shape in the checkboxes."""
        layer = self.shapes_layer()
        selected = sorted(layer.selected_data) if layer is not None else []
        if not selected:
            self.selection_info.setText("Select shapes to see or set their label.")
            return
        features = layer.features
        first = selected[0]
        def on(column):
            return column in features and bool(features[column].iloc[first])

        if on("labelled"):
            self.set_checked([a for a in self.present_boxes if on(f"present_{a}")],
                             [a for a in self.top_boxes if on(f"top_{a}")])
        texts = {str(features["label"].iloc[i]) for i in selected} if "label" in features else {"unlabelled"}
        self.selection_info.setText(
            f"{len(selected)} shape{'s' if len(selected) > 1 else ''} selected: "
            + ("; ".join(sorted(texts)) if len(texts) <= 3 else f"{len(texts)} different labels")
        )

    def new_labels_layer(self, *_):
        """Add an empty labels layer over the chosen cube (drawing mode: rectangles)."""
        cube_layer = self.cube_layer()
        if cube_of(cube_layer) is None:
            show_error("Finetuning: open a cube first (File > Open).")
            return None
        if not self.pigments:
            show_error("Finetuning: choose a base model first: its pigments are the labels.")
            return None
        layer = add_labels_layer(self.viewer, cube_layer, self.pigments)
        layer.mode = "add_rectangle"
        self.shapes_combo.setCurrentText(layer.name)
        return layer

    def apply_label(self, *_) -> bool:
        """Give the ticked label to every selected shape."""
        layer = self.shapes_layer()
        if layer is None or not len(layer.selected_data):
            show_error("Finetuning: select one or more shapes of the labels layer first.")
            return False
        if layer_pigments(layer) is None:
            layer.metadata = {**layer.metadata, "xrf_pigments": [p._asdict() for p in self.pigments]}
            layer.feature_defaults = _defaults(self.pigments)
        present, top = self.checked()
        set_labels(layer, layer.selected_data, layer_pigments(layer), present, top)
        self.show_selection()
        return True

    def current_labels(self) -> ShapeLabels:
        """The chosen shapes layer's labels in cube pixels (raises LabelsError/ValueError)."""
        layer, cube_layer = self.shapes_layer(), self.cube_layer()
        if layer is None:
            raise LabelsError("choose a labels layer (New labels layer, or Load labels)")
        if cube_of(cube_layer) is None:
            raise LabelsError("choose a cube layer")
        return shapes_to_labels(layer, cube_layer, layer_pigments(layer) or self.pigments)

    def save_labels(self, path) -> Path:
        """Write the labels layer to a labels file (replacing it: the dialog asked)."""
        return write_labels(path, self.current_labels(), force=True)

    def load_labels(self, path):
        """Add a labels layer from a labels file, or from a mock-up ground-truth file (its strips)."""
        cube_layer = self.cube_layer()
        if cube_of(cube_layer) is None:
            raise LabelsError("open the cube the labels belong to first")
        labels = read_labels(path)
        if isinstance(labels, PixelLabels):
            labels = strip_shapes(path)  # one rectangle per strip crossing, gap and margin
        layer = add_labels_layer(self.viewer, cube_layer, None, labels, name=f"{Path(path).stem} labels")
        self.shapes_combo.setCurrentText(layer.name)
        return layer

    def _load_dialog(self, *_):
        path, _ = QFileDialog.getOpenFileName(self, "Load labels", "", "Labels (*.json *.h5);;All files (*)")
        if path:
            try:
                self.load_labels(path)
            except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
                show_error(f"Finetuning: {error_message(exc)}")

    def _save_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", "labels.json", "Labels (*.json)")
        if path:
            try:
                show_info(f"labels written to {self.save_labels(path)}")
            except Exception as exc:  # noqa: BLE001
                show_error(f"Finetuning: {error_message(exc)}")

    def _out_dialog(self, *_):
        path, _ = QFileDialog.getSaveFileName(self, "New model folder", "finetuned-model")
        if path:
            self.out_edit.setText(path)

    # ------------------------------------------------------------------ running

    def run(self, *_):
        """Start finetuning (refused with a message when inputs are missing or one runs)."""
        if self.runner.running:
            show_info("Finetuning is running: wait for it or press Cancel first.")
            return None
        cube = cube_of(self.cube_layer())
        out = self.out_edit.text().strip()
        try:
            if cube is None:
                raise LabelsError("choose a cube layer (open the mock-up first)")
            if not out:
                raise LabelsError("choose a folder for the new model (save as)")
            base = self.model_path()
            from ..model.files import default_model_path

            check_finetune_output(out, default_model_path() if base is None else base)
            labels = self.current_labels()  # copied on the main thread; raises LabelsError
            # Shape problems (none drawn, unlabelled, empty, outside, conflicting) are cheap to
            # find: report them now rather than from the worker.
            rasterise(labels, cube.shape[:2])
        except (XRFPigmentsError, ValueError) as exc:
            show_error(f"Finetuning: {error_message(exc)}")
            self._on_status(f"not started: {error_message(exc)}")
            return None
        self.curve = []
        self.result = None
        self.maps_button.setEnabled(False)
        self.table.setPlainText("")
        self._draw_curve()
        return self.runner.start(
            finetune_job, out, base, cube, labels, self.curve,
            **{"fraction": self.fraction.value(), "seed": self.seed.value(),
               "epochs": self.epochs.value(), "head_epochs": self.head_epochs.value(), **self.options},
            on_returned=self._show_result,
            description=f"Finetuning on {cube.name}",
        )

    def cancel(self, *_):
        """Stop the finetuning (its child process); nothing is written."""
        return self.runner.cancel()

    def _show_result(self, summary):
        self.result, self.model_out = summary, Path(summary["path"])
        self._draw_curve()
        split = summary["split"]
        self.table.setPlainText(format_comparison(
            summary["before"], summary["after"],
            title=f"{split['n_test']} held-back pixels (finetuned on {split['n_finetune']})",
        ))
        before = summary["before"]["summary"]["present_f1_mean"]
        after = summary["after"]["summary"]["present_f1_mean"]
        message = (
            f"new model {self.model_out.name}: macro F1 on held-back pixels "
            f"{'n/a' if before is None else f'{before:.3f}'} -> {'n/a' if after is None else f'{after:.3f}'}"
        )
        self._on_status(message)
        self.maps_button.setEnabled(True)
        show_info(f"Finetuning: {message}")

    def recompute_maps(self, *_):
        """Open the Pigment maps widget with the new model and run it on the cube."""
        if self.model_out is None:
            show_error("Finetuning: finetune a model first.")
            return None
        try:
            from ._pigment_widget import MODEL_FOLDER as MAPS_FOLDER

            _, maps = self.viewer.window.add_plugin_dock_widget("napari-xrf-pigments", "Pigment maps")
            maps.model_source.value = MAPS_FOLDER
            maps.model_dir.value = self.model_out
            if self.cube_layer() is not None:
                maps.cube_combo.value = self.cube_layer().name
            maps.run()
            return maps
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            show_error(f"Finetuning: could not start the pigment maps: {error_message(exc)}")
            return None

    # ------------------------------------------------------------------ display

    def _draw_curve(self):
        ax = self.axes
        ax.clear()
        points = list(self.curve)  # stage 0 (the base model) first, then one per epoch
        if points:
            x = np.arange(len(points))
            ax.plot(x, [p.get("loss", np.nan) for p in points], "-", label="training loss")
            ax.plot(x, [p.get("val_loss", np.nan) for p in points], "-", label="validation loss")
            starts = [i for i, p in enumerate(points) if p.get("epoch") == 1]
            for i in starts:
                ax.axvline(i - 0.5, color="0.6", lw=0.8, ls=":")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_xlabel("epoch (stage 1: dense head, then stage 2: whole network)", fontsize=7)
        ax.set_ylabel("loss", fontsize=7)
        ax.tick_params(labelsize=7)
        self.canvas.draw_idle()

    def _on_status(self, text):
        self.status.setText(text)
        self._draw_curve()

    def _set_running(self, running):
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
