"""npe2 sample data: the simulated mock-up painting, with its ground truth as labelled shapes."""

from __future__ import annotations

from ..datasets.sample import sample_mockup
from ..io import open_cube
from ..labels import strip_shapes
from ..progress import run
from ._finetune_widget import labels_layer_kwargs
from ._reader import cube_layer_data

TRUTH_LAYER = "mockup truth labels"


def sample_mockup_layers() -> list[tuple]:
    """LayerDataTuples of the sample mock-up (simulated on first use, then cached).

    Returns
    -------
    list of tuple
        The cube (energy slider) and its total counts, as the reader opens them, and a Shapes
        layer of the ground truth: one labelled rectangle per uniform region, as the Finetune
        widget's labels layers (see :func:`~napari_xrf_pigments.datasets.sample.sample_mockup`).
    """
    # napari calls sample loaders on its main thread: the first call blocks for a few seconds.
    cube_path, truth_path = run(sample_mockup())
    layers = cube_layer_data(open_cube(cube_path))
    cube_kwargs = layers[0][1]
    data, kwargs = labels_layer_kwargs(
        None, strip_shapes(truth_path),
        # The cube layer's (rows, columns) transform: shape vertices are cube pixels.
        scale=cube_kwargs["scale"][-2:],
        translate=cube_kwargs.get("translate", (0.0, 0.0, 0.0))[-2:],
        units=cube_kwargs["units"][-2:],
        name=TRUTH_LAYER,
    )
    return [*layers, (data, kwargs, "shapes")]
