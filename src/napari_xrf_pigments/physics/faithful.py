"""Reference simulator: PyMca's own multilayer computation, as ``matrixSpectrum`` does it.

``McaAdvancedFit.matrixSpectrum`` (the function the paper used) needs a finished fit and a Qt
window; its physics is not GUI code, and this module repeats it headlessly:

1. a ``McaTheory`` configured with the multilayer as its matrix gives, per line group, the
   relative line intensities (``PEAKS0``, from ``Elements.getMultilayerFluorescence``) and the
   detector response (hypermet peaks, escape peaks);
2. ``ConcentrationsTool.processFitResult(elementsfrommatrix=True)`` gives each group's expected
   area (photons/s x s x solid angle x multilayer fluorescence rate x mass fraction);
3. ``McaTheory.mcatheory(parameters, x)`` turns areas into counts per channel.

Two departures, both configuration of PyMca rather than changes to it:

- ``deltaonepeak`` is set to 1e-7 keV, so lines are not merged into their intensity-weighted
  centroid when closer than 10 eV (PyMca's fit default; merging chains of M lines can move a
  peak by tens of eV);
- Rayleigh and Compton scatter of every tube energy are added (``matrixSpectrum`` sets the
  scatter areas to zero): their areas are computed here from PyMca's coherent cross-section and
  a corrected Compton cross-section (see :mod:`.scatter`), and McaTheory renders them as its
  "Scatter Peak"/"Scatter Compton" peaks.

Optionally, secondary fluorescence (``secondary=True``) scales group areas by fisx's
total/primary ratios as ``matrixSpectrum`` does with ``usemultilayersecondary``.

It is slow (about a second per stratigraphy): it is the reference that
:class:`~.fast.FastSimulator` is checked against.
"""

from __future__ import annotations

import copy
import os

import numpy as np

from ..errors import InvalidDataError
from . import _pymca
from ._common import resolve_layers
from .instrument import Instrument
from .scatter import compton_energy, mixture_dcs

MAX_LAYERS = 10  # PyMca sorts "Layer10" before "Layer2"


