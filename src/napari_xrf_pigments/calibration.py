"""Energy calibration from the peaks of a sum spectrum: checking it, and finding it.

Two uses of the same line fits (:class:`~napari_xrf_pigments.peaks.SumSpectrum`):

- :func:`measure_calibration` *checks* a calibration: the offset of the peaks of lines that
  (almost) every painting shows from their energies (the ``"calibration"`` warning before
  prediction, :mod:`napari_xrf_pigments.model.preflight`);
- :func:`find_calibration` / :func:`calibrate_cube` *find* one: peaks of the sum spectrum are
  named by the lines of :data:`AUTO_LINES` (and the scattered tube lines) that a single linear
  correction of the stated (or roughly guessed) calibration fits best, then each named line is
  fitted precisely and zero and gain (and a quadratic term when the lines ask for one) are
  fitted to them by weighted least squares. A stated calibration that already explains the
  lines within their uncertainties is kept (a chi-square test, with lines over at least 5 keV):
  a free fit would only move the axis by noise where no line pins it.

Energies are in keV, channels count from 0 (``E = zero + gain*ch + quad*ch**2``). Qt-free;
PyMca (line tables, SNIP) and scipy are imported when used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .cube import EnergyAxis, check_counts, sample_plan
from .errors import CalibrationError, InvalidDataError
from .lines import _elements, element_lines
from .peaks import SEARCH_KEV, LineFit, SumSpectrum, fwhm_function
from .progress import Progress, run

__all__ = [
    "AUTO_LINES",
    "CALIBRATION_LINES",
    "AutoCalibration",
    "CalibrationCheck",
    "CalibrationLine",
    "LineMatch",
    "calibrate_cube",
    "calibrate_cube_job",
    "find_calibration",
    "measure_calibration",
]

#: Detector FWHM at Mn Ka (keV) assumed when the cube's metadata does not give it.
DEFAULT_RESOLUTION_KEV = 0.15
DEFAULT_FANO = 0.114
#: Warn when the calibration offset exceeds this fraction of the FWHM at the lines' energy.
CALIBRATION_TOLERANCE = 0.25
#: Lines whose peaks measure the calibration: Ar of the air, then the elements of common grounds
#: and pigments. A peak is used only when clear (> MIN_SIGNIFICANCE) and unambiguous.
CALIBRATION_LINES = (
    "Ar Ka", "Ca Ka", "Fe Ka", "Cu Ka", "Zn Ka", "Hg La", "Pb La", "Pb Lb", "Sr Ka",
)
#: Smallest net counts / sqrt(counts beneath) of a peak used for the calibration, in sigmas.
MIN_SIGNIFICANCE = 10.0

_SI_ESCAPE_KEV = 1.740
# Si escape peaks hold up to ~2 % of their parent's counts (most at low energies).
_ESCAPE_FRACTION = 0.02
# The other line of an element that must be there, where expected, when it should be visible.
_COMPANION = {"Ka": "Kb", "La": "Lb", "Lb": "La"}


@dataclass(frozen=True)
class LineMatch:
    """A line whose peak was used to measure the energy calibration.

    Attributes
    ----------
    line : str
        E.g. ``"Ca Ka"`` (``"Rh Ka"`` for the scattered tube line).
    expected_keV : float
        Rate-weighted mean energy of the line group (where an unresolved peak sits).
    measured_keV : float
        Where the peak is on the cube's energy axis.
    significance : float
        Net counts over the square root of all counts within +-1 FWHM, in sigmas.
    """

    line: str
    expected_keV: float
    measured_keV: float
    significance: float

    @property
    def offset_keV(self) -> float:
        """Measured minus expected, keV (negative: the calibration reads low)."""
        return self.measured_keV - self.expected_keV


@dataclass(frozen=True)
class CalibrationCheck:
    """Result of :func:`measure_calibration`.

    Attributes
    ----------
    offset_keV : float or None
        Median offset of the lines used (measured minus expected), keV; None when no line
        could be used or the lines disagree.
    lines : tuple of LineMatch
        Lines used, by energy.
    tolerance_keV : float or None
        :data:`CALIBRATION_TOLERANCE` times the detector FWHM at the median energy of the
        lines used.
    rejected : tuple of str
        Lines with a clear peak that were not used, each with the reason.
    note : str
        Why there is no offset, when there is none.
    """

    offset_keV: float | None
    lines: tuple[LineMatch, ...] = ()
    tolerance_keV: float | None = None
    rejected: tuple[str, ...] = ()
    note: str = ""

    @property
    def off(self) -> bool:
        """True when the offset exceeds the tolerance."""
        return (self.offset_keV is not None and self.tolerance_keV is not None
                and abs(self.offset_keV) > self.tolerance_keV)



# -- checking a calibration: the offset of known lines ---------------------------------------


def _family(element, family) -> tuple:
    """The lines of an element's family (K, L), PyMca's rates, weakest left out."""
    return tuple(element_lines(element, (family,), min_rate=0.002))


def _group(lines, group) -> list[tuple[float, float]]:
    """(energy, rate) of the lines of a group ("Ka", "Kb", "La", "Lb") among ``lines``."""
    return [(ln.energy, ln.rate) for ln in lines
            if ln.name.startswith(group) and ln.name != ln.transition]


def _candidates(anode, kv, e_lo, e_hi, lines=CALIBRATION_LINES) -> list[tuple]:
    """(label, element, family, group, group lines, family lines) of ``lines`` (and the tube
    line) to look for: excited by ``kv`` (when known) and inside [e_lo, e_hi] keV."""
    def binding(element):
        return _elements().Element[element]["binding"]

    chosen = [tuple(label.split()) for label in lines]
    if anode is not None:
        # The tube's K lines when the voltage excites them well, else its L lines.
        k_lines = _group(_family(anode, "K"), "Ka")
        use_k = (k_lines and (kv is None or kv > 1.1 * binding(anode)["K"])
                 and k_lines[0][0] < e_hi)
        tube_line = (anode, "Ka" if use_k else "La")
        chosen = [c for c in chosen if c != tube_line] + [tube_line]
    out = []
    for element, group in chosen:
        family = group[0]
        if kv is not None and binding(element)["K" if family == "K" else "L3"] >= kv:
            continue  # not excited
        named = _family(element, family)
        members = _group(named, group)
        if not members:
            continue
        energy = sum(en * r for en, r in members) / sum(r for _, r in members)
        if e_lo <= energy <= e_hi:
            out.append((f"{element} {group}", element, family, group, members, named))
    return out


def measure_calibration(
    energy_keV,
    sum_spectrum,
    *,
    anode: str | None = None,
    kv: float | None = None,
    resolution_keV: float = DEFAULT_RESOLUTION_KEV,
    fano: float = DEFAULT_FANO,
) -> CalibrationCheck:
    """Energy calibration offset measured on lines that (almost) every painting shows.

    Each line of :data:`CALIBRATION_LINES` (and the scattered Ka, or La, of a known tube anode)
    is searched within :data:`SEARCH_KEV` of its energy in the SNIP-subtracted sum spectrum,
    then fitted within +-1 FWHM of the peak: its family's lines (PyMca energies and rates) as
    Gaussians of the detector width, with a free shift, width scale, area and linear
    background. A line is used when its peak is clear (above :data:`MIN_SIGNIFICANCE` sigmas)
    and unambiguous: of the expected width; not overlapped by lines of the other elements
    found, by a scattered tube line or by an Si escape peak; its companion line (Kb for Ka, Lb
    for La and back) found at the same offset where it should be visible; and, with three
    lines or more, not an outlier among them. The offset is the median of the lines used.

    Parameters
    ----------
    energy_keV : array, shape (channels,)
        Channel energies in keV (increasing), per the calibration to check.
    sum_spectrum : array, shape (channels,)
        Counts per channel summed over pixels.
    anode : str, optional
        Tube anode: its scattered Ka (La when the voltage cannot excite K) is used too.
    kv : float, optional
        Tube voltage: lines it cannot excite are not searched.
    resolution_keV : float
        Detector FWHM at Mn Ka (5.9 keV), keV.
    fano : float
        Fano factor (how the FWHM grows with energy).

    Returns
    -------
    CalibrationCheck
    """
    e = np.asarray(energy_keV, dtype=np.float64).ravel()
    y = np.asarray(sum_spectrum, dtype=np.float64).ravel()
    if e.shape != y.shape or e.size < 16:
        raise InvalidDataError(
            f"energy ({e.shape}) and spectrum ({y.shape}) must be 1-D of one length (>= 16)")
    if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise CalibrationError("channel energies must be finite and increasing")
    if not np.all(np.isfinite(y)) or y.min() < 0:
        raise InvalidDataError("the sum spectrum must be finite and non-negative")
    fwhm = fwhm_function(float(resolution_keV), float(fano))
    spectrum = SumSpectrum(e, y, fwhm)
    margin = float(fwhm(e[-1])) * 2 + SEARCH_KEV
    candidates = _candidates(anode, kv, e[0] + margin, e[-1] - margin)
    fits, rejected = _fit_lines(spectrum, candidates, anode)

    if not fits:
        note = ("no clear, unambiguous peak of " + ", ".join(CALIBRATION_LINES)
                + (f" or the {anode} tube line" if anode else "") + " was found")
        if rejected:
            note += f" ({'; '.join(rejected)})"
        return CalibrationCheck(None, (), None, tuple(rejected), note)
    if len(fits) == 2 and abs(fits[0].delta - fits[1].delta) > _pair_tolerance(
            fwhm, np.median([f.expected for f in fits])):
        weak, strong = sorted(fits, key=lambda f: f.significance)
        if strong.significance < 3 * weak.significance:
            first, second = fits
            note = (f"the two lines found disagree ({first.label} {first.delta * 1000:+.0f} eV, "
                    f"{second.label} {second.delta * 1000:+.0f} eV: a gain error or a misnamed "
                    "peak)")
            return CalibrationCheck(None, (), None, tuple(rejected), note)
        # One clear line and a marginal one (likely another element's): trust the clear one.
        rejected.append(f"{weak.label}: {weak.delta * 1000:+.0f} eV, unlike the much stronger "
                        f"{strong.label}")
        fits = [strong]
    deltas = [f.delta for f in fits]
    offset = float(np.median(deltas))
    fits.sort(key=lambda f: f.expected)
    matches = tuple(
        LineMatch(f.label, round(f.expected, 4), round(f.expected + f.delta, 4),
                  round(f.significance, 1))
        for f in fits)
    energy = float(np.median([f.expected for f in fits]))
    return CalibrationCheck(offset, matches, CALIBRATION_TOLERANCE * float(fwhm(energy)),
                            tuple(rejected))


def _fit_lines(spectrum: SumSpectrum, candidates, anode, *, search: float = SEARCH_KEV
               ) -> tuple[list[LineFit], list[str]]:
    """Fits of the candidate lines (:func:`_candidates`) whose peaks are clear and unambiguous.

    Each is searched within ``search`` keV of its energy; kept when above
    :data:`MIN_SIGNIFICANCE`, not overlapped by the others, its companion where expected and,
    with three lines or more, not an outlier. Returns the fits and the reasons for the lines
    left out.
    """
    fwhm = spectrum.fwhm
    rejected: list[str] = []
    fits: list[LineFit] = []
    for label, element, family, group, members, named in candidates:
        fit = spectrum.fit(label, element, family, group, members, search=search)
        if fit is None or fit.significance < MIN_SIGNIFICANCE:
            continue
        fit.named = tuple(named)
        fits.append(fit)

    fits = [f for f in fits if _unambiguous(f, fits, anode, fwhm, rejected)]
    fits = [f for f in fits if _companion_agrees(f, spectrum, fwhm, rejected)]
    fits = _drop_outliers(fits, fwhm, rejected)
    return fits, rejected


def _pair_tolerance(fwhm, energy) -> float:
    """How far two lines' offsets may differ and still agree, keV."""
    return max(0.025, 0.2 * float(fwhm(energy)))


