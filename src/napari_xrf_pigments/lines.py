"""X-ray fluorescence line energies (PyMca's tables) and calibration from identified peaks.

Line data come from ``PyMca5.PyMcaPhysics.xrf.Elements``, imported on first use so that
importing this module stays cheap. Energies are in keV. Relative rates are within a family
(K, L or M lines of one element sum to 1), as PyMca tabulates them.

Line names are Siegbahn names where one exists (``Ka1``, ``Lb1``, ``Ma1``), else the IUPAC
transition (``KN2``). A *group* such as ``Ka``, ``Kb``, ``La``, ``Lb`` or ``Ma`` stands for the
rate-weighted mean of its lines, which is where an unresolved peak sits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from .errors import CalibrationError

FAMILIES = ("K", "L", "M")

# IUPAC transition -> Siegbahn name, for the lines a user will recognise.
SIEGBAHN = {
    "KL3": "Ka1", "KL2": "Ka2", "KM3": "Kb1", "KM2": "Kb3", "KN3": "Kb2", "KN2": "Kb2'",
    "L3M5": "La1", "L3M4": "La2", "L2M4": "Lb1", "L3N5": "Lb2", "L1M3": "Lb3", "L1M2": "Lb4",
    "L3O45": "Lb5", "L3N1": "Lb6", "L3N4": "Lb15", "L3M1": "Ll", "L2M1": "Ln",
    "L2N4": "Lg1", "L1N2": "Lg2", "L1N3": "Lg3", "L2N1": "Lg5", "L2O4": "Lg6",
    "M5N7": "Ma1", "M5N6": "Ma2", "M4N6": "Mb", "M3N5": "Mg", "M4N2": "Mz2", "M5N3": "Mz1",
}

# Elements whose lines are searched when naming a peak: Na..U (lighter ones do not reach an
# XRF detector through air; heavier ones do not occur in paintings).
_Z_RANGE = (11, 92)


@dataclass(frozen=True)
class Line:
    """One fluorescence line.

    Attributes
    ----------
    element : str
        Element symbol, e.g. ``"Fe"``.
    name : str
        Siegbahn name when known (``"Ka1"``), else the IUPAC transition.
    transition : str
        IUPAC transition, e.g. ``"KL3"``.
    energy : float
        keV.
    rate : float
        Relative rate within the family (0..1).
    """

    element: str
    name: str
    transition: str
    energy: float
    rate: float

    @property
    def family(self) -> str:
        return self.transition[0]

    @property
    def label(self) -> str:
        return f"{self.element} {self.name}"


def _elements():
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaPhysics.xrf import Elements

    return Elements


def element_symbol(z: int) -> str:
    """Symbol of the element of atomic number ``z`` (1-100); IndexError outside."""
    if not 1 <= int(z) <= 100:
        raise IndexError(f"no element of atomic number {z}")
    return str(_elements().ElementList[int(z) - 1])


def normalize_symbol(symbol: str) -> str:
    """``"fe"`` -> ``"Fe"``; raises ValueError for an unknown element."""
    sym = str(symbol).strip()
    sym = sym[:1].upper() + sym[1:].lower()
    if sym not in _elements().Element:
        raise ValueError(f"unknown element {symbol!r}")
    return sym


@cache
def _element_lines(symbol: str) -> tuple[Line, ...]:
    el = _elements().Element[symbol]
    lines = []
    for family in FAMILIES:
        for key in el.get(f"{family} xrays", []):
            # K rates are tabulated within the family; for L and M PyMca's starred entries
            # hold the family-level rates (subshell vacancies and Coster-Kronig included).
            transition = key.rstrip("*")
            entry = el.get(key) if family != "K" else el.get(transition)
            if not entry or entry.get("energy", 0) <= 0:
                continue
            lines.append(
                Line(
                    element=symbol,
                    name=SIEGBAHN.get(transition, transition),
                    transition=transition,
                    energy=float(entry["energy"]),
                    rate=float(entry["rate"]),
                )
            )
    return tuple(sorted(lines, key=lambda ln: ln.energy))


def element_lines(symbol: str, families=FAMILIES, *, min_rate: float = 0.01) -> list[Line]:
    """Fluorescence lines of one element, sorted by energy.

    Parameters
    ----------
    symbol : str
        Element symbol (case-insensitive).
    families : iterable of {"K", "L", "M"}
    min_rate : float
        Drop lines weaker than this fraction of their family.
    """
    sym = normalize_symbol(symbol)
    fams = {f.upper() for f in families}
    return [ln for ln in _element_lines(sym) if ln.family in fams and ln.rate >= min_rate]


@lru_cache(maxsize=1)
def _all_lines() -> tuple[Line, ...]:
    elements = _elements()
    symbols = [s for s in elements.ElementList if _Z_RANGE[0] <= elements.getz(s) <= _Z_RANGE[1]]
    return tuple(ln for s in symbols for ln in _element_lines(s))


def nearest_lines(
    energy_keV: float,
    *,
    tolerance_keV: float = 0.15,
    elements=None,
    min_rate: float = 0.05,
    max_results: int = 6,
) -> list[tuple[Line, float]]:
    """Lines that could explain a peak at ``energy_keV``, nearest first.

    Parameters
    ----------
    energy_keV : float
        Peak position in keV.
    tolerance_keV : float
        Largest distance between the peak and a line.
    elements : iterable of str, optional
        Restrict the search to these elements (default: Na to U).
    min_rate : float
        Ignore lines weaker than this fraction of their family.
    max_results : int

    Returns
    -------
    list of (Line, delta_keV)
        ``delta_keV = line.energy - energy_keV``.
    """
    if elements:
        pool = [ln for s in elements for ln in _element_lines(normalize_symbol(s))]
    else:
        pool = _all_lines()
    hits = [
        (ln, ln.energy - energy_keV)
        for ln in pool
        if ln.rate >= min_rate and abs(ln.energy - energy_keV) <= tolerance_keV
    ]
    hits.sort(key=lambda hit: (abs(hit[1]), -hit[0].rate))
    return hits[:max_results]


_GREEK = {"α": "a", "β": "b", "γ": "g", "alpha": "a", "beta": "b", "gamma": "g"}


def parse_line_name(text: str) -> tuple[str, str]:
    """Split ``"Ca Ka"``, ``"ca-ka1"``, ``"Pb Lβ"`` or ``"Fe KL3"`` into (symbol, line)."""
    raw = str(text).strip()
    m = re.match(r"^([A-Za-z][a-z]?)[\s\-_]+(.+)$", raw) or re.match(
        r"^([A-Z][a-z]?)([KLM].*)$", raw
    )
    if not m:
        raise CalibrationError(
            f"cannot read the line name {text!r}; write it like 'Ca Ka' or 'Pb Lb1'"
        )
    symbol, line = m.group(1), m.group(2).strip().replace("-", "").replace(" ", "")
    for greek, latin in _GREEK.items():
        line = line.replace(greek, latin)
    try:
        symbol = normalize_symbol(symbol)
    except ValueError:
        raise CalibrationError(f"unknown element {m.group(1)!r} in line name {text!r}") from None
    return symbol, line


def line_energy(text: str) -> float:
    """Energy in keV of a named line or line group.

    ``"Fe Ka1"`` (or ``"Fe KL3"``) is one line; ``"Fe Ka"``, ``"Pb La"``, ``"Pb Lb"``, ``"Hg Ma"``
    are the rate-weighted mean of their lines (where an unresolved peak sits); a bare family
    (``"Fe K"``) is its strongest line.

    Raises
    ------
    CalibrationError
        If the name cannot be read or the element has no such line.
    """
    symbol, line = parse_line_name(text)
    lines = _element_lines(symbol)
    key = line.upper()
    # Exact IUPAC transition or Siegbahn name first, then a group ("Ka" -> Ka1, Ka2).
    exact = [ln for ln in lines if ln.transition.upper() == key or ln.name.upper() == key]
    if exact:
        return exact[0].energy
    family_group = re.fullmatch(r"([KLM])([A-Z]?)", key)
    if family_group:
        group = [
            ln
            for ln in lines
            if ln.name.upper().startswith(key) and (len(key) == 1 or ln.name != ln.transition)
        ]
        if len(key) == 1:  # a bare family ("Fe K") means its strongest line
            group = [ln for ln in lines if ln.family == key]
            group = [max(group, key=lambda ln: ln.rate)] if group else []
        if group:
            weight = sum(ln.rate for ln in group)
            return float(sum(ln.energy * ln.rate for ln in group) / weight)
    raise CalibrationError(f"{symbol} has no line {line!r} in PyMca's tables")


def two_peak_calibration(channel1, energy1, channel2, energy2) -> tuple[float, float]:
    """Linear calibration through two (channel, keV) points.

    Returns
    -------
    zero : float
        keV at channel 0.
    gain : float
        keV per channel (positive).

    Raises
    ------
    CalibrationError
        If the channels coincide or energy does not increase with channel.
    """
    c1, e1, c2, e2 = (float(v) for v in (channel1, energy1, channel2, energy2))
    if c1 == c2:
        raise CalibrationError("the two peaks are at the same channel; pick two different peaks")
    gain = (e2 - e1) / (c2 - c1)
    if not gain > 0:
        raise CalibrationError(
            f"energy must increase with channel, but {e1:.3f} keV at channel {c1:g} and "
            f"{e2:.3f} keV at channel {c2:g} give a gain of {gain:.5f} keV/ch; "
            "check the channels and the line names"
        )
    return e1 - gain * c1, gain


def peak_channel(spectrum, channel: float, *, half_width: int = 8) -> float:
    """Position of the peak nearest ``channel``, in (fractional) channels.

    Takes the highest channel within ``half_width`` of ``channel`` and refines it with a
    parabola through it and its two neighbours (the usual sub-channel peak estimate).

    Parameters
    ----------
    spectrum : array-like, shape (channels,)
    channel : float
        Where the user pointed.
    half_width : int
        Channels searched on each side.
    """
    y = np.asarray(spectrum, dtype=np.float64).ravel()
    n = y.size
    centre = int(round(float(channel)))
    lo, hi = max(0, centre - half_width), min(n, centre + half_width + 1)
    if lo >= hi:
        raise ValueError(f"channel {channel} is outside the spectrum (0..{n - 1})")
    top = lo + int(np.argmax(y[lo:hi]))
    if 0 < top < n - 1:
        left, mid, right = y[top - 1], y[top], y[top + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            return float(top + 0.5 * (left - right) / curvature)
    return float(top)
