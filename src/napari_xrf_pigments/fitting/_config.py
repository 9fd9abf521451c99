"""PyMca fit configurations: read from a user's ``.cfg`` or built from an element list.

A configuration is PyMca's nested dict (``ConfigDict``): sections ``fit``, ``detector``,
``peaks``, ``attenuators``... ``peaks`` maps an element to its line families, e.g.
``{"Fe": "K", "Pb": ["L", "M"]}``; each element/family pair is one fitted group (``"Pb L"``).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cube import HOW_TO_CALIBRATE, EnergyAxis
from ..errors import CalibrationError, InvalidDataError, UnreadableFileError

FAMILIES = ("K", "L", "M")
# Sub-families PyMca accepts in [peaks] besides K, L, M.
_SUB_FAMILIES = ("Ka", "Kb", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")
# The line that must be inside the fitted range for a family to be chosen, and the edge that
# the excitation must exceed for it to be excited (Ka1, La1, Ma1 and their K, L3, M5 edges).
MAIN_LINE = {"K": "KL3", "L": "L3M5", "M": "M5N7"}
EDGE = {"K": "K", "L": "L3", "M": "M5"}

DEFAULT_FIT_RANGE_KEV = (1.0, None)
DEFAULT_SNIP_WIDTH_KEV = 0.4
# Savitsky-Golay smoothing before SNIP (PyMca's fallback default): pixel spectra of a scan are
# noisy, and SNIP on raw Poisson noise follows its troughs.
DEFAULT_FILTER_WIDTH = 5
# Largest deviation (keV) of a cube's energy axis from a straight line that PyMca's linear
# calibration (zero + gain*ch) may ignore: a few percent of a peak width.
MAX_NONLINEARITY_KEV = 0.005


@dataclass
class FitSetup:
    """A configuration ready for the fast linear fit, with what was changed and why.

    Attributes
    ----------
    config : dict
        PyMca configuration (a ``ConfigDict``).
    source : str
        ``"elements"`` or the path of the ``.cfg``.
    notes : list of str
        Changes made to the user's configuration (e.g. strip -> SNIP) and other remarks.
    scatter_groups : set of str
        Fitted groups that model scattered tube lines rather than the sample's elements.
    """

    config: dict[str, Any]
    source: str
    notes: list[str] = field(default_factory=list)
    scatter_groups: set[str] = field(default_factory=set)


def _elements_module():
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaPhysics import Elements

    return Elements


def _symbol(text: str) -> str:
    Elements = _elements_module()
    text = text.strip()
    symbol = text[:1].upper() + text[1:].lower()
    if symbol not in Elements.ElementList:
        raise InvalidDataError(f"unknown element {text!r}")
    return symbol


def parse_elements(elements) -> list[tuple[str, str | None]]:
    """Element specifications as (symbol, family or None for automatic).

    Parameters
    ----------
    elements : str or iterable of str
        ``"Ca,Cr,Fe"`` or ``["Ca", "Pb L", "Pb M"]``; a family (K, L, M, or PyMca's Ka, Kb,
        L1..L3, M1..M5) may follow the symbol after a space, ``-``, ``_`` or ``:``.

    Raises
    ------
    InvalidDataError
        Unknown symbol or family, or an empty list.
    """
    if isinstance(elements, str):
        elements = elements.split(",")
    out = []
    for item in elements:
        item = str(item).strip()
        if not item:
            continue
        parts = [p for p in re.split(r"[\s:_\-]+", item) if p]
        if len(parts) > 2:
            raise InvalidDataError(f"cannot read element {item!r}: use e.g. 'Fe' or 'Pb L'")
        symbol = _symbol(parts[0])
        family = None
        if len(parts) == 2:
            family = parts[1][:1].upper() + parts[1][1:].lower()
            if family not in FAMILIES + _SUB_FAMILIES:
                raise InvalidDataError(
                    f"unknown line family {parts[1]!r} in {item!r}: use K, L or M"
                )
        if (symbol, family) not in out:
            out.append((symbol, family))
    if not out:
        raise InvalidDataError("no elements given")
    return out


def line_energy(symbol: str, family: str) -> float | None:
    """Energy (keV) of the main line of a family (Ka1, La1, Ma1), None if PyMca has none."""
    element = _elements_module().Element[symbol]
    transition = MAIN_LINE[family[0]]
    if transition not in element or f"{family[0]} xrays" not in element["rays"]:
        return None
    energy = float(element[transition]["energy"])
    return energy if energy > 0 else None


def edge_energy(symbol: str, family: str) -> float:
    """Absorption edge (keV) that must be exceeded to excite a family (K, L3, M5)."""
    return float(_elements_module().Element[symbol]["binding"][EDGE[family[0]]])


def family_usable(symbol, family, fit_range_keV, excitation_keV=None) -> bool:
    """True if the family's main line lies in the fitted range and its edge can be excited."""
    energy = line_energy(symbol, family)
    if energy is None:
        return False
    lo, hi = fit_range_keV
    if not lo <= energy <= hi:
        return False
    return excitation_keV is None or edge_energy(symbol, family) < excitation_keV


