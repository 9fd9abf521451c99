"""Per-pigment classification metrics (paper Eq. 3-6) and the Table-3 layout.

Counts of true/false positives/negatives are taken per pigment over all spectra, with a
prediction "positive" when its probability is >= ``threshold``. Ratios whose denominator is 0
(e.g. precision when nothing was predicted positive) are NaN, shown as "n/a" and JSON null.

Top-layer figures:

- the "top" columns treat "pigment is in the top layer" as its own binary label;
- **top-layer assignment accuracy**: over every (spectrum, pigment) pair where the pigment is
  truly present, the fraction whose top/not-top call (top probability >= threshold) is right;
- **top-1 accuracy**: over spectra with at least one top-layer pigment, the fraction whose most
  probable top pigment is one of them.

No Keras needed.
"""

from __future__ import annotations

import math

import numpy as np

from ..datasets.mockup import read_truth
from ..datasets.trainset import as_pigment_labels
from ..errors import InvalidDataError
from ..io.maps import read_maps
from ..labels import labels_from_truth

METRICS = ("accuracy", "sensitivity", "precision", "f1")


def _ratio(num, den):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def binary_metrics(truth, score, *, threshold: float = 0.5) -> dict:
    """Eq. 3-6 per column.

    Parameters
    ----------
    truth : array-like of bool, shape (n, n_pigments)
    score : array-like of float, shape (n, n_pigments)
        Predicted probabilities.
    threshold : float

    Returns
    -------
    dict of str -> ndarray of shape (n_pigments,)
        ``tp, fp, tn, fn, support`` (int) and ``accuracy, sensitivity, precision, f1``.
    """
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(score) >= threshold
    if truth.shape != pred.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {pred.shape} must be equal 2-D shapes")
    tp = np.sum(truth & pred, axis=0)
    fp = np.sum(~truth & pred, axis=0)
    tn = np.sum(~truth & ~pred, axis=0)
    fn = np.sum(truth & ~pred, axis=0)
    precision = _ratio(tp, tp + fp)
    sensitivity = _ratio(tp, tp + fn)
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn, "support": tp + fn,
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": _ratio(2 * precision * sensitivity, precision + sensitivity),
    }


def expected_calibration_error(truth, score, *, bins: int = 10) -> float:
    """Expected calibration error over all (spectrum, pigment) pairs.

    Probabilities are put into ``bins`` equal-width bins; ECE is the mean over pairs of
    |fraction truly positive - mean probability| of their bin. NaN scores are left out.
    """
    t = np.asarray(truth, dtype=bool).ravel()
    p = np.asarray(score, dtype=np.float64).ravel()
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    if p.size == 0:
        return float("nan")
    which = np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    hits = np.bincount(which, weights=t, minlength=bins)
    mass = np.bincount(which, weights=p, minlength=bins)
    return float(np.sum(np.abs(hits - mass)) / p.size)


def apply_temperature(score, temperature: float) -> np.ndarray:
    """Probabilities ``sigmoid(logit(p) / T)``: T > 1 softens, T < 1 sharpens; 0.5 stays 0.5."""
    p = np.clip(np.asarray(score, dtype=np.float64), 1e-7, 1 - 1e-7)
    logit = np.log(p) - np.log1p(-p)
    return 1.0 / (1.0 + np.exp(-logit / float(temperature)))


def fit_temperature(truth, score) -> float:
    """The temperature that minimises the binary cross-entropy of :func:`apply_temperature`."""
    # lazy: scipy is heavy
    from scipy.optimize import minimize_scalar

    t = np.asarray(truth, dtype=np.float64).ravel()
    p = np.asarray(score, dtype=np.float64).ravel()
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]

    def loss(log_t):
        q = np.clip(apply_temperature(p, np.exp(log_t)), 1e-7, 1 - 1e-7)
        return -np.mean(t * np.log(q) + (1 - t) * np.log1p(-q))

    return float(np.exp(minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)),
                                        method="bounded").x))


def fit_calibration(scores: dict, labels: dict) -> dict:
    """Temperature scaling per output head, kept only where it lowers the ECE.

    Parameters
    ----------
    scores, labels : dict of head name -> array (n, n_pigments)
        Probabilities and truth on a validation split.

    Returns
    -------
    dict
        ``{"temperature": {head: T}, "validation_ece": {head: [before, after]}}``; T is 1.0
        where scaling did not help.
    """
    out = {"temperature": {}, "validation_ece": {}}
    for head, score in scores.items():
        t = fit_temperature(labels[head], score)
        before = expected_calibration_error(labels[head], score)
        after = expected_calibration_error(labels[head], apply_temperature(score, t))
        out["temperature"][head] = round(t, 4) if after < before else 1.0
        out["validation_ece"][head] = [round(before, 5), round(min(before, after), 5)]
    return out


