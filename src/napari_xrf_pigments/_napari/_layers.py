"""How XRF cubes live in napari layers.

A cube layer is an Image layer whose data is the cube's counts seen as (channels, rows,
columns) and whose ``metadata["xrf_cube"]`` holds the :class:`~napari_xrf_pigments.cube.XRFCube`
(the source of truth: widgets read spectra from it, never from the layer data).
"""

from __future__ import annotations

import weakref

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
    """Store ``cube`` on ``layer``; emits ``layer.events.metadata`` so widgets refresh.

    A cube layer's energy axis follows the cube's (new) calibration: its slider shows keV.
    """
    if layer.ndim == 3:
        step, first, label, unit = energy_geometry(cube)
        layer.scale = (step, *layer.scale[1:])
        layer.translate = (first, *layer.translate[1:])
        layer.axis_labels = (label, *layer.axis_labels[1:])
        layer.units = (unit, *layer.units[1:])
    layer.metadata = {**layer.metadata, CUBE_KEY: cube}


#: Viewers whose energy slider label is kept up to date, by id (a napari Viewer is not hashable).
_FOLLOWED_VIEWERS: dict = {}


def show_energy_on_slider(viewer) -> None:
    """Keep the energy of the current channel, in keV, in the energy slider's label.

    napari's slider shows channel numbers only; its label is the one place beside it that can
    say "energy 6.40 keV". Once per viewer; a no-op for None.
    """
    if viewer is None:
        return
    known = _FOLLOWED_VIEWERS.get(id(viewer))
    if known is not None and known() is viewer:
        return
    ref = weakref.ref(viewer)
    _FOLLOWED_VIEWERS[id(viewer)] = ref

    def update(*_):
        viewer = ref()
        if viewer is None:
            return
        for layer in cube_layers(viewer):
            cube = cube_of(layer)
            if layer.ndim != 3 or not cube.calibrated:
                continue
            channel = int(round(layer.world_to_data(viewer.dims.point)[0]))
            if 0 <= channel < cube.n_channels:
                label = f"energy {cube.energy.energies()[channel]:.2f} keV"
                if layer.axis_labels[0] != label:
                    layer.axis_labels = (label, *layer.axis_labels[1:])

    viewer.dims.events.current_step.connect(update)
    viewer.layers.events.inserted.connect(update)


def energy_geometry(cube) -> tuple[float, float, str, str]:
    """(scale, translate, axis label, unit) of a cube layer's energy axis.

    In keV where the calibration is linear to half a channel (napari's axes are linear), so the
    slider under the canvas reads energy; in channels otherwise.
    """
    if cube.calibrated:
        energies = cube.energy.energies()
        channels = np.arange(energies.size, dtype=np.float64)
        gain, zero = np.polyfit(channels, energies, 1) if energies.size > 1 else (1.0, energies[0])
        if gain > 0 and np.max(np.abs(zero + gain * channels - energies)) <= gain / 2:
            return float(gain), float(zero), "energy (keV)", "keV"
    return 1.0, 0.0, "energy channel", "pixel"


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