def choose_lines(elements, fit_range_keV, excitation_keV=None) -> dict[str, list[str]]:
    """Line families to fit for each element.

    An element without a family gets the first of K, L, M whose main line (Ka1, La1, Ma1) lies
    within ``fit_range_keV`` and whose edge (K, L3, M5) is below ``excitation_keV`` (the tube
    voltage or beam energy; not checked when None). An explicit family is checked the same way.

    Parameters
    ----------
    elements : str or iterable of str
        See :func:`parse_elements`.
    fit_range_keV : (float, float)
    excitation_keV : float, optional

    Returns
    -------
    dict
        ``{"Fe": ["K"], "Pb": ["L"]}`` in the order given.

    Raises
    ------
    InvalidDataError
        Naming every element that has no usable line.
    """
    chosen: dict[str, list[str]] = {}
    problems = []
    for symbol, family in parse_elements(elements):
        if family is None:
            usable = [f for f in FAMILIES if family_usable(symbol, f, fit_range_keV, excitation_keV)]
            if usable:
                chosen.setdefault(symbol, [])
                if usable[0] not in chosen[symbol]:
                    chosen[symbol].append(usable[0])
            else:
                problems.append(_why_unusable(symbol, FAMILIES, fit_range_keV, excitation_keV))
        elif family_usable(symbol, family, fit_range_keV, excitation_keV):
            chosen.setdefault(symbol, [])
            if family not in chosen[symbol]:
                chosen[symbol].append(family)
        else:
            problems.append(_why_unusable(symbol, (family,), fit_range_keV, excitation_keV))
    if problems:
        lo, hi = fit_range_keV
        raise InvalidDataError(
            f"no element line in the fitted energy range {lo:.2f}-{hi:.2f} keV for: "
            + "; ".join(problems)
        )
    return chosen


def _why_unusable(symbol, families, fit_range_keV, excitation_keV) -> str:
    reasons = []
    for family in families:
        energy = line_energy(symbol, family)
        if energy is None:
            reasons.append(f"no {family} lines")
        elif excitation_keV is not None and edge_energy(symbol, family) >= excitation_keV:
            reasons.append(
                f"{family} edge {edge_energy(symbol, family):.2f} keV not excited at "
                f"{excitation_keV:g} keV"
            )
        else:
            reasons.append(f"{family} at {energy:.2f} keV")
    return f"{symbol} ({', '.join(reasons)})"


def linear_calibration(energy: EnergyAxis) -> tuple[float, float]:
    """(zero, gain) in keV for PyMca, whose fit knows only ``E = zero + gain*channel``.

    Raises
    ------
    CalibrationError
        If the axis is uncalibrated, or too far from linear for PyMca.
    """
    if not energy.calibrated:
        raise CalibrationError(
            "the cube's energy axis is not calibrated, and PyMca's fit needs channel energies: "
            + HOW_TO_CALIBRATE
        )
    e = energy.energies()
    ch = np.arange(e.size, dtype=np.float64)
    if energy.gain is not None and energy.quad == 0.0:
        return float(energy.zero), float(energy.gain)
    gain, zero = np.polyfit(ch, e, 1) if e.size > 1 else (1.0, float(e[0]))
    deviation = float(np.max(np.abs(zero + gain * ch - e)))
    if deviation > MAX_NONLINEARITY_KEV:
        raise CalibrationError(
            f"PyMca's fit needs a linear energy calibration (E = zero + gain*channel); this "
            f"cube's axis departs from a line by up to {deviation * 1000:.1f} eV. Resample the "
            "cube onto a linear energy grid first"
        )
    return float(zero), float(gain)


def fit_range(energy: EnergyAxis, fit_range_keV=DEFAULT_FIT_RANGE_KEV, upper_keV=None):
    """Fitted channels and energies of a cube.

    Returns
    -------
    (first_channel, last_channel), (lo_keV, hi_keV)
        Inclusive channel limits (PyMca's xmin, xmax) and their energies.

    Raises
    ------
    InvalidDataError
        If no channel lies in the range.
    """
    e = energy.energies()
    lo = -math.inf if fit_range_keV is None or fit_range_keV[0] is None else float(fit_range_keV[0])
    hi = math.inf if fit_range_keV is None or fit_range_keV[1] is None else float(fit_range_keV[1])
    if upper_keV is not None:
        hi = min(hi, float(upper_keV))
    inside = np.flatnonzero((e >= lo) & (e <= hi))
    if inside.size < 16:
        raise InvalidDataError(
            f"the cube's energy axis ({e[0]:.2f}-{e[-1]:.2f} keV) has {inside.size} channels in "
            f"the fitted range {lo:.2f}-{hi:.2f} keV; at least 16 are needed"
        )
    first, last = int(inside[0]), int(inside[-1])
    return (first, last), (float(e[first]), float(e[last]))