class FaithfulSimulator:
    """Spectra computed by PyMca's McaTheory / ConcentrationsTool (slow reference).

    Parameters
    ----------
    instrument : Instrument
    library : PigmentLibrary
    min_line_energy_keV : float
        Line families whose strongest line is below this are left out.
    scatter : bool
        Add Rayleigh and Compton scatter of the excitation spectrum.
    secondary : bool
        Scale group areas by fisx secondary-fluorescence corrections.
    """

    def __init__(self, instrument, library, *, min_line_energy_keV=1.0, scatter=True,
                 secondary=False):
        self.instrument = instrument
        self.library = library
        self.min_line_energy_keV = float(min_line_energy_keV)
        self.scatter = bool(scatter)
        self.secondary = bool(secondary)
        self.excitation = instrument.excitation()

    # -- configuration -------------------------------------------------------------------
    def pymca_config(self, stratigraphy, readout=None, live_time_s=None) -> dict:
        """The PyMca fit configuration (a dict of sections) describing one measurement."""
        # lazy: PyMca5 is heavy
        from PyMca5 import PyMcaDataDir
        from PyMca5.PyMcaIO import ConfigDict

        inst = self.instrument
        readout = inst.readout if readout is None else readout
        live_time = inst.live_time_s if live_time_s is None else float(live_time_s)
        layers = resolve_layers(stratigraphy, self.library)
        if len(layers) > MAX_LAYERS:
            raise InvalidDataError(f"the faithful simulator handles at most {MAX_LAYERS} layers")
        base = ConfigDict.ConfigDict(
            filelist=os.path.join(PyMcaDataDir.PYMCA_DATA_DIR, "McaTheory.cfg"))
        cfg = {key: copy.deepcopy(base[key]) for key in base}
        ex = self.excitation
        n = readout.n_channels
        cfg["fit"].update(
            energy=[float(e) for e in ex.energies],
            energyweight=[float(w) for w in ex.weights],
            energyflag=[1] * ex.energies.size,
            energyscatter=[1] * ex.energies.size,
            scatterflag=1 if self.scatter else 0,
            escapeflag=1 if readout.escape else 0,
            hypermetflag=readout.hypermet_flag, fitfunction=0, sumflag=0, continuum=0,
            stripflag=0, linearfitflag=0, xmin=0, xmax=n - 1, deltaonepeak=1.0e-7)
        cfg["detector"].update(
            zero=readout.zero_keV, gain=readout.gain_keV, noise=readout.noise_keV,
            fano=readout.fano, sum=0.0, detele=inst.detector.material, ethreshold=0.020,
            ithreshold=1.0e-7, nthreshold=4)
        cfg["peakshape"].update(
            st_arearatio=readout.st_area_ratio, st_sloperatio=readout.st_slope_ratio,
            lt_arearatio=readout.lt_area_ratio, lt_sloperatio=readout.lt_slope_ratio,
            step_heightratio=readout.step_height_ratio, eta_factor=0.02)

        materials = {}
        att = {key: [0, "-", 0.0, 0.0, 1.0] for key in cfg["attenuators"]}
        att["Matrix"] = [1, "MULTILAYER", 0.0, 0.0, float(inst.incidence_deg),
                         float(inst.takeoff_deg), 1, float(inst.scattering_angle)]
        det = inst.detector
        att["Detector"] = [1, det.material, det.density, det.thickness_um * 1e-4, 1.0]

        def slab(f, name):
            comps, fracs = f.compound_list()
            if len(comps) == 1:
                return [1, comps[0], f.density, f.thickness_um * 1e-4, 1.0]
            materials[name] = {"Comment": name, "CompoundList": comps,
                               "CompoundFraction": fracs, "Density": f.density,
                               "Thickness": f.thickness_um * 1e-4}
            return [1, name, f.density, f.thickness_um * 1e-4, 1.0]

        for i, f in enumerate(inst.incident_filters()):
            att[f"BeamFilter{i}"] = slab(f, f"XRFPIG_BeamFilter{i}")
        for i, f in enumerate(inst.detector_path_filters()):
            att[f"XRFPIG_att{i}"] = slab(f, f"XRFPIG_Attenuator{i}")
        cfg["attenuators"] = att
        cfg["userattenuators"] = {}

        multilayer = {f"Layer{i}": [0, "-", 0.0, 0.0] for i in range(MAX_LAYERS)}
        present: set[str] = set()
        for i, layer in enumerate(layers):
            name = f"XRFPIG_Layer{i}"
            formulas = [self.library[a].formula for a in layer.components]
            materials[name] = {"Comment": name, "CompoundList": formulas,
                               "CompoundFraction": [float(x) for x in layer.fractions],
                               "Density": layer.density, "Thickness": layer.thickness_cm}
            multilayer[f"Layer{i}"] = [1, name, layer.density, layer.thickness_cm]
            present |= {el for el, w in _pymca.mixture_mass_fractions(formulas, layer.fractions)
                        .items() if w > 0}
        cfg["materials"] = materials
        cfg["multilayer"] = multilayer
        peaks: dict[str, list[str]] = {}
        for _, el, fam in _pymca.fluorescence_groups(sorted(present), float(ex.energies.max()),
                                                     self.min_line_energy_keV):
            peaks.setdefault(el, []).append(fam)
        cfg["peaks"] = peaks
        cfg["concentrations"].update(
            usematrix=0, useattenuators=1, usemultilayersecondary=1 if self.secondary else 0,
            usexrfmc=0, mmolarflag=0, reference="Auto", flux=float(ex.flux), time=live_time,
            area=det.area_mm2 / 100.0, distance=det.distance_mm / 10.0)
        return cfg

    # -- computation ---------------------------------------------------------------------
    def simulate(self, stratigraphy, *, readout=None, live_time_s=None, return_details=False):
        """Expected counts per channel of one stratigraphy.

        Parameters
        ----------
        stratigraphy : Stratigraphy
        readout : Readout, optional
            Default: the instrument's.
        live_time_s : float, optional
            Default: the instrument's.
        return_details : bool
            Also return a dict with group areas, scatter areas and PyMca parameter names.

        Returns
        -------
        counts : ndarray of float64, shape (n_channels,)
        details : dict, only with ``return_details``
        """
        from PyMca5.PyMcaPhysics.xrf import ClassMcaTheory, ConcentrationsTool

        readout = self.instrument.readout if readout is None else readout
        cfg = self.pymca_config(stratigraphy, readout, live_time_s)
        mca = _configured_theory(ClassMcaTheory, cfg)
        names = list(mca.PARAMETERS)
        nglobal = mca.NGLOBAL
        groups = names[nglobal:]
        fitresult = {"result": {"config": mca.config, "groups": groups}}
        for g in groups:
            fitresult["result"][g] = {"fitarea": 1.0, "sigmaarea": 1.0}
        tool = ConcentrationsTool.ConcentrationsTool()
        tool.configure(dict(mca.config["concentrations"]))
        fluo_groups = [g for g in groups if len(g.split()[0]) <= 2]
        areas = {}
        if fluo_groups:
            ddict = tool.processFitResult(fitresult=fitresult, elementsfrommatrix=True)
            corrections = None
            if self.secondary:
                corrections = mca.config.get("fisx", {}).get("corrections")
            for g in fluo_groups:
                area = float(ddict["area"][g])
                el, fam = g.split()
                if corrections is not None and el in corrections:
                    counts = corrections[el][fam]["counts"]
                    area *= counts[-1] / counts[0]
                areas[g] = area
        scatter = self.scatter_areas(stratigraphy, live_time_s) if self.scatter else None

        values = {"Zero": readout.zero_keV, "Gain": readout.gain_keV,
                  "Noise": readout.noise_keV, "Fano": readout.fano, "Sum": 0.0,
                  "ST AreaR": readout.st_area_ratio, "ST SlopeR": readout.st_slope_ratio,
                  "LT AreaR": readout.lt_area_ratio, "LT SlopeR": readout.lt_slope_ratio,
                  "STEP HeightR": readout.step_height_ratio, "Eta Factor": 0.02}
        params = []
        for name in names[:nglobal]:
            params.append(values.get(name, 0.0))
        for g in groups:
            if g in areas:
                params.append(areas[g])
            elif g.startswith("Scatter Peak"):
                params.append(scatter[0][int(g[len("Scatter Peak"):])])
            elif g.startswith("Scatter Compton"):
                params.append(scatter[1][int(g[len("Scatter Compton"):])])
            else:
                params.append(0.0)
        x = np.arange(readout.n_channels, dtype=np.float64)
        counts = np.asarray(mca.mcatheory(params, x), dtype=np.float64).reshape(-1)
        if not return_details:
            return counts
        return counts, {"group_areas": areas, "scatter_areas": scatter,
                        "parameters": dict(zip(names, params)), "config": cfg}

    def scatter_areas(self, stratigraphy, live_time_s=None):
        """Expected counts of Rayleigh and Compton scatter per excitation energy.

        Per layer: ``w(E) T_in 4pi dsigma/dOmega (1 - exp(-(mu_E/sin_in + mu_S/sin_out) rho t))
        / (mu_E + mu_S sin_in/sin_out) T_out(E_S) eff(E_S)``, the scatter analogue of PyMca's
        fluorescence formula, with layers above attenuating both ways.

        Returns
        -------
        rayleigh, compton : ndarray, shape (n_E,)
        """
        inst = self.instrument
        ex = self.excitation
        live_time = inst.live_time_s if live_time_s is None else float(live_time_s)
        theta = inst.scattering_angle
        s_in = np.sin(np.radians(inst.incidence_deg))
        s_out = np.sin(np.radians(inst.takeoff_deg))
        e_in = ex.energies
        e_comp = compton_energy(e_in, theta)
        weights = ex.weights * _pymca.filters_transmission(inst.incident_filters(), e_in)
        out_filters = inst.detector_path_filters()
        scale = ex.flux * live_time * inst.detector.solid_angle_fraction
        result = []
        for kind, e_out in (("rayleigh", e_in), ("compton", e_comp)):
            path_out = (_pymca.filters_transmission(out_filters, e_out)
                        * _pymca.detector_efficiency(inst.detector, e_out))
            above_in = np.zeros(e_in.shape)
            above_out = np.zeros(e_in.shape)
            total = np.zeros(e_in.shape)
            for layer in resolve_layers(stratigraphy, self.library):
                formulas = [self.library[a].formula for a in layer.components]
                mu_in = _pymca.mu_total(formulas, layer.fractions, e_in)
                mu_out = _pymca.mu_total(formulas, layer.fractions, e_out)
                elements = _pymca.mixture_mass_fractions(formulas, layer.fractions)
                coh, inc = mixture_dcs(elements, theta, e_in)
                dcs = coh if kind == "rayleigh" else inc
                m = layer.density * layer.thickness_cm
                self_abs = (1.0 - np.exp(-(mu_in / s_in + mu_out / s_out) * m)) / (
                    mu_in + mu_out * s_in / s_out)
                total += (weights * np.exp(-above_in) * 4.0 * np.pi * dcs * self_abs
                          * np.exp(-above_out) * path_out)
                above_in += mu_in * m / s_in
                above_out += mu_out * m / s_out
            keep = e_in > 0.2  # McaTheory has no scatter peak below 0.2 keV
            result.append(np.where(keep, total * scale, 0.0))
        return result[0], result[1]


