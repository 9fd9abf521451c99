"""Element evidence for pigment calls, and the signal no call explains.

The network names pigments; this module checks, pixel by pixel, that the spectrum holds the
elements each named pigment needs (emerald green: Cu *and* As), and scores what is left over.

1. **Element significance** (:class:`ElementFit`). Every spectrum on the model's energy grid is
   fitted by weighted linear least squares with one template per element line family (K, L
   or M lines at PyMca's rates and peak shape, Si escape included), cubic B-splines (the
   continuum) and the main components of the block's own residuals (Compton humps, edges,
   pile-up shared by many pixels). Where a family is strong in a pixel, its line groups are
   freed so that their ratios can follow excitation and absorption. Significance is
   amplitude / standard error, with Poisson variance of the fit plus a 10 % systematic share
   (peak shapes are never exact, so a strong peak's misfit must not read as a trace element
   beside it) plus what a 10 eV shift or 5 % width error of every other family would leak
   into it through the estimator (As Ka sits on Pb La). An element's significance is the
   largest of its families'.
2. **Evidence rule** (:func:`apply_evidence`). A pigment's probability is multiplied by a gate
   that is 0 while the weakest of its evidence elements is below 1 sigma and 1 from 2.5 sigma
   up (linear between). Pigments that declare no evidence elements (an organic lake on a
   substrate without lines) are multiplied by ``1 - unexplained`` instead: they are not called
   where the spectrum holds signal that nothing called explains.
3. **Unexplained signal.** An element is *unexplained* at a pixel to the degree that it is
   significant (0 at 3 sigma, 1 at 5 sigma) and no pigment that contains it is called there
   (``1 - min(1, 2 max p)`` over the checked probabilities ``p`` of those pigments). The ground's
   elements (Ca), air (Ar) and the
   tube anode (scattered tube lines) are always explained. The ``unexplained`` score of a pixel
   is the largest element score.

Everything here is numpy on blocks of spectra; it runs beside the network in the predictor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from .lines import _elements, element_lines
from .model.preflight import cube_tube
from .physics.instrument import Readout, fwhm_at

#: Elements fitted: those of painting materials with lines above the model's 2.8 keV crop.
CANDIDATE_ELEMENTS = (
    "Ar", "K", "Ca", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "As", "Se", "Br",
    "Rb", "Sr", "Zr", "Mo", "Pd", "Rh", "Ag", "Cd", "Sn", "Sb", "I", "Ba", "W", "Pt", "Au",
    "Hg", "Pb", "Bi",
)
#: Tube anodes looked for when a cube does not say which it has.
TUBE_ANODES = ("Rh", "W", "Mo", "Ag", "Pd")
#: Pixels of the first block fitted to guess the anode when the cube does not name it.
TUBE_GUESS_PIXELS = 512
#: Always explained: air on the beam path.
AIR_ELEMENTS = ("Ar",)
#: FWHM at Mn Ka of a typical silicon drift detector, keV (when the cube does not say).
DEFAULT_RESOLUTION_KEV = 0.15
#: Relative systematic error of a fitted peak shape, added to the Poisson variance.
SYSTEMATIC_FRACTION = 0.1
#: Calibration shift (keV) and relative peak-width error a template may have; their leak
#: into other families' amplitudes counts as uncertainty.
SHIFT_ERROR_KEV = 0.010
WIDTH_ERROR = 0.05
#: Evidence gate: 0 below ``GATE_SIGMA[0]``, 1 above ``GATE_SIGMA[1]``.
GATE_SIGMA = (1.0, 2.5)
#: Unexplained score: 0 below ``UNEXPLAINED_SIGMA[0]``, 1 above ``UNEXPLAINED_SIGMA[1]``.
UNEXPLAINED_SIGMA = (3.0, 5.0)
_SPLINE_SPACING_KEV = 1.5
#: Channel width (keV) the evidence fit works on (finer model grids are summed to it).
FIT_STEP_KEV = 0.04
#: Main components of a block's fit residuals added to its basis.
EMPIRICAL_COMPONENTS = 6
#: Most pixels of a block whose residuals the empirical components are taken from.
COMPONENT_PIXELS = 1024
#: A family this significant in a pixel (first pass) gets its line groups freed there.
STRONG_SIGMA = 30.0
_FANO = 0.114
#: Line templates per (grid, families, resolution), shared by the fits of all cubes.
_TEMPLATE_CACHE: dict = {}
_TEMPLATE_CACHE_SIZE = 32


def _group_name(line) -> str:
    """Line group of a line: K lines as Ka / Kb, L lines by the subshell of the vacancy.

    Lines from one L subshell keep fixed ratios whatever the excitation (radiative rates);
    the share of each subshell does not (it follows the beam spectrum and Coster-Kronig
    transfers), so each subshell is a group of its own. L3 lines are split into the M-shell
    ones (La, Ll) and the rest, 2 keV apart, whose ratio moves with absorption in the paint.
    """
    if line.family == "M":
        return "M"
    if line.family == "K":
        return "Ka" if line.transition.startswith("KL") else "Kb"
    subshell = line.transition[:2]
    if subshell == "L3":
        return "L3a" if line.transition.startswith("L3M") else "L3b"
    return subshell


def line_groups(symbol: str, lo_keV: float, hi_keV: float) -> dict:
    """Line groups of an element inside an energy range.

    Returns
    -------
    dict of group name -> list of (energy keV, rate)
        Rates are relative within the family (PyMca's tables). Group names are ``Ka``, ``Kb``,
        ``L1``, ``L2``, ``L3a``, ``L3b`` or ``M``, with a ``+`` for each of the element's own
        absorption edges inside the range below the lines.
    """
    binding = _elements().Element[symbol]["binding"]
    # The element's own absorption edges split a group: lines above an edge are absorbed by
    # the element itself far more than those below, so their ratio follows its concentration.
    edges = sorted(float(binding[s]) for s in ("K", "L1", "L2", "L3")
                   if lo_keV < binding.get(s, 0) < hi_keV)
    groups: dict = {}
    for line in element_lines(symbol, min_rate=0.0):
        if lo_keV <= line.energy <= hi_keV:
            band = sum(e < line.energy for e in edges)
            groups.setdefault(f"{_group_name(line)}{'+' * band}", []).append((line.energy, line.rate))
    return groups


def _splines(grid, spacing_keV):
    """Cubic B-splines over the grid, knots every ``spacing_keV``; shape (channels, n)."""
    # lazy: scipy is heavy
    from scipy.interpolate import BSpline

    lo, hi = float(grid[0]), float(grid[-1])
    n_inner = max(2, int(math.ceil((hi - lo) / spacing_keV)) + 1)
    inner = np.linspace(lo, hi, n_inner)
    knots = np.concatenate([[lo] * 3, inner, [hi] * 3])
    return BSpline.design_matrix(np.clip(grid, lo, hi), knots, 3).toarray()


@dataclass
class Significance:
    """Element significance of a block of spectra.

    Attributes
    ----------
    z : ndarray of float32, shape (n, n_elements)
        Largest family amplitude / standard error per element ("sigmas"); NaN for spectra
        without counts, -inf where no family of the element can be seen (tube scatter).
    elements : tuple of str
    """

    z: np.ndarray
    elements: tuple[str, ...]


class ElementFit:
    """Weighted linear fit of element line families on a fixed, evenly spaced energy grid.

    Each element family (K, L or M lines inside the grid) is tested with one template whose
    line ratios are PyMca's tabulated rates: an absent element cannot borrow the misfit of a
    neighbour's single line. Families that are strong in a pixel also get one column per
    further line group there (Kb; each L subshell, split at the element's own edges), so that
    their ratios can follow the excitation and absorption in the paint and their misfit does
    not leak into neighbours.

    Parameters
    ----------
    grid_keV : ndarray, shape (channels,)
        Channel centres (the model's grid), evenly spaced, increasing.
    elements : sequence of str, optional
        Candidate elements (default :data:`CANDIDATE_ELEMENTS`); those with no line in the
        grid's range are dropped.
    resolution_keV : float
        Detector FWHM at Mn Ka, keV.
    tube : str, optional
        Tube anode: families whose main line falls among its scattered lines (Rayleigh peak and
        Compton hump) are fitted but never counted as seen.
    """

    def __init__(self, grid_keV, elements=None, *, resolution_keV: float = DEFAULT_RESOLUTION_KEV,
                 tube: str | None = None):
        grid = np.asarray(grid_keV, dtype=np.float64)
        step = np.diff(grid)
        if grid.size < 16 or not np.allclose(step, step[0], rtol=1e-6, atol=0):
            raise ValueError("the evidence fit needs an evenly spaced grid of >= 16 channels")
        self.grid = grid
        lo, hi = float(grid[0] - step[0] / 2), float(grid[-1] + step[0] / 2)
        scatter = _scatter_regions(tube)
        families, corrections, kept = [], [], []
        for symbol in elements or CANDIDATE_ELEMENTS:
            found = line_groups(symbol, lo, hi)
            if not found:
                continue
            kept.append(symbol)
            by_family: dict = {}
            for group, lines in found.items():
                by_family.setdefault(group[0], []).append(lines)
            for family, groups in by_family.items():
                lines = [ln for g in groups for ln in g]
                main = max(lines, key=lambda t: t[1])[0]
                confused = any(a - 0.1 <= main <= b + 0.1 for a, b in scatter)
                families.append((len(kept) - 1, f"{symbol} {family}", lines, confused))
                # The strongest group is the family column's main part; the others may vary.
                strongest = max(groups, key=lambda g: sum(r for _, r in g))
                corrections += [(len(families) - 1, g) for g in groups if g is not strongest]
        self.elements = tuple(kept)
        self.tube = tube
        self.family_names = tuple(f[1] for f in families)
        self._families = families
        self._corrections = corrections
        self._owner = np.asarray([f[0] for f in families])
        self._counted = np.asarray([not f[3] for f in families])
        self._background = _splines(grid, _SPLINE_SPACING_KEV)
        self.set_resolution(resolution_keV)

    def set_resolution(self, resolution_keV: float) -> None:
        """Redraw the line templates for a detector FWHM at Mn Ka (keV)."""
        from .physics.fast import _response_matrix

        noise = float(fwhm_at(0.0, resolution_keV, _FANO))
        step = float(self.grid[1] - self.grid[0])
        # PyMca's peak shape (hypermet tails, step and Si escape), as the simulator draws it.
        readout = Readout(zero_keV=float(self.grid[0]), gain_keV=step, n_channels=self.grid.size,
                          noise_keV=noise, fano=_FANO)

        def template(lines, shift=0.0, ro=readout):
            energies, rates = zip(*lines)
            column = np.asarray(rates) @ _response_matrix(np.add(energies, shift), ro, "Si1")
            return column / max(column.sum(), 1e-30)

        self.resolution_keV = float(resolution_keV)
        # Drawing ~2,000 templates costs about 0.1 s per resolution; every cube of the same grid
        # and candidate elements tries the same resolutions, so they are kept.
        key = (self.grid.tobytes(), self.family_names, self.resolution_keV)
        columns = _TEMPLATE_CACHE.get(key)
        if columns is None:
            columns = (
                np.array([template(f[2]) for f in self._families]).T,
                np.array([template(g) for _, g in self._corrections]).T.reshape(
                    self.grid.size, len(self._corrections)),
            )
            if len(_TEMPLATE_CACHE) >= _TEMPLATE_CACHE_SIZE:
                _TEMPLATE_CACHE.pop(next(iter(_TEMPLATE_CACHE)))
            _TEMPLATE_CACHE[key] = columns
        self._family_columns, self._correction_columns = columns
        self._template = template
        self._readout = readout
        self._derivatives = None

    def _misfit_shapes(self):
        """How each family's template, then each further line group's, changes with a
        calibration shift of ``SHIFT_ERROR_KEV`` and a relative width error of ``WIDTH_ERROR``:
        (channels, 2 x (families + groups)), shifts first."""
        if self._derivatives is None:
            h, e = SHIFT_ERROR_KEV, WIDTH_ERROR
            ro = self._readout
            wide = dataclasses.replace(ro, noise_keV=ro.noise_keV * (1 + e), fano=ro.fano * (1 + e) ** 2)
            narrow = dataclasses.replace(ro, noise_keV=ro.noise_keV * (1 - e), fano=ro.fano * (1 - e) ** 2)
            lines = [f[2] for f in self._families] + [g for _, g in self._corrections]
            shift = [(self._template(ln, h) - self._template(ln, -h)) / 2 for ln in lines]
            width = [(self._template(ln, ro=wide) - self._template(ln, ro=narrow)) / 2 for ln in lines]
            self._derivatives = np.hstack([np.array(shift).T, np.array(width).T])
        return self._derivatives

    def estimate_resolution(self, counts, candidates_keV=(0.12, 0.13, 0.14, 0.15, 0.16, 0.18, 0.20)) -> float:
        """Set and return the FWHM at Mn Ka (keV) that best fits the summed spectra."""
        total = np.asarray(counts, dtype=np.float64).reshape(-1, self.grid.size).sum(axis=0)
        weights = 1.0 / (total + 0.01 * total.mean() + 1e-12)
        best = (math.inf, self.resolution_keV)
        for resolution in candidates_keV:
            self.set_resolution(resolution)
            basis = np.hstack([self._family_columns, self._correction_columns, self._background])
            residual = total - basis @ (_solver(basis, weights) @ total)
            best = min(best, (float(np.sum(residual**2 * weights)), resolution))
        self.set_resolution(best[1])
        return best[1]

    def _free_groups(self, strong) -> list:
        """Indices of the further line groups of the families marked in ``strong`` (bool, families)."""
        return [j for j, (f, _) in enumerate(self._corrections) if strong[f]]

    def fit(self, counts) -> Significance:
        """Significance of every candidate element in each spectrum.

        Parameters
        ----------
        counts : array-like, shape (n, channels)
            Counts per grid channel (e.g. a block of a cube resampled onto the model grid).

        Returns
        -------
        Significance
        """
        x = np.asarray(counts, dtype=np.float64)
        n, n_el = x.shape[0], len(self.elements)
        z = np.full((n, n_el), np.nan, np.float32)
        keep = np.flatnonzero(x.sum(axis=1) > 0)
        if keep.size == 0:
            return Significance(z, self.elements)
        xk = x[keep]
        mean = xk.mean(axis=0)
        # Weights from the block's mean spectrum (variance ~ counts): the estimator stays
        # unbiased for every pixel, only its efficiency depends on them.
        weights = 1.0 / (mean + 0.01 * mean.mean() + 1e-12)
        families = self._family_columns
        n_f = families.shape[1]
        basis = np.hstack([families, self._background])
        # What the templates miss systematically (Compton humps, absorption edges in the
        # continuum, pile-up) is shared by many pixels of a block: the main components of the
        # block's whitened residuals become columns too, so they are not read as trace elements.
        # A component shaped like one element's lines would hide that element: left out.
        solver = _solver(basis, weights)
        first = xk @ solver.T
        if keep.size > 2 * EMPIRICAL_COMPONENTS:
            # The residuals are taken with the line groups of the block's strong families
            # freed, as in the final fit: otherwise a strong element's line-ratio misfit
            # becomes a component, and with its groups freed too, what that component and
            # the groups do not share is read as a neighbour (Br under thick vermilion's Hg L).
            # Components shared by many pixels show as well in an even sample of them.
            sample = slice(None, None, max(1, keep.size // COMPONENT_PIXELS))
            z0 = first[sample, :n_f] / np.sqrt(_variance(first[sample], basis, solver[:n_f]))
            free = self._free_groups(np.any(z0 >= STRONG_SIGMA, axis=0))
            fitted = np.hstack([families, self._correction_columns[:, free]])
            wide = np.hstack([fitted, self._background])
            root_w = np.sqrt(weights)
            residual = (xk[sample] - (xk[sample] @ _solver(wide, weights).T) @ wide.T) * root_w
            residual = residual.astype(np.float32)  # directions need no more digits; 2x faster
            covariance = residual.T @ residual
            n_ch = covariance.shape[0]
            # Only the main components are needed: a subset solve costs a third of a full one.
            _, top = scipy.linalg.eigh(covariance, subset_by_index=[n_ch - EMPIRICAL_COMPONENTS, n_ch - 1],
                                       driver="evr")
            lines_w = fitted * root_w[:, None]
            lines_w /= np.linalg.norm(lines_w, axis=0)
            top = top[:, np.max(np.abs(lines_w.T @ top), axis=0) < 0.8]
            empirical = top / root_w[:, None]
            basis = np.hstack([basis, empirical / np.abs(empirical).sum(axis=0)])
            solver = _solver(basis, weights)
            first = xk @ solver.T
        # Families strong in a pixel get their line groups freed there (see the class
        # docstring); pixels sharing the same strong families share one solver.
        z_first = first[:, :n_f] / np.sqrt(_variance(first, basis, solver[:n_f]))
        strong = z_first >= STRONG_SIGMA
        # Rows of booleans packed into bytes: np.unique on them is ~50x faster than on rows.
        packed = np.ascontiguousarray(np.packbits(strong, axis=1))
        packed = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first_of, which = np.unique(packed, return_index=True, return_inverse=True)
        which = which.ravel()
        family_z = np.empty((keep.size, n_f))
        for k, pattern in enumerate(strong[first_of]):
            rows = np.flatnonzero(which == k)
            free = self._free_groups(pattern)
            if free:
                b = np.hstack([families, self._correction_columns[:, free], basis[:, n_f:]])
                sol = _solver(b, weights)
                amp = xk[rows] @ sol.T
            else:
                b, sol, amp = basis, solver, first[rows]
            variance = _variance(amp, b, sol[:n_f])
            # A strong neighbour's small shift or width error leaks into a family through the
            # estimator; that leak is systematic (correlated over channels), so it is added as
            # such: for every other family and freed line group, its amplitude times the leak
            # of its misfit shapes.
            shapes = self._misfit_shapes().reshape(self.grid.size, 2, -1)
            fitted = np.r_[np.arange(n_f), n_f + np.asarray(free, dtype=int)]
            leak = np.einsum("fc,ckj->fkj", sol[:n_f], shapes[:, :, fitted])
            owner = np.r_[np.arange(n_f), [self._corrections[j][0] for j in free]].astype(int)
            leak[owner, :, np.arange(owner.size)] = 0.0  # a family's own misfit is no sign of it
            variance = variance + (amp[:, : owner.size] ** 2) @ (leak**2).sum(axis=1).T
            family_z[rows] = amp[:, :n_f] / np.sqrt(variance)
        family_z[:, ~self._counted] = -np.inf
        element_z = np.full((keep.size, n_el), -np.inf)
        for j in range(n_f):
            i = self._owner[j]
            np.maximum(element_z[:, i], family_z[:, j], out=element_z[:, i])
        z[keep] = element_z
        return Significance(z, self.elements)


def _variance(amplitude, basis, solver_rows):
    """Variance of fitted amplitudes: Poisson variance of the fitted model (at least a quarter
    count per channel) plus a systematic share, as peak shapes are never exact."""
    # float32 halves the cost of the two largest products; a variance needs no more digits.
    model = amplitude.astype(np.float32) @ basis.T.astype(np.float32)
    np.clip(model, 0.0, None, out=model)
    per_channel = np.maximum(model, 0.25) + (SYSTEMATIC_FRACTION * model) ** 2
    return (per_channel @ (solver_rows**2).T.astype(np.float32)).astype(np.float64)


def _solver(basis, weights):
    """Rows of the weighted least-squares estimator, shape (columns, channels)."""
    bw = basis * weights[:, None]
    normal = basis.T @ bw
    # A whisper of ridge keeps exactly collinear columns solvable; they stay uncertain.
    normal[np.diag_indices_from(normal)] += 1e-9 * np.trace(normal) / normal.shape[0]
    return np.linalg.solve(normal, bw.T)


def _scatter_regions(tube):
    """(low, high) keV of the tube's lines above 15 keV and their Compton humps (any angle).

    Below 15 keV the Compton shift is within a peak width or two and the tube's own line
    template takes the scatter."""
    if not tube:
        return []

    out = []
    for line in element_lines(tube, ("K", "L"), min_rate=0.05):
        if line.energy > 15.0:
            e = line.energy
            out.append((e / (1 + 2 * e / 511.0), e))
    return out


@dataclass(frozen=True)
class PigmentEvidence:
    """What supports a pigment class in a spectrum.

    Attributes
    ----------
    abbreviation : str
    evidence : tuple of str
        Elements XRF must see for the pigment (all of them); empty for pigments with no lines.
    elements : tuple of str
        Elements the pigment explains when it is called (its materials' elements).
    """

    abbreviation: str
    evidence: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()


@dataclass
class EvidenceSpec:
    """Evidence of every output column of a model, and the always-explained elements.

    Attributes
    ----------
    pigments : tuple of PigmentEvidence
        In the model's output order.
    explained : tuple of str
        Elements explained at every pixel: air and the ground (the tube anode is added per cube).
    missing : tuple of str
        Output columns with no evidence known (their probabilities are left unchecked).
    """

    pigments: tuple[PigmentEvidence, ...]
    explained: tuple[str, ...] = AIR_ELEMENTS
    missing: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def for_model(cls, model, library=None) -> EvidenceSpec:
        """Evidence of a model's pigments, from the pigment library (default: the built-in).

        A model column is matched to the library class or group of the same abbreviation and
        name; columns without one are ``missing``. A group needs the elements all its members
        need, and explains those of any member.
        """
        if library is None:
            from .pigments import load_pigment_library

            library = load_pigment_library()
        out, missing = [], []
        for abbreviation, name in model.pigments:  # PigmentLabel or plain pairs
            if abbreviation not in library.labels or library.name_of(abbreviation) != name:
                missing.append(abbreviation)
                out.append(PigmentEvidence(abbreviation))
                continue
            members = library.members_of(abbreviation)
            elements = sorted({el for m in library if m.label in members for el in m.elements})
            out.append(PigmentEvidence(abbreviation, library.evidence_of(abbreviation),
                                       tuple(elements)))
        ground = {el for m in library.of_kind("ground") for el in m.elements}
        return cls(tuple(out), tuple(sorted(set(AIR_ELEMENTS) | ground)), tuple(missing))


def _ramp(z, lo, hi):
    return np.clip((z - lo) / (hi - lo), 0.0, 1.0)


@dataclass
class CheckedBlock:
    """Evidence-checked probabilities and unexplained scores of a block of spectra.

    Attributes
    ----------
    maps : dict of output name -> ndarray float32 (n, n_pigments)
        Checked probabilities (``"present"``, ``"top"``).
    unexplained : ndarray float32, shape (n,)
        In [0, 1]; NaN where the spectrum has no counts.
    unexplained_elements : ndarray float32, shape (n, n_elements)
        Per element, in [0, 1].
    """

    maps: dict[str, np.ndarray]
    unexplained: np.ndarray
    unexplained_elements: np.ndarray


def apply_evidence(raw: dict, significance: Significance, spec: EvidenceSpec, *, tube=None) -> CheckedBlock:
    """Gate network probabilities by element evidence and score unexplained elements.

    Parameters
    ----------
    raw : dict of output name -> ndarray (n, n_pigments)
        Network probabilities (``"present"``, optionally ``"top"``).
    significance : Significance
        Of the same spectra.
    spec : EvidenceSpec
    tube : str, optional
        Tube anode: its lines are scatter, always explained.

    Returns
    -------
    CheckedBlock
    """
    z = significance.z.astype(np.float64)
    index = {el: i for i, el in enumerate(significance.elements)}
    present = np.asarray(raw["present"], dtype=np.float64)
    n, n_p = present.shape
    gate = np.ones((n, n_p))
    no_lines = []
    for j, p in enumerate(spec.pigments):
        seen = [index[el] for el in p.evidence if el in index]
        if p.abbreviation in spec.missing:
            continue
        if not seen:
            no_lines.append(j)
            continue
        gate[:, j] = _ramp(np.min(z[:, seen], axis=1), *GATE_SIGMA)
    checked = present * gate
    explained = set(spec.explained) | ({tube} if tube else set())
    significant = _ramp(z, *UNEXPLAINED_SIGMA)
    explanation = np.zeros_like(significant)
    for el, i in index.items():
        if el in explained:
            explanation[:, i] = 1.0
            continue
        for j, p in enumerate(spec.pigments):
            if el in p.elements:
                np.maximum(explanation[:, i], checked[:, j], out=explanation[:, i])
    # A pigment at probability 0.5 or more explains its elements fully, below that in part:
    # an element the network attributes with some doubt is not "unexplained".
    per_element = significant * (1.0 - np.clip(2.0 * explanation, 0.0, 1.0))
    with np.errstate(invalid="ignore"):
        unexplained = np.max(per_element, axis=1) if per_element.shape[1] else np.zeros(n)
    for j in no_lines:
        # Nothing can confirm such a pigment; it is not called where other signal is unexplained.
        gate[:, j] = 1.0 - np.nan_to_num(unexplained)
        checked[:, j] = present[:, j] * gate[:, j]
    maps = {"present": checked.astype(np.float32)}
    if "top" in raw:
        maps["top"] = (np.asarray(raw["top"], dtype=np.float64) * gate).astype(np.float32)
    nan = np.isnan(z).any(axis=1) | np.isnan(present).any(axis=1)
    unexplained = unexplained.astype(np.float32)
    unexplained[nan] = np.nan
    per_element = per_element.astype(np.float32)
    per_element[nan] = np.nan
    for k in maps:
        maps[k][nan] = np.nan
    return CheckedBlock(maps, unexplained, per_element)


def guess_tube(significance: Significance, *, min_sigma: float = 5.0):
    """The tube anode of a cube whose metadata does not say: the candidate anode whose lines
    are significant in most pixels (scattered tube lines are everywhere), or None."""
    best, best_share = None, 0.5
    for el in TUBE_ANODES:
        if el not in significance.elements:
            continue
        z = significance.z[:, significance.elements.index(el)]
        z = z[np.isfinite(z)]
        share = float(np.mean(z >= min_sigma)) if z.size else 0.0
        if share > best_share:
            best, best_share = el, share
    return best


class EvidenceChecker:
    """The evidence step of one cube's prediction, block by block.

    Parameters
    ----------
    model : PigmentModel
    cube : XRFCube
        For its tube anode (metadata) and name.
    shape : (int, int)
        Rows and columns of the maps.
    library : PigmentLibrary, optional
        Where evidence comes from for models whose metadata has none.

    Attributes
    ----------
    available : bool
        False once the step failed; the maps are then the network's own.
    warnings : list of str
    """

    def __init__(self, model, cube, shape, *, library=None):
        grid = model.preprocessing.grid
        # Fine model grids are summed to about FIT_STEP_KEV per channel: peaks stay 3-5
        # channels wide, and the fit's cost (channels squared) stays small.
        self._factor = max(1, int(round(FIT_STEP_KEV / float(grid[1] - grid[0]))))
        self._n = grid.size // self._factor * self._factor
        self.grid = grid[: self._n].reshape(-1, self._factor).mean(axis=1)
        self.spec = EvidenceSpec.for_model(model, library)

        self.tube = cube_tube(getattr(cube, "metadata", None) or {})[0]
        self.available = True
        self.warnings: list = []
        if len(self.spec.missing) == len(self.spec.pigments):
            self.available = False
            self.warnings.append(
                "element evidence is unavailable: the model's pigments are not classes of the "
                "pigment library; the maps are the network's own")
        elif self.spec.missing:
            self.warnings.append(
                f"no element evidence is known for {', '.join(self.spec.missing)} (not in the "
                "pigment library under the model's name): those maps are the network's own")
        self.unexplained = np.full(shape, np.nan, np.float32)
        self._fit: ElementFit | None = None
        self._per_element: np.ndarray | None = None

    def _coarse(self, counts):
        """Counts on the fit grid: adjacent model channels summed."""
        counts = np.asarray(counts)
        if self._factor == 1:
            return counts
        parts = counts[:, : self._n].reshape(counts.shape[0], -1, self._factor)
        # Adding the strided slices is ~4x faster than .sum(axis=2) over a short last axis.
        total = parts[:, :, 0].copy()
        for k in range(1, self._factor):
            total += parts[:, :, k]
        return total

    def _start(self, counts):
        fit = ElementFit(self.grid, tube=self.tube)
        if self.tube is None:
            # The share of pixels showing the anode's lines is as clear in a few hundred
            # pixels as in the whole block, at a fraction of a full fit's cost.
            sample = counts[:: max(1, counts.shape[0] // TUBE_GUESS_PIXELS)]
            self.tube = guess_tube(fit.fit(sample))
            self.warnings.append(
                "the cube does not name its X-ray tube; "
                + (f"its scattered lines look like a {self.tube} anode" if self.tube else
                   "no anode's scattered lines were recognised")
                + " (set the tube in the file's metadata to be sure)")
            fit = ElementFit(self.grid, tube=self.tube)
        fit.estimate_resolution(counts)
        self._use(fit)

    def _use(self, fit: ElementFit) -> None:
        self._fit = fit
        self._per_element = np.zeros((*self.unexplained.shape, len(fit.elements)), np.uint8)

    def start(self, counts) -> None:
        """Decide what holds for the whole cube (tube anode, detector resolution) from its first
        block's counts on the model grid (n, channels), as :meth:`check` does on that block."""
        self._start(self._coarse(counts))

    def settings(self) -> dict | None:
        """What the first block decided for the whole cube, for :meth:`adopt` elsewhere.

        Returns
        -------
        dict or None
            ``{"tube": str or None, "resolution_keV": float, "warnings": [...]}``; None before
            the first block (or once the step has failed).
        """
        if self._fit is None or not self.available:
            return None
        return {"tube": self.tube, "resolution_keV": self._fit.resolution_keV,
                "warnings": list(self.warnings)}

    def adopt(self, settings: dict) -> None:
        """Check blocks with the tube and detector resolution another checker of the same cube
        found on its first block (:meth:`settings`), as if this one had checked that block:
        blocks of one cube checked in different processes give the maps of one process."""
        self.tube = settings["tube"]
        self.warnings = list(settings["warnings"])
        fit = ElementFit(self.grid, tube=self.tube)
        fit.set_resolution(settings["resolution_keV"])
        self._use(fit)

    def check_block(self, counts, raw: dict) -> CheckedBlock:
        """The evidence check of one block of spectra, stored nowhere (see :meth:`store`).

        Parameters
        ----------
        counts : ndarray, shape (n, channels)
            The block's counts on the model grid.
        raw : dict of output name -> ndarray (n, n_pigments)

        Raises
        ------
        Exception
            Whatever the fit raised; :meth:`check` turns it into :meth:`fail`.
        """
        counts = self._coarse(counts)
        if self._fit is None:
            self._start(counts)
        return apply_evidence(raw, self._fit.fit(counts), self.spec, tube=self.tube)

    def fail(self, reason) -> None:
        """The step failed (``reason``: the exception or its text): the maps are the network's own."""
        self.available = False
        self.warnings.append(f"element evidence is unavailable ({reason}); the maps are the network's own")

    def store(self, rows: slice, block: CheckedBlock) -> None:
        """Keep the unexplained scores of a checked block of rows (``rows`` of the maps)."""
        n_rows = rows.stop - rows.start
        self.unexplained[rows] = block.unexplained.reshape(n_rows, -1)
        scores = np.nan_to_num(block.unexplained_elements.reshape(n_rows, -1, block.unexplained_elements.shape[-1]))
        self._per_element[rows] = np.round(scores * 255).astype(np.uint8)

    def check(self, rows: slice, counts, raw: dict) -> dict:
        """Checked probabilities of one block of rows.

        Parameters
        ----------
        rows : slice
            Rows of the maps the block covers.
        counts : ndarray, shape (n, channels)
            The block's counts on the model grid (n = rows x columns).
        raw : dict of output name -> ndarray (n, n_pigments)

        Returns
        -------
        dict of output name -> ndarray (n, n_pigments)
            ``raw`` itself once the step has failed.
        """
        if not self.available:
            return raw
        try:
            block = self.check_block(counts, raw)
        except Exception as exc:  # noqa: BLE001 - the maps must still be written
            self.fail(exc)
            return raw
        self.store(rows, block)
        return block.maps

    def unexplained_elements(self, *, min_pixels: int = 3) -> Mapping:
        """Score maps (float32, rows x columns) of the elements unexplained (>= 0.5) on at
        least ``min_pixels`` pixels; each map is made when accessed."""
        if not self.available or self._per_element is None:
            return {}
        counts = np.count_nonzero(self._per_element >= 128, axis=(0, 1))
        elements = [el for el, n in zip(self._fit.elements, counts) if n >= min_pixels]
        return ElementScores(self._per_element, self._fit.elements, elements,
                             np.isnan(self.unexplained))


class ElementScores(Mapping):
    """Element -> score map (float32, rows x columns, NaN where masked), made on access from
    8-bit scores: a quarter of the memory of float maps, for cubes of millions of pixels.

    Parameters
    ----------
    scores : ndarray of uint8, shape (rows, columns, n_fitted)
        Score x 255 of each fitted element.
    fitted : sequence of str
        The elements of the last axis.
    elements : sequence of str
        The elements this mapping offers.
    masked : ndarray of bool, shape (rows, columns)
    """

    def __init__(self, scores, fitted, elements, masked):
        self._scores = scores
        self._index = {el: list(fitted).index(el) for el in elements}
        self._masked = masked

    def __getitem__(self, element) -> np.ndarray:
        values = self._scores[..., self._index[element]].astype(np.float32) / 255.0
        values[self._masked] = np.nan
        return values

    def at(self, row: int, column: int) -> dict:
        """Element -> score (float) at one pixel, without making whole maps."""
        if self._masked[row, column]:
            return {el: float("nan") for el in self._index}
        return {el: self._scores[row, column, i] / 255.0 for el, i in self._index.items()}

    def __iter__(self):
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)