def _unambiguous(fit: LineFit, fits, anode, fwhm, rejected) -> bool:
    """False when other lines may hold more than 10 % of the peak's counts."""
    sigma = float(fwhm(fit.expected)) / 2.3548
    position = fit.expected + fit.delta
    if anode is not None and fit.element != anode:
        # Scattered tube lines of any family (Ag La on Ar Ka, say) cannot be predicted from
        # the fit of another family: a strong one near the peak makes it ambiguous.

        near = [ln for ln in element_lines(anode, min_rate=0.03)
                if abs(ln.energy - fit.expected) < 1.5 * fwhm(fit.expected)]
        if near:
            rejected.append(f"{fit.label}: next to the tube's {anode} {near[0].name}")
            return False
    foreign = 0.0
    for other in fits:
        if other is fit:
            continue
        scale = other.area / other.group_rate
        lines = [] if (other.element, other.family) == (fit.element, fit.family) else other.named
        for ln in lines:
            d = ln.energy + other.delta - position
            if abs(d) < 3 * sigma:
                foreign += scale * ln.rate * math.exp(-0.5 * (d / sigma) ** 2)
        d = other.expected + other.delta - _SI_ESCAPE_KEV - position
        if abs(d) < 3 * sigma:
            foreign += _ESCAPE_FRACTION * other.area * math.exp(-0.5 * (d / sigma) ** 2)
    if foreign > 0.1 * fit.area:
        rejected.append(f"{fit.label}: overlapped by lines of other elements")
        return False
    return True