def _configured_theory(ClassMcaTheory, cfg):
    """A McaTheory configured with ``cfg``; groups PyMca finds fully absorbed are dropped."""
    cfg = copy.deepcopy(cfg)
    for _ in range(64):
        try:
            return ClassMcaTheory.McaTheory(config=cfg)
        except (ZeroDivisionError, ValueError) as exc:
            # "Intensity of Pb L xrays is zero / Too high attenuation?": nothing reaches the
            # detector from that group, so leaving it out does not change the spectrum.
            text = str(exc)
            dropped = False
            for el, fams in list(cfg["peaks"].items()):
                for fam in list(fams):
                    if f"{el} {fam}" in text or f"{fam} xrays for element {el}" in text:
                        fams.remove(fam)
                        dropped = True
                if not fams:
                    del cfg["peaks"][el]
            if not dropped:
                raise
    raise RuntimeError("could not configure PyMca's McaTheory")


def simulate_faithful(stratigraphy, instrument=None, library=None, **kwargs) -> np.ndarray:
    """Expected counts per channel by PyMca's own computation (see :class:`FaithfulSimulator`).

    Parameters
    ----------
    stratigraphy : Stratigraphy
    instrument : Instrument, optional
        Default: ``Instrument()`` (ELIO-like).
    library : PigmentLibrary, optional
        Default: the built-in library.
    **kwargs
        ``readout``, ``live_time_s`` for :meth:`FaithfulSimulator.simulate`; the rest for the
        constructor.

    Returns
    -------
    ndarray of float64, shape (n_channels,)
    """
    from ..pigments import load_pigment_library

    instrument = Instrument() if instrument is None else instrument
    library = load_pigment_library() if library is None else library
    run_kw = {k: kwargs.pop(k) for k in ("readout", "live_time_s") if k in kwargs}
    return FaithfulSimulator(instrument, library, **kwargs).simulate(stratigraphy, **run_kw)