def top_assignment_accuracy(present, top, top_score, *, threshold: float = 0.5) -> float:
    """Fraction of truly present pigments whose top/not-top call is right (NaN if none)."""
    present = np.asarray(present, dtype=bool)
    call = np.asarray(top_score) >= threshold
    right = (call == np.asarray(top, dtype=bool)) & present
    n = int(present.sum())
    return float(right.sum() / n) if n else math.nan


def top1_accuracy(top, top_score) -> float:
    """Fraction of spectra with a top-layer pigment whose argmax top score is one (NaN if none)."""
    top = np.asarray(top, dtype=bool)
    rows = top.any(axis=1)
    if not rows.any():
        return math.nan
    best = np.argmax(np.asarray(top_score)[rows], axis=1)
    return float(np.mean(top[rows][np.arange(best.size), best]))


def _per_pigment(m: dict, pigments) -> dict:
    out = {}
    for i, p in enumerate(pigments):
        entry = {k: _num(m[k][i]) for k in METRICS}
        entry.update({k: int(m[k][i]) for k in ("support", "tp", "fp", "tn", "fn")})
        out[p.abbreviation] = entry
    return out


def _num(v):
    v = float(v)
    return None if math.isnan(v) else round(v, 6)


def evaluate_predictions(
    pigments, present, present_score, top=None, top_score=None, *, threshold: float = 0.5,
    detectable=None,
) -> dict:
    """All figures for a labelled set, as a JSON-ready dict.

    Parameters
    ----------
    pigments : sequence of (abbreviation, name)
    present, present_score : arrays of shape (n, n_pigments)
        Truth (bool) and predicted probability of "present".
    top, top_score : arrays of shape (n, n_pigments), optional
        Truth and probability of "in the top layer".
    threshold : float
    detectable : array of bool, shape (n, n_pigments), optional
        "Present and its own lines reach the detector": ``present_score`` is scored against it
        too.

    Returns
    -------
    dict
        ``n_spectra``, ``threshold``, ``pigments``, ``present``, ``top`` and ``detectable``
        (abbreviation -> accuracy, sensitivity, precision, f1, support, tp, fp, tn, fn), and
        ``summary`` (min/mean F1 of each, top assignment and top-1 accuracy). NaN is None.
    """
    pigments = as_pigment_labels(pigments)
    m = binary_metrics(present, present_score, threshold=threshold)
    result = {
        "n_spectra": int(np.shape(present)[0]),
        "threshold": float(threshold),
        "pigments": [p._asdict() for p in pigments],
        "present": _per_pigment(m, pigments),
    }
    f1 = [v["f1"] for v in result["present"].values() if v["f1"] is not None]
    summary = {
        "present_f1_min": _num(min(f1)) if f1 else None,
        "present_f1_mean": _num(np.mean(f1)) if f1 else None,
        "present_ece": _num(expected_calibration_error(present, present_score)),
    }
    if top is not None and top_score is not None:
        result["top"] = _per_pigment(binary_metrics(top, top_score, threshold=threshold), pigments)
        tf1 = [v["f1"] for v in result["top"].values() if v["f1"] is not None]
        summary.update(
            {
                "top_f1_min": _num(min(tf1)) if tf1 else None,
                "top_f1_mean": _num(np.mean(tf1)) if tf1 else None,
                "top_assignment_accuracy": _num(
                    top_assignment_accuracy(present, top, top_score, threshold=threshold)
                ),
                "top1_accuracy": _num(top1_accuracy(top, top_score)),
            }
        )
    if detectable is not None:
        result["detectable"] = _per_pigment(
            binary_metrics(detectable, present_score, threshold=threshold), pigments)
        df1 = [v["f1"] for v in result["detectable"].values() if v["f1"] is not None]
        summary["detectable_f1_min"] = _num(min(df1)) if df1 else None
        summary["detectable_f1_mean"] = _num(np.mean(df1)) if df1 else None
        summary["detectable_ece"] = _num(expected_calibration_error(detectable, present_score))
    result["summary"] = summary
    return result


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


_HEAD = ("Acc.", "Sens.", "Prec.", "F1", "n")
_WIDTHS = (6, 7, 7, 7, 7)


def _cells(values) -> str:
    return "".join(f"{v:>{w}}" for v, w in zip(values, _WIDTHS))


