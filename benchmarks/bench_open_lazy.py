"""Opening a >= 4 GB NeXus cube must be lazy: < 1 s and < 300 MB peak RSS.

The cube is written once, cheaply: a chunked HDF5 dataset (chunks of whole spectra) whose
unwritten chunks are never allocated and read as the fill value 0; only the first rows hold
simulated spectra. Its *logical* size (rows x columns x channels x 2 bytes) is what a reader
that loaded the counts would need in memory; on disk it is a few MB. Two layouts are
measured: energy last (the h5py dataset is used as is) and energy first (transposed lazily
with dask, as APS MAPS files need).

Each measurement runs ``open_cube`` + reading ``shape`` and the energy range in a fresh Python
process and reports that process's wall time for the open and its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). Baseline: a fresh process that imports the
same libraries (numpy, h5py, dask) and opens nothing.

Usage::

    python benchmarks/bench_open_lazy.py [FOLDER]   # FOLDER keeps the cubes for re-runs
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHAPE = (1200, 1000, 2048)  # rows, columns, channels: 4.92 GB of uint16
DTYPE = np.uint16
GOAL_S, GOAL_MB = 1.0, 300.0
FILLED_ROWS = 2

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
{body}
t1 = time.perf_counter()
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": t1 - t0, "peak_rss_mb": peak_mb, **out}}))
"""

OPEN = """
from napari_xrf_pigments.io import open_cube
cube = open_cube(sys.argv[1])
out = {"shape": list(cube.shape), "energy_keV": list(cube.energy.range_keV),
       "counts_type": type(cube.counts).__module__ + "." + type(cube.counts).__name__}
"""

BASELINE = """
import numpy, h5py, dask.array
out = {}
"""


def make_cube(path: Path, energy_first: bool) -> Path:
    """Write the sparse NeXus cube if it is not there yet."""
    import h5py

    if path.exists():
        return path
    rows, cols, chans = SHAPE
    energy = -0.96 + 0.01 * np.arange(chans)
    rng = np.random.default_rng(0)
    line = np.exp(-0.5 * ((energy - 6.40) / 0.07) ** 2) * 200 + 5  # an Fe Ka peak on a floor
    tmp = path.with_suffix(".part")
    with h5py.File(tmp, "w") as f:
        f.attrs["NX_class"], f.attrs["default"] = "NXroot", "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"], entry.attrs["default"] = "NXentry", "data"
        data = entry.create_group("data")
        data.attrs["NX_class"], data.attrs["signal"] = "NXdata", "counts"
        if energy_first:
            shape, chunks, axes = (chans, rows, cols), (chans, 1, 16), ["energy", "y", "x"]
        else:
            shape, chunks, axes = SHAPE, (1, 16, chans), ["y", "x", "energy"]
        data.attrs["axes"] = axes
        counts = data.create_dataset(
            "counts", shape=shape, dtype=DTYPE, chunks=chunks, fillvalue=0, compression="gzip", shuffle=True
        )
        for r in range(FILLED_ROWS):
            block = rng.poisson(line, (cols, chans)).astype(DTYPE)
            if energy_first:
                counts[:, r, :] = block.T
            else:
                counts[r] = block
        ds = data.create_dataset("energy", data=energy)
        ds.attrs["units"] = "keV"
        ds.attrs["calibration"] = [-0.96, 0.01, 0.0]
    tmp.rename(path)
    return path


def measure(body: str, *args) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(body=body), *map(str, args)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="where to keep the cubes (default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        logical_gb = np.prod(SHAPE) * np.dtype(DTYPE).itemsize / 1e9
        base = measure(BASELINE)
        print(f"baseline (fresh process importing numpy, h5py, dask): peak RSS {base['peak_rss_mb']:.0f} MB")
        ok = True
        for energy_first in (False, True):
            name = "cube_energy_first.h5" if energy_first else "cube_energy_last.h5"
            path = make_cube(folder / name, energy_first)
            best = min((measure(OPEN, path) for _ in range(3)), key=lambda r: r["seconds"])
            passed = best["seconds"] < GOAL_S and best["peak_rss_mb"] < GOAL_MB
            ok &= passed
            print(
                f"{name}: {' x '.join(map(str, SHAPE))} {np.dtype(DTYPE).name} = {logical_gb:.2f} GB logical, "
                f"{path.stat().st_size / 1e6:.1f} MB on disk (fill value; {FILLED_ROWS} rows written)\n"
                f"  open_cube + shape + energy: {best['seconds']:.3f} s (goal < {GOAL_S:g} s), "
                f"peak RSS {best['peak_rss_mb']:.0f} MB (goal < {GOAL_MB:g} MB) -> "
                f"{'PASS' if passed else 'FAIL'}; counts: {best['counts_type']}, "
                f"energy {best['energy_keV'][0]:.3f}..{best['energy_keV'][1]:.3f} keV"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
