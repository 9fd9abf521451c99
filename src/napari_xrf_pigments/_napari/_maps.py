"""Image layers for maps (element, pigment, comparison), found again by name on a re-run.

Map layers carry ``metadata["xrf_role"]`` (``"element_map"``, ``"pigment_map"``...) so that
widgets recognise them, and the 2-D geometry (scale, translate) of the cube layer they were
computed from, so they lie on the scan in the viewer. They belong to the cube layer and the
model that made them (``xrf_source``, ``xrf_model``): a re-run on the same cube with the same
model updates them, another cube or model adds its own layers beside them.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import Colormap, DirectLabelColormap

from ..compare import clip_limit
from ..errors import InvalidDataError
from ._layers import ROLE_KEY

#: Name a map layer was created with; a re-run finds its layer by it, even after a rename.
MAP_KEY = "xrf_map"
#: Metadata saying whose result a map is: the cube layer's name and the model's.
OWNER_KEYS = ("xrf_model", "xrf_source")
ELEMENT_ROLE = "element_map"
PIGMENT_ROLE = "pigment_map"
UNEXPLAINED_ROLE = "unexplained_map"
DOMINANT_ROLE = "dominant_pigment"
RGB_ROLE = "rgb_composite"
#: ``metadata["xrf_layer"]`` of the two sets of pigment maps: pigment in any layer / in the top.
ANY_LAYER, TOP_LAYER = "any", "top"
#: Element maps are shown clipped at this percentile (bright pigments do not hide the rest).
ELEMENT_CLIP_PERCENTILE = 99.0

#: Display colour of the element maps of common painting elements (additive blending: the
#: tracers of the paper's pigments get distinct hues); other elements cycle through _OTHER.
ELEMENT_COLOURS = {
    "Hg": "#ff3b1f",  # vermilion
    "Pb": "#f2f2f2",  # lead white, red lead, chrome yellow
    "Cu": "#2ee88a",  # emerald green, azurite, verdigris
    "As": "#b5e48c",
    "Co": "#2f6bff",  # cobalt blue
    "Cr": "#ffd60a",  # chromium pigments
    "Fe": "#ff7b00",  # iron oxides, Prussian blue
    "Zn": "#35b8ff",  # zinc white
    "Sn": "#e0197d",  # the mock-ups' carmine substitute
    "Ca": "#9e9e9e",  # chalk ground
    "Ti": "#c9f0ff",  # titanium white
    "Mn": "#a0522d",  # umber
    "Cd": "#ffcc00",  # cadmium yellow
    "Sb": "#f4d35e",  # Naples yellow
}

#: Display colour of each pigment class and group of the built-in library (near the paint's own
#: colour, but visible on black); others cycle through _OTHER.
PIGMENT_COLOURS = {
    "VM": "#ff3b1f",  # vermilion
    "RL": "#ff7b00",  # red lead
    "CM": "#e0197d",  # carmine
    "IO": "#c8692e",  # iron oxide
    "CrY": "#ffd60a",  # chrome yellow
    "CrG": "#3fa34d",  # chrome oxide green
    "EG": "#2ee88a",  # emerald green
    "CB": "#2f6bff",  # cobalt blue
    "PB": "#35b8ff",  # Prussian blue
    "LW": "#f2f2f2",  # lead white
    "ZW": "#b9c7d6",  # zinc white
    "Azu": "#3d7bff",  # azurite
    "Mal": "#19c37d",  # malachite
    "Sm": "#7b83eb",  # smalt
    "UM": "#4b3bff",  # ultramarine
    "LTY": "#fff27a",  # lead-tin yellow
    "NapY": "#f4d35e",  # Naples yellow
    "TiW": "#e6f7ff",  # titanium white
    "CdY": "#ffcc00",  # cadmium yellow
    "Orp": "#f7b32b",  # orpiment
    "YO": "#d9a441",  # yellow ochre
    "RU": "#b07b4f",  # raw umber
    "LW+RL": "#ffb38a",  # lead white / red lead
    "IO+PB+YO": "#e08a4a",  # iron pigments
    "Azu+Mal": "#21b5a8",  # copper carbonates
}
_OTHER = ("#ff3b1f", "#2f6bff", "#ffd60a", "#2ee88a", "#e0197d", "#35b8ff", "#ff7b00", "#c77dff")


def _black_to(colour: str, name: str) -> Colormap:
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return Colormap([[0, 0, 0, 1], [*rgb, 1]], name=name)


def pigment_colour(abbreviation: str, index: int = 0) -> str:
    """Display colour of a pigment (``index`` picks one for pigments without their own)."""
    return PIGMENT_COLOURS.get(abbreviation) or _OTHER[index % len(_OTHER)]


def pigment_colormap(abbreviation: str, index: int = 0) -> Colormap:
    """Black-to-colour colormap of a pigment (probability 0 -> black, 1 -> its colour)."""
    return _black_to(pigment_colour(abbreviation, index), f"xrf pigment {abbreviation}")


def element_colormap(group: str, index: int = 0) -> Colormap:
    """Black-to-colour colormap of an element map (``"Hg L"``: vermilion red)."""
    colour = ELEMENT_COLOURS.get(group.split()[0]) or _OTHER[index % len(_OTHER)]
    return _black_to(colour, f"xrf element {group}")


def geometry(layer) -> dict:
    """Scale, translate and units of the last two (row, column) axes of ``layer``: maps
    made from a cube lie on it, in its units (napari ignores units that differ between layers)."""
    return {
        "scale": tuple(float(v) for v in layer.scale[-2:]),
        "translate": tuple(float(v) for v in layer.translate[-2:]),
        "units": tuple(str(u) for u in layer.units[-2:]),
    }


def role_of(layer) -> str | None:
    return getattr(layer, "metadata", {}).get(ROLE_KEY)


def set_visible(layer, visible: bool) -> None:
    """Show or hide ``layer``; nothing when it already is (napari redraws a layer on every
    ``visible = True``, and a stack of maps redrawn at once stalls the GUI)."""
    if layer.visible != bool(visible):
        layer.visible = bool(visible)


def map_layers(viewer, role: str) -> list:
    """2-D image layers of ``viewer`` with the given role, in layer-list order."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and role_of(layer) == role and layer.data.ndim == 2
    ]


