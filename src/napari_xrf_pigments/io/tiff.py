"""Maps as one OME-TIFF, for image software that does not read HDF5 (Fiji, QuPath, GIS tools).

Layout: one float32 plane per map, axes ``CYX`` (map, row, column); each channel is named after
its map (``VM``, ``VM_top``, ``Hg L``); the pixel size goes to OME's ``PhysicalSizeY/X`` in mm.
The image ``Description`` holds a JSON object with every map's attributes (the maps file's, see
``docs/model.md``) and the maps file's root attributes, so nothing is lost on the way:
:func:`read_maps_tiff` gives back what :func:`~napari_xrf_pigments.io.maps.read_maps` gives.

Written with tifffile (the reference TIFF library of scientific Python; napari and scikit-image
use it), atomically: a failed or cancelled export leaves nothing, an existing file is replaced
only with ``force``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ..atomic import atomic_output
from ..errors import InvalidDataError, UnreadableFileError

#: ``format`` of the JSON description.
TIFF_FORMAT = "napari-xrf-pigments/maps-tiff"
TIFF_FORMAT_VERSION = 1


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_maps_tiff(path, maps: Mapping, *, root_attrs: Mapping | None = None,
                    pixel_size_mm=None, force: bool = False) -> Path:
    """Write maps as one OME-TIFF.

    Parameters
    ----------
    path : str or Path
        Output file (``.ome.tif`` or ``.tif``).
    maps : mapping of name -> (array (rows, columns), attrs)
        As :func:`~napari_xrf_pigments.io.maps.read_maps` returns them; all of one shape.
    root_attrs : mapping, optional
        Provenance (model, input file...), kept in the description.
    pixel_size_mm : (float, float), optional
        Row and column step in mm.
    force : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    InvalidDataError
        No maps, or maps of different shapes.
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    # lazy: tifffile loads only for TIFF files
    import tifffile


    if not maps:
        raise InvalidDataError("there are no maps to export")
    shapes = {np.shape(array) for array, _ in maps.values()}
    if len(shapes) > 1 or len(next(iter(shapes))) != 2:
        raise InvalidDataError(f"maps must be 2-D and of one shape, got {sorted(shapes)}")
    names = list(maps)
    stack = np.stack([np.asarray(maps[name][0], dtype=np.float32) for name in names])
    description = {
        "format": TIFF_FORMAT,
        "format_version": TIFF_FORMAT_VERSION,
        "root": {str(k): _jsonable(v) for k, v in (root_attrs or {}).items()},
        "maps": [{"name": name, **{str(k): _jsonable(v) for k, v in maps[name][1].items()}}
                 for name in names],
    }
    metadata = {"axes": "CYX", "Name": "XRF maps", "Channel": {"Name": names},
                "Description": json.dumps(description)}
    if pixel_size_mm is not None:
        row_mm, col_mm = (float(v) for v in pixel_size_mm)
        metadata.update(PhysicalSizeY=row_mm, PhysicalSizeYUnit="mm",
                        PhysicalSizeX=col_mm, PhysicalSizeXUnit="mm")
    with atomic_output(path, force=force) as tmp:
        tifffile.imwrite(tmp, stack, ome=True, photometric="minisblack", metadata=metadata)
    return Path(path)


def read_maps_tiff(path) -> tuple[dict, dict]:
    """Read an OME-TIFF written by :func:`write_maps_tiff`.

    Returns
    -------
    maps : dict of name -> (ndarray float32 (rows, columns), dict of attrs)
    root_attrs : dict
        With ``pixel_size_mm`` (row, column) when the file records it.

    Raises
    ------
    UnreadableFileError
        Not a TIFF, or not one this project wrote.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
            stack = tif.series[0].asarray()
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise UnreadableFileError(path, f"not a TIFF file ({exc})") from None
    try:
        root = ElementTree.fromstring(xml or "")
    except ElementTree.ParseError:
        root = None
    image = root.find("{*}Image") if root is not None else None
    text = image.findtext("{*}Description") if image is not None else None
    try:
        description = json.loads(text or "")
    except json.JSONDecodeError:
        description = None
    if not isinstance(description, dict) or description.get("format") != TIFF_FORMAT:
        raise UnreadableFileError(path, "not a maps TIFF of napari-xrf-pigments (no maps description)")
    stack = stack.reshape((-1, *stack.shape[-2:]))
    entries = description.get("maps", [])
    if len(entries) != stack.shape[0]:
        raise UnreadableFileError(path, f"the description lists {len(entries)} maps but the "
                                        f"image has {stack.shape[0]} planes")
    maps = {}
    for plane, entry in zip(stack, entries):
        attrs = dict(entry)
        maps[attrs.pop("name")] = (plane.astype(np.float32), attrs)
    root_attrs = dict(description.get("root", {}))
    pixels = image.find("{*}Pixels")
    if pixels is not None and pixels.get("PhysicalSizeY") and pixels.get("PhysicalSizeX"):
        root_attrs["pixel_size_mm"] = (float(pixels.get("PhysicalSizeY")),
                                       float(pixels.get("PhysicalSizeX")))
    return maps, root_attrs
