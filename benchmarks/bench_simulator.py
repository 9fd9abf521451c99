"""Benchmark of the layered-paint simulator: speed of the fast path, agreement with PyMca.

Run from the repository root::

    python benchmarks/bench_simulator.py [--agree 24] [--speed 4096] [--seed 0]

It pins itself to one CPU core with single-threaded BLAS, then

1. simulates ``--agree`` random stratigraphies (two paint layers of 1-4 pigments incl. the
   emerald-green substitutes, random binder type and fraction, random thicknesses, over a CaCO3
   ground) with the faithful path (PyMca's McaTheory + ConcentrationsTool) and the fast path,
   and reports the largest ``max|fast - faithful| / max(faithful)``;
2. times the fast path on ``--speed`` such stratigraphies and on the paper's single-pigment grid,
   in spectra per second;
3. prints the speed ratio fast/faithful measured in this run.

Targets (issue 3): >= 2000 spectra/s, agreement <= 1e-3. Exit status 1 if one is missed.
"""

from __future__ import annotations

import os

# One core: single-threaded BLAS must be set before numpy loads.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SPEED_TARGET = 2000.0
AGREEMENT_TARGET = 1e-3


def random_stratigraphies(lib, rng, n):
    """Table-2-like stratigraphies: mixtures, binder, thicknesses, over a CaCO3 ground."""
    from napari_xrf_pigments.pigments import Layer, Stratigraphy

    pigments = [p.abbreviation for p in lib.of_kind("pigment")]
    binders = [b.abbreviation for b in lib.of_kind("binder")]

    def layer(low, high):
        k = int(rng.integers(1, 5))
        names = rng.choice(pigments, k, replace=False)
        fractions = rng.dirichlet(np.ones(k))
        return Layer(dict(zip(names, fractions)), rng.uniform(low, high),
                     binder=str(rng.choice(binders)), binder_fraction=rng.uniform(0.0, 0.5))

    return [Stratigraphy.with_ground(layer(10, 200), layer(50, 200),
                                     ground_um=rng.uniform(150, 200)) for _ in range(n)]


def paper_grid(lib):
    """The paper's simulation grid: one pigment per layer, top 50-200 um, bottom 100-150 um."""
    from napari_xrf_pigments.pigments import Layer, Stratigraphy

    pigments = [p.abbreviation for p in lib.of_kind("pigment")
                if p.abbreviation not in ("VG", "SA")]
    return [Stratigraphy.with_ground(Layer({top: 1}, t), Layer({bottom: 1}, b))
            for top, bottom in itertools.product(pigments, repeat=2)
            for t in range(50, 201, 10) for b in range(100, 151, 10)]


def time_fast(sim, strats, batch):
    sim.simulate(strats[:batch])  # warm-up: caches, response matrix
    start = time.perf_counter()
    for i in range(0, len(strats), batch):
        sim.simulate(strats[i:i + batch])
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agree", type=int, default=24, help="stratigraphies for agreement")
    parser.add_argument("--speed", type=int, default=4096, help="stratigraphies for timing")
    parser.add_argument("--batch", type=int, default=512, help="fast-path batch size")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from napari_xrf_pigments.physics import FaithfulSimulator, FastSimulator, Instrument
    from napari_xrf_pigments.pigments import load_pigment_library

    lib = load_pigment_library()
    inst = Instrument()
    rng = np.random.default_rng(args.seed)
    print(f"instrument: {inst.name}; {inst.readout.n_channels} channels x "
          f"{inst.readout.gain_keV * 1000:.0f} eV; 1 core")

    t0 = time.perf_counter()
    fast = FastSimulator(inst, lib)
    fast.response()
    print(f"fast path set-up (physics cache + response matrix, once per instrument): "
          f"{time.perf_counter() - t0:.1f} s, {len(fast.rows)} peaks "
          f"({fast.n_lines} fluorescence lines)")

    # 1. agreement with PyMca's own computation
    strats = random_stratigraphies(lib, rng, args.agree)
    faithful = FaithfulSimulator(inst, lib)
    t0 = time.perf_counter()
    reference = [faithful.simulate(s) for s in strats]
    t_faithful = (time.perf_counter() - t0) / len(strats)
    quick = fast.simulate(strats)
    deviations = [float(np.abs(q - r).max() / r.max()) for q, r in zip(quick, reference)]
    worst = max(deviations)
    print(f"agreement over {len(strats)} random stratigraphies (mixtures, binder): "
          f"max |fast - faithful| / max(faithful) = {worst:.2e} (median "
          f"{np.median(deviations):.1e}); target <= {AGREEMENT_TARGET:.0e}")

    # 2. speed
    many = random_stratigraphies(lib, rng, args.speed)
    seconds = time_fast(fast, many, args.batch)
    rate = len(many) / seconds
    grid = paper_grid(lib)
    grid_rate = len(grid) / time_fast(fast, grid, args.batch)
    print(f"fast path: {rate:.0f} spectra/s on random mixtures ({len(many)} spectra, batches "
          f"of {args.batch}); {grid_rate:.0f} spectra/s on the paper's grid ({len(grid)} "
          f"single-pigment spectra); target >= {SPEED_TARGET:.0f}")
    print(f"faithful path: {t_faithful:.2f} s per spectrum ({1 / t_faithful:.2f} spectra/s)")
    print(f"speed ratio fast/faithful: {rate * t_faithful:.0f}x (random mixtures), "
          f"{grid_rate * t_faithful:.0f}x (paper grid)")

    ok = worst <= AGREEMENT_TARGET and rate >= SPEED_TARGET
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
