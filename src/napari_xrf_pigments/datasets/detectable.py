"""Detectable labels: a pigment counts where its own lines reach the detector above noise.

The "present" label says a pigment is somewhere in the paint stack, even under 200 um of
vermilion that no chromium X-ray leaves. The *detectable* label asks the physics instead: the
spectrum is simulated once more with the pigment's materials replaced by the layer's binder
(same mass), and the pigment is detectable when, in the windows of its evidence elements' main
lines (+-1 FWHM), the counts it adds exceed ``DETECTABLE_SIGMA`` times the square root of the
counts of everything else there, for every one of its evidence elements.

A pigment without evidence elements (ultramarine: no line above the 2.8 keV crop) changes only
scatter and attenuation: it is detectable when the whole spectrum differs from the one without
it by ``DETECTABLE_SIGMA`` (the Poisson likelihood-ratio distance, ``sqrt(sum((e - o)**2 / o))``).
"""

from __future__ import annotations

import numpy as np

from ..lines import element_lines
from ..pigments import Layer, Stratigraphy

#: Net counts of a pigment's lines over the square root of the other counts in their windows.
DETECTABLE_SIGMA = 3.0
#: Lines weaker than this share of their family are left out of the windows.
_MIN_RATE = 0.05


def without_class(stratigraphy, cls: str, library):
    """The stratigraphy with every material of class ``cls`` replaced by its layer's binder.

    For a group, the materials of all its members go. A layer made of nothing else becomes a
    layer of binder of the same thickness.
    """
    members = library.members_of(cls)
    layers = []
    for layer in stratigraphy.layers:
        removed = sum(f for a, f in layer.pigments if library[a].label in members)
        if removed == 0:
            layers.append(layer)
            continue
        kept = {a: f for a, f in layer.pigments if library[a].label not in members}
        pigment_share = (1.0 - layer.binder_fraction) * (1.0 - removed)
        if not kept or pigment_share <= 0:
            layers.append(Layer({layer.binder: 1.0}, layer.thickness_um, binder=layer.binder))
            continue
        layers.append(Layer(kept, layer.thickness_um, binder=layer.binder,
                            binder_fraction=1.0 - pigment_share))
    return Stratigraphy(layers)


def line_windows(elements, energies_keV, fwhm_keV) -> np.ndarray:
    """Channels within +-1 FWHM of the main lines of ``elements``; bool (n_elements, channels)."""
    e = np.asarray(energies_keV, dtype=np.float64)
    out = np.zeros((len(elements), e.size), dtype=bool)
    for i, element in enumerate(elements):
        for line in element_lines(element, min_rate=_MIN_RATE):
            if e[0] <= line.energy <= e[-1]:
                out[i] |= np.abs(e - line.energy) <= fwhm_keV(line.energy)
    return out


def detectable_labels(strata, present, classes, simulator, library, *, live_time_s,
                      readout=None, expected=None, background=None) -> np.ndarray:
    """Which present classes are detectable in each spectrum.

    Parameters
    ----------
    strata : sequence of Stratigraphy, length n
    present : ndarray of bool, shape (n, n_classes)
        The "present" labels of ``strata``.
    classes : sequence of str
    simulator : FastSimulator
    library : PigmentLibrary
    live_time_s : float or ndarray of shape (n,)
    readout : Readout, optional
        Default the simulator instrument's.
    expected : ndarray, shape (n, channels), optional
        The expected counts of ``strata`` if already simulated (with ``background``).
    background : ndarray, shape (n, channels), optional
        Expected counts added to every spectrum (a measured background).

    Returns
    -------
    ndarray of bool, shape (n, n_classes)
        A subset of ``present``.
    """
    readout = simulator.instrument.readout if readout is None else readout
    live = np.broadcast_to(np.asarray(live_time_s, dtype=np.float64), (len(strata),))
    if expected is None:
        expected = simulator.simulate(list(strata), readout=readout, live_time_s=live)
        if background is not None:
            expected = expected + background
    detectable = np.array(present, dtype=bool, copy=True)
    energies = readout.energies()
    for j, cls in enumerate(classes):
        rows = np.flatnonzero(detectable[:, j])
        if rows.size == 0:
            continue
        evidence = library.evidence_of(cls)
        windows = line_windows(evidence, energies, readout.fwhm_keV) if evidence else None
        if evidence and not windows.any(axis=1).all():  # an evidence element with no line in range
            detectable[rows, j] = False
            continue
        others = simulator.simulate([without_class(strata[i], cls, library) for i in rows],
                                    readout=readout, live_time_s=live[rows])
        if background is not None:
            others = others + background[rows]
        if windows is None:
            distance = np.sqrt(np.sum((expected[rows] - others) ** 2 / np.maximum(others, 1.0),
                                      axis=1))
            detectable[rows, j] = distance >= DETECTABLE_SIGMA
            continue
        signal = (expected[rows] - others) @ windows.T.astype(np.float64)  # (rows, elements)
        noise = np.sqrt(np.maximum(others @ windows.T.astype(np.float64), 1.0))
        detectable[rows, j] = np.all(signal >= DETECTABLE_SIGMA * noise, axis=1)
    return detectable
