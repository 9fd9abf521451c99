"""Regenerate the screenshots of docs/viewer.md (docs/images/viewer-*.png).

Builds a small synthetic MA-XRF scan of a "painting" (chalk ground, lead white and azurite
sky, a vermilion sun, ochre earth), writes it as NeXus HDF5 (once calibrated, once not), opens
it in napari through the plugin's reader and captures the window.

Run it where napari can open a window; on a headless machine under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py

Options: ``--out DIR`` (default: docs/images next to this script).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROWS, COLS, CHANNELS = 90, 120, 1024
ZERO, GAIN = -0.01, 0.02  # keV, keV/ch: 0 to 20.5 keV
WINDOW = (1600, 940)
MAX_BYTES = 300_000

# Pigments as element amplitudes (counts in the strongest line group per unit of pigment).
PIGMENTS = {
    "chalk ground": {"Ca": 260, "Fe": 15, "Sr": 20},
    "lead white": {"Pb": 700},
    "azurite": {"Cu": 380},
    "vermilion": {"Hg": 520, "S": 90},
    "yellow ochre": {"Fe": 650, "Mn": 40, "K": 60},
}


def _spectrum(elements: dict, energy: np.ndarray) -> np.ndarray:
    """Expected counts per channel for a pigment: Gaussian lines on a scatter background."""
    from napari_xrf_pigments.lines import element_lines

    # Detector resolution: electronic noise plus Fano statistics in silicon.
    sigma = np.sqrt(0.045**2 + 4.16e-4 * np.clip(energy, 0.1, None))
    y = np.zeros_like(energy)
    for symbol, amplitude in elements.items():
        for line in element_lines(symbol, min_rate=0.01):
            if line.energy < energy[-1]:
                s = np.interp(line.energy, energy, sigma)
                y += amplitude * line.rate * np.exp(-0.5 * ((energy - line.energy) / s) ** 2)
    return y


def synthetic_painting(seed: int = 7) -> np.ndarray:
    """Counts (rows, columns, channels) uint16 of the synthetic scan."""
    energy = ZERO + GAIN * np.arange(CHANNELS)
    # Bremsstrahlung scattered by the paint, Rh tube Compton and Rayleigh peaks.
    background = (
        6 + 28 * np.exp(-0.5 * ((energy - 9.0) / 4.5) ** 2)
        + 55 * np.exp(-0.5 * ((energy - 19.2) / 0.35) ** 2)
        + 40 * np.exp(-0.5 * ((energy - 20.2) / 0.09) ** 2)
    )
    background[energy < 1.0] = 0
    spectra = np.stack([_spectrum(p, energy) for p in PIGMENTS.values()])

    y, x = np.mgrid[0:ROWS, 0:COLS] / np.array([ROWS, COLS])[:, None, None]
    horizon = 0.58 + 0.05 * np.sin(6 * x)
    sky = y < horizon
    sun = (y - 0.25) ** 2 + ((x - 0.72) * 1.33) ** 2 < 0.15**2
    weights = np.zeros((ROWS, COLS, len(PIGMENTS)))
    weights[..., 0] = 1.0
    weights[..., 1] = np.where(sky, 0.6 + 0.4 * (1 - y), 0.1)
    weights[..., 2] = np.where(sky & ~sun, 0.3 + 0.7 * (1 - y / horizon), 0.0)
    weights[..., 3] = np.where(sun, 1.0, 0.0)
    weights[..., 4] = np.where(~sky, 0.6 + 0.5 * y, 0.0)
    lam = weights @ spectra + background
    rng = np.random.default_rng(seed)
    return rng.poisson(lam).astype(np.uint16)


def write_scans(folder: Path) -> tuple[Path, Path]:
    """Calibrated and uncalibrated NeXus files of the synthetic scan."""
    from napari_xrf_pigments.cube import XRFCube
    from napari_xrf_pigments.io import write_cube

    counts = synthetic_painting()
    calibrated = folder / "painting.h5"
    raw = folder / "painting_raw.h5"
    pixel = (0.5, 0.5)  # mm
    cube = XRFCube.from_array(counts, zero=ZERO, gain=GAIN, pixel_size=pixel)
    write_cube(calibrated, cube, force=True)
    write_cube(raw, XRFCube.from_array(counts, pixel_size=pixel), force=True)
    return calibrated, raw


def _settle(viewer, ms=400):
    from qtpy.QtCore import QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec_()
    QApplication.processEvents()


def _toasts(viewer):
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private module moved: the screenshots just keep the toasts as shown
        return []
    return viewer.window._qt_window.findChildren(NapariQtNotification)


def _close_toasts(viewer):
    """Dismiss napari's pop-up notifications (e.g. the PyQt5 deprecation notice)."""
    _settle(viewer, 200)
    for toast in _toasts(viewer):
        toast.close()


