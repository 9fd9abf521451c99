"""Fast simulator: the faithful path's physics with everything stratigraphy-free cached.

What a stratigraphy changes is only the attenuation and the element concentrations of each
layer, and both are linear in the component mass fractions. So the constructor computes once,
with PyMca's data:

- per tube energy ``E_i`` and line ``j`` of each line group, the production term
  ``w_i T_filters(E_i) tau_e(E_i) W_shell(j)(E_i) p_j`` (normalised tube weight, incident-path
  transmission, photo-absorption of the element, PyMca's vacancy/cascade/yield weights, line
  rate) and the detection term ``T_air,window(E_j) eff_det(E_j)``;
- mass attenuation coefficients of every library component at all tube, line and Compton
  energies, element mass fractions of every component, and Rayleigh/Compton differential
  cross-sections;
- per :class:`~.instrument.Readout`, the detector response matrix: one row per line and per
  scatter peak (hypermet peak plus escape peaks, computed by PyMca's ``fastahypermet``).

Lines weaker than ``line_threshold`` (1e-6) of their group's strongest line are left out.
A batch of stratigraphies is then a few ``(batch, layers, components) @ (components, energies)``
products, exponentials for the layer transmissions, a batched ``(I x J)`` sum per line group
present, and one ``(batch, rows) @ (rows, channels)`` product.

The result equals :class:`~.faithful.FaithfulSimulator` (PyMca's McaTheory +
ConcentrationsTool) to about 1e-6 of the spectrum maximum (the dropped weak lines), including
PyMca's way of setting line ratios inside a group when an element sits in several layers
(``line_ratios="pymca"``, the default: ratios from the
layers' rates at unit concentration, summed). ``line_ratios="exact"`` weights each layer's lines
by its mass fraction instead, which is the physically exact primary fluorescence.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidDataError
from ..pigments import Stratigraphy
from . import _pymca
from ._common import sin_angles
from .scatter import compton_dcs, compton_energy, rayleigh_dcs

# McaTheory drops lines weaker than this fraction of the strongest in their group
# (Elements._filterPeaks(ithreshold=0.00005)) and rescales the others to keep the total.
_PYMCA_ITHRESHOLD = 5.0e-5
_CHUNK_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class Row:
    """One row of the response matrix: a fluorescence line or a scatter peak.

    Attributes
    ----------
    kind : {"line", "rayleigh", "compton"}
    element, family, transition : str
        For lines (``"Pb"``, ``"L"``, ``"L3M5*"``); empty for scatter.
    energy_keV : float
    """

    kind: str
    element: str
    family: str
    transition: str
    energy_keV: float

    @property
    def group(self) -> str:
        """PyMca group name, ``"Pb L"``."""
        return f"{self.element} {self.family}"


@dataclass
class _Group:
    element_index: int
    tube_index: np.ndarray  # (I,) tube energies at or above the family's edge
    lines: slice  # rows of the group's lines
    q: np.ndarray  # (n_shells, I) production term per shell
    shell_row: np.ndarray  # (J,) row of q for each line
    line_factor: np.ndarray  # (J,) line rate x detection
    production: np.ndarray = None  # (I, J) q[shell(j), i] * line_factor[j]

    def __post_init__(self):
        self.production = np.ascontiguousarray(self.q[self.shell_row].T * self.line_factor)


class FastSimulator:
    """Batch simulator with cached physics (see the module docstring).

    Parameters
    ----------
    instrument : Instrument
    library : PigmentLibrary
    min_line_energy_keV : float
        Line families whose strongest line is below this are left out (as in the faithful
        simulator).
    scatter : bool
        Rayleigh and Compton scatter of the excitation spectrum.
    line_ratios : {"pymca", "exact"}
        How lines of an element present in several layers are weighted (module docstring).
    line_threshold : float
        Lines weaker than this fraction of their group's strongest line (thin sample) are left
        out; 0 keeps all lines PyMca lists.
    response_cache : int
        How many readouts' response matrices to keep.
    dtype : numpy dtype
        Of the response matrix and of the spectra :meth:`simulate` returns. float32 (default)
        halves the cost of the final matrix product; counts keep ~7 significant digits.

    Attributes
    ----------
    rows : tuple of Row
        What each column of :meth:`row_areas` and each row of :meth:`response` is: lines
        (group by group, as McaTheory orders them), then Rayleigh, then Compton peaks.
    n_lines : int
        Number of fluorescence rows (they come first).
    components : tuple of str
        Library abbreviations, the last axis of :meth:`encode`'s ``F``.
    elements : tuple of str
        Elements with simulated line groups.
    excitation : Excitation
        The incident spectrum and flux.

    Examples
    --------
    >>> sim = FastSimulator(Instrument(), load_pigment_library())        # doctest: +SKIP
    >>> counts = sim.simulate([strat_a, strat_b])   # (2, 4096) expected counts
    """

    def __init__(self, instrument, library, *, min_line_energy_keV=1.0, scatter=True,
                 line_ratios="pymca", line_threshold=1e-6, response_cache=32,
                 dtype=np.float32):
        if line_ratios not in ("pymca", "exact"):
            raise InvalidDataError(f"line_ratios must be 'pymca' or 'exact', got {line_ratios!r}")
        self.instrument = instrument
        self.library = library
        self.line_ratios = line_ratios
        self.scatter = bool(scatter)
        self.min_line_energy_keV = float(min_line_energy_keV)
        self.line_threshold = float(line_threshold)
        self._response_cache: OrderedDict = OrderedDict()
        self._response_cache_size = int(response_cache)
        self.dtype = np.dtype(dtype)
        self._build()

    # -- constant physics ------------------------------------------------------------------
    def _build(self):
        inst, lib = self.instrument, self.library
        ex = inst.excitation()
        self.excitation = ex
        self.components = lib.abbreviations
        self._component_index = {a: i for i, a in enumerate(self.components)}
        formulas = [lib[a].formula for a in self.components]
        self.s_in, self.s_out = sin_angles(inst)
        self.k = self.s_in / self.s_out
        e_tube = ex.energies
        e_max = float(e_tube.max())
        weights = ex.weights * _pymca.filters_transmission(inst.incident_filters(), e_tube)

        fractions = [_pymca.element_mass_fractions(f) for f in formulas]
        elements = sorted({el for fr in fractions for el, w in fr.items() if w > 0})
        groups = _pymca.fluorescence_groups(elements, e_max, self.min_line_energy_keV)
        group_elements = sorted({el for _, el, _ in groups},
                                key=lambda el: _pymca.Elements.getz(el))
        self.elements = tuple(group_elements)
        self._W = np.array([[fr.get(el, 0.0) for el in group_elements] for fr in fractions])

        rows: list[Row] = []
        self._groups: list[_Group] = []
        out_filters = inst.detector_path_filters()
        for _, el, fam in groups:
            edge = _pymca.binding_energy(el, fam)
            idx = np.nonzero(e_tube >= edge)[0]
            lines = [x for x in _pymca.family_lines(el, fam, e_max) if x[2] > 0]
            if idx.size == 0 or not lines:
                continue
            energies = np.array([x[1] for x in lines])
            shells = np.array([x[3] for x in lines])
            fw = _pymca.fluorescence_weights(el, e_tube[idx])
            q = weights[idx] * fw * _pymca.mu_photo_element(el, e_tube[idx])  # (9, I)
            detect = (_pymca.filters_transmission(out_filters, energies)
                      * _pymca.detector_efficiency(inst.detector, energies))
            factor = np.array([x[2] for x in lines]) * detect
            # Lines below line_threshold of the group's strongest in a thin sample carry no
            # visible signal; dropping them saves a third of the M and L lines.
            thin = q[shells].sum(axis=1) * factor
            keep = thin >= self.line_threshold * thin.max()
            lines, energies, shells, factor = ([x for x, k in zip(lines, keep) if k],
                                               energies[keep], shells[keep], factor[keep])
            used = np.unique(shells)
            start = len(rows)
            rows += [Row("line", el, fam, t, e) for t, e, _, _ in lines]
            self._groups.append(_Group(
                element_index=group_elements.index(el), tube_index=idx,
                lines=slice(start, len(rows)), q=q[used],
                shell_row=np.searchsorted(used, shells), line_factor=factor))
        self.n_lines = len(rows)
        line_energies = np.array([r.energy_keV for r in rows])

        theta = inst.scattering_angle
        e_comp = compton_energy(e_tube, theta)
        self._scatter_keep = e_tube > 0.2  # as McaTheory
        if self.scatter:
            rows += [Row("rayleigh", "", "", "", float(e)) for e in e_tube[self._scatter_keep]]
            rows += [Row("compton", "", "", "", float(e)) for e in e_comp[self._scatter_keep]]
        self.rows = tuple(rows)

        mu = lambda energies: np.array(  # noqa: E731
            [_pymca.mu_total([f], [1.0], energies) for f in formulas]).reshape(len(formulas), -1)
        n_e = e_tube.size
        # One matrix for all energies the layers attenuate: tube | lines | Compton.
        self._mu = np.concatenate([mu(e_tube), mu(line_energies), mu(e_comp)], axis=1)
        self._sl_tube = slice(0, n_e)
        self._sl_line = slice(n_e, n_e + self.n_lines)
        self._sl_comp = slice(n_e + self.n_lines, 2 * n_e + self.n_lines)
        if self.scatter:
            # 4 pi dsigma/dOmega per component, cm2/g.
            coh = np.zeros((len(formulas), n_e))
            inc = np.zeros((len(formulas), n_e))
            per_element = {}
            for i, fr in enumerate(fractions):
                for el, w in fr.items():
                    if w <= 0:
                        continue
                    if el not in per_element:
                        per_element[el] = (rayleigh_dcs(el, theta, e_tube),
                                           compton_dcs(el, theta, e_tube))
                    coh[i] += w * per_element[el][0]
                    inc[i] += w * per_element[el][1]
            self._dcs = 4.0 * np.pi * np.stack([coh, inc])  # (2, n_comp, n_E)
            detect_r = (_pymca.filters_transmission(out_filters, e_tube)
                        * _pymca.detector_efficiency(inst.detector, e_tube))
            detect_c = (_pymca.filters_transmission(out_filters, e_comp)
                        * _pymca.detector_efficiency(inst.detector, e_comp))
            self._scatter_factor = np.stack([weights * detect_r, weights * detect_c])
        self._solid_angle = inst.detector.solid_angle_fraction
        self._inverse_density = np.array([1.0 / lib[a].density for a in self.components])

    # -- encoding ----------------------------------------------------------------------------
    def encode(self, stratigraphies):
        """Compositions and mass thicknesses as arrays.

        Parameters
        ----------
        stratigraphies : sequence of Stratigraphy

        Returns
        -------
        F : ndarray, shape (B, L, n_components)
            Mass fraction of each library component (:attr:`components`) per layer; L is the
            largest number of layers, shorter stratigraphies are padded with empty layers.
        m : ndarray, shape (B, L)
            Mass thickness in g/cm2 (0 for padding).
        """
        n_layers = max(len(s) for s in stratigraphies)
        B = len(stratigraphies)
        F = np.zeros((B, n_layers, len(self.components)))
        thickness = np.zeros((B, n_layers))
        density = np.full((B, n_layers), np.nan)
        index = self._component_index
        for b, strat in enumerate(stratigraphies):
            for l, layer in enumerate(strat.layers):
                row = F[b, l]
                scale = 1.0 - layer.binder_fraction
                try:
                    for abbr, frac in layer.pigments:
                        row[index[abbr]] += frac * scale
                    if layer.binder_fraction > 0:
                        row[index[layer.binder]] += layer.binder_fraction
                except KeyError:
                    layer.check(self.library)  # raises a clear error
                    raise
                thickness[b, l] = layer.thickness_um
                if layer.density is not None:
                    density[b, l] = layer.density
        # Volume-additive density, as Layer.density_g_cm3 (padding layers: 1, thickness 0).
        specific_volume = F @ self._inverse_density
        additive = np.divide(1.0, specific_volume, out=np.ones_like(specific_volume),
                             where=specific_volume > 0)
        density = np.where(np.isnan(density), additive, density)
        return F, density * thickness * 1e-4

    # -- physics per batch -------------------------------------------------------------------
    def row_areas(self, stratigraphies, *, live_time_s=None) -> np.ndarray:
        """Expected counts of every response row (lines, then Rayleigh, then Compton).

        Parameters
        ----------
        stratigraphies : sequence of Stratigraphy
        live_time_s : float or array of shape (B,), optional
            Default: the instrument's.

        Returns
        -------
        ndarray of float64, shape (B, n_rows)
            Column ``r`` is the expected number of counts in the peak :attr:`rows` ``[r]``.
        """
        strats = list(stratigraphies)
        F, m = self.encode(strats)
        B, L, _ = F.shape
        valid = m > 0
        F[~valid, 0] = 1.0  # padding: a real composition (no 0/0) of zero thickness
        live = self.instrument.live_time_s if live_time_s is None else live_time_s
        live = np.broadcast_to(np.asarray(live, dtype=np.float64), (B,))
        if not np.all(live > 0):
            raise InvalidDataError("live times must be > 0 s")
        scale = self.excitation.flux * live * self._solid_angle  # (B,)

        s_in, s_out, k = self.s_in, self.s_out, self.k
        mu = F @ self._mu  # (B, L, n_all) cm2/g
        mt = mu * m[:, :, None]
        tube = self._sl_tube
        mu_e = mu[:, :, tube]
        x_in = np.exp(-mt[:, :, tube] / s_in)  # a layer's own transmission, beam in
        t_in = _above(x_in)  # transmission of the layers above, beam in

        out = np.zeros((B, len(self.rows)))
        if self.n_lines:
            sl = self._sl_line
            y_out = np.exp(-mt[:, :, sl] / s_out)
            t_out = _above(y_out)
            mu_l = mu[:, :, sl]
            conc = (F @ self._W) * valid[:, :, None]  # (B, L, n_elements) mass fractions
            for g in self._groups:
                c = conc[:, :, g.element_index]
                bi, li = np.nonzero(c > 0)
                if bi.size == 0:
                    continue
                I, J = g.tube_index, g.lines
                nj = J.stop - J.start
                rate = np.zeros((B, L, nj))  # per layer, at unit concentration
                # Chunks keep the (pairs, I, J) temporaries in cache.
                step = max(1, _CHUNK_ELEMENTS // (I.size * nj))
                for lo in range(0, bi.size, step):
                    b, l = bi[lo:lo + step], li[lo:lo + step]
                    rate[b, l] = self._group_rates(g, mu_e[b, l][:, I], mu_l[b, l, J],
                                                   t_in[b, l][:, I], x_in[b, l][:, I],
                                                   y_out[b, l, J], t_out[b, l, J])
                if self.line_ratios == "exact":
                    out[:, J] += np.einsum("bl,blj->bj", c, rate) * scale[:, None]
                    continue
                # PyMca: group area from the mass-fraction-weighted rates; line ratios from
                # the unit-concentration rates summed over the layers holding the element.
                total = np.einsum("bl,blj->b", c, rate)
                ratio = rate.sum(axis=1)
                norm = ratio.sum(axis=1, keepdims=True)
                np.divide(ratio, norm, out=ratio, where=norm > 0)
                ratio[ratio < _PYMCA_ITHRESHOLD * ratio.max(axis=1, keepdims=True)] = 0.0
                kept = ratio.sum(axis=1, keepdims=True)
                np.divide(ratio, kept, out=ratio, where=kept > 0)
                out[:, J] = ratio * (total * scale)[:, None]

        if self.scatter:
            keep = self._scatter_keep
            n = int(keep.sum())
            start = self.n_lines
            comp = self._sl_comp
            y_r = np.exp(-mt[:, :, tube] / s_out)
            y_c = np.exp(-mt[:, :, comp] / s_out)
            base = t_in * (1.0 / mu_e)
            ray = np.einsum("ble,ble->be",
                            base * (F @ self._dcs[0]) * (1.0 - x_in * y_r) / (1.0 + k),
                            _above(y_r))
            com = np.einsum("ble,ble->be", t_in * (F @ self._dcs[1]) * (1.0 - x_in * y_c)
                            / (mu_e + k * mu[:, :, comp]), _above(y_c))
            out[:, start:start + n] = (ray * self._scatter_factor[0])[:, keep] * scale[:, None]
            out[:, start + n:start + 2 * n] = ((com * self._scatter_factor[1])[:, keep]
                                               * scale[:, None])
        return out

    def _group_rates(self, g, mu_i, mu_j, t_in, x_in, y_out, t_out):
        """Unit-concentration rates of a group's lines for N (stratigraphy, layer) pairs.

        ``sum_i P_ij T_in,i (1 - X_i Y_j) / (mu_i + k mu_j) * T_out,j``: ``P`` the production
        term, ``X, Y`` the layer's own transmissions in and out, ``T`` those of the layers
        above, ``mu`` the layer's attenuation, ``k = sin(in)/sin(out)``; this is PyMca's
        ``Elements.getFluorescence`` thick-layer formula summed over the tube energies.

        Shapes: ``mu_i, t_in, x_in`` (N, I); ``mu_j, y_out, t_out`` (N, J). Returns (N, J).
        """
        u = mu_i[:, :, None] + self.k * mu_j[:, None, :]  # (N, I, J)
        np.divide(g.production, u, out=u)
        a = np.einsum("ni,nij->nj", t_in, u)
        b = np.einsum("ni,nij->nj", t_in * x_in, u)
        return (a - y_out * b) * t_out

    # -- detector response -------------------------------------------------------------------
    def response(self, readout=None) -> np.ndarray:
        """Detector response matrix for a readout (cached).

        Parameters
        ----------
        readout : Readout, optional
            Default: the instrument's.

        Returns
        -------
        ndarray of :attr:`dtype`, shape (n_rows, n_channels)
            Counts per channel for one count in each row's peak (hypermet + escape peaks,
            exactly as McaTheory draws them).
        """
        readout = self.instrument.readout if readout is None else readout
        cached = self._response_cache.get(readout)
        if cached is not None:
            self._response_cache.move_to_end(readout)
            return cached
        matrix = _response_matrix([r.energy_keV for r in self.rows], readout,
                                  self.instrument.detector.material).astype(self.dtype)
        matrix.setflags(write=False)
        self._response_cache[readout] = matrix
        while len(self._response_cache) > self._response_cache_size:
            self._response_cache.popitem(last=False)
        return matrix

    def simulate(self, stratigraphies, *, readout=None, live_time_s=None, background=None,
                 rng=None) -> np.ndarray:
        """Counts per channel for a batch of stratigraphies.

        Parameters
        ----------
        stratigraphies : Stratigraphy or sequence of Stratigraphy
        readout : Readout, optional
            Calibration/resolution/peak shape; default the instrument's. Each distinct readout
            costs one response-matrix computation (tens of ms), then is cached.
        live_time_s : float or array of shape (B,), optional
            Counting time per spectrum; default the instrument's.
        background : array, shape (n_channels,) or (B, n_channels), optional
            Expected background counts added before noise (e.g. from
            :func:`~.background.snip_background`, scaled by the caller).
        rng : numpy.random.Generator, optional
            If given, Poisson-sample the counts (deterministic for a seeded generator).

        Returns
        -------
        ndarray of :attr:`dtype`, shape (B, n_channels), or (n_channels,) for one Stratigraphy
            Expected counts, or Poisson counts when ``rng`` is given.
        """
        single = isinstance(stratigraphies, Stratigraphy)
        strats = [stratigraphies] if single else list(stratigraphies)
        if not strats:
            raise InvalidDataError("no stratigraphies to simulate")
        areas = self.row_areas(strats, live_time_s=live_time_s)
        counts = areas.astype(self.dtype) @ self.response(readout)
        if background is not None:
            counts += np.asarray(background, dtype=self.dtype)
        if rng is not None:
            counts = poisson(counts, rng).astype(self.dtype)
        return counts[0] if single else counts

    def energy_axis(self, readout=None):
        """Energy axis of the simulated spectra (an :class:`EnergyAxis`)."""
        readout = self.instrument.readout if readout is None else readout
        return readout.energy_axis()

    def line_areas(self, stratigraphy, *, live_time_s=None) -> dict[str, float]:
        """Expected counts per line group (``{"Pb L": ..., "Ca K": ...}``) of one stratigraphy.

        Groups with no counts are left out.
        """
        areas = self.row_areas([stratigraphy], live_time_s=live_time_s)[0]
        out: dict[str, float] = {}
        for row, a in zip(self.rows, areas):
            if row.kind == "line" and a > 0:
                out[row.group] = out.get(row.group, 0.0) + float(a)
        return out


def _above(x):
    """Exclusive cumulative product over layers (axis 1): what the layers above let through."""
    out = np.empty_like(x)
    out[:, 0] = 1.0
    for l in range(1, x.shape[1]):
        np.multiply(out[:, l - 1], x[:, l - 1], out=out[:, l])
    return out


def poisson(expected, rng) -> np.ndarray:
    """Poisson counts (float64) for expected counts, with a numpy Generator."""
    return rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)


@functools.lru_cache(maxsize=4096)
def _escape(material: str, energy: float):
    return tuple(_pymca.escape_peaks(material, energy))


def _response_matrix(energies, readout, detector_material) -> np.ndarray:
    """Rows of unit-area peaks as McaTheory.mcatheory draws them (one peak + its escapes)."""
    # lazy: PyMca5 is heavy
    from PyMca5.PyMcaMath.fitting import SpecfitFuns

    x = readout.energies()
    gain = readout.gain_keV
    noise = readout.noise_keV ** 2
    fano = readout.fano * 2.3548 * 2.3548 * 0.00385
    flag = readout.hypermet_flag
    matrix = np.zeros((len(energies), x.size))
    for i, e in enumerate(energies):
        peaks = [[gain, e, np.sqrt(noise + e * fano), readout.st_area_ratio,
                  readout.st_slope_ratio, readout.lt_area_ratio, readout.lt_slope_ratio,
                  readout.step_height_ratio]]
        if readout.escape:
            for e_esc, rate in _escape(detector_material, float(e)):
                # McaTheory: no tails or step on escape peaks, width from noise only below 0.
                peaks.append([gain * rate, e_esc, np.sqrt(noise + max(e_esc, 0.0) * fano), 0.0,
                              readout.st_slope_ratio, 0.0, readout.lt_slope_ratio, 0.0])
        matrix[i] = SpecfitFuns.fastahypermet(np.asarray(peaks, dtype=np.float64), x, flag)
    return matrix
