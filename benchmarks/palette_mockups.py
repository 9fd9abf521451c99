"""Quality check of the palette extension: the new pigment classes and groups on held-out mock-ups.

One command::

    python benchmarks/palette_mockups.py [--models default-v4 default-v3] [--quick]
        [--settings elio-10s,elio-100ms,w-tube] [--json palette.json]

``--models`` takes model folders, ``shipped`` (the model in the package) or a shipped model's
name (``default-v3``): the installed one if it has that name, else the version of
``src/napari_xrf_pigments/model/default`` of that name in this repository's git history. Default:
the shipped model. With two models the full run takes about 7 minutes on the project's 2-core
machine (about 2 minutes per setting, half of it simulation; 21,528 pixels per setting);
``--quick`` (2-pixel strips, 2,392 pixels per setting) about 1 minute, for trying the script.

Mock-ups (crossed strips, :mod:`napari_xrf_pigments.datasets.mockup`, Table 2 recipes at 25 wt%
binder), per setting of :mod:`heldout_mockups` (``elio-10s``: the ELIO-like Rh 40 kV instrument at
10 s per pixel; ``elio-100ms``: the same at 100 ms; ``w-tube``: a W-tube scanner at 40 kV with
other angles and 12.5 eV channels, 1 s):

- **palette**: the *palette strips*, i.e. each new class pure (its abbreviation: ``Azu``, ``Mal``,
  ``Sm``, ``UM``, ``LTY``, ``NapY``, ``TiW``, ``CdY``, ``Orp``, ``YO``, ``RU``) and every mock-up
  strip recipe of the library (mixtures without a Table 2 position) that holds a new class
  (``Azurite + lead white``...), in two layouts: (A) as bottoms under the Table 2 tops
  ``Top 2``, ``Top 1``, ``Top 3``, ``Top 4`` (seed 31) and (B) as tops over the Table 2 bottoms
  ``Bottom 2A``, ``Bottom 1B``, ``Bottom 3B``, ``Bottom 4A`` (seed 32). So every new pigment is
  seen alone (in the gaps), under library paint (A) and over it (B). The seeds are none of the
  training sets' (1, 2), nor the other benchmarks' (11, 12, 21).
- **library only**: the layouts of :mod:`heldout_mockups` (the paper's Fig. 7 strips, seed 11;
  Tops 2, 1, 3, 4 over Bottoms 3A-6, seed 12); with the default strip size they are the same
  mock-ups as that benchmark's.

Each model predicts every mock-up once; the scores are of the maps ``predict`` writes (checked
against element evidence; the network's own maps are scored too, as ``f1_raw`` in the JSON),
threshold 0.5, against the **detectable** truth (the pigment's own lines reach the detector; for a
group, its members' lines together; :mod:`napari_xrf_pigments.datasets.detectable`). It prints, per setting:

- per new class and per group: F1 over all pixels of the setting (palette and library-only
  mock-ups pooled, so that calls on library paint count as false positives); the share of the
  detectable pixels found where the pigment's strip is alone / under a library strip / over one
  (layouts A and B); pixel counts (detectable, present). A model that has no output for a class
  or group gets ``--`` (v3 has the 11 paper classes only);
- ``macro F1 original 11, library-only``: macro F1 over the paper's 11 classes that the
  library-only truth holds, the number comparable between ``default-v4`` and ``default-v3``
  (same mock-ups, same run); ``... palette`` the same on the palette mock-ups (library paint
  crossed with the new pigments) and ``macro F1 new`` over the new classes each model has.

For the model card: the per-class / per-group F1 table of ``default-v4`` (one column per
setting) with the detectable pixel counts, the found shares alone / under / over at 10 s, and the
``macro F1 original 11, library-only`` of ``default-v4`` beside ``default-v3`` per setting. ``--json
PATH`` writes every figure (per model and setting: F1, precision, recall, raw F1, counts, found
shares; per-class F1 of the original classes), and the last printed line is the run time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from heldout_mockups import OTHER_BOTTOMS, settings  # noqa: E402  (this folder is on sys.path)

#: The paper's 11 classes (Table 1); the library's other classes are the palette issue's.
ORIGINAL = ("CrG", "CrY", "CB", "EG", "IO", "LW", "PB", "RL", "CM", "VM", "ZW")
#: Table 2 paints crossed with the palette strips: tops over them (layout A) ...
PARTNER_TOPS = ("Top 2", "Top 1", "Top 3", "Top 4")
#: ... and bottoms under them (layout B): lead/zinc/vermilion, red lead, cobalt blue/chrome
#: green, chrome yellow/emerald green.
PARTNER_BOTTOMS = ("Bottom 2A", "Bottom 1B", "Bottom 3B", "Bottom 4A")
PALETTE_SEEDS = (31, 32)
LIBRARY_SEEDS = (11, 12)  # as heldout_mockups
DEFAULT_SETTINGS = "elio-10s,elio-100ms,w-tube"
#: Strip geometry (pixels) of crossed_strips: the default one, and --quick.
FULL_STRIPS = {"strip_px": 6, "gap_px": 3, "margin_px": 3}
QUICK_STRIPS = {"strip_px": 2, "gap_px": 1, "margin_px": 1}
SITUATIONS = ("alone", "under", "over")
DEFAULT_DIR = Path("src/napari_xrf_pigments/model/default")


# --- the mock-ups ----------------------------------------------------------------------------


def palette_strips(library) -> tuple[str, ...]:
    """Each new class pure (abbreviation), then the strip recipes that hold a new class."""
    new = [c for c in library.classes if c not in ORIGINAL]
    recipes = [mix.name for mix in library.mixtures if mix.position is None
               and any(f > 0 and library[a].label in new for a, f in mix.pigments)]
    return (*new, *recipes)


def layouts(library, strips: dict) -> dict:
    """Name -> (StripLayout, seed): the two palette layouts and the two library-only ones."""
    from napari_xrf_pigments.datasets.mockup import FIG7_BOTTOMS, FIG7_TOPS, crossed_strips

    palette = palette_strips(library)
    return {
        "palette-under": (crossed_strips(PARTNER_TOPS, palette, **strips), PALETTE_SEEDS[0]),
        "palette-over": (crossed_strips(palette, PARTNER_BOTTOMS, **strips), PALETTE_SEEDS[1]),
        "library-fig7": (crossed_strips(FIG7_TOPS, FIG7_BOTTOMS, **strips), LIBRARY_SEEDS[0]),
        "library-other": (crossed_strips(FIG7_TOPS, OTHER_BOTTOMS, **strips), LIBRARY_SEEDS[1]),
    }


def situations(library, truth, label) -> dict:
    """Per pixel (flat), where ``label``'s paint is: alone, under another strip, over one."""
    from napari_xrf_pigments.datasets.mockup import strip_pigments

    members = library.members_of(label)

    def holds(names):
        return np.array([any(f > 0 and library[a].label in members
                             for a, f in strip_pigments(n, library).items()) for n in names]
                        + [False])  # index -1: no strip

    top_holds = holds(truth["attrs"]["tops"])[truth["top_index"].ravel()]
    bottom_holds = holds(truth["attrs"]["bottoms"])[truth["bottom_index"].ravel()]
    has_top, has_bottom = truth["top_index"].ravel() >= 0, truth["bottom_index"].ravel() >= 0
    return {
        "alone": (top_holds & ~has_bottom) | (bottom_holds & ~has_top),
        "under": bottom_holds & has_top & ~top_holds,
        "over": top_holds & has_bottom & ~bottom_holds,
    }


