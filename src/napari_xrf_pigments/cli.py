"""The ``xrf-pigments`` command line: headless and batch work on the core.

Each subcommand is a ``_cmd_<name>(args)`` function registered in :func:`build_parser`. Errors
the package raises on purpose are printed as one line and exit with code 2; tracebacks are for
bugs only.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .errors import XRFPigmentsError

EXIT_USAGE_OR_INPUT = 2


def _cmd_info(args) -> int:
    from .io import open_cube

    cube = open_cube(args.file)
    summary = {
        "format": cube.format,
        "shape": list(cube.shape),
        "energy_keV": list(cube.energy.range_keV) if cube.calibrated else None,
        "calibrated": cube.calibrated,
        "dtype": str(cube.dtype),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        rows, cols, chans = cube.shape
        print(f"file:        {args.file}")
        print(f"format:      {summary['format']}")
        print(f"shape:       {rows} rows x {cols} columns x {chans} channels ({summary['dtype']})")
        if cube.calibrated:
            first, last = summary["energy_keV"]
            print(f"energy:      {first:.4f} .. {last:.4f} keV")
        else:
            print("energy:      NOT CALIBRATED (set zero/gain before fitting or prediction)")
    return 0


# -- simulation: simulate / mockup ---------------------------------------------------------------


def _load_instrument(path):
    from .physics import Instrument

    return Instrument() if path is None else Instrument.load(path)


def _cmd_simulate(args) -> int:
    from .datasets.training import generate_training_set
    from .io._atomic import check_output_path
    from .progress import run_with_tqdm
    from .trainset import write_training_set

    check_output_path(args.out, force=args.force)  # fail now, not after the simulation
    instrument = _load_instrument(args.instrument)
    background = None
    if args.background is not None:
        from .io import open_cube
        from .physics import estimate_background

        background = estimate_background(open_cube(args.background), instrument.readout)
    data = run_with_tqdm(
        generate_training_set(args.n, seed=args.seed, instrument=instrument, background_cps=background),
        desc="simulate (spectra)",
    )
    data.provenance["command"] = "xrf-pigments " + " ".join(sys.argv[1:])
    write_training_set(
        args.out,
        data.spectra,
        data.energy,
        data.present,
        data.top,
        data.pigments,
        data.provenance,
        params=data.params,
        force=args.force,
    )
    print(f"{args.n} simulated spectra written to {args.out}")
    return 0


def _cmd_mockup(args) -> int:
    from .datasets.mockup import simulate_mockup, write_truth
    from .io import write_cube
    from .io._atomic import check_output_path
    from .progress import run_with_tqdm

    check_output_path(args.out, force=args.force)
    if args.truth is not None:
        check_output_path(args.truth, force=args.force)
    cube, truth = run_with_tqdm(
        simulate_mockup(seed=args.seed, instrument=_load_instrument(args.instrument), live_time_s=args.live_time),
        desc="mockup (rows)",
    )
    write_cube(args.out, cube, force=args.force)
    if args.truth is not None:
        write_truth(args.truth, truth, force=args.force)
    rows, cols, chans = cube.shape
    print(f"mock-up cube {rows} x {cols} x {chans} written to {args.out}"
          + (f", ground truth to {args.truth}" if args.truth else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrf-pigments",
        description="Pigment maps from macro X-ray fluorescence scans (napari-xrf-pigments).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="what the reader sees in an XRF file")
    p.add_argument("file", help="XRF cube or spectrum file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("simulate", help="simulate a labelled training set of layered-paint spectra")
    p.add_argument("--out", required=True, help="training-set file to write (.h5)")
    p.add_argument("--n", type=int, default=20000, help="number of spectra (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--instrument", default=None, help="instrument file (.json/.toml) or PyMca .cfg")
    p.add_argument("--background", default=None,
                   help="measured cube whose SNIP background is added to the simulated spectra")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("mockup", help="simulate a scanned mock-up painting with ground truth")
    p.add_argument("--out", required=True, help="NeXus cube file to write (.h5)")
    p.add_argument("--truth", default=None, help="ground-truth file to write (.h5)")
    p.add_argument("--instrument", default=None, help="instrument file (.json/.toml) or PyMca .cfg")
    p.add_argument("--live-time", type=float, default=None, help="dwell per pixel in s (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_mockup)

    return parser


def main(argv=None) -> int:
    """Entry point of ``xrf-pigments``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except XRFPigmentsError as exc:
        print(f"xrf-pigments {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"xrf-pigments {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except KeyboardInterrupt:
        print(f"xrf-pigments {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
