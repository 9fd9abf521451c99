"""Thin wrappers around PyMca's atomic data (imported only by the simulators).

Everything here returns numpy arrays and plain Python types, so the simulators do not depend
on PyMca's dictionary layouts.
"""

from __future__ import annotations

import functools

import numpy as np
from PyMca5.PyMcaPhysics.xrf import Elements

FAMILIES = ("K", "L", "M")
# Shell whose edge opens a family, as in Elements.getMultilayerFluorescence.
_FAMILY_EDGE = {"K": "K", "L": "L3", "M": "M5"}
# Index of a transition's initial shell in Elements._getFluorescenceWeights output.
SHELLS = ("K", "L1", "L2", "L3", "M1", "M2", "M3", "M4", "M5")


def shell_index(transition: str) -> int:
    """Index in :data:`SHELLS` of the vacancy a transition fills (``"L3M5*"`` -> 3)."""
    if transition[0] == "K":
        return 0
    return SHELLS.index(transition[0:2])


@functools.lru_cache(maxsize=512)
def element_mass_fractions(formula: str) -> dict[str, float]:
    """Element mass fractions of a formula with PyMca's atomic weights."""
    return dict(Elements.getMaterialMassFractions([formula], [1.0]))


def mixture_mass_fractions(compounds, fractions) -> dict[str, float]:
    """Element mass fractions of a mixture of formulas (fractions normalised)."""
    total = float(sum(fractions))
    out: dict[str, float] = {}
    for c, f in zip(compounds, fractions):
        for el, w in element_mass_fractions(c).items():
            out[el] = out.get(el, 0.0) + w * f / total
    return out


def mu_total(compounds, fractions, energies) -> np.ndarray:
    """Total mass attenuation coefficient (cm2/g) of a mixture at the energies (keV)."""
    energies = np.atleast_1d(np.asarray(energies, dtype=np.float64))
    d = Elements.getMaterialMassAttenuationCoefficients(list(compounds), list(fractions),
                                                        energies.tolist())
    return np.asarray(d["total"], dtype=np.float64)


def mu_photo_element(element: str, energies) -> np.ndarray:
    """Photoelectric mass absorption coefficient (cm2/g) of an element."""
    energies = np.atleast_1d(np.asarray(energies, dtype=np.float64))
    d = Elements.getMaterialMassAttenuationCoefficients(element, 1.0, energies.tolist())
    return np.asarray(d["photo"], dtype=np.float64)


def filters_transmission(filters, energies) -> np.ndarray:
    """Transmission ``exp(-sum mu rho t)`` of Filter slabs (PyMca attenuators)."""
    energies = np.atleast_1d(np.asarray(energies, dtype=np.float64))
    coeff = np.zeros(energies.shape)
    for f in filters:
        comps, fracs = f.compound_list()
        coeff += f.mass_thickness_g_cm2 * mu_total(comps, fracs, energies)
    return np.exp(-coeff)


def detector_efficiency(detector, energies) -> np.ndarray:
    """``1 - exp(-mu rho t)`` of the detector crystal (PyMca's 'Detector' term)."""
    energies = np.atleast_1d(np.asarray(energies, dtype=np.float64))
    mt = detector.density * detector.thickness_um * 1e-4
    return 1.0 - np.exp(-mt * mu_total([detector.material], [1.0], energies))


def binding_energy(element: str, family: str) -> float:
    """Edge (keV) that opens a line family (K, L3 or M5)."""
    return float(Elements.Element[element]["binding"][_FAMILY_EDGE[family]])


def family_lines(element: str, family: str, max_energy: float):
    """Lines of a family as PyMca's multilayer fluorescence lists them.

    Returns
    -------
    list of (transition, energy_keV, radiative_rate, shell_index)
    """
    d = Elements._getUnfilteredElementDict(element, max_energy)
    rays = family + " xrays"
    out = []
    for t in d.get(rays, []):
        out.append((t, float(d[t]["energy"]), float(d[t]["rate"]), shell_index(t)))
    return out


def fluorescence_groups(elements, max_energy: float, min_line_energy: float = 1.0):
    """Line families worth simulating, sorted as McaTheory sorts its peaks.

    A family is kept when the excitation reaches its edge and its strongest line lies at or
    above ``min_line_energy`` keV (lighter lines do not survive air and window).

    Returns
    -------
    list of (Z, element, family)
    """
    out = []
    for el in elements:
        if el not in Elements.Element:
            continue
        for fam in FAMILIES:
            try:
                edge = binding_energy(el, fam)
            except KeyError:
                continue
            if not (0 < edge <= max_energy):
                continue
            lines = family_lines(el, fam, max_energy)
            if not lines:
                continue
            strongest = max(lines, key=lambda x: x[2])
            if strongest[1] >= min_line_energy:
                out.append((Elements.getz(el), el, fam))
    out.sort()
    return out


def fluorescence_weights(element: str, energies) -> np.ndarray:
    """Vacancies per photoionisation times fluorescence yield, per shell.

    PyMca's ``_getFluorescenceWeights(normalize=False, cascade=True)``.

    Returns
    -------
    ndarray, shape (9, n_E)
        Rows follow :data:`SHELLS`.
    """
    energies = np.atleast_1d(np.asarray(energies, dtype=np.float64))
    out = np.zeros((len(SHELLS), energies.size))
    for i, e in enumerate(energies):
        w = Elements._getFluorescenceWeights(element, float(e), normalize=False, cascade=True)
        out[:, i] = w[: len(SHELLS)]
    return out


def escape_peaks(detector_material: str, energy: float, ethreshold=0.020, ithreshold=1.0e-7,
                 nthreshold=4):
    """Escape peaks of a line in the detector, as McaTheory computes them.

    Returns
    -------
    list of (energy_keV, rate relative to the parent peak)
    """
    esc = Elements.getEscape([detector_material, 1.0, 1.0], float(energy), ethreshold=ethreshold,
                             ithreshold=ithreshold, nthreshold=nthreshold)
    return [(float(e), float(r)) for e, r, _ in esc]
