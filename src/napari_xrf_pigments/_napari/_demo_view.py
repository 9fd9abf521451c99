"""Open a folder written by ``xrf-pigments demo`` in napari (``demo --view``).

Run as ``python -m napari_xrf_pigments._napari._demo_view DIR``: the demo runs TensorFlow in
its own process, and napari must not share a process with it (see :mod:`~napari_xrf_pigments.model.isolated`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

from ..datasets.trainset import as_pigment_labels
from ..demo import FILES
from ..io.maps import read_maps
from ..labels import read_labels
from ._finetune_widget import add_labels_layer
from ._maps import ANY_LAYER, TOP_LAYER, geometry, layer_name, put_element_map, put_pigment_map

#: Suffix of the finetuned model's layer names (the shipped model's have none).
FINETUNED = " finetuned"


def open_demo(viewer, folder) -> list:
    """Add a demo folder's layers to ``viewer``.

    The cube and its total counts (as the reader opens them), the element maps, the pigment
    maps of the shipped model (shown) and of the finetuned one (hidden, names ending
    "finetuned"), and the truth rectangles as a labels layer for the finetune widget.

    Returns
    -------
    list of layers added
    """
    folder = Path(folder)
    layers = list(viewer.open(folder / FILES["cube"], plugin="napari-xrf-pigments"))
    cube_layer = layers[0]
    place = geometry(cube_layer)
    source = cube_layer.name
    elements, _ = read_maps(folder / FILES["element_maps"])
    for i, (group, (data, attrs)) in enumerate(elements.items()):
        if attrs.get("kind") == "element":
            layers.append(put_element_map(viewer, group, data, index=i, source=source,
                                          unit=attrs.get("unit", "counts"), **place))
    for file, suffix in ((FILES["pigment_maps"], ""), (FILES["pigment_maps_finetuned"], FINETUNED)):
        maps, root = read_maps(folder / file)
        pigment_maps = [(d, a) for d, a in maps.values() if a.get("kind") == "pigment"]
        for i, (data, attrs) in enumerate(pigment_maps):
            (pigment,) = as_pigment_labels([(attrs["abbreviation"], attrs["pigment"])])
            which = TOP_LAYER if attrs.get("layer") == "top" else ANY_LAYER
            layers.append(put_pigment_map(
                viewer, pigment, data, which=which, index=i, model_name=root.get("model_name", ""),
                source=source, name=layer_name(pigment.name, which) + suffix,
                evidence=attrs.get("evidence", "unavailable"), members=attrs.get("members", ()),
                visible=not suffix and which == ANY_LAYER and i == 0, **place,
            ))
    shapes = read_labels(folder / FILES["shapes"])
    layers.append(add_labels_layer(viewer, cube_layer, shapes.pigments, shapes, name="truth shapes"))
    return layers


def main(argv=None) -> int:
    """``python -m napari_xrf_pigments._napari._demo_view DIR``: open DIR, run napari."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / FILES["report"]).is_file():
        print("usage: python -m napari_xrf_pigments._napari._demo_view DEMO_FOLDER "
              "(a folder written by `xrf-pigments demo`)", file=sys.stderr)
        return 2
    viewer = napari.Viewer(title=f"napari-xrf-pigments demo: {args[0]}")
    open_demo(viewer, args[0])
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