def _companion_agrees(fit: LineFit, spectrum: SumSpectrum, fwhm, rejected) -> bool:
    """The element's other line is where this offset puts it, when it should be visible."""
    other = _COMPANION.get(fit.group)
    members = _group(fit.named, other) if other else []
    if not members:
        return True
    rate = sum(r for _, r in members)
    predicted = fit.area * rate / fit.group_rate
    energy = sum(en * r for en, r in members) / rate
    w = float(fwhm(energy))
    b0, b1 = np.searchsorted(spectrum.e, [energy - w, energy + w])
    if b1 >= spectrum.e.size or b0 == 0:
        return True  # outside the spectrum: nothing to check
    beneath = float(spectrum.background[b0:b1].sum())
    if predicted / math.sqrt(beneath + predicted + 1.0) < MIN_SIGNIFICANCE:
        return True  # too weak to be seen: no check
    companion = spectrum.fit(f"{fit.element} {other}", fit.element, fit.family, other, members,
                             shift=fit.delta, search=max(0.05, 0.5 * w), minus=fit)
    tolerance = _pair_tolerance(fwhm, energy)
    if companion is None or companion.area < 0.25 * predicted:
        rejected.append(f"{fit.label}: no {fit.element} {other} peak beside it")
        return False
    if abs(companion.delta - fit.delta) > tolerance:
        rejected.append(f"{fit.label}: {fit.element} {other} is {companion.delta * 1000:+.0f} eV "
                        f"off, this line {fit.delta * 1000:+.0f} eV")
        return False
    return True


def _drop_outliers(fits, fwhm, rejected):
    """With three lines or more, drop those far from the median offset (misnamed peaks)."""
    for _ in range(2):
        if len(fits) < 3:
            return fits
        median = float(np.median([f.delta for f in fits]))
        kept = [f for f in fits if abs(f.delta - median)
                <= max(_pair_tolerance(fwhm, f.expected), 3 * f.delta_sigma)]
        if len(kept) == len(fits) or len(kept) < 2:
            return fits  # all agree, or no majority to trust more than the median of all
        rejected += [f"{f.label}: {f.delta * 1000:+.0f} eV, unlike the other lines"
                     for f in fits if f not in kept]
        fits = kept
    return fits




# -- finding a calibration --------------------------------------------------------------------

#: Lines fitted to find a calibration (with the scattered Ka, or La, of a known tube anode):
#: those of :data:`CALIBRATION_LINES`, and more lines of common pigments and grounds that
#: spread the lines over the energy range (K and Ti, Mn of earths and titanium white, the
#: weaker L lines of lead and mercury, the K lines of Cd, Sn and Sb above 20 keV when the tube
#: excites them).
AUTO_LINES = CALIBRATION_LINES + (
    "K Ka", "Ti Ka", "Cr Ka", "Mn Ka", "Co Ka", "Hg Lb", "Pb Lg", "Sr Kb", "Cd Ka", "Sn Ka",
    "Sb Ka",
)
#: Lines that may name a peak while the calibration is searched (their companions too: a Kb
#: peak must not be taken for another element's Ka).
_SEARCH_GROUPS = {"Ka": ("Ka", "Kb"), "Kb": ("Kb",), "La": ("La", "Lb"), "Lb": ("Lb",),
                  "Lg": ("Lg",)}
#: Default search: how far the stated calibration may be off (keV at channel 0, relative gain).
MAX_OFFSET_KEV = 0.3
MAX_GAIN_ERROR = 0.02
#: The same around a rough guess for an uncalibrated cube.
GUESS_MAX_OFFSET_KEV = 1.5
GUESS_MAX_GAIN_ERROR = 0.1
#: Systematic uncertainty of a line's fitted position, as a fraction of the detector FWHM:
#: line-shape tails, unresolved satellites and table energies (~4 eV at Fe Ka). Added in
#: quadrature to the statistical one, which on a sum spectrum is well below an eV.
SYSTEMATIC_FWHM_FRACTION = 0.03
#: A quadratic term is tried with this many lines or more, spread over at least
#: QUADRATIC_MIN_SPAN_KEV, and kept when it lowers the weighted residuals significantly
#: (F-test at 1 %) and by at least a third.
QUADRATIC_MIN_LINES = 4
QUADRATIC_MIN_SPAN_KEV = 5.0
#: The stated calibration is kept when the chi-square of its misses at the fitted lines (in
#: units of their uncertainties) has at least this p-value, and the lines span at least
#: CONFIRM_MIN_SPAN_KEV: lines close together pin the axis at one place only, so a gain error
#: pivoting there (large at 20 keV) would pass unseen.
STATED_AGREES_P = 0.01
CONFIRM_MIN_SPAN_KEV = 5.0
#: Energies (keV) at which reports give the shift of the stated calibration.
REPORT_ENERGIES_KEV = (3.0, 6.4, 10.0, 20.0)
#: A second reading of the peaks with at least this share of the best one's score makes the
#: naming ambiguous.
AMBIGUOUS_SCORE = 0.85


@dataclass(frozen=True)
class CalibrationLine:
    """A line whose peak was used to fit a calibration.

    Attributes
    ----------
    line : str
        E.g. ``"Ca Ka"`` (``"Rh Ka"`` for the scattered tube line).
    energy_keV : float
        Rate-weighted mean energy of the line group (PyMca's tables).
    channel : float
        Where its peak is, in (fractional) channels.
    sigma_keV : float
        Uncertainty of the peak position used to weight it (statistical and
        :data:`SYSTEMATIC_FWHM_FRACTION` of the FWHM), keV.
    residual_keV : float
        Fitted calibration at ``channel`` minus ``energy_keV``.
    significance : float
        Net counts over the square root of all counts within +-1 FWHM, in sigmas.
    """

    line: str
    energy_keV: float
    channel: float
    sigma_keV: float
    residual_keV: float
    significance: float


