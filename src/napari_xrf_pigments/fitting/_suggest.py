"""Elements suggested from the peaks of a sum spectrum, to offer before a fit."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CalibrationError, InvalidDataError
from ..peaks import SumSpectrum, significance
from ..physics.instrument import fwhm_at as detector_fwhm
from ._config import EDGE, FAMILIES, _symbol

# Elements searched by default: those of painting materials (pigments, grounds, driers,
# metals), plus Ar of the air; they include every evidence element of the pigment library's
# classes and distractors (Ti, Mn, Co, Cu, As, Cd, Sn, Sb, Ba, Zr, Bi, ...: tests/test_fitting.py
# checks it). Others (rare earths, actinides...) are searched only when asked
# (``candidates="all"``): with them every small bump finds a name.
PAINTING_ELEMENTS = (
    "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co",
    "Ni", "Cu", "Zn", "As", "Se", "Br", "Rb", "Sr", "Zr", "Mo", "Ag", "Cd", "Sn", "Sb", "I",
    "Ba", "W", "Pt", "Au", "Hg", "Pb", "Bi",
)
# All elements: Na..U (lighter ones do not reach a detector through air).
_Z_RANGE = (11, 92)
_SI_ESCAPE_KEV = 1.740
_FANO = 0.114


@dataclass(frozen=True)
class ElementSuggestion:
    """An element whose lines explain peaks of the sum spectrum.

    Attributes
    ----------
    element : str
        Symbol, e.g. ``"Pb"``.
    family : str
        ``"K"``, ``"L"`` or ``"M"``.
    line_keV : float
        Energy of the family's strongest line in the range.
    peak_keV : float
        Energy of the peak it explains.
    significance : float
        Net counts of that peak over the square root of the counts beneath it (about "sigmas").
    lines_found, lines_expected : int
        Lines of the family (strong enough to be seen) that match a peak, and that should.
    """

    element: str
    family: str
    line_keV: float
    peak_keV: float
    significance: float
    lines_found: int
    lines_expected: int

    @property
    def group(self) -> str:
        """PyMca's group name, e.g. ``"Pb L"`` (the name of its map)."""
        return f"{self.element} {self.family}"


@dataclass
class _Peak:
    energy: float
    net: float
    background: float
    significance: float
    explained: bool = False


def _family_lines(symbol, family, lo, hi, excitation_keV, fwhm_at):
    """Resolved lines (energy, relative rate) of a family inside [lo, hi], strongest = 1."""
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaPhysics import Elements

    element = Elements.Element[symbol]
    rays = f"{family} xrays"
    if rays not in element["rays"]:
        return []
    binding = element["binding"]
    lines = []
    for transition in element[rays]:
        info = element.get(transition)
        if not info or info["rate"] <= 0 or info["energy"] <= 0:
            continue
        # A subshell is excited only if the excitation exceeds its edge (K, L1..L3, M1..M5).
        shell = transition[:2] if family != "K" else "K"
        if excitation_keV is not None and binding.get(shell, binding[EDGE[family]]) >= excitation_keV:
            continue
        lines.append([float(info["energy"]), float(info["rate"])])
    if not lines:
        return []
    lines.sort()
    merged = [lines[0]]
    for energy, rate in lines[1:]:
        last = merged[-1]
        if energy - last[0] < 0.5 * fwhm_at(energy):
            total = last[1] + rate
            last[0] = (last[0] * last[1] + energy * rate) / total
            last[1] = total
        else:
            merged.append([energy, rate])
    inside = [(e, r) for e, r in merged if lo <= e <= hi]
    if not inside:
        return []
    top = max(r for _, r in inside)
    return [(e, r / top) for e, r in inside if r / top >= 0.05]