def format_table(metrics: dict, *, title: str | None = None) -> str:
    """Lay out :func:`evaluate_predictions` output like the paper's Table 3.

    One row per pigment, "full name (abbreviation)"; column groups "present (any layer)" and,
    when available, "top layer" and "detectable" (present, scored against the labels of
    pigments whose own lines reach the detector), each with Acc., Sens., Prec., F1 and n (true
    positives + false negatives); then the summary lines.
    """
    pigments = as_pigment_labels(metrics["pigments"])
    groups = [("present", "Present (any layer)")]
    if "top" in metrics:
        groups.append(("top", "Top layer"))
    if "detectable" in metrics:
        groups.append(("detectable", "Detectable"))
    labels = [f"{p.name} ({p.abbreviation})" for p in pigments]
    width = max(len("Pigment"), *(len(s) for s in labels))
    block = sum(_WIDTHS)
    lines = []
    if title:
        lines.append(title)
    lines.append(" " * width + "".join(f" | {name:^{block}}" for _, name in groups))
    lines.append(f"{'Pigment':<{width}}" + "".join(f" | {_cells(_HEAD)}" for _ in groups))
    rule = "-" * len(lines[-1])
    lines.append(rule)
    for p, label in zip(pigments, labels):
        row = f"{label:<{width}}"
        for key, _ in groups:
            m = metrics[key][p.abbreviation]
            row += " | " + _cells([_fmt(m[k]) for k in METRICS] + [str(m["support"])])
        lines.append(row)
    lines.append(rule)
    s = metrics.get("summary", {})
    lines.append(
        f"{metrics['n_spectra']} spectra, threshold {metrics['threshold']:g}; "
        f"present F1 min {_fmt(s.get('present_f1_min'))}, "
        f"mean {_fmt(s.get('present_f1_mean'))}; expected calibration error "
        f"{_fmt(s.get('present_ece'))}"
    )
    if "top" in metrics:
        lines.append(
            f"top-layer F1 min {_fmt(s.get('top_f1_min'))}, mean "
            f"{_fmt(s.get('top_f1_mean'))}; top-layer assignment accuracy "
            f"{_fmt(s.get('top_assignment_accuracy'))}; top-1 accuracy "
            f"{_fmt(s.get('top1_accuracy'))}"
        )
    if "detectable" in metrics:
        lines.append(
            f"detectable F1 min {_fmt(s.get('detectable_f1_min'))}, "
            f"mean {_fmt(s.get('detectable_f1_mean'))}; expected calibration error "
            f"{_fmt(s.get('detectable_ece'))}"
        )
    return "\n".join(lines)


# -- probability maps against mock-up ground truth -----------------------------------------------


# -- finetuning's before/after table -------------------------------------------------------------

_COMPARISON_HEAD = ("Acc.", "Sens.", "Prec.", "F1")
_COMPARISON_WIDTH = 7


def _block(metrics: dict, key: str, abbr: str) -> str:
    m = metrics[key][abbr]
    return "".join(f"{_fmt(m[k]):>{_COMPARISON_WIDTH}}" for k in METRICS)


def format_comparison(before: dict, after: dict, *, title: str | None = None) -> str:
    """Per-pigment metrics before and after finetuning, side by side (paper Table 3 style).

    Parameters
    ----------
    before, after : dict
        :func:`~.metrics.evaluate_predictions` output on the same spectra.

    Returns
    -------
    str
        One row per pigment, "full name (abbreviation)", with Acc., Sens., Prec., F1 before and
        after and n (true positives + false negatives); a second block for the top layer when
        both have it; then the macro (mean) F1 before -> after.
    """
    pigments = as_pigment_labels(after["pigments"])
    labels = [f"{p.name} ({p.abbreviation})" for p in pigments]
    keys = [("present", "Present (any layer)")]
    if "top" in before and "top" in after:
        keys.append(("top", "Top layer"))
    width = max(len("Pigment"), *(len(s) for s in labels))
    block = _COMPARISON_WIDTH * len(_COMPARISON_HEAD)
    lines = [title] if title else []
    for key, heading in keys:
        lines.append(f"{heading:<{width}} | {'Before':^{block}} | {'After':^{block}} |")
        head = "".join(f"{h:>{_COMPARISON_WIDTH}}" for h in _COMPARISON_HEAD)
        lines.append(f"{'Pigment':<{width}} | {head} | {head} | {'n':>6}")
        rule = "-" * len(lines[-1])
        lines.append(rule)
        for p, label in zip(pigments, labels):
            n = after[key][p.abbreviation]["support"]
            lines.append(
                f"{label:<{width}} | {_block(before, key, p.abbreviation)} | "
                f"{_block(after, key, p.abbreviation)} | {n:>6}"
            )
        lines.append(rule)
    sb, sa = before.get("summary", {}), after.get("summary", {})
    lines.append(
        f"{after['n_spectra']} test spectra, threshold {after['threshold']:g}; present F1 mean "
        f"(macro) {_fmt(sb.get('present_f1_mean'))} -> {_fmt(sa.get('present_f1_mean'))}, "
        f"min {_fmt(sb.get('present_f1_min'))} -> {_fmt(sa.get('present_f1_min'))}"
    )
    if len(keys) > 1:
        lines.append(
            f"top-layer F1 mean {_fmt(sb.get('top_f1_mean'))} -> {_fmt(sa.get('top_f1_mean'))}; "
            f"top-layer assignment accuracy {_fmt(sb.get('top_assignment_accuracy'))} -> "
            f"{_fmt(sa.get('top_assignment_accuracy'))}; top-1 accuracy "
            f"{_fmt(sb.get('top1_accuracy'))} -> {_fmt(sa.get('top1_accuracy'))}"
        )
    return "\n".join(lines)


