"""The labels file (JSON, format ``napari-xrf-pigments/labels``; see the package docstring)."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_output
from ..datasets.trainset import as_pigment_labels
from ..errors import InvalidDataError, UnreadableFileError
from .shapes import LabelledShape, LabelsError, ShapeLabels
from .truth import labels_from_truth

LABELS_FORMAT = "napari-xrf-pigments/labels"


LABELS_VERSION = 1


def _shape_to_json(s: LabelledShape) -> dict:
    return {
        "type": s.shape_type,
        "vertices": [[float(r), float(c)] for r, c in s.vertices],
        "present": None if s.present is None else list(s.present),
        "top": list(s.top),
        "note": s.note,
    }


def labels_to_json(labels: ShapeLabels) -> dict:
    """The labels file content as a JSON-ready dict (layout in the module docstring)."""
    out = {
        "format": LABELS_FORMAT,
        "format_version": LABELS_VERSION,
        "pigments": [p._asdict() for p in labels.pigments],
        "coordinates": "cube pixels (row, column); pixel centres on integers",
    }
    if labels.cube:
        out["cube"] = dict(labels.cube)
    out["shapes"] = [_shape_to_json(s) for s in labels.shapes]
    return out


def labels_from_json(content: dict, *, path=None) -> ShapeLabels:
    """Inverse of :func:`labels_to_json`; raises :class:`LabelsError` for a malformed content."""
    where = f"{path}: " if path else ""
    if not isinstance(content, dict) or content.get("format") != LABELS_FORMAT:
        raise LabelsError(f"{where}not a napari-xrf-pigments labels file (format {LABELS_FORMAT!r})")
    version = content.get("format_version")
    if not isinstance(version, int) or version > LABELS_VERSION:
        raise LabelsError(f"{where}labels format version {version!r} is newer than this package reads")
    try:
        pigments = as_pigment_labels(content["pigments"])
        shapes = []
        for i, entry in enumerate(content.get("shapes", [])):
            try:
                shapes.append(
                    LabelledShape(
                        entry["type"], entry["vertices"], entry.get("present"),
                        entry.get("top") or (), str(entry.get("note") or ""),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise LabelsError(f"shape {i}: {exc}") from None
            except LabelsError as exc:
                raise LabelsError(f"shape {i}: {exc}") from None
        cube = content.get("cube") or {}
        if not isinstance(cube, dict):
            raise LabelsError("'cube' must be an object")
        return ShapeLabels(pigments, shapes, cube, None if path is None else str(path))
    except KeyError as exc:
        raise LabelsError(f"{where}the labels file lacks {exc}") from None
    except LabelsError as exc:
        raise LabelsError(f"{where}{exc}") from None
    except InvalidDataError as exc:
        raise LabelsError(f"{where}{exc}") from None


def write_labels(path, labels: ShapeLabels, *, force: bool = False) -> Path:
    """Write a labels file (JSON, atomic).

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    text = json.dumps(labels_to_json(labels), indent=1, allow_nan=False)
    with atomic_output(path, force=force) as tmp:
        Path(tmp).write_text(text + "\n", encoding="utf-8")
    return Path(path)


def read_labels(path, *, pigments=None):
    """Read labels, deciding by content: a labels file or a mock-up ground-truth file.

    Parameters
    ----------
    path : str or Path
    pigments : sequence, optional
        For a ground-truth file: the label columns (default all of its maps).

    Returns
    -------
    ShapeLabels
        For a JSON labels file.
    PixelLabels
        For an HDF5 ground-truth file (``/present/<ABBR>`` maps): every pixel labelled.

    Raises
    ------
    UnreadableFileError
        Missing file, or neither kind of file.
    LabelsError
        A labels file with malformed content.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        # lazy: h5py loads only where HDF5 is read or written
        import h5py

        with h5py.File(path, "r") as h5:
            is_truth = isinstance(h5.get("present"), h5py.Group)
        if not is_truth:
            raise UnreadableFileError(
                path, "an HDF5 file without /present maps is not a ground-truth file"
            )
        return labels_from_truth(path, pigments=pigments)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UnreadableFileError(
            path,
            "neither a labels file (JSON) nor a ground-truth file (HDF5 with /present maps)",
        ) from None
    return labels_from_json(content, path=path)
