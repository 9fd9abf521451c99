"""Regenerate the screenshot of the automatic energy calibration (docs/images/viewer-auto-calibration.png).

Simulates a mock-up painting (the paper's Fig. 7 crossed strips, small, 1 s per pixel) whose
file states a calibration that reads 65 eV low (zero 65 eV too low: the fault of a real fresco
scan, issue #16), opens it in napari through the plugin's reader, presses "Find calibration
automatically" in the Energy calibration widget and captures the window (helpers from
``make_screenshots.py``)::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_calibration_screenshot.py

Options: ``--out DIR`` (default: docs/images next to this script).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the helpers below live beside this script

from make_screenshots import _new_viewer, _save, _settle  # noqa: E402
from make_widget_screenshots import _wait  # noqa: E402

PLUGIN = "napari-xrf-pigments"
OFFSET_KEV = -0.065  # the stated calibration reads 65 eV low


def simulate(folder: Path) -> Path:
    """The misstated mock-up as a NeXus file."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.progress import run_with_tqdm

    layout = crossed_strips(strip_px=4, gap_px=2, margin_px=2)
    cube, _ = run_with_tqdm(simulate_mockup(layout, seed=7, live_time_s=1.0), desc="mock-up")
    zero, gain, _ = cube.energy.as_calibration()
    return write_cube(folder / "fresco-like.h5", cube.with_calibration(zero + OFFSET_KEV, gain))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from napari_xrf_pigments.lines import line_energy

    with tempfile.TemporaryDirectory() as tmp:
        path = simulate(Path(tmp))
        viewer = _new_viewer()
        _, spectra = viewer.window.add_plugin_dock_widget(PLUGIN, "Spectrum viewer")
        _, calibration = viewer.window.add_plugin_dock_widget(PLUGIN, "Energy calibration")
        _settle(viewer, 500)
        viewer.open(str(path), plugin=PLUGIN)
        viewer.layers["fresco-like total counts"].visible = True
        viewer.reset_view()
        # The stated calibration puts every peak 65 eV left of its line marker.
        spectra.elements_edit.setText("Ca Fe Zn Hg Pb")
        spectra.redraw()
        spectra.show_spectrum_at((0, 12.0, 20.0))
        spectra.log_check.setChecked(True)
        spectra.name_peak(line_energy("Pb La"))
        calibration.find()
        _wait(calibration.runner)
        _settle(viewer, 800)
        _save(viewer, args.out / "viewer-auto-calibration.png")
        viewer.close()


if __name__ == "__main__":
    main()