def default_config() -> dict:
    """PyMca's default fit configuration (its ``McaTheory.cfg``; ``McaTheory`` fills the rest)."""
    from PyMca5 import PyMcaDataDir
    from PyMca5.PyMcaIO import ConfigDict

    config = ConfigDict.ConfigDict()
    config.read(str(Path(PyMcaDataDir.PYMCA_DATA_DIR) / "McaTheory.cfg"))
    return config


def load_config(path) -> dict:
    """Read a PyMca fit configuration (``.cfg``).

    Raises
    ------
    UnreadableFileError
        If the file is missing or does not parse as a PyMca configuration.
    InvalidDataError
        If it names no elements ([peaks] is missing or empty).
    """
    from PyMca5.PyMcaIO import ConfigDict

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file")
    config = ConfigDict.ConfigDict()
    try:
        config.read(str(path))
    except Exception as exc:  # ConfigParser errors, UnicodeDecodeError, IOError...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableFileError(path, f"not a PyMca fit configuration ({reason})") from None
    if not any(key in config for key in ("fit", "detector", "peaks")):
        raise UnreadableFileError(
            path, "not a PyMca fit configuration (no [fit], [detector] or [peaks] section)"
        )
    if not _peaks(config):
        raise InvalidDataError(
            f"the fit configuration {path} names no elements: its [peaks] section is missing or "
            "empty (add elements in PyMca's fit setup, or use --elements)"
        )
    return config


def _peaks(config) -> dict:
    peaks = config.get("peaks") or {}
    return {k: v for k, v in peaks.items() if v not in ("", None, [])}


def build_config(
    elements,
    energy: EnergyAxis,
    *,
    tube: str | None = None,
    kv: float | None = None,
    excitation_keV: float | None = None,
    fit_range_keV=DEFAULT_FIT_RANGE_KEV,
    snip_width_keV: float = DEFAULT_SNIP_WIDTH_KEV,
    tube_lines: bool = True,
    noise_keV: float | None = None,
    fano: float | None = None,
) -> FitSetup:
    """A PyMca configuration for fitting ``elements`` on a cube's energy axis.

    Starts from PyMca's defaults (hypermet peaks, Si escape peaks, no attenuators), switches on
    the linear fit with a SNIP background, puts the cube's calibration in the detector section
    and chooses each element's lines with :func:`choose_lines`.

    Parameters
    ----------
    elements : str or iterable of str
        ``"Ca,Fe,Pb"`` or ``["Fe", "Pb L", "Pb M"]``.
    energy : EnergyAxis
        The cube's energy axis (must be calibrated).
    tube : str, optional
        Anode element of an X-ray tube (e.g. ``"Rh"``). Its K and L lines inside the range are
        fitted as extra groups (``"Rh K"``, kind ``"scatter"``) when ``tube_lines``: the tube's
        lines reach the detector by scattering.
    kv : float, optional
        Tube voltage; edges above ``kv`` keV cannot be excited.
    excitation_keV : float, optional
        Energy of a monochromatic beam (synchrotron); adds Rayleigh and Compton scatter peaks.
    fit_range_keV : (float or None, float or None)
        Energies to fit, clipped to the axis (and to ``kv`` or ``excitation_keV + 1``).
    snip_width_keV : float
        SNIP background width.
    noise_keV, fano : float, optional
        Detector noise and Fano factor that fix peak widths (PyMca's defaults 0.1 keV, 0.114:
        FWHM 156 eV at Mn Ka).

    Raises
    ------
    CalibrationError
        If the axis is not calibrated (or not linear).
    InvalidDataError
        Unknown elements, or elements without a line in the range.
    """
    zero, gain = linear_calibration(energy)
    if kv is not None and kv <= 0:
        raise InvalidDataError(f"tube voltage must be positive, got {kv}")
    if excitation_keV is not None and excitation_keV <= 0:
        raise InvalidDataError(f"excitation energy must be positive, got {excitation_keV}")
    if tube is not None:
        tube = _symbol(tube)
    upper = kv if excitation_keV is None else excitation_keV + 1.0
    (xmin, xmax), (lo, hi) = fit_range(energy, fit_range_keV, upper)
    exciting = excitation_keV if excitation_keV is not None else kv
    chosen = choose_lines(elements, (lo, hi), exciting)

    scatter_groups = set()
    if tube is not None and tube_lines:
        for family in ("K", "L"):
            if family_usable(tube, family, (lo, hi), exciting) and family not in chosen.get(tube, []):
                chosen.setdefault(tube, []).append(family)
                scatter_groups.add(f"{tube} {family}")

    config = default_config()
    config["peaks"] = {el: (fams[0] if len(fams) == 1 else list(fams)) for el, fams in chosen.items()}
    fit = config["fit"]
    fit.update(
        linearfitflag=1,
        stripflag=1,
        stripalgorithm=1,
        snipwidth=max(3, int(round(snip_width_keV / abs(gain)))),
        stripfilterwidth=DEFAULT_FILTER_WIDTH,
        stripanchorsflag=0,
        use_limit=1,
        xmin=xmin,
        xmax=xmax,
        fitweight=0,
        sumflag=0,
        escapeflag=1,
        # A linear polynomial on top of SNIP: SNIP on noisy pixel spectra follows the troughs
        # of the noise, and a free offset keeps that bias out of the peak areas.
        continuum=2,
        strategyflag=0,
        scatterflag=1 if excitation_keV is not None else 0,
        # PyMca computes line ratios for this excitation energy; None means "all lines".
        energy=[float(exciting)] if exciting is not None else None,
        energyweight=[1.0],
        energyflag=[1],
        energyscatter=[1 if excitation_keV is not None else 0],
    )
    detector = config["detector"]
    detector.update(zero=zero, gain=gain)
    if noise_keV is not None:
        detector["noise"] = float(noise_keV)
    if fano is not None:
        detector["fano"] = float(fano)
    if tube is not None or kv is not None:
        config.setdefault("tube", {})
        if tube is not None:
            config["tube"]["anode"] = tube
        if kv is not None:
            config["tube"]["voltage"] = float(kv)
    return FitSetup(config, "elements", [], scatter_groups)


