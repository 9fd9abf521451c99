"""How XRF cubes live in napari layers.

A cube layer is an Image layer whose data is the cube's counts seen as (channels, rows,
columns) and whose ``metadata["xrf_cube"]`` holds the :class:`~napari_xrf_pigments.cube.XRFCube`
(the source of truth: widgets read spectra from it, never from the layer data).
"""

from __future__ import annotations

import numpy as np

CUBE_KEY = "xrf_cube"
ROLE_KEY = "xrf_role"


def cube_of(layer):
    """The XRFCube stored on ``layer``, or None."""
    if layer is None:
        return None
    return getattr(layer, "metadata", {}).get(CUBE_KEY)


def cube_layers(viewer) -> list:
    """Layers of ``viewer`` that hold an XRF cube, in layer-list order."""
    return [layer for layer in viewer.layers if cube_of(layer) is not None]


def set_cube(layer, cube) -> None:
    """Store ``cube`` on ``layer``; emits ``layer.events.metadata`` so widgets refresh."""
    layer.metadata = {**layer.metadata, CUBE_KEY: cube}


def x_axis(cube) -> tuple[np.ndarray, str]:
    """Values and label of a spectrum plot's x axis: keV when calibrated, else channels."""
    if cube.calibrated:
        return cube.energy.energies(), "Energy (keV)"
    return np.arange(cube.n_channels, dtype=np.float64), "Channel (energy not calibrated)"


def pixel_at(layer, world_position) -> tuple[int, int] | None:
    """(row, column) of the cube pixel under a world position, or None outside the cube."""
    cube = cube_of(layer)
    if cube is None or world_position is None:
        return None
    data = layer.world_to_data(np.asarray(world_position, dtype=float))
    # napari puts pixel centres on integer coordinates.
    row, col = (int(np.floor(v + 0.5)) for v in data[-2:])
    rows, cols = cube.shape[:2]
    if 0 <= row < rows and 0 <= col < cols:
        return row, col
    return None