@dataclass(frozen=True)
class AutoCalibration:
    """A calibration found from the peaks of a sum spectrum (:func:`find_calibration`).

    Attributes
    ----------
    zero_keV, gain_keV, quad_keV : float
        ``E = zero + gain*ch + quad*ch**2`` (keV, keV/ch, keV/ch^2); ``quad_keV`` is 0 unless
        the lines asked for a quadratic term.
    lines : tuple of CalibrationLine
        Lines used, by energy.
    residual_keV : float
        Weighted RMS of the lines' residuals, keV (0 with two lines: nothing to check).
    covariance : ndarray, shape (3, 3)
        Covariance of (zero, gain, quad) from the weighted fit (scaled up by the reduced
        chi-square when above 1), keV units; zeros in the quad row/column of a linear fit.
    stated : EnergyAxis or None
        The calibration the cube stated (None: uncalibrated, searched from a guess).
    n_channels : int
    rejected : tuple of str
        Lines with a clear peak that were not used, each with the reason.
    notes : tuple of str
        How the fit was decided (a quadratic term tried and kept or not, a line left out).
    kept_stated : bool
        True when the stated calibration explains the lines within their uncertainties
        (:data:`STATED_AGREES_P`) and is kept: ``zero_keV``... are then the stated ones,
        the lines' residuals are against it, and ``free_fit`` holds what the lines alone give.
    free_fit : tuple of float or None
        (zero, gain, quad) fitted to the lines, when the stated calibration was kept.
    """

    zero_keV: float
    gain_keV: float
    quad_keV: float
    lines: tuple[CalibrationLine, ...]
    residual_keV: float
    covariance: np.ndarray
    stated: object
    n_channels: int
    rejected: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    kept_stated: bool = False
    free_fit: tuple[float, float, float] | None = None

    @property
    def calibration(self) -> tuple[float, float, float]:
        """(zero keV, gain keV/ch, quad keV/ch^2)."""
        return self.zero_keV, self.gain_keV, self.quad_keV

    def energies(self) -> np.ndarray:
        """Channel energies of the found calibration, keV, shape (n_channels,)."""
        ch = np.arange(self.n_channels, dtype=np.float64)
        return self.zero_keV + self.gain_keV * ch + self.quad_keV * ch * ch

    @property
    def span_keV(self) -> tuple[float, float]:
        """Energies of the lowest and highest line used: where the calibration is pinned."""
        return self.lines[0].energy_keV, self.lines[-1].energy_keV

    def _channel(self, energy_keV) -> float | None:
        found = self.energies()
        if not found[0] <= energy_keV <= found[-1]:
            return None
        return float(np.interp(energy_keV, found, np.arange(found.size)))

    def uncertainty_at(self, energy_keV: float) -> float | None:
        """Standard uncertainty (keV) of the found calibration at ``energy_keV``, from the
        lines' uncertainties; grows away from the lines. None outside the energy axis."""
        channel = self._channel(energy_keV)
        if channel is None:
            return None
        v = np.array([1.0, channel, channel * channel])
        return float(np.sqrt(max(float(v @ self.covariance @ v), 0.0)))

    def offset_at(self, energy_keV: float) -> float | None:
        """How far the stated calibration is off at ``energy_keV``, keV.

        The stated energy minus the found one, at the channel where the found calibration
        puts ``energy_keV`` (negative: the stated calibration reads low there, as
        :attr:`LineMatch.offset_keV`). None without a stated calibration, or outside the
        energy axis.
        """
        channel = self._channel(energy_keV)
        if self.stated is None or channel is None:
            return None
        stated = np.interp(channel, np.arange(self.n_channels), self.stated.energies())
        return float(stated) - float(energy_keV)

    def max_offset_keV(self, lo: float = 3.0, hi: float = 20.0) -> float | None:
        """Largest ``|offset_at|`` over the channels whose found energy is in [lo, hi] keV;
        None without a stated calibration or such channels."""
        if self.stated is None:
            return None
        found = self.energies()
        inside = (found >= lo) & (found <= hi)
        if not inside.any():
            return None
        return float(np.max(np.abs(self.stated.energies()[inside] - found[inside])))

    def apply(self, cube):
        """``cube`` with this calibration (the same counts; the cube itself is unchanged).

        Its metadata records how the calibration was found: ``calibration_fit`` (one phrase,
        which ``xrf-pigments info`` prints), ``calibration_residual_keV`` and
        ``auto_calibration`` (:meth:`to_dict`).

        Raises
        ------
        CalibrationError
            If the calibration leaves the energies a detector can have (a zero below -1 keV).
        """
        lines = (f"the peaks of {len(self.lines)} lines ({', '.join(m.line for m in self.lines)})"
                 f", weighted RMS residual {self.residual_keV * 1000:.1f} eV")
        if self.kept_stated:
            new, fit = cube, f"stated, confirmed by {lines}"
        else:
            new = cube.with_calibration(self.zero_keV, self.gain_keV, self.quad_keV)
            fit = f"{'quadratic' if self.quad_keV else 'linear'}, found from {lines}"
        metadata = {
            **(cube.metadata or {}),
            "calibration_fit": fit,
            "calibration_residual_keV": self.residual_keV,
            "auto_calibration": self.to_dict(),
        }
        return dataclasses.replace(new, metadata=metadata)

    def to_dict(self) -> dict:
        """JSON-ready summary: the calibration, the lines (energies in keV, residuals in eV),
        the uncertainty and the shift of the stated calibration at :data:`REPORT_ENERGIES_KEV`
        (eV; None outside the energy axis), what was left out and why."""
        def ev(value):
            return None if value is None else round(value * 1000, 2)

        stated = None
        if self.stated is not None:
            stated = dict(zip(("zero_keV", "gain_keV", "quad_keV"),
                              (float(v) for v in self.stated.as_calibration())))
        largest = self.max_offset_keV()
        return {
            "zero_keV": self.zero_keV,
            "gain_keV": self.gain_keV,
            "quad_keV": self.quad_keV,
            "residual_eV": ev(self.residual_keV),
            "lines": [{"line": m.line, "energy_keV": m.energy_keV, "channel": m.channel,
                       "residual_eV": ev(m.residual_keV), "sigma_eV": ev(m.sigma_keV),
                       "significance": m.significance} for m in self.lines],
            "uncertainty_eV": {f"{e:g}": ev(self.uncertainty_at(e)) for e in REPORT_ENERGIES_KEV},
            "stated": stated,
            "shift_eV": ({f"{e:g}": ev(self.offset_at(e)) for e in REPORT_ENERGIES_KEV}
                         if stated else None),
            "max_shift_eV_3_20": ev(largest),
            "kept_stated": self.kept_stated,
            "free_fit": (None if self.free_fit is None else
                         dict(zip(("zero_keV", "gain_keV", "quad_keV"), self.free_fit))),
            "rejected": list(self.rejected),
            "notes": list(self.notes),
        }

    def _describe(self, calibration) -> str:
        zero, gain, quad = calibration
        # A quadratic term is shown when it moves the last channel by 0.5 eV or more (an
        # explicit energy array's least-squares quad is ~1e-20).
        shown = abs(quad) * (self.n_channels - 1) ** 2 >= 5e-4
        return (f"zero {zero:.5f} keV, gain {gain:.7f} keV/ch"
                + (f", quad {quad:.4g} keV/ch^2" if shown else ""))

    def report(self) -> list[str]:
        """Lines of text for the user: the calibration, the lines used, the correction."""
        if self.kept_stated:
            text = [f"kept the stated calibration: {self._describe(self.calibration)} (the lines'"
                    " peaks agree with it within their uncertainties)"]
        else:
            text = [f"found: {self._describe(self.calibration)}"]
            if self.stated is not None:
                text[0] += f" (stated: {self._describe(self.stated.as_calibration())})"
        lo, hi = self.span_keV
        text.append(f"lines used: {len(self.lines)}, {lo:.2f} to {hi:.2f} keV")
        for m in self.lines:
            text.append(f"  {m.line:<6} {m.energy_keV:7.3f} keV at channel {m.channel:8.2f}: "
                        f"residual {m.residual_keV * 1000:+5.1f} eV ({m.significance:.0f} sigma)")
        energies = [e for e in REPORT_ENERGIES_KEV if self._channel(e) is not None]
        spread = ", ".join(f"{self.uncertainty_at(e) * 1000:.0f} eV at {e:g} keV"
                           for e in energies)
        text.append(f"residual {self.residual_keV * 1000:.1f} eV (weighted RMS of the lines); "
                    f"uncertainty {spread}")
        if self.stated is not None and energies:
            shifts = ", ".join(f"{self.offset_at(e) * 1000:+.0f} eV at {e:g} keV"
                               for e in energies)
            largest = self.max_offset_keV()
            text.append(f"shift of the stated calibration (stated minus found): {shifts}"
                        + ("" if largest is None else
                           f"; largest over 3-20 keV {largest * 1000:.0f} eV"))
        text += [f"left out: {reason}" for reason in self.rejected]
        text += [f"note: {note}" for note in self.notes]
        return text


