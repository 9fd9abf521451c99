"""Regenerate the screenshot of the Model for your instrument widget (docs/images/widgets-adapt.png).

Simulates a small mock-up scanned with an M6-like instrument (Rh 50 kV, Bruker's calibration;
the cube file records the instrument), opens it in napari through the plugin's reader, docks the
widget, makes a model from
2,000 simulated spectra (a quick run for the picture; the default is 10,000) and captures the
window (helpers from ``make_screenshots.py``)::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_adapt_screenshot.py

Options: ``--out DIR`` (default: docs/images next to this script), ``--n N``.
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
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtWidgets import QDockWidget  # noqa: E402

PLUGIN = "napari-xrf-pigments"


def simulate(folder: Path) -> Path:
    """A small Fig. 7 mock-up scanned with an M6-like instrument, as a NeXus file."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io import write_cube
    from napari_xrf_pigments.physics import Instrument
    from napari_xrf_pigments.progress import run_with_tqdm

    instrument = Instrument.from_dict({
        "name": "M6-like (Rh, 50 kV)", "tube": {"anode": "Rh", "voltage_kV": 50.0},
        "readout": {"zero_keV": -0.955, "gain_keV": 0.01, "n_channels": 4096}})
    layout = crossed_strips(strip_px=4, gap_px=2, margin_px=2)
    cube, _ = run_with_tqdm(simulate_mockup(layout, seed=7, instrument=instrument,
                                            live_time_s=1.0), desc="mock-up")
    return write_cube(folder / "m6-scan.h5", cube)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = simulate(Path(tmp))
        viewer = _new_viewer()
        viewer.open(str(path), plugin=PLUGIN)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Model for your instrument")
        _settle(viewer, 500)
        widget.edit_instrument.value = True  # the form, for the picture
        # The dock was sized while the form was hidden: widen it as a user would, by dragging.
        dock = widget.native.parent()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        viewer.window._qt_window.resizeDocks([dock], [480], Qt.Orientation.Horizontal)
        _settle(viewer, 300)
        widget.n_spectra.value = args.n
        widget.out_dir.value = Path(tmp) / "model-m6-scan"
        widget.run()
        _wait(widget.runner)
        _settle(viewer, 800)
        _save(viewer, args.out / "widgets-adapt.png")
        from napari_xrf_pigments.model import isolated

        isolated.shutdown()
        viewer.close()


if __name__ == "__main__":
    main()