def pigment_maps_arrays(maps) -> tuple[list, np.ndarray, np.ndarray | None]:
    """The pigment probability maps of a maps file, stacked.

    Parameters
    ----------
    maps : str, Path or dict
        A pigment maps file (``xrf-pigments predict``), or its content as
        :func:`~napari_xrf_pigments.io.maps.read_maps` returns it / as
        :meth:`~.predictor.PigmentPrediction.to_maps` gives it.

    Returns
    -------
    pigments : list of (abbreviation, name)
        In file order.
    present : ndarray, float32 (rows, columns, n_pigments)
        P(pigment in any layer).
    top : ndarray or None
        P(pigment in the top layer), when every pigment has a top map.
    """
    source = ""
    if not isinstance(maps, dict):
        source = f" in {maps}"
        maps, _ = read_maps(maps)
    pigments, present, top = [], {}, {}
    for name, (array, attrs) in maps.items():
        if attrs.get("kind") != "pigment":
            continue
        abbr = attrs.get("abbreviation") or name
        if attrs.get("layer", "any") == "top":
            top[abbr] = array
        else:
            pigments.append((abbr, attrs.get("pigment") or abbr))
            present[abbr] = array
    if not pigments:
        raise InvalidDataError(
            f"no pigment maps{source}; give the output of `xrf-pigments predict`, not element maps"
        )
    stack = np.stack([np.asarray(present[a], np.float32) for a, _ in pigments], axis=-1)
    top_stack = None
    if all(a in top for a, _ in pigments):
        top_stack = np.stack([np.asarray(top[a], np.float32) for a, _ in pigments], axis=-1)
    return pigments, stack, top_stack


def evaluate_maps(maps, truth, *, threshold: float = 0.5) -> dict:
    """Score pigment probability maps against a mock-up's ground truth, pixel by pixel.

    Parameters
    ----------
    maps : str, Path or dict
        See :func:`pigment_maps_arrays`.
    truth : str, Path or dict
        Ground truth (``xrf-pigments mockup --truth``); it must have a map for every pigment
        of ``maps`` and the same number of rows and columns.
    threshold : float

    Returns
    -------
    dict
        :func:`evaluate_predictions` output over all pixels (a pixel without counts, NaN in the
        maps, counts as "predicted absent").
    """
    pigments, present, top = pigment_maps_arrays(maps)
    labels = labels_from_truth(truth, pigments=pigments)
    if labels.shape != present.shape[:2]:
        raise InvalidDataError(
            f"the maps are {present.shape[0]} x {present.shape[1]} pixels but the ground truth is "
            f"{labels.shape[0]} x {labels.shape[1]}: they are not of the same scan"
        )
    n = labels.present.shape[0] * labels.present.shape[1]
    use_top = top is not None and labels.top is not None
    if not isinstance(truth, dict):
        truth = read_truth(truth)
    seen = truth.get("detectable") or {}  # truth files from before detectable labels: none
    detectable = None
    if all(a in seen for a, _ in pigments):
        detectable = np.stack([np.asarray(seen[a], bool) for a, _ in pigments], -1).reshape(n, -1)
    return evaluate_predictions(
        pigments,
        labels.present.reshape(n, -1),
        np.nan_to_num(present, nan=0.0).reshape(n, -1),
        labels.top.reshape(n, -1) if use_top else None,
        np.nan_to_num(top, nan=0.0).reshape(n, -1) if use_top else None,
        threshold=threshold,
        detectable=detectable,
    )