# --- the models ------------------------------------------------------------------------------


def _git(*args, binary=False):
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=True)
    return out.stdout if binary else out.stdout.decode()


def _from_history(name: str, workdir: Path):
    """The shipped model of that name from the git history, written to ``workdir``, or None."""
    meta_path = f"{DEFAULT_DIR}/metadata.json"
    try:
        commits = _git("log", "--format=%H", "--", meta_path).split()
    except (OSError, subprocess.CalledProcessError):
        return None
    for commit in commits:
        try:
            meta = json.loads(_git("show", f"{commit}:{meta_path}"))
        except (subprocess.CalledProcessError, ValueError):
            continue
        if meta.get("name") != name:
            continue
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("metadata.json", "model.keras"):
            (folder / file).write_bytes(_git("show", f"{commit}:{DEFAULT_DIR}/{file}", binary=True))
        return folder, commit
    return None, None


def resolve_model(arg: str, workdir: Path):
    """(model, where it came from) for a model folder, ``shipped``, or a shipped model's name
    (the installed one, else a version of the shipped model in the git history)."""
    from napari_xrf_pigments.model.files import load_model

    if arg == "shipped":
        model = load_model(None)
        return model, str(model.path)
    if Path(arg).exists():
        model = load_model(arg)
        return model, str(model.path)
    shipped = load_model(None)
    if shipped.name == arg:
        return shipped, str(shipped.path)
    folder, commit = _from_history(arg, workdir)
    if folder is None:
        sys.exit(f"model {arg!r}: no such folder, not the shipped model ({shipped.name}) and "
                 f"no version of {DEFAULT_DIR} in the git history is named so")
    return load_model(folder, cache=False), f"git {commit[:12]}:{DEFAULT_DIR}"