def prepare_config(
    config, energy: EnergyAxis, *, source: str = "config", calibration: str = "cube"
) -> FitSetup:
    """Make a user's configuration fit for PyMca's fast linear fit on this cube.

    Sections missing from the configuration come from PyMca's defaults. The cube's
    calibration replaces the configuration's detector zero/gain (unless
    ``calibration="config"``), an iterative strip background becomes SNIP (the only background
    the fast fit supports), fit strategies are switched off and the linear fit on; each change is
    noted.

    Raises
    ------
    CalibrationError
        If ``calibration="cube"`` and the cube is not calibrated.
    InvalidDataError
        If the configuration names no elements.
    """
    notes = []
    if not _peaks(config):
        raise InvalidDataError(f"the fit configuration {source} names no elements ([peaks] is empty)")
    # PyMca replaces whole sections on update: complete a partial .cfg with its defaults.
    merged = default_config()
    for section, values in copy.deepcopy(dict(config)).items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict) and section != "peaks":
            merged[section].update(values)
        else:
            merged[section] = values
    config = merged
    config.setdefault("fit", {})
    config.setdefault("detector", {})
    fit, detector = config["fit"], config["detector"]
    if calibration == "cube":
        if not energy.calibrated:
            raise CalibrationError(
                "the cube's energy axis is not calibrated: "
                + HOW_TO_CALIBRATE
                + "; or use the calibration of the .cfg (--calibration config / "
                "calibration='config')"
            )
        zero, gain = linear_calibration(energy)
        old = (detector.get("zero"), detector.get("gain"))
        if None not in old and (abs(old[0] - zero) > 1e-4 or abs(old[1] - gain) > 1e-6 * max(1.0, abs(gain))):
            notes.append(
                f"the cube's calibration (zero {zero:.5f} keV, gain {gain:.6f} keV/ch) replaces the "
                f"configuration's (zero {old[0]:.5f}, gain {old[1]:.6f})"
            )
        detector.update(zero=zero, gain=gain)
    elif calibration != "config":
        raise ValueError(f"calibration must be 'cube' or 'config', not {calibration!r}")
    elif "gain" not in detector or "zero" not in detector:
        raise CalibrationError(f"the fit configuration {source} holds no detector zero/gain")
    if fit.get("stripflag", 0) and fit.get("stripalgorithm", 0) != 1:
        fit["stripalgorithm"] = 1
        fit.setdefault("snipwidth", 30)
        notes.append(
            f"background: PyMca's fast linear fit supports only SNIP; the configuration's strip "
            f"background was replaced by SNIP (width {fit['snipwidth']} channels)"
        )
    if fit.get("strategyflag", 0):
        fit["strategyflag"] = 0
        notes.append("fit strategies are incompatible with the fast linear fit; switched off")
    fit["linearfitflag"] = 1
    return FitSetup(config, source, notes, set())


def config_text(config) -> str:
    """A configuration as ``.cfg`` text (PyMca's ``ConfigDict`` format)."""
    from PyMca5.PyMcaIO import ConfigDict

    out = ConfigDict.ConfigDict()
    out.update(copy.deepcopy(dict(config)))
    return out.tostring()