def find_map(viewer, name: str, role: str, owner: dict | None = None):
    """The map layer made for ``name`` by an earlier run (even if renamed since) of the same
    ``owner`` (cube and model, see :data:`OWNER_KEYS`), or None."""
    for layer in map_layers(viewer, role):
        meta = layer.metadata
        if meta.get(MAP_KEY) == name and all(meta.get(k) == v for k, v in (owner or {}).items()):
            return layer
    return None


def _name_apart(viewer, name: str, role: str, owner: dict) -> str:
    """``name``, or ``"P(vermilion) [finetuned]"`` where maps of that name from another cube or
    model are in the viewer already: the suffix says what differs from the closest of them."""
    others = [layer for layer in map_layers(viewer, role) if layer.metadata.get(MAP_KEY) == name]
    if not others:
        return name
    differing = sorted(([str(v) for k, v in owner.items() if o.metadata.get(k) != v] for o in others), key=len)
    for values in [*differing, [str(v) for v in owner.values()]]:
        candidate = f"{name} [{', '.join(values)}]" if values else name
        if candidate not in viewer.layers:
            return candidate
    return name  # napari numbers it


def put_image(
    viewer,
    name: str,
    data: np.ndarray,
    *,
    role: str,
    metadata: dict | None = None,
    contrast_limits,
    colormap=None,
    blending: str = "additive",
    scale=(1.0, 1.0),
    translate=(0.0, 0.0),
    units=("pixel", "pixel"),
    visible: bool | None = None,
):
    """Add a 2-D map layer, or update the layer of that name and role from an earlier run.

    The layer is found by role, original name and owner (the ``xrf_model`` and ``xrf_source``
    of ``metadata``, :func:`find_map`); maps of another cube or model keep theirs, and the new
    layer's name says what differs (:func:`_name_apart`). A layer of the same name that is not
    such a map is left alone (napari then names the new one ``"Pb L [1]"``).
    An update replaces data, contrast limits, geometry and metadata and keeps what the user
    may have changed (colormap, opacity, visibility unless ``visible`` is given).

    Returns
    -------
    layer : napari.layers.Image
    """
    meta = {**(metadata or {}), ROLE_KEY: role, MAP_KEY: name}
    owner = {k: meta[k] for k in OWNER_KEYS if meta.get(k)}
    existing = find_map(viewer, name, role, owner)
    if existing is not None:
        finite = data[np.isfinite(data)]
        low = min(float(contrast_limits[0]), float(finite.min()) if finite.size else 0.0)
        high = max(float(contrast_limits[1]), float(finite.max()) if finite.size else 1.0)
        existing.data = data
        existing.scale = scale
        existing.translate = translate
        existing.units = units
        existing.contrast_limits_range = [low, high if high > low else low + 1.0]
        existing.contrast_limits = list(contrast_limits)
        existing.metadata = meta
        if visible is not None:
            set_visible(existing, visible)
        return existing
    kwargs = {}
    if colormap is not None:
        kwargs["colormap"] = colormap
    return viewer.add_image(
        data,
        name=_name_apart(viewer, name, role, owner),
        metadata=meta,
        contrast_limits=list(contrast_limits),
        blending=blending,
        scale=scale,
        translate=translate,
        units=units,
        visible=True if visible is None else visible,
        **kwargs,
    )