def find_calibration(
    sum_spectrum,
    start,
    *,
    stated: bool = True,
    anode: str | None = None,
    kv: float | None = None,
    resolution_keV: float = DEFAULT_RESOLUTION_KEV,
    fano: float = DEFAULT_FANO,
    max_offset_keV: float | None = None,
    max_gain_error: float | None = None,
    quadratic: bool | None = None,
) -> AutoCalibration:
    """Energy calibration found from the peaks of a sum spectrum.

    1. **Naming the peaks.** The significant peaks of the SNIP-subtracted spectrum
       (:meth:`~napari_xrf_pigments.peaks.SumSpectrum.find_peaks`, positions on the ``start``
       calibration) are named by the lines of :data:`AUTO_LINES`, their companions (Kb, Lb)
       and the scattered lines of a known tube anode: every pair of strong peaks named by every
       pair of lines gives a linear correction ``E = a + b * E_start``; those within the search
       window (``|a| <= max_offset_keV``, ``|b - 1| <= max_gain_error``) are counted by the
       peaks they name (within 0.3 FWHM, one peak per line, weighted by the square root of
       their significance), and the best 40 are refined by least squares on all the peaks they
       name and scored by how well those agree (each peak's weight times a Gaussian of its
       miss in units of 0.1 FWHM: a misnamed peak misses by a good part of the FWHM). The best
       reading wins; one that names the peaks otherwise, moves them by more than 0.3 FWHM and
       scores nearly as well on the peaks the two name differently
       (:data:`AMBIGUOUS_SCORE`) makes the naming ambiguous, and it is refused.
    2. **Fitting the lines.** On that corrected axis each line of :data:`AUTO_LINES` (and the
       tube line) is fitted as in :func:`measure_calibration` (its family's lines as Gaussians
       of the detector width with a free shift; kept when clear, not overlapped, its companion
       where expected, not an outlier).
    3. **Zero and gain.** Weighted least squares of the lines' energies against their peaks'
       channels (weights: statistical and :data:`SYSTEMATIC_FWHM_FRACTION` of the FWHM), twice
       (the second time on lines fitted on the first result). A quadratic term is tried with
       :data:`QUADRATIC_MIN_LINES` lines or more over :data:`QUADRATIC_MIN_SPAN_KEV` and kept
       only when it lowers the residuals significantly (F-test at 1 %) and by a third: a
       detector's non-linearity is small, and a quadratic term fitted to noise bends the axis
       where no line pins it. The Compton peak is never used (its position depends on the
       geometry); the Rayleigh peak of the tube line is, when the anode is known.

    Parameters
    ----------
    sum_spectrum : array, shape (channels,)
        Counts per channel summed over pixels.
    start : EnergyAxis or (zero, gain) or (zero, gain, quad)
        The stated calibration, or a rough guess for an uncalibrated cube (keV, keV/ch).
    stated : bool
        True when ``start`` is the cube's stated calibration (reported against), False for a
        guess (a wider search: :data:`GUESS_MAX_OFFSET_KEV`, :data:`GUESS_MAX_GAIN_ERROR`).
    anode : str, optional
        Tube anode: its scattered lines are used.
    kv : float, optional
        Tube voltage: lines it cannot excite are not used.
    resolution_keV : float
        Detector FWHM at Mn Ka, keV.
    fano : float
    max_offset_keV, max_gain_error : float, optional
        Search window around ``start`` (defaults :data:`MAX_OFFSET_KEV`,
        :data:`MAX_GAIN_ERROR`; wider for a guess).
    quadratic : bool, optional
        Force (True) or forbid (False) the quadratic term; default: decided by the lines.

    Returns
    -------
    AutoCalibration

    Raises
    ------
    CalibrationError
        When fewer than two lines can be named and fitted, or the peaks can be named in two
        ways that fit about equally well.
    InvalidDataError
        If the spectrum is not 1-D, finite and non-negative.
    """
    y = np.asarray(sum_spectrum, dtype=np.float64).ravel()
    if y.size < 16:
        raise InvalidDataError(f"the sum spectrum has {y.size} channels; at least 16 are needed")
    if not np.all(np.isfinite(y)) or y.min() < 0:
        raise InvalidDataError("the sum spectrum must be finite and non-negative")
    if not isinstance(start, EnergyAxis):
        start = EnergyAxis.from_calibration(y.size, *start)
    if start.n_channels != y.size or not start.calibrated:
        raise CalibrationError(f"the starting calibration must cover the {y.size} channels")
    if max_offset_keV is None:
        max_offset_keV = MAX_OFFSET_KEV if stated else GUESS_MAX_OFFSET_KEV
    if max_gain_error is None:
        max_gain_error = MAX_GAIN_ERROR if stated else GUESS_MAX_GAIN_ERROR
    e0 = start.energies()
    channels = np.arange(y.size, dtype=np.float64)
    fwhm = fwhm_function(float(resolution_keV), float(fano))
    if float(np.sum(y)) <= 0:
        raise CalibrationError("the sum spectrum holds no counts: no peak to calibrate on")

    # 1. Name the peaks: a linear correction of the starting axis.
    a, b, named = _name_peaks(e0, y, fwhm, anode, kv, max_offset_keV, max_gain_error)
    energies = a + b * e0
    # 2.-3. Fit the lines on the corrected axis, then zero and gain; again on the result.
    notes: list[str] = []
    search = max(0.05, 0.5 * float(fwhm(10.0)))
    for _ in range(2):
        spectrum = SumSpectrum(energies, y, fwhm)
        margin = 2 * float(fwhm(energies[-1]))
        candidates = _candidates(anode, kv, energies[0] + margin, energies[-1] - margin,
                                 AUTO_LINES)
        fits, rejected = _fit_lines(spectrum, candidates, anode, search=search)
        fits = [f for f in fits if math.isfinite(f.delta_sigma)]
        if len(fits) < 2:
            found = ", ".join(f.label for f in fits) or "none"
            raise CalibrationError(
                f"only {len(fits)} line{'s' if len(fits) != 1 else ''} of those always or "
                f"often there could be fitted ({found}; named first: {', '.join(named)}): "
                "two are needed; calibrate by hand on two peaks you know (Energy calibration "
                "widget)")
        coeffs, covariance, lines, residual, notes, left_out = _fit_polynomial(
            fits, energies, channels, fwhm, quadratic)
        rejected += left_out
        energies = np.polynomial.polynomial.polyval(channels, coeffs)
        search = 0.05
    zero, gain, quad = (float(c) for c in coeffs)
    found = AutoCalibration(zero, gain, quad, tuple(lines), residual, covariance,
                            start if stated else None, y.size, tuple(rejected), tuple(notes))
    return _keep_stated_if_it_agrees(found) if stated else found


