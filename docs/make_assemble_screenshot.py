"""Regenerate the screenshot of the Assemble point grid widget (docs/images/widgets-assemble.png).

Simulates a small mock-up painting (the paper's Fig. 7 crossed strips, 1 s per pixel), writes
each pixel as an Amptek ``.mca`` point file in serpentine order (one point left out, as a
scanner that skipped it), assembles them with the widget, which opens the cube through the
plugin's reader, and captures the window (helpers from ``make_screenshots.py``)::

    xvfb-run -a -s "-screen 0 1700x1100x24" python docs/make_assemble_screenshot.py

Options: ``--out DIR`` (default: docs/images next to this script).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the helpers below live beside this script

from make_screenshots import _close_toasts, _new_viewer, _save, _settle  # noqa: E402
from make_widget_screenshots import _wait  # noqa: E402

PLUGIN = "napari-xrf-pigments"
SKIPPED = 17  # a point number without a file


def write_points(folder: Path):
    """The mock-up as numbered Amptek point files (serpentine); (rows, columns)."""
    from napari_xrf_pigments.datasets.mockup import crossed_strips, simulate_mockup
    from napari_xrf_pigments.io.amptek import write_pmca
    from napari_xrf_pigments.io.pointgrid import raster_position
    from napari_xrf_pigments.progress import run_with_tqdm

    layout = crossed_strips(strip_px=3, gap_px=1, margin_px=1)
    cube, _ = run_with_tqdm(simulate_mockup(layout, seed=7, live_time_s=1.0), desc="mock-up")
    rows, columns, channels = cube.shape
    zero, gain, _ = cube.energy.as_calibration()
    # Two (channel, keV) pairs, as DppMCA's <<CALIBRATION>> block holds them.
    pairs = [(ch, zero + gain * ch) for ch in (500, 2000)]
    counts = np.asarray(cube.counts)
    folder.mkdir()
    for k in range(rows * columns):
        if k + 1 == SKIPPED:
            continue
        r, c = raster_position(k, rows, columns, "serpentine")
        write_pmca(folder / f"fresco_{k + 1}.mca", counts[r, c], calibration=pairs,
                   live_time=1.0, real_time=1.05)
    return rows, columns


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fresco"
        rows, columns = write_points(folder)
        viewer = _new_viewer()
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Assemble point grid")
        _settle(viewer, 500)
        widget.source.value = folder
        widget.rows.value, widget.columns.value = rows, columns
        widget.order.value = "serpentine"
        widget.pixel_size.value = 1.0
        widget.run()
        _wait(widget.runner)
        _settle(viewer, 500)
        viewer.layers["fresco"].visible = False
        viewer.reset_view()
        _close_toasts(viewer)
        _save(viewer, args.out / "widgets-assemble.png")
        viewer.close()


if __name__ == "__main__":
    main()
