"""Instrument model: X-ray source, geometry, air paths, detector and its read-out.

Units: keV, kV, mA, um (thin layers), cm (air paths), mm/mm2 (detector distance/area), s,
degrees. Angles are measured from the sample surface, as in PyMca (90 = normal).

The default :class:`Instrument` resembles the XGLab ELIO used in the paper (Rh tube at 40 kV and
40 uA, 1 mm collimator, 50 mm2 SDD, 10 s per point); the assumptions are listed in
``docs/physics.md``. Instruments are frozen dataclasses: change one with
``dataclasses.replace`` or :meth:`Instrument.replace`, save it with :meth:`Instrument.save`.

Importing this module does not import PyMca; :meth:`Instrument.excitation` and
:meth:`Instrument.from_pymca_cfg` do.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._tables import load_table
from ..atomic import atomic_output
from ..cube import EnergyAxis
from ..errors import InvalidDataError, UnreadableFileError
from ..pigments._elements import ATOMIC_WEIGHT, parse_formula

FORMAT = "napari-xrf-pigments instrument"

# Dry air near sea level (PyMca's "Air" material): compound, mass fraction.
AIR_COMPOUNDS = (("C1", 0.000124), ("N1", 0.75527), ("O1", 0.23178), ("Ar1", 0.012827),
                 ("Kr1", 3.2e-06))
AIR_DENSITY = 0.0012048


def _normalise_formula(material: str) -> str:
    """'Be' -> 'Be1' (PyMca accepts bare element symbols); formulas are checked."""
    if material in ATOMIC_WEIGHT:
        return material + "1"
    parse_formula(material)
    return material


@dataclass(frozen=True)
class Filter:
    """A uniform slab in a beam path (tube filter, air, window, dead layer...).

    Parameters
    ----------
    material : str
        PyMca-style formula with counts (``"Be1"``), ``"air"``, or a name when ``compounds``
        is given.
    density : float
        g/cm3.
    thickness_um : float
        Micrometres.
    compounds : tuple of (formula, mass fraction), optional
        Composition of a named mixture (PyMca CompoundList / CompoundFraction).
    """

    material: str
    density: float
    thickness_um: float
    compounds: tuple[tuple[str, float], ...] | None = None

    def __post_init__(self):
        if self.compounds is not None:
            comps = tuple((_normalise_formula(str(f)), float(w)) for f, w in self.compounds)
            object.__setattr__(self, "compounds", comps)
        elif self.material.lower() != "air":
            object.__setattr__(self, "material", _normalise_formula(self.material))
        if not (self.density > 0 and self.thickness_um >= 0):
            raise InvalidDataError(
                f"filter {self.material}: density must be > 0 and thickness >= 0")

    def compound_list(self) -> tuple[list[str], list[float]]:
        """(formulas, mass fractions) as PyMca takes them."""
        if self.compounds is not None:
            comps = self.compounds
        elif self.material.lower() == "air":
            comps = AIR_COMPOUNDS
        else:
            comps = ((self.material, 1.0),)
        return [c for c, _ in comps], [w for _, w in comps]

    @property
    def mass_thickness_g_cm2(self) -> float:
        return self.density * self.thickness_um * 1e-4


@dataclass(frozen=True)
class Tube:
    """X-ray tube, spectrum from PyMca's Ebel model (``XRayTubeEbel.generateLists``).

    Parameters
    ----------
    anode : str
        Element symbol of the target.
    voltage_kV, current_mA : float
    window, window_density, window_thickness_um : str, float, float
        Exit window (formula, g/cm3, um).
    electron_angle_deg, takeoff_angle_deg : float
        Electron incidence and X-ray take-off angles on the anode (Ebel's alpha_e, alpha_x).
    transmission : bool
        Transmission target (then ``anode_thickness_um`` matters).
    anode_thickness_um : float
    filters : tuple of Filter
        Filters at the tube exit.
    beam_solid_angle_sr : float
        Solid angle of the beam accepted by the collimator; with the current it turns Ebel's
        photons/(s sr mA) into photons/s on the sample.
    """

    anode: str = "Rh"
    voltage_kV: float = 40.0
    current_mA: float = 0.04
    window: str = "Be1"
    window_density: float = 1.848
    window_thickness_um: float = 125.0
    electron_angle_deg: float = 75.0
    takeoff_angle_deg: float = 15.0
    transmission: bool = False
    anode_thickness_um: float = 1000.0
    filters: tuple[Filter, ...] = ()
    beam_solid_angle_sr: float = 5.0e-4

    def __post_init__(self):
        if self.anode not in ATOMIC_WEIGHT:
            raise InvalidDataError(f"tube anode {self.anode!r} is not an element symbol")
        object.__setattr__(self, "window", _normalise_formula(self.window))
        object.__setattr__(self, "filters", tuple(_as_filter(f) for f in self.filters))
        if any(f.compounds is not None or f.material == "air" for f in self.filters):
            raise InvalidDataError("tube filters must be given by a formula (e.g. 'Al1')")
        if not (5.0 <= self.voltage_kV <= 100.0):
            raise InvalidDataError(f"tube voltage {self.voltage_kV} kV is outside 5-100 kV")
        if not (self.current_mA > 0 and self.beam_solid_angle_sr > 0):
            raise InvalidDataError("tube current and beam solid angle must be > 0")


@dataclass(frozen=True)
class Beam:
    """An explicit excitation spectrum (e.g. imported from a PyMca .cfg or a monochromator).

    Parameters
    ----------
    energies_keV : tuple of float
    weights : tuple of float
        Relative photons per energy (normalised internally).
    flux_photons_s : float
        Photons/s on the sample, all energies together.
    """

    energies_keV: tuple[float, ...]
    weights: tuple[float, ...]
    flux_photons_s: float = 1.0e9

    def __post_init__(self):
        e = tuple(float(x) for x in np.atleast_1d(self.energies_keV))
        w = tuple(float(x) for x in np.atleast_1d(self.weights))
        if len(e) != len(w) or not e:
            raise InvalidDataError("beam energies and weights must have the same, non-zero length")
        if min(e) <= 0.1 or min(w) < 0 or sum(w) <= 0:
            raise InvalidDataError(
                "beam energies must be > 0.1 keV and weights >= 0 with a positive sum")
        object.__setattr__(self, "energies_keV", e)
        object.__setattr__(self, "weights", w)


@dataclass(frozen=True)
class Detector:
    """Energy-dispersive detector: crystal, window, size and distance.

    Parameters
    ----------
    material, density, thickness_um : str, float, float
        Crystal (efficiency ``1 - exp(-mu rho t)``, as PyMca). ``material`` is a formula
        (``"Si1"``); it also gives the escape peaks.
    window, window_density, window_thickness_um : str, float, float
    area_mm2, distance_mm : float
        Active area and sample distance; solid angle
        ``Omega/4pi = (1 - d/sqrt(d^2 + A/pi))/2`` (PyMca's formula).
    """

    material: str = "Si1"
    density: float = 2.33
    thickness_um: float = 450.0
    window: str = "Be1"
    window_density: float = 1.848
    window_thickness_um: float = 12.5
    area_mm2: float = 50.0
    distance_mm: float = 20.0

    def __post_init__(self):
        object.__setattr__(self, "material", _normalise_formula(self.material))
        object.__setattr__(self, "window", _normalise_formula(self.window))
        if not (self.area_mm2 > 0 and self.distance_mm > 0 and self.thickness_um > 0):
            raise InvalidDataError("detector area, distance and thickness must be > 0")

    @property
    def solid_angle_fraction(self) -> float:
        """Omega / (4 pi) of the detector seen from the sample."""
        d = self.distance_mm
        return 0.5 * (1.0 - d / math.sqrt(d * d + self.area_mm2 / math.pi))


#: Mn Ka (keV), where detector resolutions are quoted.
MN_KA_KEV = 5.895


def fwhm_at(energy_keV, resolution_keV: float, fano: float = 0.114):
    """Peak FWHM (keV) at ``energy_keV`` of a detector whose FWHM at Mn Ka is
    ``resolution_keV``: PyMca's ``FWHM^2 = noise^2 + 3.85 eV * Fano * 2.3548^2 * E`` with the
    noise that gives it (``fwhm_at(0, ...)`` is that noise)."""
    k = 0.00385 * fano * 2.3548**2
    noise2 = max(resolution_keV**2 - k * MN_KA_KEV, 1e-4)
    return np.sqrt(noise2 + k * np.asarray(energy_keV, dtype=np.float64))


@dataclass(frozen=True)
class Readout:
    """What turns photons into channels: calibration, resolution, peak shape, escape.

    Only this part changes the detector response matrix; a simulator caches one response per
    distinct Readout, so randomised instruments should draw from a finite pool of readouts.

    Parameters
    ----------
    zero_keV, gain_keV : float
        Calibration ``E = zero + gain * channel``.
    n_channels : int
    noise_keV : float
        Electronic noise, FWHM in keV.
    fano : float
        Fano factor; ``FWHM^2 = noise^2 + 0.00385 * E * fano * 2.3548^2`` (PyMca).
    escape : bool
        Detector escape peaks.
    short_tail, long_tail, step : bool
        Hypermet terms (PyMca). The ratios below are PyMca's defaults.
    st_area_ratio, st_slope_ratio, lt_area_ratio, lt_slope_ratio, step_height_ratio : float
    """

    zero_keV: float = 0.0
    gain_keV: float = 0.01
    n_channels: int = 4096
    noise_keV: float = 0.065
    fano: float = 0.114
    escape: bool = True
    short_tail: bool = True
    long_tail: bool = True
    step: bool = True
    st_area_ratio: float = 0.05
    st_slope_ratio: float = 0.5
    lt_area_ratio: float = 0.02
    lt_slope_ratio: float = 10.0
    step_height_ratio: float = 1.0e-4

    def __post_init__(self):
        object.__setattr__(self, "n_channels", int(self.n_channels))
        if self.n_channels < 2 or not self.gain_keV > 0:
            raise InvalidDataError("a readout needs >= 2 channels and a positive gain")
        if not (self.noise_keV >= 0 and self.fano >= 0) or self.noise_keV == self.fano == 0:
            raise InvalidDataError("noise and Fano must be >= 0 and not both 0")

    @property
    def hypermet_flag(self) -> int:
        """PyMca's hypermet bit mask: 1 gauss, 2 short tail, 4 long tail, 8 step."""
        return 1 + 2 * self.short_tail + 4 * self.long_tail + 8 * self.step

    def energy_axis(self) -> EnergyAxis:
        """The channel energies as an :class:`~napari_xrf_pigments.cube.EnergyAxis`."""
        return EnergyAxis.from_calibration(self.n_channels, self.zero_keV, self.gain_keV)

    def energies(self) -> np.ndarray:
        """Channel energies in keV, shape (n_channels,)."""
        return self.zero_keV + self.gain_keV * np.arange(self.n_channels, dtype=np.float64)

    def fwhm_keV(self, energy_keV):
        """Peak FWHM in keV at the given energy (PyMca's formula)."""
        e = np.asarray(energy_keV, dtype=np.float64)
        return np.sqrt(self.noise_keV ** 2 + 0.00385 * e * self.fano * 2.3548 ** 2)


def _as_filter(f) -> Filter:
    if isinstance(f, Filter):
        return f
    if isinstance(f, Mapping):
        d = dict(f)
        if d.get("compounds") is not None:
            d["compounds"] = tuple(tuple(c) for c in d["compounds"])
        return Filter(**d)
    return Filter(*f)


@dataclass(frozen=True)
class Instrument:
    """A macro-XRF scanner.

    Parameters
    ----------
    name : str
    tube : Tube or None
        X-ray tube (Ebel spectrum). Exactly one of ``tube`` and ``beam``.
    beam : Beam or None
        Explicit excitation spectrum instead of a tube.
    flux_photons_s : float or None
        Overrides the photons/s on the sample computed from the tube.
    live_time_s : float
        Counting (live) time per spectrum; the paper used 10 s.
    incidence_deg, takeoff_deg : float
        Beam incidence and detector take-off angles from the sample surface.
    scattering_angle_deg : float or None
        Default ``incidence + takeoff`` (PyMca's convention).
    air_in_cm, air_out_cm : float
        Air between tube and sample, and between sample and detector.
    beam_filters, attenuators : tuple of Filter
        Extra slabs on the incident path, and on the path to the detector (e.g. a dead layer).
    detector : Detector
    readout : Readout
    """

    name: str = "ELIO-like (Rh, 40 kV, 40 uA)"
    tube: Tube | None = field(default_factory=Tube)
    beam: Beam | None = None
    flux_photons_s: float | None = None
    live_time_s: float = 10.0
    incidence_deg: float = 90.0
    takeoff_deg: float = 45.0
    scattering_angle_deg: float | None = None
    air_in_cm: float = 1.0
    air_out_cm: float = 1.0
    beam_filters: tuple[Filter, ...] = ()
    attenuators: tuple[Filter, ...] = ()
    detector: Detector = field(default_factory=Detector)
    readout: Readout = field(default_factory=Readout)

    def __post_init__(self):
        if (self.tube is None) == (self.beam is None):
            raise InvalidDataError("an instrument needs exactly one of a tube and a beam")
        if not (0 < self.incidence_deg <= 90 and 0 < self.takeoff_deg <= 90):
            raise InvalidDataError("incidence and take-off angles must be in (0, 90] degrees")
        if not self.live_time_s > 0:
            raise InvalidDataError(f"live time must be > 0 s, got {self.live_time_s}")
        if self.flux_photons_s is not None and not self.flux_photons_s > 0:
            raise InvalidDataError("flux must be > 0 photons/s")
        if self.air_in_cm < 0 or self.air_out_cm < 0:
            raise InvalidDataError("air paths must be >= 0 cm")
        object.__setattr__(self, "beam_filters", tuple(_as_filter(f) for f in self.beam_filters))
        object.__setattr__(self, "attenuators", tuple(_as_filter(f) for f in self.attenuators))

    # -- derived quantities -------------------------------------------------------------
    @property
    def scattering_angle(self) -> float:
        """Scattering angle in degrees."""
        if self.scattering_angle_deg is not None:
            return float(self.scattering_angle_deg)
        return float(self.incidence_deg + self.takeoff_deg)

    def incident_filters(self) -> tuple[Filter, ...]:
        """Slabs on the incident path (air first)."""
        air = (Filter("air", AIR_DENSITY, self.air_in_cm * 1e4),) if self.air_in_cm > 0 else ()
        return air + self.beam_filters

    def detector_path_filters(self) -> tuple[Filter, ...]:
        """Slabs between sample and detector crystal (air, window, extra attenuators)."""
        d = self.detector
        out = []
        if self.air_out_cm > 0:
            out.append(Filter("air", AIR_DENSITY, self.air_out_cm * 1e4))
        if d.window_thickness_um > 0:
            out.append(Filter(d.window, d.window_density, d.window_thickness_um))
        return tuple(out) + self.attenuators

    def excitation(self) -> Excitation:
        """The incident spectrum on the sample (before the incident-path filters)."""
        if self.beam is not None:
            e = np.array(self.beam.energies_keV)
            w = np.array(self.beam.weights)
            flux = self.beam.flux_photons_s
            lines = np.zeros(e.size, dtype=bool)
        else:
            e, w, lines, flux = _tube_spectrum(self.tube)
            e, lines = e.copy(), lines.copy()  # the cache's arrays stay untouched
        if self.flux_photons_s is not None:
            flux = float(self.flux_photons_s)
        return Excitation(e, w / w.sum(), lines, float(flux))

    def replace(self, **changes) -> Instrument:
        """A copy with some fields changed (``readout=..., live_time_s=...``)."""
        return dataclasses.replace(self, **changes)

    # -- files -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d = {"format": FORMAT, "version": 1, **d}
        return json.loads(json.dumps(d))  # tuples -> lists

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Instrument:
        """Instrument from a dict like :meth:`to_dict` (missing keys keep their defaults)."""
        d = dict(d)
        fmt = d.pop("format", FORMAT)
        d.pop("version", None)
        if fmt != FORMAT:
            raise InvalidDataError(f"not an instrument description (format {fmt!r})")
        try:
            kw = _check_keys(cls, d, "instrument")
            for key, sub in (("tube", Tube), ("beam", Beam), ("detector", Detector),
                             ("readout", Readout)):
                if key in kw and kw[key] is not None:
                    kw[key] = sub(**_check_keys(sub, kw[key], key))
            if kw.get("beam") is not None and "tube" not in kw:
                kw["tube"] = None
            return cls(**kw)
        except TypeError as exc:
            raise InvalidDataError(f"invalid instrument description: {exc}") from None

    def save(self, path) -> None:
        """Write the instrument as JSON, replacing ``path`` (atomically: :func:`write_instrument`)."""
        write_instrument(self, path, force=True)

    @classmethod
    def load(cls, path) -> Instrument:
        """Read an instrument file written by :meth:`save` (JSON; ``.toml`` also accepted),
        or import a PyMca fit configuration (``.cfg``)."""
        path = Path(path)
        if path.suffix.lower() == ".cfg":
            return cls.from_pymca_cfg(path)
        try:
            data = load_table(path)
        except OSError as exc:
            raise UnreadableFileError(path, str(exc)) from None
        except ValueError as exc:
            raise UnreadableFileError(path, f"not valid JSON/TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except InvalidDataError as exc:
            raise UnreadableFileError(path, str(exc)) from None

    @classmethod
    def from_pymca_cfg(cls, path, **overrides) -> Instrument:
        """Import what a PyMca fit configuration (.cfg) says about the instrument.

        Taken over where present: the excitation (``[fit] energy/energyweight/energyflag``,
        else the ``[tube]`` section), flux and time, detector area and distance
        (``[concentrations]``), matrix angles, air/atmosphere, detector window and crystal,
        beam filters and other attenuators (``[attenuators]``, "funny" fractions ignored),
        calibration, noise and Fano (``[detector]``), peak shape (``[peakshape]``, ``[fit]
        hypermetflag/escapeflag``). The sample description is ignored, and so is the channel
        count (a .cfg holds only the fit range): the default 4096 stays. ``overrides`` replace
        fields of the result.
        """
        # lazy: PyMca5 is heavy
        from PyMca5.PyMcaIO import ConfigDict

        path = Path(path)
        if not path.is_file():
            raise UnreadableFileError(path, "no such file")
        cfg = ConfigDict.ConfigDict()
        try:
            cfg.read(str(path))
        except Exception as exc:  # ConfigParser errors of several kinds
            raise UnreadableFileError(path, f"not a PyMca configuration: {exc}") from None
        try:
            kw = _instrument_kwargs_from_cfg(cfg)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise UnreadableFileError(
                path, f"unexpected PyMca configuration content: {exc}") from None
        kw["name"] = f"imported from {path.name}"
        kw.update(overrides)
        return cls(**kw)


def _check_keys(klass, d: Mapping, what: str) -> dict:
    names = {f.name for f in dataclasses.fields(klass)}
    unknown = set(d) - names
    if unknown:
        raise InvalidDataError(f"unknown {what} keys {sorted(unknown)} (known: {sorted(names)})")
    return dict(d)


@dataclass(frozen=True)
class Excitation:
    """Incident spectrum as the physics uses it.

    Attributes
    ----------
    energies : ndarray, shape (n_E,)
        keV.
    weights : ndarray, shape (n_E,)
        Fraction of the photons at each energy, sum 1.
    is_line : ndarray of bool, shape (n_E,)
        Tube characteristic lines (the rest is continuum).
    flux : float
        Photons/s on the sample, all energies.
    """

    energies: np.ndarray
    weights: np.ndarray
    is_line: np.ndarray
    flux: float


@functools.lru_cache(maxsize=16)
def _tube_spectrum(tube: Tube):
    from PyMca5.PyMcaPhysics.xrf import Elements, XRayTubeEbel

    density = Elements.Element[tube.anode]["density"]
    target = [tube.anode, density, tube.anode_thickness_um * 1e-4]
    window = [tube.window, tube.window_density, tube.window_thickness_um * 1e-4]
    filters = [[f.material, f.density, f.thickness_um * 1e-4] for f in tube.filters]
    energies, weights, flags = XRayTubeEbel.generateLists(
        target, float(tube.voltage_kV), window=window, alphae=tube.electron_angle_deg,
        alphax=tube.takeoff_angle_deg, transmission=bool(tube.transmission),
        targetthickness=tube.anode_thickness_um * 1e-4 if tube.transmission else None,
        filterlist=filters or None)
    energies = np.asarray(energies, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    keep = weights > 0
    # generateLists returns photons/(s sr mA) / 1e7 per energy bin.
    flux = float(weights.sum()) * 1e7 * tube.current_mA * tube.beam_solid_angle_sr
    return energies[keep], weights[keep], np.asarray(flags, dtype=bool)[keep], flux


def _cfg_filter(entry, materials) -> Filter | None:
    """[use, material, density, thickness_cm, (funny)] -> Filter, or None when unused."""
    if not entry or not int(entry[0]) or entry[1] in ("-", "", None):
        return None
    material, density, thickness_cm = str(entry[1]), float(entry[2]), float(entry[3])
    if thickness_cm <= 0 or density <= 0:
        return None
    if material.lower() == "air":
        return Filter("air", density, thickness_cm * 1e4)
    if material in materials:
        m = materials[material]
        cl = m["CompoundList"] if isinstance(m["CompoundList"], list) else [m["CompoundList"]]
        cf = m["CompoundFraction"]
        cf = cf if isinstance(cf, list) else [cf]
        return Filter(material, density, thickness_cm * 1e4,
                      compounds=tuple((str(c), float(f)) for c, f in zip(cl, cf)))
    return Filter(material, density, thickness_cm * 1e4)


def _instrument_kwargs_from_cfg(cfg) -> dict:
    kw: dict[str, Any] = {}
    materials = cfg.get("materials", {})
    conc = cfg.get("concentrations", {})
    fit = cfg.get("fit", {})
    # Excitation: [fit] energies are what PyMca computes with; the [tube] section is only
    # the state of its tube widget.
    energies = fit.get("energy")
    energies = energies if isinstance(energies, list) else [energies]
    flags = fit.get("energyflag", [1] * len(energies))
    flags = flags if isinstance(flags, list) else [flags]
    weights = fit.get("energyweight", [1.0] * len(energies))
    weights = weights if isinstance(weights, list) else [weights]
    beam_e, beam_w = [], []
    for e, f, w in zip(energies, flags, weights):
        if e not in (None, "None") and int(f) and float(w) > 0:
            beam_e.append(float(e))
            beam_w.append(float(w))
    flux = float(conc.get("flux", 1e10))
    if beam_e:
        kw["beam"] = Beam(tuple(beam_e), tuple(beam_w), flux)
        kw["tube"] = None
    elif "tube" in cfg:
        t = cfg["tube"]
        filters = []
        if float(t.get("filter1thickness", 0.0)) > 0:
            filters.append(Filter(str(t["filter1"]), float(t["filter1density"]),
                                  float(t["filter1thickness"]) * 1e4))
        kw["tube"] = Tube(anode=str(t.get("anode", "Rh")), voltage_kV=float(t.get("voltage", 40.0)),
                          window=str(t.get("window", "Be")),
                          window_density=float(t.get("windowdensity", 1.848)),
                          window_thickness_um=float(t.get("windowthickness", 0.0125)) * 1e4,
                          electron_angle_deg=float(t.get("alphae", 90.0)),
                          takeoff_angle_deg=float(t.get("alphax", 90.0)),
                          transmission=bool(int(t.get("transmission", 0))),
                          anode_thickness_um=float(t.get("anodethickness", 0.1)) * 1e4,
                          filters=tuple(filters))
        kw["flux_photons_s"] = flux
    if "time" in conc:
        kw["live_time_s"] = float(conc["time"])

    att = cfg.get("attenuators", {})
    det_kw: dict[str, Any] = {}
    if "area" in conc:
        det_kw["area_mm2"] = float(conc["area"]) * 100.0  # PyMca: cm2
    if "distance" in conc:
        det_kw["distance_mm"] = float(conc["distance"]) * 10.0  # PyMca: cm
    air_in = air_out = 0.0
    beam_filters, attenuators = [], []
    window_set = False
    for key, entry in att.items():
        if key.upper() == "MATRIX":
            if len(entry) > 5:
                kw["incidence_deg"] = float(entry[4])
                kw["takeoff_deg"] = float(entry[5])
            if len(entry) > 7 and int(entry[6]):
                kw["scattering_angle_deg"] = float(entry[7])
            continue
        f = _cfg_filter(entry, materials)
        if f is None:
            continue
        if key.upper() == "DETECTOR":
            det_kw.update(material=f.material, density=f.density, thickness_um=f.thickness_um)
        elif key.upper().startswith("BEAMFILTER"):
            if f.material.lower() == "air":
                air_in += f.thickness_um * 1e-4
            else:
                beam_filters.append(f)
        elif key.lower() == "window" and f.compounds is None and not window_set:
            det_kw.update(window=f.material, window_density=f.density,
                          window_thickness_um=f.thickness_um)
            window_set = True
        elif f.material.lower() == "air":
            air_out += f.thickness_um * 1e-4
        else:
            attenuators.append(f)
    if not window_set:
        det_kw["window_thickness_um"] = 0.0
    kw["air_in_cm"] = air_in
    kw["air_out_cm"] = air_out
    kw["beam_filters"] = tuple(beam_filters)
    kw["attenuators"] = tuple(attenuators)
    kw["detector"] = Detector(**det_kw)

    det = cfg.get("detector", {})
    shape = cfg.get("peakshape", {})
    flag = int(fit.get("hypermetflag", 1))
    ro: dict[str, Any] = dict(
        zero_keV=float(det.get("zero", 0.0)), gain_keV=float(det.get("gain", 0.01)),
        noise_keV=float(det.get("noise", 0.1)), fano=float(det.get("fano", 0.114)),
        escape=bool(int(fit.get("escapeflag", 1))),
        short_tail=bool((flag >> 1) & 1), long_tail=bool((flag >> 2) & 1),
        step=bool((flag >> 3) & 1))
    for name, key in (("st_area_ratio", "st_arearatio"), ("st_slope_ratio", "st_sloperatio"),
                      ("lt_area_ratio", "lt_arearatio"), ("lt_slope_ratio", "lt_sloperatio"),
                      ("step_height_ratio", "step_heightratio")):
        if key in shape:
            ro[name] = float(shape[key])
    kw["readout"] = Readout(**ro)
    return kw



# -- the instrument a scan's file describes ----------------------------------------------------

#: Keys of a reader's ``metadata["tube"]`` that are :class:`Tube` fields as they are.
_TUBE_FIELDS = ("voltage_kV", "electron_angle_deg", "takeoff_angle_deg", "window_thickness_um")


def instrument_from_cube(cube, *, base: Instrument | None = None) -> tuple[Instrument, list[str]]:
    """The instrument a scan's file describes, over ``base`` for what the file does not say.

    Taken from the cube where its reader found them: a whole instrument description (cubes this
    project simulated); the X-ray tube (anode, kV, current, anode angles, window: Bruker's XRF
    header) or the tube voltage alone; a monochromatic beam (``incident_energy_keV``,
    synchrotron files); the detector's resolution, crystal and window (Bruker); the energy
    calibration and channel count; the live time.

    Parameters
    ----------
    cube : XRFCube
    base : Instrument, optional
        Default :class:`Instrument` (the ELIO-like scanner of the paper).

    Returns
    -------
    instrument : Instrument
    notes : list of str
        One line per part: what was taken from the file, and what kept ``base``'s value.

    Raises
    ------
    InvalidDataError
        If the file's values make no instrument (e.g. a tube voltage outside 5-100 kV).
    """
    # here, not at the top: model.preflight imports this module through datasets and physics
    # (an import cycle)
    from ..model.preflight import cube_tube

    base = base or Instrument()
    meta = cube.metadata if isinstance(cube.metadata, dict) else {}
    described = meta.get("instrument")
    if isinstance(described, Mapping) and described.get("format") == FORMAT:
        return Instrument.from_dict(described), [
            "the whole instrument description stored in the file (a cube simulated by this project)"]
    changes, notes = {"name": f"from {cube.name}"}, []

    anode, kv, _ = cube_tube(meta)
    energy = _number_or_none(meta.get("incident_energy_keV"))
    if energy:
        changes.update(tube=None, beam=Beam(energies_keV=(energy,), weights=(1.0,)))
        notes.append(f"excitation: a {energy:g} keV monochromatic beam")
    elif anode or kv:
        base_tube = base.tube or Tube()  # a beam base gets the default tube's other parts
        recorded = meta.get("tube") if isinstance(meta.get("tube"), Mapping) else {}
        tube = {k: float(recorded[k]) for k in _TUBE_FIELDS if _number_or_none(recorded.get(k))}
        tube.update({"anode": anode or base_tube.anode, "voltage_kV": kv or base_tube.voltage_kV})
        if _number_or_none(recorded.get("current_uA")):
            tube["current_mA"] = float(recorded["current_uA"]) / 1000.0
        changes.update(tube=dataclasses.replace(base_tube, **tube), beam=None)
        notes.append(f"tube: {_listing(tube)}"
                     + ("" if anode else f" (anode not in the file: {base_tube.anode} kept)"))
    else:
        notes.append(f"tube: not in the file; {base.tube.anode} {base.tube.voltage_kV:g} kV kept"
                     if base.tube else "excitation: not in the file; the base beam kept")

    partial = described if isinstance(described, Mapping) else {}
    readout = dict(partial.get("readout") or {})
    if cube.calibrated:
        zero, gain, quad = cube.energy.as_calibration()
        readout.update(zero_keV=zero, gain_keV=gain, n_channels=cube.n_channels)
        notes.append(f"energy calibration: zero {zero:.5f} keV, gain {gain:.7f} keV/ch, "
                     f"{cube.n_channels} channels"
                     # A simulated readout is linear; say so where that moves a channel.
                     + (f" (its quadratic term {quad:.3g} keV/ch^2 is left out)"
                        if abs(quad) * cube.n_channels**2 > 0.1 * gain else ""))
    else:
        readout["n_channels"] = cube.n_channels
        notes.append(f"energy calibration: the cube has none; {base.readout.gain_keV:g} keV/ch kept")
    if "noise_keV" in readout:
        fwhm = float(Readout(noise_keV=readout["noise_keV"], fano=readout["fano"]).fwhm_keV(MN_KA_KEV))
        notes.append(f"detector resolution: {fwhm * 1000:.0f} eV at Mn Ka (noise "
                     f"{readout['noise_keV'] * 1000:.0f} eV, Fano {readout['fano']:.3f})")
    else:
        notes.append(f"detector resolution: not in the file; "
                     f"{base.readout.fwhm_keV(MN_KA_KEV) * 1000:.0f} eV at Mn Ka kept")
    changes["readout"] = dataclasses.replace(base.readout, **readout)
    detector = dict(partial.get("detector") or {})
    if detector:
        changes["detector"] = dataclasses.replace(base.detector, **detector)
        notes.append(f"detector: {_listing(detector)}")
    else:
        notes.append("detector (crystal, window, area, distance) and geometry: not in the file; "
                     "the base's kept")
    live = cube.live_time
    if live is not None and np.size(live) and float(np.median(live)) > 0:
        changes["live_time_s"] = float(np.median(live))
        notes.append(f"live time: {changes['live_time_s']:g} s per spectrum")
    return dataclasses.replace(base, **changes), notes


def _listing(values: Mapping) -> str:
    """``"anode Rh, voltage_kV 50"``: sorted names and values, numbers in short form."""
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in sorted(values.items()))


def _number_or_none(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# -- an instrument entered in a form -------------------------------------------------------------

#: Detector crystals with their densities (g/cm3): a form offers them and sets the density.
DETECTOR_CRYSTALS = {"Si1": 2.33, "Ge1": 5.323, "Cd1Te1": 5.85}


@dataclass(frozen=True)
class FormField:
    """One value of an instrument as a form shows it.

    Attributes
    ----------
    key : str
        Path into :meth:`Instrument.to_dict` (``"tube.voltage_kV"``); ``"readout.resolution_eV"``
        is the peak FWHM at Mn Ka, which sets ``readout.noise_keV`` (with the readout's Fano).
    label, unit : str
    kind : {"text", "number", "integer"}
    scale : float
        Form value = file value * scale (the form's tube current is in uA, the file's in mA).
    minimum, maximum : float
        Bounds for the form's box; the instrument's own checks decide what is valid.
    tip : str
    """

    key: str
    label: str
    unit: str = ""
    kind: str = "number"
    scale: float = 1.0
    minimum: float = 0.0
    maximum: float = 1e6
    tip: str = ""


FORM_FIELDS = (
    FormField("name", "name", kind="text", tip="Stored in the file and in the model's name"),
    FormField("tube.anode", "tube anode", kind="text", tip="Element symbol of the target (Rh, W, Mo, Ag, Cr...)"),
    FormField("tube.voltage_kV", "tube voltage", "kV", minimum=5, maximum=100),
    FormField("tube.current_mA", "tube current", "uA", scale=1000.0, maximum=1e5),
    FormField("tube.window_thickness_um", "tube window", "um", maximum=1e4,
              tip="Exit window of the tube (its material stays; usually Be)"),
    FormField("incidence_deg", "incidence angle", "deg", maximum=90,
              tip="Beam to sample surface (90 = normal incidence)"),
    FormField("takeoff_deg", "take-off angle", "deg", maximum=90,
              tip="Sample surface to detector"),
    FormField("air_in_cm", "air, tube to sample", "cm", maximum=1000),
    FormField("air_out_cm", "air, sample to detector", "cm", maximum=1000),
    FormField("detector.material", "detector crystal", kind="text",
              tip="Formula with counts: Si1, Ge1, Cd1Te1 (Si, Ge and CdTe are understood too)"),
    FormField("detector.density", "crystal density", "g/cm3", maximum=30),
    FormField("detector.thickness_um", "crystal thickness", "um", maximum=1e5),
    FormField("detector.window_thickness_um", "detector window", "um", maximum=1e4,
              tip="Entrance window of the detector (its material stays; usually Be)"),
    FormField("detector.area_mm2", "detector area", "mm2", maximum=1e4),
    FormField("detector.distance_mm", "detector distance", "mm", maximum=1e4),
    FormField("readout.resolution_eV", "resolution at Mn Ka", "eV", minimum=50, maximum=2000,
              tip="Peak FWHM at 5.9 keV, as detector data sheets quote it"),
    FormField("readout.zero_keV", "calibration zero", "keV", minimum=-100, maximum=100),
    FormField("readout.gain_keV", "calibration gain", "keV/ch", maximum=10),
    FormField("readout.n_channels", "channels", kind="integer", minimum=2, maximum=1 << 20),
    FormField("live_time_s", "live time", "s", maximum=1e6, tip="Counting time per spectrum"),
)
_FORM = {f.key: f for f in FORM_FIELDS}


def noise_for_resolution(resolution_keV: float, fano: float = 0.114) -> float:
    """Electronic noise (FWHM, keV) of a detector whose peaks are ``resolution_keV`` wide at
    Mn Ka (inverse of :meth:`Readout.fwhm_keV` there).

    Raises
    ------
    InvalidDataError
        The resolution is below the Fano limit (what the crystal alone gives).
    """
    fano_part = 0.00385 * fano * 2.3548**2 * MN_KA_KEV
    noise2 = float(resolution_keV) ** 2 - fano_part
    if not math.isfinite(noise2) or noise2 < 0:
        raise InvalidDataError(
            f"a resolution of {resolution_keV * 1000:.0f} eV at Mn Ka is below the Fano limit of "
            f"{math.sqrt(fano_part) * 1000:.0f} eV (Fano factor {fano:g}): give the FWHM at 5.9 keV"
        )
    return math.sqrt(noise2)


def form_values(instrument: Instrument) -> dict[str, Any]:
    """The values of :data:`FORM_FIELDS` for ``instrument``, in the form's units.

    Tube values are None for an instrument excited by a beam instead of a tube.
    """
    d = instrument.to_dict()
    values: dict[str, Any] = {}
    for f in FORM_FIELDS:
        part, _, name = f.key.rpartition(".")
        if f.key == "readout.resolution_eV":
            value = float(instrument.readout.fwhm_keV(MN_KA_KEV)) * 1000.0
        else:
            holder = d[part] if part else d
            value = None if holder is None else holder[name]
        if value is not None and f.kind == "number":
            value = float(value) * f.scale
        values[f.key] = value
    return values


def _form_formula(text: str, label: str) -> str:
    """A formula typed in a form: ``"CdTe"`` is read as ``"Cd1Te1"``."""
    text = text.strip()
    counted = re.sub(r"([A-Z][a-z]?)(?![a-z\d.])", r"\g<1>1", text)
    try:
        return _normalise_formula(counted)
    except ValueError:
        raise InvalidDataError(f"{label} {text!r} is not a formula (e.g. Si1, Cd1Te1)") from None


def crystal_density(text: str) -> float | None:
    """Density (g/cm3) of a detector crystal of :data:`DETECTOR_CRYSTALS` typed in a form
    (``"CdTe"``, ``"Si1"``), or None."""
    try:
        return DETECTOR_CRYSTALS.get(_form_formula(str(text), "detector crystal"))
    except InvalidDataError:
        return None


def instrument_from_form(base: Instrument, values: Mapping[str, Any]) -> Instrument:
    """``base`` with the form's ``values`` (keys of :data:`FORM_FIELDS`, the form's units).

    Keys not given (or None), and values equal to ``base``'s (:func:`form_values`), keep
    ``base``'s values exactly. A new detector crystal of :data:`DETECTOR_CRYSTALS` brings its
    density unless a density is given too.

    Raises
    ------
    InvalidDataError
        An unknown key, an empty or non-finite value, a value the instrument refuses (tube
        voltage outside 5-100 kV, resolution below the Fano limit...), or tube values for an
        instrument excited by a beam; the message names the field.
    """
    unknown = sorted(set(values) - set(_FORM))
    if unknown:
        raise InvalidDataError(f"unknown instrument form fields {unknown}")
    parts: dict[str, dict[str, Any]] = {"": {}, "tube": {}, "detector": {}, "readout": {}}
    before = form_values(base)
    for key, value in values.items():
        if value is None or _same(value, before[key]):
            continue
        f = _FORM[key]
        part, _, name = key.rpartition(".")
        if f.kind == "text":
            value = str(value).strip()
            if not value:
                raise InvalidDataError(f"{f.label}: empty")
            if key == "tube.anode":
                value = value[:1].upper() + value[1:].lower()
                if value not in ATOMIC_WEIGHT:
                    raise InvalidDataError(f"tube anode {value!r} is not an element symbol")
            elif key == "detector.material":
                value = _form_formula(value, f.label)
        else:
            try:
                number = float(value) / f.scale
            except (TypeError, ValueError):
                raise InvalidDataError(f"{f.label}: {value!r} is not a number") from None
            if not math.isfinite(number):
                raise InvalidDataError(f"{f.label}: {value!r} is not a finite number")
            if f.kind == "integer":
                if number != int(number):
                    raise InvalidDataError(f"{f.label}: {value!r} is not a whole number")
                number = int(number)
            value = number
        parts[part][name] = value
    if parts["tube"] and base.tube is None:
        raise InvalidDataError("this instrument is excited by a beam, not a tube: the tube "
                               "fields do not apply")
    detector = parts["detector"]
    if detector.get("material") in DETECTOR_CRYSTALS and "density" not in detector:
        detector["density"] = DETECTOR_CRYSTALS[detector["material"]]
    readout = parts["readout"]
    if "resolution_eV" in readout:
        readout["noise_keV"] = noise_for_resolution(readout.pop("resolution_eV") / 1000.0,
                                                    base.readout.fano)
    changes = dict(parts[""])
    for part in ("tube", "detector", "readout"):
        if parts[part]:
            try:
                changes[part] = dataclasses.replace(getattr(base, part), **parts[part])
            except (TypeError, ValueError) as exc:  # InvalidDataError is a ValueError
                text = str(exc)
                raise InvalidDataError(text if part in text else f"{part}: {text}") from None
    try:
        return dataclasses.replace(base, **changes)
    except (TypeError, ValueError) as exc:
        raise InvalidDataError(str(exc)) from None


def _same(value, before) -> bool:
    if before is None or isinstance(value, str) or isinstance(before, str):
        return value == before
    try:
        return math.isclose(float(value), float(before), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def describe_form_values(values: Mapping[str, Any]) -> str:
    """``"tube voltage 30 kV, tube anode Mo"``: form values for a user, in the form's order."""
    shown = []
    for f in FORM_FIELDS:
        value = values.get(f.key)
        if value is None:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        shown.append(f"{f.label} {text}" + (f" {f.unit}" if f.unit else ""))
    return ", ".join(shown)


def write_instrument(instrument: Instrument, path, *, force: bool = False) -> Path:
    """Write ``instrument`` as the JSON the simulator reads (:meth:`Instrument.load`),
    atomically: never a half-written file, never over an existing one unless ``force``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``force`` is false.
    OutputWriteError
        The disk is full, read-only or failing.
    """
    text = json.dumps(instrument.to_dict(), indent=2) + "\n"
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