def _keep_stated_if_it_agrees(found: AutoCalibration) -> AutoCalibration:
    """``found`` with the stated calibration kept when it explains the lines' peaks within their
    uncertainties (chi-square p-value >= :data:`STATED_AGREES_P`) and the lines span
    :data:`CONFIRM_MIN_SPAN_KEV`; otherwise ``found``, with a note of the test."""
    lo, hi = found.span_keV
    if hi - lo < CONFIRM_MIN_SPAN_KEV:
        return found
    # lazy: scipy is heavy
    from scipy.stats import chi2 as chi2_distribution

    stated = found.stated.energies()
    channel = np.array([m.channel for m in found.lines])
    sigma = np.array([m.sigma_keV for m in found.lines])
    miss = np.interp(channel, np.arange(stated.size), stated) - np.array(
        [m.energy_keV for m in found.lines])
    chi2 = float(np.sum((miss / sigma) ** 2))
    p_value = float(chi2_distribution.sf(chi2, miss.size))
    test = (f"the stated calibration misses the {miss.size} lines by chi-square {chi2:.1f} "
            f"(p = {p_value:.2g})")
    if p_value < STATED_AGREES_P:
        return dataclasses.replace(found, notes=(*found.notes, f"{test}: corrected"))
    largest = found.max_offset_keV()
    free = (f"the lines alone give {found._describe(found.calibration)}"
            + ("" if largest is None else f", {largest * 1000:.0f} eV from it at most over "
               "3-20 keV"))
    zero, gain, quad = found.stated.as_calibration()
    return dataclasses.replace(
        found, zero_keV=zero, gain_keV=gain, quad_keV=quad,
        lines=tuple(dataclasses.replace(m, residual_keV=float(r))
                    for m, r in zip(found.lines, miss)),
        residual_keV=_weighted_rms(miss, sigma),
        notes=(*found.notes, f"{test}, within their uncertainties: kept ({free})"),
        kept_stated=True, free_fit=found.calibration)


def _naming_lines(anode, kv, lo, hi, fwhm) -> tuple[np.ndarray, list[str]]:
    """Energies (sorted, keV) and labels of the lines that may name a peak while searching:
    :data:`AUTO_LINES` with their companions, and the scattered K and L lines of the tube.

    The energy of a group is where its lines, as Gaussians of the detector width, peak: the
    maximum of an unresolved group (Pb Lb, Pb Lg) is not at its rate-weighted mean.
    """
    groups = []
    for label in AUTO_LINES:
        element, group = label.split()
        groups += [(element, g) for g in _SEARCH_GROUPS.get(group, (group,))]
    if anode is not None:
        groups += [(anode, g) for g in ("Ka", "Kb", "La", "Lb")]
    energies, labels = [], []
    for element, group in dict.fromkeys(groups):
        for candidate in _candidates(None, kv, lo, hi, (f"{element} {group}",)):
            members = candidate[4]
            top = [en for en, r in members if r >= 0.1 * max(r for _, r in members)]
            width = float(fwhm(top[0]))
            grid = np.linspace(min(top) - width, max(top) + width, 201)
            shape = sum(r * np.exp(-0.5 * ((grid - en) * 2.3548 / float(fwhm(en))) ** 2)
                        for en, r in members)
            energies.append(float(grid[np.argmax(shape)]))
            labels.append(candidate[0])
    order = np.argsort(energies)
    return np.asarray(energies, dtype=np.float64)[order], [labels[i] for i in order]


def _peak_positions(spectrum: SumSpectrum, peaks) -> np.ndarray:
    """Sub-channel positions (keV on the spectrum's axis) of the peaks' maxima: a parabola
    through the highest channel of the smoothed net spectrum and its neighbours."""
    e, net = spectrum.e, spectrum.smooth_net
    out = []
    for p in peaks:
        i = int(np.clip(np.searchsorted(e, p.energy), 1, e.size - 2))
        left, mid, right = net[i - 1], net[i], net[i + 1]
        curvature = left - 2 * mid + right
        step = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        out.append(float(np.interp(i + float(np.clip(step, -0.5, 0.5)), np.arange(e.size), e)))
    return np.asarray(out)


def _match(positions, weights, line_energies, a, b, fwhm):
    """Peaks named by the correction ``E = a + b * E_start``: (peak index, line index) pairs,
    each line naming at most one peak (the strongest within 0.3 FWHM)."""
    mapped = a + b * positions
    j = np.clip(np.searchsorted(line_energies, mapped), 1, line_energies.size - 1)
    nearer_left = np.abs(mapped - line_energies[j - 1]) <= np.abs(mapped - line_energies[j])
    j = np.where(nearer_left, j - 1, j)
    ok = np.abs(mapped - line_energies[j]) <= np.maximum(0.02, 0.3 * fwhm(mapped))
    best = {}
    for k in np.flatnonzero(ok):
        if int(j[k]) not in best or weights[k] > weights[best[int(j[k])]]:
            best[int(j[k])] = int(k)
    return sorted((k, line) for line, k in best.items())


def _agreement(positions, weights, lines, a, b, pairs, fwhm) -> dict:
    """How well each named peak agrees with its line under ``E = a + b * E_start``: its weight
    times a Gaussian of its distance from the line in units of 0.1 FWHM (the precision of a
    peak's maximum), by peak index. A reading that names a peak with the wrong line misses it
    by a good part of the FWHM and gains little from it."""
    out = {}
    for k, line in pairs:
        mapped = a + b * positions[k]
        sigma = 0.1 * float(fwhm(mapped))
        out[k] = float(weights[k] * math.exp(-0.5 * ((mapped - lines[line]) / sigma) ** 2))
    return out


