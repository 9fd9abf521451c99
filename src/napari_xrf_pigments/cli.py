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
