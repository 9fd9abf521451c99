"""Assembling a 60 x 120 grid of 1024-channel Amptek point files: < 30 s and < 500 MB peak RSS.

One command::

    python benchmarks/bench_assemble.py [FOLDER]   # FOLDER keeps the point files for re-runs

1. Writes 7200 Amptek PMCA ``.mca`` point files (``scan_1.mca ... scan_7200.mca``, the layout
   DppMCA writes: header, 4 calibration pairs, counts, DP5 configuration and DPP status blocks)
   of Poisson spectra with Ca, Fe and Pb lines on a background (not timed: the scanner's job).
2. Runs ``xrf-pigments assemble FOLDER --rows 60 --columns 120 --pixel-size 0.5 -o cube.h5`` in a
   fresh Python process and reports that process's time for the command (after the
   interpreter started) and its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
   Baseline: a fresh process that imports the command's modules and assembles nothing.
3. Checks the cube: shape, calibration, live time and pixel size as ``open_cube`` reads them.

Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS, COLUMNS, CHANNELS = 60, 120, 1024
GOAL_S, GOAL_MB = 30.0, 500.0
# Calibration pairs as DppMCA writes them (channel, keV): Ca Ka, Fe Ka, Pb La, Pb Lb.
PAIRS = [(183.3, 3.691), (320.5, 6.404), (527.8, 10.551), (631.0, 12.614)]

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
{body}
t1 = time.perf_counter()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": t1 - t0, "peak_rss_mb": peak_mb, **out}}))
"""

ASSEMBLE = """
from napari_xrf_pigments.cli import main
code = main(["assemble", sys.argv[1], "--rows", sys.argv[2], "--columns", sys.argv[3],
             "--pixel-size", "0.5", "-o", sys.argv[4], "--force"])
out = {"exit_code": code}
"""

BASELINE = """
import napari_xrf_pigments.cli, napari_xrf_pigments.io.pointgrid, napari_xrf_pigments.io.amptek
import napari_xrf_pigments.io.hdf5, h5py, tqdm
out = {}
"""


def write_points(folder: Path, rows: int, columns: int, channels: int) -> float:
    """Write the point files (unless they are there); returns the seconds it took."""
    from napari_xrf_pigments.io.amptek import write_pmca

    n = rows * columns
    if (folder / f"scan_{n}.mca").is_file():
        return 0.0
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    ch = np.arange(channels)
    gain = (PAIRS[-1][1] - PAIRS[0][1]) / (PAIRS[-1][0] - PAIRS[0][0])
    e = PAIRS[0][1] + gain * (ch - PAIRS[0][0])

    def line(keV, width=0.08):
        return np.exp(-0.5 * ((e - keV) / width) ** 2)

    lines = {"Ca": line(3.691), "Fe": line(6.404), "Pb": line(10.551) + 0.8 * line(12.614)}
    background = 4.0 + 30.0 * np.exp(-e / 3.0)
    status = {"Device Type": "DP5", "Serial Number": "12345", "Firmware": "6.08  Build:  6",
              "Accumulation Time": "1.000000", "HV Volt": "-130V", "TEC Temp": "223K"}
    config = {"CLCK": "80", "TPEA": "2.000", "GAIN": "60.023", "HVSE": "-130", "TECS": "225"}
    for k in range(n):
        r, c = divmod(k, columns)
        amounts = {"Ca": 40 + 30 * (c / columns), "Fe": 60 * (r / rows), "Pb": 80 * ((r + c) % 7 == 0)}
        expected = background + sum(a * lines[name] for name, a in amounts.items())
        write_pmca(folder / f"scan_{k + 1}.mca", rng.poisson(expected), calibration=PAIRS,
                   live_time=0.95 + 0.01 * rng.random(), real_time=1.0,
                   start_time="12/04/2026 10:11:12", serial_number="0",
                   configuration=config, status=status)
    return time.perf_counter() - started


def measure(body: str, *args) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(body=body), *map(str, args)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise SystemExit(f"the child failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where to keep the point files (default: a temporary folder)")
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--columns", type=int, default=COLUMNS)
    parser.add_argument("--channels", type=int, default=CHANNELS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="xrf-assemble-") as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "points"
        folder.mkdir(parents=True, exist_ok=True)
        n = args.rows * args.columns
        written = write_points(folder, args.rows, args.columns, args.channels)
        size_mb = sum(p.stat().st_size for p in folder.glob("scan_*.mca")) / 1e6
        print(f"{n} Amptek point files of {args.channels} channels, {size_mb:.0f} MB"
              + (f" (written in {written:.1f} s)" if written else " (already there)"))
        base = measure(BASELINE)
        print(f"baseline (fresh process importing the command's modules): peak RSS "
              f"{base['peak_rss_mb']:.0f} MB")
        out = Path(tmp) / "cube.h5"
        started = time.perf_counter()
        run = measure(ASSEMBLE, folder, args.rows, args.columns, out)
        wall = time.perf_counter() - started
        if run["exit_code"] != 0:
            print(f"assemble failed with exit code {run['exit_code']}")
            return 1
        passed = run["seconds"] < GOAL_S and run["peak_rss_mb"] < GOAL_MB
        cube_mb = out.stat().st_size / 1e6
        print(f"xrf-pigments assemble ({args.rows} x {args.columns} x {args.channels}): "
              f"{run['seconds']:.1f} s (goal < {GOAL_S:g} s; {wall:.1f} s in all, the interpreter's "
              f"start included), peak RSS {run['peak_rss_mb']:.0f} MB (goal < {GOAL_MB:g} MB), cube "
              f"{cube_mb:.1f} MB on disk -> {'PASS' if passed else 'FAIL'}")

        from napari_xrf_pigments.io import open_cube

        cube = open_cube(out)
        first, last = cube.energy.range_keV
        print(f"the cube reads back as {cube.shape} {cube.dtype}, {first:.3f}..{last:.3f} keV, "
              f"live time {float(np.mean(cube.live_time)):.3f} s per pixel, pixel "
              f"{cube.pixel_size[0]:g} x {cube.pixel_size[1]:g} mm, "
              f"{cube.metadata.get('masked_pixels', 0)} masked")
        ok = passed and cube.shape == (args.rows, args.columns, args.channels)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