def _name_peaks(e0, y, fwhm, anode, kv, max_offset_keV, max_gain_error):
    """The linear correction ``E = a + b * e0`` that names the most (and strongest) peaks.

    Returns a, b and the labels of the lines named.
    """
    spectrum = SumSpectrum(e0, y, fwhm)
    peaks = spectrum.find_peaks(max(float(e0[0]), 1.0), float(e0[-1]), MIN_SIGNIFICANCE)
    if not peaks:
        raise CalibrationError(
            f"no clear peak in the sum spectrum ({float(np.sum(y)):.3g} counts): nothing to "
            "calibrate on")
    positions = _peak_positions(spectrum, peaks)
    weights = np.sqrt(np.array([p.significance for p in peaks]))
    reach = max_offset_keV + max_gain_error * float(e0[-1])
    lines, labels = _naming_lines(anode, kv, float(e0[0]) - reach, float(e0[-1]) + reach,
                                  fwhm)
    if len(peaks) < 2:
        raise CalibrationError(
            f"only one clear peak in the sum spectrum (at {positions[0]:.2f} keV on the starting "
            "calibration): two lines are needed; calibrate by hand on two peaks you know "
            "(Energy calibration widget)")
    if lines.size < 2:
        raise CalibrationError(
            f"the spectrum's {float(e0[0]):.2f} to {float(e0[-1]):.2f} keV hold fewer than two of "
            "the lines that are always or often there: calibrate by hand on two peaks you know "
            "(Energy calibration widget)")

    # Every pair of strong peaks named by every pair of lines: a correction a + b * E.
    strong = np.argsort(-weights)[:12]
    pi, pj = np.meshgrid(strong, strong, indexing="ij")
    keep = positions[pj] - positions[pi] > 0.2
    pi, pj = pi[keep], pj[keep]
    la, lb = np.triu_indices(lines.size, 1)
    b = (lines[lb][None, :] - lines[la][None, :]) / (positions[pj] - positions[pi])[:, None]
    a = lines[la][None, :] - b * positions[pi][:, None]
    inside = (np.abs(b - 1.0) <= max_gain_error) & (np.abs(a) <= max_offset_keV)
    a, b = a[inside], b[inside]
    if a.size == 0:
        raise CalibrationError(_too_few_message(peaks, positions, max_offset_keV,
                                                max_gain_error))
    # Score each: the weight of the peaks that land within 0.3 FWHM of a line.
    mapped = a[:, None] + b[:, None] * positions[None, :]
    j = np.clip(np.searchsorted(lines, mapped), 1, lines.size - 1)
    distance = np.minimum(np.abs(mapped - lines[j - 1]), np.abs(mapped - lines[j]))
    score = ((distance <= np.maximum(0.02, 0.3 * fwhm(mapped))) * weights[None, :]).sum(axis=1)
    # The best few, refined on all the peaks they name (least squares, weighted).
    readings = []
    for h in np.argsort(-score)[:40]:
        ah, bh = float(a[h]), float(b[h])
        for _ in range(3):
            pairs = _match(positions, weights, lines, ah, bh, fwhm)
            if len(pairs) < 2:
                break
            k, line = (np.array(v) for v in zip(*pairs))
            if np.ptp(positions[k]) < 0.2:
                break
            bh, ah = np.polyfit(positions[k], lines[line], 1, w=np.sqrt(weights[k]))
            if abs(bh - 1.0) > max_gain_error or abs(ah) > max_offset_keV:
                pairs = []
                break
        if len(pairs) >= 2:
            readings.append((_agreement(positions, weights, lines, ah, bh, pairs, fwhm), ah, bh,
                             pairs))
    if not readings:
        raise CalibrationError(_too_few_message(peaks, positions, max_offset_keV,
                                                max_gain_error))
    readings.sort(key=lambda r: -sum(r[0].values()))
    agreement, a_best, b_best, pairs = readings[0]
    # Another reading that names the peaks otherwise, puts them elsewhere and agrees nearly
    # as well on the peaks the two name differently: the peaks do not say which is right.
    names = dict(pairs)
    span = positions[list(names)]
    for other_agreement, a_other, b_other, other_pairs in readings[1:]:
        other = dict(other_pairs)
        differ = [k for k in set(names) | set(other) if names.get(k) != other.get(k)]
        best_part = sum(agreement.get(k, 0.0) for k in differ)
        other_part = sum(other_agreement.get(k, 0.0) for k in differ)
        moved = np.abs((a_other - a_best) + (b_other - b_best) * span).max()
        if (other_part > 0 and other_part >= AMBIGUOUS_SCORE * best_part
                and moved > 0.3 * float(fwhm(span.max()))):
            def reading(named):
                return ", ".join(f"{labels[line]} at {positions[k]:.2f} keV"
                                 for k, line in sorted(named, key=lambda p: -weights[p[0]])[:3])

            raise CalibrationError(
                "the peaks can be named in two ways that fit about equally well ("
                f"{reading(pairs)}; or {reading(other_pairs)}): calibrate by hand on two "
                "peaks you know (Energy calibration widget)")
    return a_best, b_best, [labels[line] for _, line in pairs]


def _too_few_message(peaks, positions, max_offset_keV, max_gain_error) -> str:
    shown = ", ".join(f"{e:.2f}" for e in sorted(positions[:6]))
    return (f"fewer than two of the {len(peaks)} clear peaks (at {shown} keV on the starting "
            "calibration) can be named by lines that are always or often there (Ar, Ca, Fe, "
            f"Cu, Zn, Sr K; Hg, Pb L; the tube) within {max_offset_keV * 1000:.0f} eV and "
            f"{max_gain_error:.0%} gain of the starting calibration: two are needed; calibrate "
            "by hand on two peaks you know (Energy calibration widget)")


