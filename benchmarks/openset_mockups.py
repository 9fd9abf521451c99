"""Trust check: pigment maps on paint the model does not know, and on paint it does.

One command::

    python benchmarks/openset_mockups.py [--model DIR] [--settings elio-10s,elio-100ms,w-tube]

For each setting of :mod:`heldout_mockups` it simulates two crossed-strip mock-ups:

- **open set**: tops ``Top 1``, cadmium red, ``Top 3``, manganese blue, witherite across
  bottoms of cerulean blue, lithopone, strontium yellow, Egyptian blue, pyrolusite, antimony
  white, barium yellow and ``Bottom 2A``: the *test* distractors of the pigment library, which
  no model is trained on, over, under and beside library paint (until the palette issue the
  strips were titanium white (anatase), malachite, Naples yellow and realgar in place of
  witherite, pyrolusite, antimony white and barium yellow; those are classes of ``default-v4``
  or, realgar, XRF-identical to one);
- **library only**: the paper's Fig. 7 strips (seed 11).

and predicts both once, keeping the network's own ("raw") and the evidence-checked maps. It
prints, raw and checked side by side (goals of the trust issue in brackets):

- ``absent-key``: share of out-of-library pixels with a call (p >= 0.5) of a class whose
  evidence elements are not all in the pixel's paint [<= 2 %];
- ``foreign-called``: share of pixels whose paint holds only elements no class has, with any
  call [<= 10 %];
- ``unexplained-found``: share of pixels holding a foreign element with lines in the model's
  range whose ``unexplained`` score is >= 0.5 [>= 90 %]; also for the pixels where that paint is
  on top or exposed;
- ``unexplained-library``: the same score on the library-only mock-up [<= 5 %] (and per
  element, ``unexplained-library-by-element``);
- ``macro-F1-library``: macro F1 over the pigments present in the library-only truth, with
  the "present" labels and with the "detectable" ones (the pigment's own lines reach the
  detector, :mod:`napari_xrf_pigments.datasets.detectable`) [detectable: checked not lower
  than raw].

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from heldout_mockups import settings  # noqa: E402  (this folder is on sys.path when run)

OPEN_TOPS = ("Top 1", "CdR", "Top 3", "MnB", "Wit")
OPEN_BOTTOMS = ("CeB", "Lith", "SrY", "EgB", "Pyr", "SbW", "BaY", "Bottom 2A")


def strip_elements(library, name) -> frozenset:
    """Elements of a strip (a mixture or one material), substitutes expanded."""
    try:
        fractions = dict(library.mixture(name).pigments)
    except KeyError:
        fractions = {name: 1.0}
    fractions = library.expand_substitutes(fractions)
    return frozenset(el for abbr in fractions for el in library[abbr].elements)


def pixel_paint(library, truth):
    """Per pixel: (elements of its paint, has a distractor, distractor on top or exposed)."""
    tops, bottoms = truth["attrs"]["tops"], truth["attrs"]["bottoms"]
    distractors = {m.abbreviation for m in library.distractors()}
    t_idx, b_idx = truth["top_index"].ravel(), truth["bottom_index"].ravel()
    elements, foreign_strip, visible = [], [], []
    for t, b in zip(t_idx, b_idx):
        names = [n for n in ((tops[t] if t >= 0 else None), (bottoms[b] if b >= 0 else None)) if n]
        elements.append(frozenset().union(*(strip_elements(library, n) for n in names)))
        foreign_strip.append(any(n in distractors for n in names))
        upper = names[0] if names else None
        visible.append(upper in distractors)
    return elements, np.array(foreign_strip), np.array(visible)


def macro_f1(maps, truth, pigments, labels="present") -> float:
    scores = []
    for i, p in enumerate(pigments):
        t = truth[labels][p.abbreviation].ravel()
        if not t.any():
            continue
        called = maps[..., i].ravel() >= 0.5
        scores.append(2 * np.sum(called & t) / max(1, called.sum() + t.sum()))
    return float(np.mean(scores))


def open_set_scores(result, truth, library, spec, seen_range) -> dict:
    class_elements = frozenset(el for p in spec.pigments for el in p.elements)
    evidence = {p.abbreviation: frozenset(p.evidence) for p in spec.pigments}
    elements, foreign_strip, visible = pixel_paint(library, truth)
    lo, hi = seen_range
    out = {}
    for kind, maps in (("raw", result.raw["present"]), ("checked", result.maps["present"])):
        calls = maps.reshape(-1, maps.shape[-1]) >= 0.5
        absent_key = np.array([
            any(calls[k, j] and not evidence[p.abbreviation] <= elements[k]
                for j, p in enumerate(result.pigments))
            for k in range(calls.shape[0])
        ])
        foreign_only = np.array([bool(e) and not (e - {"Ca", "C", "O", "H"}) & class_elements
                                 for e in elements]) & foreign_strip
        out[kind] = {
            "absent-key": float(absent_key[foreign_strip].mean()),
            "foreign-called": float(calls[foreign_only].any(axis=1).mean()) if foreign_only.any() else None,
        }
    from napari_xrf_pigments.evidence import CANDIDATE_ELEMENTS, line_groups

    seen = {el for el in CANDIDATE_ELEMENTS if line_groups(el, lo, hi)}
    has_foreign = np.array([bool((e - class_elements - {"Ca"}) & seen) for e in elements]) & foreign_strip
    u = result.unexplained.ravel() >= 0.5
    out["checked"]["unexplained-found"] = float(u[has_foreign].mean())
    out["checked"]["unexplained-found-visible"] = float(u[has_foreign & visible].mean())
    out["n_pixels"] = {"foreign": int(foreign_strip.sum()), "foreign-element": int(has_foreign.sum())}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--settings", default="elio-10s,elio-100ms,w-tube")
    args = parser.parse_args(argv)

    from napari_xrf_pigments.datasets.mockup import FIG7_BOTTOMS, FIG7_TOPS, crossed_strips, simulate_mockup
    from napari_xrf_pigments.evidence import EvidenceSpec
    from napari_xrf_pigments.model.files import load_model
    from napari_xrf_pigments.model.predict import predict_cube
    from napari_xrf_pigments.pigments import load_pigment_library
    from napari_xrf_pigments.progress import run

    library = load_pigment_library()
    model = load_model(args.model)
    spec = EvidenceSpec.for_model(model, library)
    wanted = args.settings.split(",")
    report = {"model": model.name}
    for name, instrument, live_time in settings():
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        row = {}
        cube, truth = run(simulate_mockup(crossed_strips(OPEN_TOPS, OPEN_BOTTOMS), seed=21,
                                          instrument=instrument, live_time_s=live_time))
        result = run(predict_cube(cube, model))
        row.update(open_set_scores(result, truth, library, spec, model.preprocessing.range_keV))
        cube, truth = run(simulate_mockup(crossed_strips(FIG7_TOPS, FIG7_BOTTOMS), seed=11,
                                          instrument=instrument, live_time_s=live_time))
        result = run(predict_cube(cube, model))
        for kind, maps in (("raw", result.raw), ("checked", result.maps)):
            row[kind]["macro-F1-library"] = macro_f1(maps["present"], truth, result.pigments)
            row[kind]["macro-F1-library-detectable"] = macro_f1(
                maps["present"], truth, result.pigments, "detectable")
        row["checked"]["unexplained-library"] = float(np.mean(result.unexplained >= 0.5))
        row["checked"]["unexplained-library-by-element"] = {
            el: float(np.mean(m >= 0.5)) for el, m in result.unexplained_elements.items()}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        report[name] = row
        print(f"\n{name} ({row['seconds']} s; {row['n_pixels']['foreign']} out-of-library pixels)")
        for key in ("absent-key", "foreign-called", "macro-F1-library",
                    "macro-F1-library-detectable"):
            raw, checked = row["raw"][key], row["checked"][key]
            def fmt(v):
                return "n/a" if v is None else f"{v:.3f}"
            print(f"  {key:28s} raw {fmt(raw):>6s}   checked {fmt(checked):>6s}")
        for key in ("unexplained-found", "unexplained-found-visible", "unexplained-library"):
            print(f"  {key:28s}              checked {row['checked'][key]:.3f}")
        by_element = row["checked"]["unexplained-library-by-element"]
        print("  ... of which " + (", ".join(f"{el} {v:.3f}" for el, v in by_element.items()) or "none"))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
