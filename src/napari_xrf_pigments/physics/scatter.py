"""Rayleigh and Compton differential cross-sections (cm2/g/sr) for unpolarised photons.

Rayleigh: PyMca's ``Elements.getElementCoherentDifferentialCrossSection`` (Thomson times the
squared atomic form factor); integrated over the sphere it reproduces XCOM's coherent
cross-sections to about 0.5 %.

Compton: PyMca's ``IncoherentScattering.getElementComptonDifferentialCrossSection`` squares the
incoherent scattering function S(x, Z) together with r0 * E'/E, i.e. it returns
``KN(theta) * S**2`` instead of ``KN(theta) * S``. S is in electron units (up to Z), so it
over-counts by a factor ~S: 5x for carbon, 50x for lead at 30 keV. :func:`compton_dcs` uses the
Klein-Nishina cross-section times S once; integrated over the sphere it agrees with XCOM's
incoherent cross-sections (``Elements.getmassattcoef(...)['compton']``) to about 0.2 %, which a
test checks.
"""

from __future__ import annotations

import numpy as np

# Classical electron radius (CODATA 2018), cm.
R0_CM = 2.8179403262e-13
AVOGADRO = 6.02214076e23
ELECTRON_MASS_KEV = 510.99895


def compton_energy(energy_keV, theta_deg):
    """Energy (keV) of a photon Compton-scattered by ``theta_deg`` degrees."""
    e = np.asarray(energy_keV, dtype=np.float64)
    return e / (1.0 + (e / 511.0) * (1.0 - np.cos(np.radians(theta_deg))))


def compton_dcs(element: str, theta_deg: float, energies_keV) -> np.ndarray:
    """Incoherent differential cross-section of an element, cm2/g/sr.

    Klein-Nishina times the incoherent scattering function S(x, Z) (PyMca's tabulation,
    with its Fajardo momentum-transfer variable).

    Parameters
    ----------
    element : str
    theta_deg : float
        Scattering angle.
    energies_keV : array-like, shape (n,)

    Returns
    -------
    ndarray, shape (n,)
    """
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaPhysics.xrf import Elements, IncoherentScattering

    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    th = np.radians(theta_deg)
    # Same Compton energy as PyMca (which uses 511 keV for the electron mass).
    ratio = compton_energy(energies, theta_deg) / energies
    s = np.array([IncoherentScattering.getElementIncoherentScatteringFunction(element, theta_deg,
                                                                              float(e))
                  for e in energies])
    kn = 0.5 * R0_CM ** 2 * ratio ** 2 * (ratio + 1.0 / ratio - np.sin(th) ** 2)
    return kn * s * AVOGADRO / Elements.Element[element]["mass"]


def rayleigh_dcs(element: str, theta_deg: float, energies_keV) -> np.ndarray:
    """Coherent differential cross-section of an element, cm2/g/sr (PyMca)."""
    from PyMca5.PyMcaPhysics.xrf import Elements

    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    return np.array([Elements.getElementCoherentDifferentialCrossSection(element, theta_deg,
                                                                         float(e))
                     for e in energies])


def pymca_compton_dcs(element: str, theta_deg: float, energies_keV) -> np.ndarray:
    """PyMca's own (over-counting) Compton differential cross-section, for comparison."""
    from PyMca5.PyMcaPhysics.xrf import Elements

    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    return np.array([Elements.getElementComptonDifferentialCrossSection(element, theta_deg,
                                                                        float(e))
                     for e in energies])


def mixture_dcs(element_fractions: dict, theta_deg: float, energies_keV):
    """Rayleigh and Compton differential cross-sections of a mixture, cm2/g/sr.

    Parameters
    ----------
    element_fractions : dict of str to float
        Element mass fractions.

    Returns
    -------
    rayleigh, compton : ndarray, shape (n,)
    """
    energies = np.atleast_1d(np.asarray(energies_keV, dtype=np.float64))
    coh = np.zeros(energies.shape)
    inc = np.zeros(energies.shape)
    for el, w in element_fractions.items():
        if w > 0:
            coh += w * rayleigh_dcs(el, theta_deg, energies)
            inc += w * compton_dcs(el, theta_deg, energies)
    return coh, inc