def _fit_polynomial(fits, energies, channels, fwhm, quadratic):
    """Weighted least squares of the lines' energies against their peaks' channels.

    Returns the coefficients (zero, gain, quad) and their covariance (3, 3), the
    CalibrationLines, the weighted RMS residual (keV), notes on the decisions and the lines
    left out (with the reason).
    """
    fits = sorted(fits, key=lambda f: f.expected)
    position = np.array([f.expected + f.delta for f in fits])
    channel = np.interp(position, energies, channels)
    energy = np.array([f.expected for f in fits])
    sigma = np.sqrt(np.array([f.delta_sigma for f in fits]) ** 2
                    + (SYSTEMATIC_FWHM_FRACTION * fwhm(energy)) ** 2)
    notes, left_out = [], []

    def solve(keep, degree):
        # Weighted least squares by hand: the covariance of the coefficients comes with it.
        design = np.vander(channel[keep], degree + 1, increasing=True) / sigma[keep, None]
        normal_inverse = np.linalg.inv(design.T @ design)
        coeffs = normal_inverse @ design.T @ (energy[keep] / sigma[keep])
        residual = np.polynomial.polynomial.polyval(channel, coeffs) - energy
        chi2 = float(np.sum((residual[keep] / sigma[keep]) ** 2))
        dof = int(keep.sum()) - degree - 1
        covariance = np.zeros((3, 3))
        covariance[:degree + 1, :degree + 1] = normal_inverse * max(1.0, chi2 / dof if dof else 1.0)
        return np.pad(coeffs, (0, 2 - degree)), residual, chi2, covariance

    keep = np.ones(energy.size, dtype=bool)
    coeffs, residual, chi2, covariance = solve(keep, 1)
    # A line far off the fit of the others (with three left at least): a misnamed peak.
    while keep.sum() > 3:
        pull = np.where(keep, np.abs(residual) / sigma, 0.0)
        worst = int(np.argmax(pull))
        if pull[worst] < 5.0 or abs(residual[worst]) < 0.1 * float(fwhm(energy[worst])):
            break
        keep[worst] = False
        left_out.append(f"{fits[worst].label}: {residual[worst] * 1000:+.0f} eV from the fit of "
                        "the other lines")
        coeffs, residual, chi2, covariance = solve(keep, 1)
    n = int(keep.sum())
    span = float(np.ptp(energy[keep]))
    try_quad = (n >= QUADRATIC_MIN_LINES and span >= QUADRATIC_MIN_SPAN_KEV
                if quadratic is None else bool(quadratic) and n >= 3)
    if quadratic and not try_quad:
        notes.append(f"no quadratic term: {n} lines (3 are needed)")
    if try_quad:
        q_coeffs, q_residual, q_chi2, q_covariance = solve(keep, 2)
        slope = q_coeffs[1] + 2 * q_coeffs[2] * channels
        rms_lin = _weighted_rms(residual[keep], sigma[keep])
        rms_quad = _weighted_rms(q_residual[keep], sigma[keep])
        if quadratic:
            better = True
        else:
            # lazy: scipy is heavy
            from scipy.stats import f as f_distribution

            f_value = (chi2 - q_chi2) / max(q_chi2 / max(n - 3, 1), 1e-12)
            better = (n > 3 and f_value > f_distribution.ppf(0.99, 1, n - 3)
                      and rms_quad < 2 / 3 * rms_lin)
        if better and np.all(slope > 0):
            coeffs, residual, covariance = q_coeffs, q_residual, q_covariance
            notes.append(f"quadratic term kept: residual {rms_lin * 1000:.1f} -> "
                         f"{rms_quad * 1000:.1f} eV")
        else:
            notes.append(f"quadratic term tried, not kept: residual {rms_lin * 1000:.1f} -> "
                         f"{rms_quad * 1000:.1f} eV")
    lines = [CalibrationLine(f.label, round(float(energy[i]), 5), round(float(channel[i]), 3),
                             float(sigma[i]), float(residual[i]), round(f.significance, 1))
             for i, f in enumerate(fits) if keep[i]]
    rms = _weighted_rms(residual[keep], sigma[keep]) if n > 2 else 0.0
    return coeffs, covariance, lines, rms, notes, left_out


def _weighted_rms(residual, sigma) -> float:
    w = 1.0 / sigma**2
    return float(np.sqrt(np.sum(w * residual**2) / np.sum(w)))


def calibrate_cube(cube, *, guess=None, max_spectra: int = 20000,
                   quadratic: bool | None = None) -> AutoCalibration:
    """Energy calibration of a cube found from the peaks of its sum spectrum.

    :func:`calibrate_cube_job` run to the end (the same parameters); see there.

    Returns
    -------
    AutoCalibration
        :meth:`AutoCalibration.apply` gives the recalibrated cube.
    """
    return run(calibrate_cube_job(cube, guess=guess, max_spectra=max_spectra,
                                  quadratic=quadratic))


def calibrate_cube_job(cube, *, guess=None, max_spectra: int = 20000,
                       quadratic: bool | None = None):
    """:func:`find_calibration` on the sum of a sample of the cube's spectra (a progress job).

    The tube anode and voltage and the detector resolution come from the cube's metadata, as
    for the check before prediction (:func:`~napari_xrf_pigments.model.preflight.cube_tube`,
    :func:`~napari_xrf_pigments.model.preflight.cube_resolution`).

    Parameters
    ----------
    cube : XRFCube
        At most ``max_spectra`` spectra are read (evenly spaced whole rows,
        :func:`~napari_xrf_pigments.cube.sample_plan`); the cube is not changed.
    guess : (zero, gain) or (zero, gain, quad), optional
        A rough calibration (keV, keV/ch) to start from, searched more widely
        (:data:`GUESS_MAX_OFFSET_KEV`, :data:`GUESS_MAX_GAIN_ERROR`): needed for an
        uncalibrated cube (e.g. ``(0.0, 0.01)`` for 10 eV channels), and replaces a stated
        calibration known to be far off (the result still reports against the stated one).
    max_spectra : int
    quadratic : bool, optional
        Force or forbid the quadratic term (default: decided by the lines).

    Yields
    ------
    Progress
        Blocks of sampled rows read, then the search.

    Returns
    -------
    AutoCalibration

    Raises
    ------
    CalibrationError
        If the cube is uncalibrated and no guess is given, or :func:`find_calibration` fails.
    InvalidDataError
        If the sampled counts hold NaN or negative values.
    """
    # here, not at the top: model.preflight imports this module (an import cycle)
    from .model.preflight import cube_resolution, cube_tube

    if guess is None and not cube.calibrated:
        raise CalibrationError(
            "the cube's energy axis is not calibrated, so there is nothing to start the search "
            "from: give a rough calibration to start from (zero and gain, e.g. 0 keV and 0.01 "
            "keV/ch for 10 eV channels: --guess 0,0.01 on the command line, the zero and gain "
            "boxes of the Energy calibration widget)")
    metadata = getattr(cube, "metadata", None) or {}
    anode, kv, _ = cube_tube(metadata)
    resolution, fano = cube_resolution(metadata)
    slices, col_step = sample_plan(cube.shape, cube.dtype, max_spectra)
    steps = len(slices) + 1
    sums = np.zeros(cube.n_channels, dtype=np.float64)
    for i, sl in enumerate(slices):
        block = np.asarray(cube.counts[sl] if col_step == 1 else cube.counts[sl, ::col_step])
        check_counts(block, where=f"rows {sl.start}-{sl.stop - 1}")
        sums += block.sum(axis=(0, 1), dtype=np.float64)
        yield Progress(i + 1, steps, "reading a sample of the spectra")
    yield Progress(steps - 1, steps, "naming the peaks and fitting the lines")
    start = cube.energy if guess is None else tuple(float(v) for v in guess)
    found = find_calibration(sums, start, stated=guess is None, anode=anode, kv=kv,
                             resolution_keV=resolution, fano=fano, quadratic=quadratic)
    if guess is not None and cube.calibrated:
        # Reported against what the cube states, though the search started from the guess.
        found = dataclasses.replace(found, stated=cube.energy)
    yield Progress(steps, steps, "done")
    return found
