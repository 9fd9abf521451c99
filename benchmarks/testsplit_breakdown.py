"""Quality check: where a model's "present" F1 on its simulated test split is lost.

One command::

    python benchmarks/testsplit_breakdown.py --data TRAIN.h5 [--model DIR] [--seed 0]

``TRAIN.h5`` is the training set the model was trained on and ``--seed`` its training seed:
the script rebuilds the same 20 % test split (:func:`~napari_xrf_pigments.model.training.
split_indices`) that ``train`` scored. Per pigment it prints the F1 over the whole split (as
``train`` and ``evaluate`` report it) and the F1 with the *buried-only* positives left out (spectra
where the pigment is only in the bottom layer), then the share of buried-only positives found.
A pigment that scores well once buried-only cases are left out loses its F1 to what the top
layer hides; one that does not is confused with a pigment of the same elements.

When the set has detectable labels (``simulate`` writes them), it also prints the F1 against
those, for the network alone and for the maps ``predict`` writes (the test spectra as one cube,
checked against element evidence).
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the model's training set (.h5)")
    parser.add_argument("--model", default=None, help="model directory (default: shipped)")
    parser.add_argument("--seed", type=int, default=0, help="the model's training seed")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.datasets.trainset import read_training_set
    from napari_xrf_pigments.model.files import load_model
    from napari_xrf_pigments.model.metrics import binary_metrics
    from napari_xrf_pigments.model.training import split_indices

    data = read_training_set(args.data, require_top=True)
    test, _ = split_indices(len(data), folds=1, seed=args.seed)
    model = load_model(args.model, pigments=data.pigments)
    score = model.predictor().predict_spectra(data.spectra[test], data.energy)["present"]
    present, top = data.present[test], data.top[test]
    everything = binary_metrics(present, score)
    seen = None if data.detectable is None else data.detectable[test]
    if seen is not None:
        from napari_xrf_pigments.cube import XRFCube
        from napari_xrf_pigments.model.predict import predict_cube
        from napari_xrf_pigments.progress import run

        cube = XRFCube.from_array(data.spectra[test][:, None, :], energy=data.energy)
        checked = run(predict_cube(cube, model)).maps["present"][:, 0, :]
        raw_seen, checked_seen = binary_metrics(seen, score), binary_metrics(seen, checked)
    results = {}
    print(f"{'pigment':<8} {'F1 all':>7} {'F1 without buried-only':>23} {'buried-only found':>18}"
          + (f" {'F1 detectable':>14} {'checked':>8}" if seen is not None else ""))
    for i, abbr in enumerate(model.abbreviations):
        buried = present[:, i] & ~top[:, i]
        visible = binary_metrics(present[~buried, i : i + 1], score[~buried, i : i + 1])
        r = results[abbr] = {
            "f1": round(float(everything["f1"][i]), 3),
            "f1_without_buried_only": round(float(visible["f1"][0]), 3),
            "buried_only_found": round(float((score[buried, i] >= 0.5).mean()), 3),
            "n_buried_only": int(buried.sum()),
        }
        line = (f"{abbr:<8} {r['f1']:>7.3f} {r['f1_without_buried_only']:>23.3f} "
                f"{r['buried_only_found']:>12.3f} of {r['n_buried_only']}")
        if seen is not None:
            r["f1_detectable"] = round(float(raw_seen["f1"][i]), 3)
            r["f1_detectable_checked"] = round(float(checked_seen["f1"][i]), 3)
            line += f" {r['f1_detectable']:>14.3f} {r['f1_detectable_checked']:>8.3f}"
        print(line)
    print(json.dumps({"n_test": int(test.size), "pigments": results}))


if __name__ == "__main__":
    main()