def display_name(name: str) -> str:
    """Pigment name as used in layer names: ``"Vermilion"`` -> ``"vermilion"``."""
    if len(name) > 1 and name[1].isupper():  # an acronym stays as it is
        return name
    return name[:1].lower() + name[1:]


def layer_name(pigment_name: str, which: str = ANY_LAYER) -> str:
    """``"P(vermilion)"`` for the any-layer map, ``"P(vermilion, top)"`` for the top layer."""
    suffix = ", top" if which == TOP_LAYER else ""
    return f"P({display_name(pigment_name)}{suffix})"


def put_element_map(viewer, group: str, data, *, index: int = 0, source: str = "",
                    unit: str = "counts", visible: bool = True, scale=(1.0, 1.0),
                    translate=(0.0, 0.0), units=("pixel", "pixel")):
    """Add or update the layer of one element map (``group`` such as ``"Pb L"``).

    ``index`` picks the colour of elements without one of their own; ``visible`` applies to a
    new layer; an updated layer keeps the colormap and visibility the user may have chosen.
    """
    data = np.asarray(data, dtype=np.float32)
    new = find_map(viewer, group, ELEMENT_ROLE, {"xrf_source": source} if source else None) is None
    return put_image(
        viewer,
        group,
        data,
        role=ELEMENT_ROLE,
        metadata={"xrf_group": group, "xrf_source": source, "unit": unit},
        contrast_limits=[0.0, clip_limit(data, ELEMENT_CLIP_PERCENTILE)],
        colormap=element_colormap(group, index) if new else None,
        visible=visible if new else None,
        scale=scale,
        translate=translate,
        units=units,
    )


def called_share(probabilities) -> float:
    """Share of pixels where a pigment is called (p >= 0.5): which maps are worth showing."""
    probabilities = np.asarray(probabilities)
    return float(np.mean(np.nan_to_num(probabilities) >= 0.5)) if probabilities.size else 0.0


def put_pigment_map(viewer, pigment, data, *, which: str = ANY_LAYER, index: int = 0,
                    model_name: str = "", source: str = "", name: str | None = None,
                    evidence: str = "unavailable", members=(), visible: bool = False,
                    scale=(1.0, 1.0), translate=(0.0, 0.0), units=("pixel", "pixel")):
    """Add or update the layer of one pigment probability map.

    Parameters
    ----------
    pigment : PigmentLabel
        ``abbreviation`` and ``name``.
    data : array, shape (rows, columns)
        Probabilities.
    which : {ANY_LAYER, TOP_LAYER}
    name : str, optional
        Layer name (default :func:`layer_name`).
    evidence : str
        ``"checked"`` (against element evidence), ``"unavailable"`` or ``"raw"``.
    members : sequence of str
        For a group of pigments XRF cannot tell apart: the members' names.
    """
    return put_image(
        viewer,
        name or layer_name(pigment.name, which),
        np.ascontiguousarray(data),
        role=PIGMENT_ROLE,
        metadata={
            "xrf_pigment": pigment.abbreviation,
            "xrf_pigment_name": pigment.name,
            "xrf_layer": which,
            "xrf_model": model_name,
            "xrf_source": source,
            "xrf_evidence": evidence,
            "xrf_members": list(members),
            "unit": "probability",
            "xrf_called_share": called_share(data),
        },
        contrast_limits=[0.0, 1.0],
        colormap=pigment_colormap(pigment.abbreviation, index),
        visible=visible,
        scale=scale,
        translate=translate,
        units=units,
    )


