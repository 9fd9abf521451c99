"""Quality check: pigment models on simulated mock-ups they never saw, against the ground truth.

One command::

    python benchmarks/heldout_mockups.py [--model DIR ...]     # ~2 minutes on the 2-core CPU

Four settings, each pooling the pixels of two crossed-strip layouts (the paper's Fig. 7 strips,
seed 11; the Table 2 bottoms 3A-6 under the four tops, seed 12), Table 2 recipes at 25 wt%
binder (:class:`~napari_xrf_pigments.datasets.mockup.MockupRecipe`):

- ``elio-10s``: the default ELIO-like instrument (Rh 40 kV), 10 s per pixel (the paper's scans);
- ``elio-100ms``: the same at 100 ms per pixel;
- ``m6-like``: Rh 50 kV, normal incidence, another detector and the Bruker M6 calibration
  (-0.955 keV offset), 1 s;
- ``w-tube``: a W tube at 40 kV, other angles, 12.5 eV channels, 1 s.

For every model (default: the shipped one) it prints the macro F1 over the pigments present in
the truth (paper Eq. 6, threshold 0.5; a model's group outputs are scored but not averaged in),
the top-layer assignment accuracy and the per-pigment F1, then one JSON object as the last line.
The mock-ups are simulated with this package's
physics, so they test robustness to instrument, count level and layout, not the
simulation-to-real gap.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_finetune import LAYOUTS  # noqa: E402  (this folder is on sys.path when run)

#: The bottoms that the paper's Fig. 7 layout leaves out (3A-6).
OTHER_BOTTOMS = LAYOUTS["b"][1]

M6_LIKE = {
    "name": "M6-like (Rh, 50 kV)", "live_time_s": 1.0, "incidence_deg": 90.0,
    "takeoff_deg": 50.0, "air_in_cm": 1.0, "air_out_cm": 1.5,
    "tube": {"anode": "Rh", "voltage_kV": 50.0, "current_mA": 0.6, "window_thickness_um": 100.0,
             "beam_solid_angle_sr": 2e-5},
    "detector": {"thickness_um": 450.0, "window_thickness_um": 8.0, "area_mm2": 30.0,
                 "distance_mm": 15.0},
    "readout": {"zero_keV": -0.955, "gain_keV": 0.01, "n_channels": 4096, "noise_keV": 0.07,
                "fano": 0.12},
}
W_TUBE = {
    "name": "W-tube scanner (40 kV)", "live_time_s": 1.0, "incidence_deg": 70.0,
    "takeoff_deg": 45.0, "air_in_cm": 1.5, "air_out_cm": 1.0,
    "tube": {"anode": "W", "voltage_kV": 40.0, "current_mA": 0.5, "window_thickness_um": 150.0},
    "readout": {"zero_keV": 0.02, "gain_keV": 0.0125, "n_channels": 3072, "noise_keV": 0.09,
                "fano": 0.115},
}


def settings():
    """(name, instrument, live time in s or None for the instrument's own)."""
    from napari_xrf_pigments.physics import Instrument

    return [
        ("elio-10s", Instrument(), None),
        ("elio-100ms", Instrument(), 0.1),
        ("m6-like", Instrument.from_dict(M6_LIKE), None),
        ("w-tube", Instrument.from_dict(W_TUBE), None),
    ]


def simulate(instrument, live_time_s):
    """The two layouts' cubes and truths for one setting."""
    from napari_xrf_pigments.datasets.mockup import FIG7_BOTTOMS, FIG7_TOPS, crossed_strips, simulate_mockup
    from napari_xrf_pigments.progress import run

    layouts = ((crossed_strips(FIG7_TOPS, FIG7_BOTTOMS), 11),
               (crossed_strips(FIG7_TOPS, OTHER_BOTTOMS), 12))
    return [
        run(simulate_mockup(layout, seed=seed, instrument=instrument, live_time_s=live_time_s))
        for layout, seed in layouts
    ]


def score(model, mockups) -> dict:
    """Pixel-pooled metrics of ``model`` over ``mockups`` (list of (cube, truth))."""
    from napari_xrf_pigments.labels import labels_from_truth
    from napari_xrf_pigments.model.metrics import evaluate_predictions
    from napari_xrf_pigments.model.predict import predict_cube
    from napari_xrf_pigments.progress import run

    parts = {"present": [], "p_score": [], "top": [], "t_score": []}
    for cube, truth in mockups:
        pred = run(predict_cube(cube, model))
        labels = labels_from_truth(truth, pigments=model.pigments)
        n = labels.present.shape[0] * labels.present.shape[1]
        parts["present"].append(labels.present.reshape(n, -1))
        parts["top"].append(labels.top.reshape(n, -1))
        parts["p_score"].append(np.nan_to_num(pred.maps["present"]).reshape(n, -1))
        parts["t_score"].append(np.nan_to_num(pred.maps["top"]).reshape(n, -1))
    present, top = np.concatenate(parts["present"]), np.concatenate(parts["top"])
    metrics = evaluate_predictions(
        model.pigments, present, np.concatenate(parts["p_score"]),
        top, np.concatenate(parts["t_score"]),
    )
    f1 = {k: v["f1"] for k, v in metrics["present"].items() if v["support"] > 0}
    # Groups (model.groups) are scored but left out of the macro F1, which stays comparable
    # between models with and without them.
    classes = [v for k, v in f1.items() if k not in model.groups]
    return {
        "macro_f1": round(float(np.mean(classes)), 3),
        "top_assignment_accuracy": metrics["summary"]["top_assignment_accuracy"],
        "f1": {k: round(v, 3) for k, v in f1.items()},
        "n_pixels": int(present.shape[0]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=None,
                        help="model directory (repeatable; default: the shipped model)")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.model.files import load_model

    models = [(m, load_model(m)) for m in (args.model or [None])]
    started = time.time()
    results = {}
    for name, instrument, live_time in settings():
        mockups = simulate(instrument, live_time)
        for path, model in models:
            key = str(path or f"shipped:{model.name}")
            r = results.setdefault(key, {})[name] = score(model, mockups)
            print(f"{key:<28} {name:<11} macro F1 {r['macro_f1']:.3f}  top assignment "
                  f"{r['top_assignment_accuracy']:.3f}  "
                  + " ".join(f"{k} {v:.2f}" for k, v in r["f1"].items()), flush=True)
    print(f"({time.time() - started:.0f} s)")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
