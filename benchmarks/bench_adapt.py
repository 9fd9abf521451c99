"""A model for your instrument (#16): the shipped model adapted to an instrument unlike any of
its training variants (a Mo tube at 30 kV, a 25 um Be detector window, 90 degree scattering),
against the shipped model, on mock-ups simulated with that instrument.

One command::

    python benchmarks/bench_adapt.py [--n 10000] [--out DIR]    # ~15 min on the 2-core CPU

It runs what ``xrf-pigments adapt`` runs (simulate ``--n`` spectra with the instrument, finetune
the shipped model on 80 % of them, score before and after on the rest), then scores both models
on the held-out mock-ups of ``heldout_mockups.py`` (the Fig. 7 strips and the other Table 2
bottoms, seeds 11 and 12) simulated with the same instrument: macro F1 over the pigments present
(threshold 0.5), top-layer assignment accuracy, per pigment F1; one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from heldout_mockups import score, simulate  # noqa: E402

UNUSUAL = {
    "name": "Mo-tube scanner (30 kV, 90 deg)", "live_time_s": 1.0,
    "incidence_deg": 45.0, "takeoff_deg": 45.0, "air_in_cm": 1.0, "air_out_cm": 1.0,
    "tube": {"anode": "Mo", "voltage_kV": 30.0, "current_mA": 0.5, "window_thickness_um": 125.0},
    "detector": {"thickness_um": 450.0, "window_thickness_um": 25.0},
    "readout": {"zero_keV": -0.02, "gain_keV": 0.01, "n_channels": 4096, "noise_keV": 0.07,
                "fano": 0.114},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="spectra to simulate (default: adapt's)")
    parser.add_argument("--epochs", type=int, default=None, help="most epochs per stage")
    parser.add_argument("--out", type=Path, default=None, help="keep the adapted model here")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.model.adapt import adapt_job
    from napari_xrf_pigments.model.defaults import ADAPT_DEFAULTS
    from napari_xrf_pigments.model.files import load_model
    from napari_xrf_pigments.physics import Instrument
    from napari_xrf_pigments.progress import run_with_tqdm

    instrument = Instrument.from_dict(UNUSUAL)
    shipped = load_model()
    n = args.n or ADAPT_DEFAULTS["n"]
    epochs = {} if args.epochs is None else {"epochs": args.epochs, "head_epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "adapted"
        started = time.time()
        result, path = run_with_tqdm(adapt_job(out, instrument, base_model=shipped, n=n,
                                               force=True, **epochs), desc="adapt")
        adapt_s = time.time() - started
        print(result.table(title=f"simulated test split ({result.split['n_test']} spectra)"))
        adapted = load_model(path)
        mockups = simulate(instrument, None)
        results = {"instrument": UNUSUAL["name"], "n": n, "adapt_seconds": round(adapt_s),
                   "stages": result.stages}
        for key, model in (("shipped", shipped), ("adapted", adapted)):
            r = results[key] = score(model, mockups)
            print(f"{key:<8} macro F1 {r['macro_f1']:.3f}  top assignment "
                  f"{r['top_assignment_accuracy']:.3f}  "
                  + " ".join(f"{k} {v:.2f}" for k, v in r["f1"].items()), flush=True)
    print(f"adapt took {adapt_s / 60:.1f} min")
    print(json.dumps(results, default=str))


if __name__ == "__main__":
    main()