def put_dominant_map(viewer, labels, pigments, *, model_name: str = "", source: str = "",
                     visible: bool = False, scale=(1.0, 1.0), translate=(0.0, 0.0),
                     units=("pixel", "pixel")):
    """Add or update the labels layer of the dominant pigment, ``"Dominant pigment"``.

    Parameters
    ----------
    labels : ndarray of int, shape (rows, columns)
        0: nothing called; k: ``pigments[k - 1]`` (:meth:`PigmentPrediction.dominant`).
    pigments : sequence of PigmentLabel
    """
    colours = {None: "transparent", 0: "transparent"}
    colours.update({i + 1: pigment_colour(p.abbreviation, i) for i, p in enumerate(pigments)})
    owner = {k: v for k, v in (("xrf_model", model_name), ("xrf_source", source)) if v}
    meta = {ROLE_KEY: DOMINANT_ROLE, MAP_KEY: "Dominant pigment", **owner,
            "xrf_pigments": [(p.abbreviation, p.name) for p in pigments]}
    for layer in viewer.layers:
        if isinstance(layer, Labels) and role_of(layer) == DOMINANT_ROLE and all(
                layer.metadata.get(k) == v for k, v in owner.items()):
            layer.data = labels
            layer.colormap = DirectLabelColormap(color_dict=colours)
            layer.metadata = meta
            return layer
    names = [la.name for la in viewer.layers if role_of(la) == DOMINANT_ROLE]
    name = "Dominant pigment" if not names else f"Dominant pigment [{', '.join(owner.values())}]"
    return viewer.add_labels(labels, name=name, metadata=meta, opacity=0.8, visible=visible,
                             colormap=DirectLabelColormap(color_dict=colours), scale=scale, units=units,
                             translate=translate)


def put_rgb_composite(viewer, layers):
    """Add or update ``"RGB: a / b / c"``: three 2-D maps (probabilities, 0-1) as the red, green
    and blue of one image, for the overlaps no additive stack shows plainly.

    Parameters
    ----------
    layers : sequence of 3 napari Image layers or None
        None leaves that colour dark; the maps must share one shape.
    """
    chosen = [layer for layer in layers if layer is not None]
    if not chosen:
        raise InvalidDataError("choose at least one map for the RGB composite")
    shapes = {layer.data.shape for layer in chosen}
    if len(shapes) > 1:
        raise InvalidDataError(f"the chosen maps have different sizes {sorted(shapes)}")
    (shape,) = shapes
    data = np.stack([np.clip(np.nan_to_num(np.asarray(layer.data, np.float32)), 0, 1)
                     if layer is not None else np.zeros(shape, np.float32) for layer in layers], -1)
    name = "RGB: " + " / ".join(layer.name if layer is not None else "-" for layer in layers)
    for layer in viewer.layers:
        if role_of(layer) == RGB_ROLE:
            layer.data = data
            layer.name = name
            return layer
    return viewer.add_image(data, name=name, rgb=True, contrast_limits=[0.0, 1.0],
                            metadata={ROLE_KEY: RGB_ROLE}, **geometry(chosen[0]))


def dominant_legend(labels, pigments) -> str:
    """Rich-text legend of the pigments in a dominant-pigment map, most pixels first."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(pigments) + 1)
    rows = []
    for k in np.argsort(counts[1:])[::-1]:
        if counts[k + 1] == 0:
            break
        p = pigments[k]
        share = counts[k + 1] / max(1, labels.size)
        rows.append(f'<span style="color:{pigment_colour(p.abbreviation, k)}">&#9632;</span> '
                    f'{p.name} ({share:.0%})')
    return "<br>".join(rows) or "no pigment called"


def put_unexplained_map(viewer, data, *, element: str | None = None, model_name: str = "",
                        source: str = "", visible: bool = False, scale=(1.0, 1.0),
                        translate=(0.0, 0.0), units=("pixel", "pixel")):
    """Add or update an unexplained-signal layer (score 0-1): ``"Unexplained signal"``, or
    ``"Unexplained Ti"`` for one element."""
    return put_image(
        viewer,
        f"Unexplained {element}" if element else "Unexplained signal",
        np.ascontiguousarray(data, dtype=np.float32),
        role=UNEXPLAINED_ROLE,
        metadata={"xrf_element": element, "xrf_model": model_name, "xrf_source": source,
                  "unit": "score"},
        contrast_limits=[0.0, 1.0],
        colormap="magma",
        visible=visible,
        scale=scale,
        translate=translate,
        units=units,
    )
