"""Benchmark: chunked parallel fit vs one plain PyMca ``fitMultipleSpectra`` call.

Run from the project root::

    python benchmarks/bench_fit.py [--rows 200] [--cols 100] [--workers N] [--repeat 1]

Both fit the same synthetic cube (rows x cols x 2048 channels, 10 eV, several elements, Poisson
noise) with the same PyMca configuration (SNIP + linear background, refit of negative areas),
in the same run. Prints spectra per second of each, their ratio (goal >= 1.8 on 2 cores) and the
largest difference between the maps.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time

import numpy as np

GAIN = 0.01
N_CHANNELS = 2048
# element -> (line keV, relative intensity); Cr, Mn, As, Sr are fitted but absent (refit work).
LINES = {
    "Ca": [(3.692, 1.0), (4.013, 0.13)],
    "Ti": [(4.511, 1.0), (4.932, 0.13)],
    "Fe": [(6.404, 1.0), (7.058, 0.13)],
    "Cu": [(8.048, 1.0), (8.905, 0.14)],
    "Zn": [(8.639, 1.0), (9.572, 0.14)],
    "Hg": [(9.989, 1.0), (11.823, 0.8)],
    "Pb": [(10.551, 1.0), (12.614, 0.85), (14.764, 0.1)],
}
FIT_ELEMENTS = "Ca,Ti,Cr,Mn,Fe,Cu,Zn,As,Sr,Hg,Pb"


def synthetic_cube(rows, cols, seed=0):
    from napari_xrf_pigments.cube import XRFCube

    rng = np.random.default_rng(seed)
    energy = GAIN * np.arange(N_CHANNELS)
    fwhm = lambda e: np.sqrt(0.1**2 + 0.00385 * e * 0.114 * 2.3548**2)  # noqa: E731
    yy, xx = np.mgrid[:rows, :cols] / np.array([rows, cols]).reshape(2, 1, 1)
    amounts = {
        "Ca": 400 * (xx < 0.3),
        "Ti": 300 * (yy > 0.7),
        "Fe": 800 * (0.5 + xx),
        "Cu": 300 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.05),
        "Zn": 200 * (yy < 0.2),
        "Hg": 600 * (xx > 0.6),
        "Pb": 1500 * (0.3 + yy),
    }
    background = 3.0 + 4.0 * np.clip(1 - energy / 20.0, 0, None)
    expected = np.empty((rows, cols, N_CHANNELS), dtype=np.float32)
    expected[:] = background
    for element, lines in LINES.items():
        shape = np.zeros(N_CHANNELS)
        for line, rel in lines:
            sigma = fwhm(line) / 2.3548
            shape += rel * GAIN / (sigma * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((energy - line) / sigma) ** 2)
        expected += amounts[element][..., None].astype(np.float32) * shape.astype(np.float32)
    counts = rng.poisson(expected).astype(np.int32)
    return XRFCube.from_array(counts, zero=0.0, gain=GAIN)


def plain_call(counts, config):
    from PyMca5.PyMcaPhysics.xrf.FastXRFLinearFit import FastXRFLinearFit

    logging.getLogger("PyMca5").setLevel(logging.ERROR)  # "results are not saved" etc.
    out = FastXRFLinearFit().fitMultipleSpectra(
        y=counts, configuration=config, weight=0, refit=True, concentrations=False
    )
    return {name: np.asarray(out["parameters"][i]) for i, name in enumerate(out.labels("parameters"))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    parser.add_argument("--repeat", type=int, default=1, help="pairs of runs")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.fitting import build_config, fit_cube

    cube = synthetic_cube(args.rows, args.cols)
    n = args.rows * args.cols
    config = build_config(FIT_ELEMENTS, cube.energy).config
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cube {cube.shape} int32, {n} spectra; fit {FIT_ELEMENTS} (+ SNIP, linear background, refit)")
    print(f"CPUs available: {cpus}; load average {os.getloadavg()[0]:.2f} (other users share them)")
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"OPENBLAS_NUM_THREADS={blas} (PyMca's plain call runs its lstsq on OpenBLAS threads)")
    for run in range(1, args.repeat + 1):
        c0, t0 = time.process_time(), time.perf_counter()
        reference = plain_call(cube.counts, config)
        t_plain, c_plain = time.perf_counter() - t0, time.process_time() - c0

        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0, t0 = time.process_time(), time.perf_counter()
        result = fit_cube(cube, config, workers=args.workers)
        t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        c_workers = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)

        diff = max(float(np.max(np.abs(result.maps[g] - reference[g]))) for g in result.groups)
        top = max(float(np.max(np.abs(reference[g]))) for g in result.groups)
        print(f"run {run} (load average {os.getloadavg()[0]:.2f}):")
        print(
            f"  plain FastXRFLinearFit.fitMultipleSpectra : {t_plain:7.2f} s  {n / t_plain:8.0f} spectra/s"
            f"  (CPU {c_plain:.2f} s)"
        )
        print(
            f"  chunked parallel fit ({result.attrs['workers']} workers)       : {t_ours:7.2f} s  "
            f"{n / t_ours:8.0f} spectra/s  (CPU {c_ours:.2f} s here + {c_workers:.2f} s in workers)"
        )
        print(f"  ratio                                     : {t_plain / t_ours:7.2f}x (goal >= 1.8)")
        print(f"  max |difference| of the element maps      : {diff:.3g} counts (largest area {top:.3g})")


if __name__ == "__main__":
    main()