# --- scores ----------------------------------------------------------------------------------


def f1_of(truth, called) -> dict:
    tp = int(np.sum(truth & called))
    n_true, n_called = int(truth.sum()), int(called.sum())
    return {
        "f1": round(2 * tp / (n_true + n_called), 3) if n_true else None,
        "precision": round(tp / n_called, 3) if n_called else None,
        "recall": round(tp / n_true, 3) if n_true else None,
        "n_called": n_called,
    }


def pooled(parts, key):
    return np.concatenate([p[key] for p in parts])


def macro(scores: dict, labels) -> float | None:
    values = [scores[k]["f1"] for k in labels if k in scores and scores[k]["f1"] is not None]
    return round(float(np.mean(values)), 3) if values else None


def score_setting(library, mockups: dict, predictions: dict, model) -> dict:
    """Every figure of one model on one setting's mock-ups."""
    outputs = [p.abbreviation for p in model.pigments]
    new_labels = [c for c in library.classes if c not in ORIGINAL] + [g.abbreviation
                                                                      for g in library.groups]
    flat = {}  # mock-up -> {"det": {label: flat bool}, "checked": (n, k), "raw": (n, k)}
    for name, (cube, truth) in mockups.items():
        pred = predictions[name]
        n = cube.shape[0] * cube.shape[1]
        flat[name] = {
            "det": {k: truth["detectable"][k].ravel() for k in truth["detectable"]},
            "checked": np.nan_to_num(pred.maps["present"]).reshape(n, -1) >= 0.5,
            "raw": np.nan_to_num((pred.raw or pred.maps)["present"]).reshape(n, -1) >= 0.5,
        }
    out = {"not_output": [k for k in new_labels if k not in outputs], "new": {}}

    def label_scores(names, labels):
        scores = {}
        for label in labels:
            if label not in outputs:
                continue
            j = outputs.index(label)
            t = np.concatenate([flat[m]["det"][label] for m in names])
            checked = np.concatenate([flat[m]["checked"][:, j] for m in names])
            raw = np.concatenate([flat[m]["raw"][:, j] for m in names])
            s = f1_of(t, checked)
            s["f1_raw"] = f1_of(t, raw)["f1"]
            scores[label] = s
        return scores

    everything = list(mockups)
    palette = [m for m in mockups if m.startswith("palette")]
    library_only = [m for m in mockups if m.startswith("library")]
    for label, s in label_scores(everything, new_labels).items():
        found = {}
        for where in SITUATIONS:
            hit = total = 0
            for m in palette:
                j = outputs.index(label)
                mask = mockups[m][1]["_situations"][label][where] & flat[m]["det"][label]
                total += int(mask.sum())
                hit += int(np.sum(flat[m]["checked"][mask, j]))
            found[where] = {"found": round(hit / total, 3) if total else None, "n": total}
        s["found"] = found
        out["new"][label] = s
    out["macro_f1_new"] = macro(out["new"], [c for c in library.classes if c not in ORIGINAL])
    lib = label_scores(library_only, ORIGINAL)
    pal = label_scores(palette, ORIGINAL)
    lib_present = [k for k in ORIGINAL if lib.get(k, {}).get("f1") is not None]
    out["original_library_only"] = {
        "macro_f1": macro(lib, lib_present),
        "macro_f1_raw": round(float(np.mean([lib[k]["f1_raw"] or 0.0 for k in lib_present])), 3)
        if lib_present else None,
        "classes": lib_present,
        "f1": {k: lib[k]["f1"] for k in lib_present},
    }
    out["original_palette"] = {
        "macro_f1": macro(pal, ORIGINAL),
        "f1": {k: v["f1"] for k, v in pal.items()},
    }
    return out


def truth_counts(library, mockups: dict) -> dict:
    """Per new label: detectable and present pixels over the setting's mock-ups."""
    counts = {}
    new_labels = [c for c in library.classes if c not in ORIGINAL] + [g.abbreviation
                                                                      for g in library.groups]
    for label in new_labels:
        counts[label] = {
            "n_detectable": int(sum(t["detectable"][label].sum() for _, t in mockups.values())),
            "n_present": int(sum(t["present"][label].sum() for _, t in mockups.values())),
        }
    return counts


# --- printing --------------------------------------------------------------------------------


def _f(v, width=5):
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}.3f}"


