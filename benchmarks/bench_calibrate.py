"""Benchmark: automatic energy calibration on simulated mock-ups and real spectra.

One command, from the project root::

    python benchmarks/bench_calibrate.py          # about 2 minutes on the 2-core CPU

**Simulated.** Mock-up cubes made by the project's simulator
(:func:`~napari_xrf_pigments.datasets.mockup.simulate_mockup`) with the four instrument
settings of :mod:`heldout_mockups` (the ELIO-like Rh 40 kV instrument at 10 s and at 100 ms per
pixel, an M6-like Rh 50 kV scanner with a -0.955 keV zero, a W-tube scanner with 12.5 eV
channels) and two paint layouts: the paper's Fig. 7 strips (lead white, vermilion, zinc white,
cobalt blue, ... on a chalk ground; 3-pixel strips) and a lead- and mercury-free one (titanium
white over ultramarine and cobalt blue). Each cube is given stated calibrations that are off
by -100, -65, -30, +30, +65, +100 eV at channel 0 and by -0.5 %, 0, +0.5 % in gain (18 cases),
and calibrated automatically (:func:`~napari_xrf_pigments.calibration.calibrate_cube`); also
without a stated calibration from the rough guess "0 keV, 10 eV/channel". The error of a case
is the largest ``|E_found - E_true|`` over the channels between 3 and 20 keV [goal < 10 eV].
The ``sample`` column repeats the 100 ms cases on 100 spectra only (10 s of counts in all).

**Real.** The Bruker M6 Jetstream spectrum of the shared data (its stated calibration is taken
as right: the correction should be < 10 eV over 3-20 keV), as stated and with the same 18
errors put on it (error against its stated calibration); and the APS 2-ID-E AXO standard scans
(stated calibration ~0.8-1 % low per the data's README; compared with the README's refit on
Ar/Ca/Fe/Cu Ka, E = -0.0105 + 0.00961 ch).

Prints one table row per case group and, last, one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
REAL = HERE.parent.parent / "shared" / "data" / "real"
M6 = REAL / "rosettasciio_bruker" / "bruker_m6_jetstream_file_example.spx"
APS = (REAL / "derived" / "2ide_axo_std.h5", REAL / "derived" / "2ide_2xfm_0010.h5")
#: The APS scans' own calibration (maps_fit_parameters_override.txt: CAL_OFFSET, CAL_SLOPE),
#: ~0.8-1 % low per the data's README; the derived files hold its refit on Ar/Ca/Fe/Cu Ka.
APS_OVERRIDE = (-0.00418, 0.0095216)

OFFSETS_KEV = (-0.100, -0.065, -0.030, 0.030, 0.065, 0.100)
GAIN_ERRORS = (-0.005, 0.0, 0.005)
#: The rough calibration an uncalibrated cube is searched from: 0 keV, and the nominal channel
#: width 2 % off (the zero of a detector is rarely known; its channel width roughly is).
GUESS_ZERO_KEV, GUESS_GAIN_ERROR = 0.0, 0.02
RANGE_KEV = (3.0, 20.0)

#: Paint layouts: (tops, bottoms, strip width in pixels), about 500 pixels each.
LAYOUTS = {
    "fig7": (None, None, 3),  # the paper's Fig. 7 tops and bottoms
    "Pb/Hg-free": (("TiW", "CB"), ("UM", "CB", "TiW"), 8),
}


def error_keV(found_energies, true_energies) -> float:
    """Largest |E_found - E_true| over the channels whose true energy is in RANGE_KEV."""
    inside = (true_energies >= RANGE_KEV[0]) & (true_energies <= RANGE_KEV[1])
    return float(np.max(np.abs(found_energies[inside] - true_energies[inside])))


def misstated(cube, offset_keV, gain_error):
    """The cube with its calibration off: zero + offset, gain * (1 + gain_error)."""
    zero, gain, quad = cube.energy.as_calibration()
    return cube.with_calibration(zero + offset_keV, gain * (1 + gain_error), quad)


def without_negative_channels(cube):
    """The cube without its channels below -0.8 keV (no counts there): an M6 zero of -0.955 keV
    minus 100 eV would leave the energies the project accepts (>= -1 keV)."""
    from napari_xrf_pigments.cube import EnergyAxis, XRFCube

    zero, gain, quad = cube.energy.as_calibration()
    k = int(np.searchsorted(cube.energy.energies(), -0.8))
    if k == 0:
        return cube
    axis = EnergyAxis.from_calibration(cube.n_channels - k, zero + gain * k + quad * k * k,
                                       gain + 2 * quad * k, quad)
    return XRFCube(np.asarray(cube.counts)[..., k:], axis, metadata=cube.metadata)


def run_cases(cube, truth_energies, *, max_spectra=20000) -> dict:
    """Calibrate the cube under every misstated calibration and from the guess."""
    from napari_xrf_pigments.calibration import calibrate_cube
    from napari_xrf_pigments.cube import EnergyAxis, XRFCube
    from napari_xrf_pigments.errors import CalibrationError

    errors, failures, lines, seconds = [], [], set(), []
    for offset in OFFSETS_KEV:
        for gain_error in GAIN_ERRORS:
            started = time.perf_counter()
            try:
                found = calibrate_cube(misstated(cube, offset, gain_error),
                                       max_spectra=max_spectra)
            except CalibrationError as exc:
                failures.append(f"{offset * 1000:+.0f} eV {gain_error:+.1%}: {exc}")
                continue
            seconds.append(time.perf_counter() - started)
            errors.append(error_keV(found.energies(), truth_energies))
            lines.update(m.line for m in found.lines)
    raw = XRFCube(cube.counts, EnergyAxis.uncalibrated(cube.n_channels), metadata=cube.metadata)
    guess = (GUESS_ZERO_KEV, cube.energy.as_calibration()[1] * (1 + GUESS_GAIN_ERROR))
    try:
        guessed = error_keV(calibrate_cube(raw, guess=guess, max_spectra=max_spectra).energies(),
                            truth_energies)
    except CalibrationError as exc:
        guessed = None
        failures = failures + [f"guess {guess[0]:g} keV, {guess[1]:.5f} keV/ch: {exc}"]
    return {
        "n": len(OFFSETS_KEV) * len(GAIN_ERRORS),
        "max_error_eV": round(max(errors) * 1000, 1) if errors else None,
        "median_error_eV": round(float(np.median(errors)) * 1000, 1) if errors else None,
        "failed": len(failures),
        "failures": failures,
        "guess_error_eV": None if guessed is None else round(guessed * 1000, 1),
        "lines": sorted(lines),
        "seconds_per_case": round(float(np.mean(seconds)), 2) if seconds else None,
    }


def simulated(settings_filter=None) -> dict:
    from heldout_mockups import settings

    from napari_xrf_pigments.datasets.mockup import (
        FIG7_BOTTOMS,
        FIG7_TOPS,
        crossed_strips,
        simulate_mockup,
    )
    from napari_xrf_pigments.progress import run

    results = {}
    for name, instrument, live_time in settings():
        if settings_filter and name not in settings_filter:
            continue
        for layout_name, (tops, bottoms, strip) in LAYOUTS.items():
            layout = crossed_strips(tops or FIG7_TOPS, bottoms or FIG7_BOTTOMS, strip_px=strip,
                                    gap_px=1, margin_px=1)
            cube, _ = run(simulate_mockup(layout, seed=21, instrument=instrument,
                                          live_time_s=live_time))
            cube = without_negative_channels(cube)
            truth = cube.energy.energies()
            row = run_cases(cube, truth)
            row["counts"] = float(cube.sum_spectrum().sum())
            row["pixels"] = cube.shape[0] * cube.shape[1]
            if name == "elio-100ms":
                row["sample"] = run_cases(cube, truth, max_spectra=100)
            results[f"{name} {layout_name}"] = row
            print_row(f"{name} {layout_name}", row)
    return results


def real() -> dict:
    from napari_xrf_pigments.calibration import calibrate_cube
    from napari_xrf_pigments.io import open_cube

    results = {}
    if M6.is_file():
        cube = without_negative_channels(open_cube(M6))
        stated = cube.energy.energies()
        found = calibrate_cube(cube)
        lo, hi = found.span_keV
        row = run_cases(cube, stated)
        row.update({
            "correction_max_eV_3_20": round(found.max_offset_keV(*RANGE_KEV) * 1000, 1),
            "correction_max_eV_lines": round(found.max_offset_keV(max(lo, 3.0), hi) * 1000, 1),
            "lines_span_keV": [round(lo, 2), round(hi, 2)],
            "correction_eV": {f"{e:g}": round(found.offset_at(e) * 1000, 1)
                              for e in (3.0, 6.4, 10.0, 14.0, 20.0)},
            "residual_eV": round(found.residual_keV * 1000, 1),
            "uncertainty_eV_at_20": round(found.uncertainty_at(20.0) * 1000, 1),
            "as_stated_lines": [m.line for m in found.lines],
        })
        # The M6 records its Rh anode only in the .spx's own XML, which the reader does not
        # pass on: with the anode named, the scattered Rh Ka pins the calibration at 20 keV.
        with_tube = calibrate_cube(dataclasses.replace(
            cube, metadata={**cube.metadata, "tube_anode": "Rh"}))
        row["with_Rh_anode"] = {
            "correction_max_eV_3_20": round(with_tube.max_offset_keV(*RANGE_KEV) * 1000, 1),
            "correction_eV": {f"{e:g}": round(with_tube.offset_at(e) * 1000, 1)
                              for e in (3.0, 6.4, 10.0, 14.0, 20.0)},
            "lines": [m.line for m in with_tube.lines],
        }
        results["Bruker M6 .spx"] = row
        print_row("Bruker M6 .spx (vs stated)", row)
        print(f"    as stated: correction {row['correction_eV']} eV (stated minus found); largest "
              f"{row['correction_max_eV_lines']} eV where the lines are ({lo:.2f}-{hi:.2f} keV: "
              f"{', '.join(row['as_stated_lines'])}; residual {row['residual_eV']} eV), "
              f"{row['correction_max_eV_3_20']} eV over 3-20 keV (uncertainty at 20 keV "
              f"+-{row['uncertainty_eV_at_20']} eV); with the Rh anode named: "
              f"{row['with_Rh_anode']}")
    for path in APS:
        if not path.is_file():
            continue
        # The file's energies are the README's refit; state the scan's own calibration (the
        # MAPS override file's, ~0.9 % low) and see what is found from it and from the refit.
        cube = open_cube(path)
        refit = cube.energy.energies()
        inside = (refit >= 3.0) & (refit <= 10.0)  # the beam is 10 keV
        row = {}
        for stated_name, stated in (("override", cube.with_calibration(*APS_OVERRIDE)),
                                    ("refit", cube)):
            found = calibrate_cube(stated)
            row[stated_name] = {
                "found": [round(found.zero_keV, 5), round(found.gain_keV, 7), found.quad_keV],
                "lines": [m.line for m in found.lines],
                "residual_eV": round(found.residual_keV * 1000, 1),
                "stated_vs_refit_max_eV_3_10": round(float(np.max(np.abs(
                    stated.energy.energies() - refit)[inside])) * 1000, 1),
                "found_vs_refit_max_eV_3_10": round(float(np.max(np.abs(
                    found.energies() - refit)[inside])) * 1000, 1),
                "uncertainty_eV_at_10": round(found.uncertainty_at(10.0) * 1000, 1),
            }
            r = row[stated_name]
            print(f"{path.name + ' from ' + stated_name:<28} found zero {r['found'][0]:.5f} keV, "
                  f"gain {r['found'][1]:.7f} keV/ch on {', '.join(r['lines'])}; vs the file's "
                  f"refit: stated {r['stated_vs_refit_max_eV_3_10']:g} eV, found "
                  f"{r['found_vs_refit_max_eV_3_10']:g} eV at most over 3-10 keV "
                  f"(+-{r['uncertainty_eV_at_10']:g} eV at 10 keV)", flush=True)
        results[path.name] = row
    return results


def print_row(name, row):
    def figure(value):
        return "-" if value is None else f"{value:g}"

    sample = row.get("sample")
    print(f"{name:<28} {row['n']:>3} cases  max {figure(row['max_error_eV']):>5} eV  median "
          f"{figure(row['median_error_eV']):>5} eV  failed {row['failed']}  guess "
          f"{figure(row['guess_error_eV']):>5} eV"
          + (f"  sample max {figure(sample['max_error_eV'])} eV, failed {sample['failed']}"
             if sample else "")
          + f"  ({row.get('seconds_per_case')} s/case; lines {', '.join(row['lines'])})",
          flush=True)
    for failure in row["failures"] + (sample["failures"] if sample else []):
        print(f"    failed: {failure}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=None,
                        help="comma-separated settings (default all: elio-10s, elio-100ms, "
                             "m6-like, w-tube)")
    args = parser.parse_args(argv)
    started = time.time()
    print(f"{'case':<28} errors = max |E_found - E_true| over {RANGE_KEV[0]:g}-{RANGE_KEV[1]:g} "
          "keV [goal < 10 eV]")
    results = {"simulated": simulated(args.settings.split(",") if args.settings else None),
               "real": real()}
    print(f"({time.time() - started:.0f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