def _new_viewer():
    import napari

    viewer = napari.Viewer(title="napari-xrf-pigments", show=True)
    viewer.window._qt_window.resize(*WINDOW)
    _close_toasts(viewer)
    return viewer


def _save(viewer, path: Path):
    """Window screenshot as PNG, shrunk and quantised until it is below MAX_BYTES."""
    from PIL import Image

    _settle(viewer)
    image = Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).convert("RGB")
    width = image.width
    while True:
        small = image if width == image.width else image.resize(
            (width, round(image.height * width / image.width)), Image.LANCZOS
        )
        small.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            path, optimize=True
        )
        if path.stat().st_size <= MAX_BYTES or width < 700:
            break
        width = int(width * 0.9)
    print(f"{path} {small.width}x{small.height} {path.stat().st_size // 1024} KB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from napari_xrf_pigments.lines import line_energy

    plugin = "napari-xrf-pigments"
    with tempfile.TemporaryDirectory() as tmp:
        calibrated, raw = write_scans(Path(tmp))

        # 1. A calibrated scan just opened: cube layer (energy slider) + total counts.
        viewer = _new_viewer()
        viewer.open(str(calibrated), plugin=plugin)
        _save(viewer, args.out / "viewer-open.png")

        # 2. Spectrum viewer: energy slice at Hg La, cursor spectrum, region mean, markers.
        viewer.layers["painting total counts"].visible = False
        cube_layer = viewer.layers["painting"]
        hg_channel = round((line_energy("Hg La") - ZERO) / GAIN)
        viewer.dims.set_current_step(0, hg_channel)
        cube_layer.reset_contrast_limits()
        sun = np.array([[16, 76], [16, 94], [29, 94], [29, 76]]) * 0.5
        viewer.add_shapes([sun], shape_type="rectangle", name="region", edge_color="cyan",
                          face_color="transparent", edge_width=0.4)
        _, spectra = viewer.window.add_plugin_dock_widget(plugin, "Spectrum viewer")
        spectra.region_combo.setCurrentText("region")
        spectra.elements_edit.setText("Ca Fe Cu Hg Pb S")
        spectra.redraw()
        spectra.show_spectrum_at((hg_channel, 70 * 0.5, 30 * 0.5))
        _settle(viewer, 800)
        spectra.log_check.setChecked(True)
        spectra.name_peak(line_energy("Hg La"))
        viewer.layers.selection.active = cube_layer
        viewer.reset_view()
        _save(viewer, args.out / "viewer-spectrum.png")
        viewer.close()

        # 3. An uncalibrated scan: the warning, and the calibration widget with two peaks.
        viewer = _new_viewer()
        _, spectra = viewer.window.add_plugin_dock_widget(plugin, "Spectrum viewer")
        _, calibration = viewer.window.add_plugin_dock_widget(plugin, "Energy calibration")
        _settle(viewer, 500)  # docks laid out first, so the warning's toast lands in view
        viewer.open(str(raw), plugin=plugin)  # the warning pops up now
        viewer.reset_view()
        spectra.show_spectrum_at((0, 70 * 0.5, 30 * 0.5))
        peak = spectra.name_peak((line_energy("Fe Ka") - ZERO) / GAIN)
        calibration.tabs.setCurrentIndex(1)
        calibration.peak_channels[0].setValue(round((line_energy("Ca Ka") - ZERO) / GAIN, 1))
        calibration.peak_lines[0].setText("Ca Ka")
        calibration.peak_channels[1].setValue(round(peak["channel"], 1))
        calibration.peak_lines[1].setText("Fe Ka")
        _settle(viewer, 1500)  # let the warning's toast slide in
        for toast in _toasts(viewer):
            toast.expand()  # show the whole message
        _settle(viewer, 800)
        for toast in _toasts(viewer):
            # The toast grows after napari placed it: place it again.
            toast.move_to_bottom_right()
        _save(viewer, args.out / "viewer-calibration.png")
        viewer.close()


if __name__ == "__main__":
    main()