def print_setting(name, seconds, n_pixels, counts, results, keys):
    print(f"\n== {name}  ({seconds:.0f} s; pixels: "
          + ", ".join(f"{k} {v}" for k, v in n_pixels.items()) + ")")
    head = f"{'label':<9}{'n det':>6}{'n pres':>7}"
    for key in keys:
        head += f" | {key[:26]:<26}"
    print(head)
    print(f"{'':<22}" + "".join(f" | {'F1':>5} {'found alone/under/over':<20}" for _ in keys))
    for label, c in counts.items():
        line = f"{label:<9}{c['n_detectable']:>6}{c['n_present']:>7}"
        for key in keys:
            s = results[key]["new"].get(label)
            if s is None:
                line += f" | {'--':>5} {'(no output)':<20}"
                continue
            found = "/".join("  - " if s["found"][w]["found"] is None
                             else f"{s['found'][w]['found']:.2f}" for w in SITUATIONS)
            line += f" | {_f(s['f1'])} {found:<20}"
        print(line)
    rows = (("macro F1 new classes", lambda r: r["macro_f1_new"]),
            ("macro F1 original 11, library-only", lambda r: r["original_library_only"]["macro_f1"]),
            ("  same, network alone", lambda r: r["original_library_only"]["macro_f1_raw"]),
            ("macro F1 original 11, palette", lambda r: r["original_palette"]["macro_f1"]))
    for title, get in rows:
        print(f"{title:<36}" + "".join(f" | {_f(get(results[k])):<26}" for k in keys))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["shipped"],
                        help="model folders, 'shipped', or shipped model names (default-v3)")
    parser.add_argument("--quick", action="store_true", help="small strips, for trying")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS,
                        help=f"comma-separated, of heldout_mockups' (default {DEFAULT_SETTINGS})")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.datasets.mockup import simulate_mockup
    from napari_xrf_pigments.model.predict import predict_cube
    from napari_xrf_pigments.pigments import load_pigment_library
    from napari_xrf_pigments.progress import run

    started = time.perf_counter()
    library = load_pigment_library()
    models, sources = {}, {}
    with tempfile.TemporaryDirectory(prefix="palette_models_") as workdir:
        for arg in args.models:
            model, source = resolve_model(arg, Path(workdir))
            key = arg if arg == model.name else f"{arg} ({model.name})"
            models[key], sources[key] = model, source
    keys = list(models)
    known = {name for name, _, _ in settings()}
    wanted = args.settings.split(",")
    if set(wanted) - known:
        sys.exit(f"unknown settings {sorted(set(wanted) - known)} (known: {sorted(known)})")
    strips = QUICK_STRIPS if args.quick else FULL_STRIPS
    plan = layouts(library, strips)
    report = {
        "models": {k: {"name": m.name, "from": sources[k]} for k, m in models.items()},
        "quick": args.quick, "strips": strips, "palette_strips": list(palette_strips(library)),
        "partners": {"tops": list(PARTNER_TOPS), "bottoms": list(PARTNER_BOTTOMS)},
        "seeds": {k: seed for k, (_, seed) in plan.items()},
        "threshold": 0.5, "labels": "detectable", "maps": "checked", "settings": {},
    }
    print(f"models: {', '.join(keys)}; palette strips: {', '.join(report['palette_strips'])}")
    warned = set()
    for name, instrument, live_time in settings():
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        mockups = {}
        for m, (layout, seed) in plan.items():
            cube, truth = run(simulate_mockup(layout, seed=seed, instrument=instrument,
                                              library=library, live_time_s=live_time))
            if m.startswith("palette"):
                truth["_situations"] = {k: situations(library, truth, k)
                                        for k in library.labels if k not in ORIGINAL}
            mockups[m] = (cube, truth)
        t_sim = time.perf_counter() - t0
        results = {}
        for key, model in models.items():
            predictions = {m: run(predict_cube(cube, model)) for m, (cube, _) in mockups.items()}
            for pred in predictions.values():
                for w in pred.warnings:
                    if (key, w) not in warned:
                        warned.add((key, w))
                        print(f"[{key}] {w}")
            results[key] = score_setting(library, mockups, predictions, model)
        counts = truth_counts(library, mockups)
        n_pixels = {m: int(c.shape[0] * c.shape[1]) for m, (c, _) in mockups.items()}
        seconds = time.perf_counter() - t0
        report["settings"][name] = {
            "seconds": round(seconds, 1), "simulation_seconds": round(t_sim, 1),
            "n_pixels": n_pixels, "counts": counts, "models": results,
        }
        print_setting(name, seconds, n_pixels, counts, results, keys)
    for key in keys:
        missing = results[key]["not_output"]
        if missing:
            print(f"{key}: no output for {', '.join(missing)} (shown as --)")
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"figures written to {args.json}")
    print(f"({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