def _compton_regions(tube, kv, excitation_keV):
    """(low, high) keV of Rayleigh + Compton scatter of the excitation's main lines (> 5 keV).

    Compton-scattered lines are broad humps between the 180 degree Compton energy and the line;
    no element is named there.
    """
    from PyMca5.PyMcaPhysics import Elements

    energies = []
    if excitation_keV is not None:
        energies.append(float(excitation_keV))
    if tube is not None and (kv is None or Elements.Element[tube]["binding"]["K"] < kv):
        energies += [float(Elements.Element[tube][t]["energy"]) for t in ("KL3", "KM3")]
    return [(e / (1 + 2 * e / 511.0), e) for e in energies if e > 5.0]


def suggest_elements(
    energy_keV,
    sum_spectrum,
    *,
    tube: str | None = None,
    kv: float | None = None,
    excitation_keV: float | None = None,
    fit_range_keV=(1.0, None),
    min_significance: float = 5.0,
    resolution_keV: float = 0.15,
    candidates=None,
) -> list[ElementSuggestion]:
    """Elements whose X-ray lines explain the peaks found in a sum spectrum.

    Peaks are searched in the SNIP-subtracted spectrum and named greedily, strongest first:
    each is given the element line family (K, L or M) whose strongest line sits on it and whose
    other lines best match the other peaks, without predicting strong lines that are absent.
    Peaks of the scattered excitation (the tube anode's lines and their Compton shoulder, a
    monochromatic beam's Rayleigh and Compton peaks), Si escape and sum peaks are left out.

    Parameters
    ----------
    energy_keV : array, shape (n_channels,)
        Channel energies (increasing).
    sum_spectrum : array, shape (n_channels,)
        Counts per channel summed over the cube (``XRFCube.sum_spectrum()``).
    tube : str, optional
        Tube anode (e.g. ``"Rh"``): its lines are excluded.
    kv, excitation_keV : float, optional
        Tube voltage / monochromatic beam energy: lines above their reach are not proposed.
    fit_range_keV : (float or None, float or None)
        Energies searched.
    min_significance : float
        Smallest net/sqrt(background) of a peak, in sigmas.
    resolution_keV : float
        Detector FWHM at Mn Ka (sets match tolerances and windows).
    candidates : iterable of str or "all", optional
        Elements to consider (default :data:`PAINTING_ELEMENTS`; ``"all"``: Na..U).

    Returns
    -------
    list of ElementSuggestion
        Most significant first.
    """
    from PyMca5.PyMcaPhysics import Elements


    e = np.asarray(energy_keV, dtype=np.float64).ravel()
    y = np.asarray(sum_spectrum, dtype=np.float64).ravel()
    if e.shape != y.shape or e.size < 16:
        raise InvalidDataError(
            f"energy ({e.shape}) and spectrum ({y.shape}) must be 1-D of one length (>= 16)"
        )
    if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise CalibrationError("channel energies must be finite and increasing (is the cube calibrated?)")
    if not np.all(np.isfinite(y)) or y.min() < 0:
        raise InvalidDataError("the sum spectrum must be finite and non-negative")
    tube = _symbol(tube) if tube is not None else None
    exciting = excitation_keV if excitation_keV is not None else kv
    lo = max(e[0], fit_range_keV[0] if fit_range_keV and fit_range_keV[0] is not None else -math.inf)
    hi = min(e[-1], fit_range_keV[1] if fit_range_keV and fit_range_keV[1] is not None else math.inf)
    if exciting is not None:
        hi = min(hi, exciting + (1.0 if excitation_keV is not None else 0.0))


    def fwhm_at(energy):
        return float(detector_fwhm(energy, resolution_keV, _FANO))

    # Background: SNIP over ~2.5 FWHM on a lightly smoothed spectrum, as for the fit; peaks
    # whose net counts (above SNIP's local bias) are significant.
    spectrum = SumSpectrum(e, y, fwhm_at)
    peaks = [_Peak(p.energy, p.net, p.background, p.significance)
             for p in spectrum.find_peaks(lo, hi, min_significance)]
    window = spectrum.window

    def tolerance(energy):
        return max(0.05, 0.35 * fwhm_at(energy))

    def nearest(energy):
        best = None
        for p in peaks:
            d = abs(p.energy - energy)
            if d <= tolerance(energy) and (best is None or d < abs(best.energy - energy)):
                best = p
        return best

    for low, high in _compton_regions(tube, kv, excitation_keV):
        for p in peaks:
            if low - tolerance(low) <= p.energy <= high + tolerance(high):
                p.explained = True

    if candidates is None:
        symbols = list(PAINTING_ELEMENTS)
    elif isinstance(candidates, str) and candidates.lower() == "all":
        symbols = [Elements.ElementList[z - 1] for z in range(_Z_RANGE[0], _Z_RANGE[1] + 1)]
    else:
        symbols = [_symbol(s) for s in candidates]
    # The tube's own lines reach the detector by scattering: they compete for peaks like the
    # elements do, with priority, and are not suggested.
    if tube is not None and tube not in symbols:
        symbols.append(tube)
    families = {}
    for symbol in symbols:
        for family in FAMILIES:
            lines = _family_lines(symbol, family, lo, hi, exciting, fwhm_at)
            if lines:
                families[(symbol, family)] = lines

    suggestions, named = [], set()
    for peak in list(peaks):
        if peak.explained:
            continue
        if _is_artefact(peak, peaks, tolerance):
            peak.explained = True
            continue
        best = None
        for (symbol, family), lines in families.items():
            if (symbol, family) in named:
                continue
            main = max(lines, key=lambda t: t[1])
            if abs(main[0] - peak.energy) > tolerance(main[0]):
                continue
            if not _plausible(symbol, family, families, nearest):
                continue
            found, expected, score = [], 0, 0.0
            for energy, rel in lines:
                n_pred = rel * peak.net
                _, b = window(energy)
                visible = significance(n_pred, b) >= 2 * min_significance
                match = nearest(energy)
                if match is not None:
                    score += rel
                    # A peak much stronger than this line predicts holds something else too.
                    if match is peak or match.net <= 2 * n_pred + 3 * math.sqrt(b + 1):
                        found.append(match)
                elif visible:
                    score -= 2 * rel  # a strong line that should be seen is missing
                expected += visible or match is not None
            if symbol == tube:
                score += 1.0
            score -= 0.01 * FAMILIES.index(family)  # K before L before M when equal
            if any(symbol == s for s, _ in named):
                score += 0.5  # another family of an element already found (Pb M after Pb L)
            if score > 0 and (best is None or score > best[0]):
                best = (score, symbol, family, main[0], found, expected)
        if best is None:
            continue
        _, symbol, family, line, found, expected = best
        for p in found:
            p.explained = True
        named.add((symbol, family))
        if symbol == tube:
            continue
        suggestions.append(
            ElementSuggestion(
                symbol, family, round(line, 4), round(peak.energy, 4), round(peak.significance, 1),
                len(found), int(expected),
            )
        )
    return suggestions


def _plausible(symbol, family, families, nearest) -> bool:
    """An L (M) family needs the element's K (L) lines found when they are in the range too:
    the higher family is always the stronger one where both can be seen."""
    for higher in FAMILIES[: FAMILIES.index(family)]:
        lines = families.get((symbol, higher))
        if lines and nearest(max(lines, key=lambda t: t[1])[0]) is None:
            return False
    return True


def _is_artefact(peak, peaks, tolerance) -> bool:
    """Si escape (E - 1.74 keV) or sum peak (E1 + E2) of much stronger peaks."""
    for p in peaks:
        if p is peak or p.net < 20 * peak.net:
            continue
        if abs(p.energy - _SI_ESCAPE_KEV - peak.energy) <= tolerance(peak.energy):
            return True
        for q in peaks:
            if q.net >= 20 * peak.net and abs(p.energy + q.energy - peak.energy) <= tolerance(peak.energy):
                return True
    return False
