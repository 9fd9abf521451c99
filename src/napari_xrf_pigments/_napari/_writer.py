"""npe2 writers: map layers (element, pigment, unexplained) saved as the CLI's maps file, or
exported as one OME-TIFF.

*File > Save Selected Layers...* with the map layers selected writes one HDF5 maps file
(:mod:`napari_xrf_pigments.io.maps`), the layout ``xrf-pigments fit`` and ``predict`` write, so
scripts read maps saved from napari like those of the command line; a name ending in
``.ome.tif`` writes the same maps as an OME-TIFF (:mod:`napari_xrf_pigments.io.tiff`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidDataError
from ..io.maps import write_maps
from ..io.tiff import write_maps_tiff
from ._layers import ROLE_KEY
from ._maps import ELEMENT_ROLE, MAP_KEY, PIGMENT_ROLE, UNEXPLAINED_ROLE


def _map_entry(data, meta: dict) -> tuple[str, dict] | None:
    """(name in the file, attributes) of one map layer, or None for a layer that is no map."""
    md = meta.get("metadata") or {}
    role = md.get(ROLE_KEY)
    if np.ndim(data) != 2 or role not in (ELEMENT_ROLE, PIGMENT_ROLE, UNEXPLAINED_ROLE):
        return None
    common = {"layer_name": meta.get("name", ""), "cube": md.get("xrf_source", "")}
    if role == ELEMENT_ROLE:
        return md.get(MAP_KEY) or meta["name"], {"kind": "element", "unit": md.get("unit", "counts"), **common}
    if role == UNEXPLAINED_ROLE:
        element = md.get("xrf_element")
        attrs = {"kind": "unexplained", "unit": "score", "model_name": md.get("xrf_model", ""), **common}
        if element:
            attrs["element"] = element
        return (f"unexplained_{element}" if element else "unexplained"), attrs
    abbreviation = md.get("xrf_pigment", "")
    which = md.get("xrf_layer", "any")
    attrs = {"kind": "pigment", "unit": "probability", "abbreviation": abbreviation,
             "pigment": md.get("xrf_pigment_name", ""), "layer": which,
             "evidence": md.get("xrf_evidence", "unavailable"),
             "model_name": md.get("xrf_model", ""), **common}
    if md.get("xrf_members"):
        attrs["members"] = list(md["xrf_members"])
    return (abbreviation + ("_top" if which == "top" else "")), attrs


def _collect_maps(layer_data: list) -> tuple[dict, dict]:
    """(maps, root attributes) of the map layers among ``layer_data``, as the maps file holds
    them; see :func:`write_maps_layers`."""
    maps, scales, units, names = {}, set(), set(), set()
    for data, meta, _ in layer_data:
        entry = _map_entry(data, meta)
        if entry is None:
            continue
        name, attrs = entry
        if name in maps:
            # The same map of another cube or model: the layer name's "[...]" says which.
            made_as = (meta.get("metadata") or {}).get(MAP_KEY, "")
            layer_name = meta.get("name", "")
            tag = layer_name[len(made_as):].strip() if made_as and layer_name.startswith(made_as) else ""
            name = (f"{name} {tag}" if tag else layer_name).replace("/", "-")
        maps[name] = (np.asarray(data, dtype=np.float32), attrs)
        scale = meta.get("scale")
        scales.add((1.0, 1.0) if scale is None else tuple(float(v) for v in scale[-2:]))
        # napari gives pint units ("millimeter"); the put_* functions set them from "mm".
        units.add(tuple(str(u) for u in (meta.get("units") or ("pixel", "pixel"))[-2:]))
        names.add(attrs["cube"])
    if not maps:
        raise InvalidDataError(
            "none of the selected layers is an element, pigment or unexplained map; select the "
            "map layers to save (the cube itself is saved by the CLI's file formats)")
    shapes = {array.shape for array, _ in maps.values()}
    if len(shapes) > 1:
        raise InvalidDataError(
            f"the selected maps have different sizes {sorted(shapes)}: save one cube's maps at a time")
    root = {"kind": "napari", "cubes": sorted(n for n in names if n)}
    if len(scales) == 1:
        # World units per pixel (rows, columns): mm where the cube stated its pixel size.
        scale = scales.pop()
        root["scale"] = np.asarray(scale)
        if units in ({("mm", "mm")}, {("millimeter", "millimeter")}):
            root["pixel_size_mm"] = np.asarray(scale)
    return maps, root


def write_maps_layers(path: str, layer_data: list) -> list[str]:
    """Write the selected map layers to one maps file (npe2 multi-layer writer).

    Parameters
    ----------
    path : str
        The ``.h5`` file napari's save dialog chose (napari asks before replacing one).
    layer_data : list of (data, metadata, layer type)
        The selected layers; image layers that are no maps (a cube, its total counts) are
        left out.

    Returns
    -------
    list of str
        ``[path]``.

    Raises
    ------
    InvalidDataError
        No map among the layers, or maps of different sizes (save one cube's maps at a time).
    """
    maps, root = _collect_maps(layer_data)
    write_maps(Path(path), maps, root, force=True)  # napari's dialog has asked already
    return [str(path)]


def write_maps_layers_tiff(path: str, layer_data: list) -> list[str]:
    """Write the selected map layers to one OME-TIFF (npe2 multi-layer writer): a plane per map
    named after it, the pixel size in mm, every map's attributes in the description
    (:mod:`napari_xrf_pigments.io.tiff`). Same layers and errors as :func:`write_maps_layers`."""
    maps, root = _collect_maps(layer_data)
    write_maps_tiff(Path(path), maps, root_attrs=root, pixel_size_mm=root.get("pixel_size_mm"),
                    force=True)  # napari's dialog has asked already
    return [str(path)]
