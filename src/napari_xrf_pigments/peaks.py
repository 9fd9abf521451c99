"""Peaks of a sum spectrum: SNIP background, peak search, fits of line groups.

One home for what the element suggestions (:mod:`.fitting._suggest`), the calibration check
before prediction (:mod:`.model.preflight`) and the automatic energy calibration
(:mod:`.calibration`) do with a sum spectrum:

- :class:`SumSpectrum` takes a SNIP background off a lightly smoothed spectrum (over ~2.5
  FWHM, as PyMca's fits do);
- :meth:`SumSpectrum.find_peaks` lists the significant peaks, whatever line they are;
- :meth:`SumSpectrum.fit` fits one line group (e.g. the Ka lines of Ca, PyMca's energies and
  rates) as Gaussians of the detector width with a free shift near its energy.

Energies are in keV. Qt-free; PyMca (SNIP, smoothing) and scipy are imported when used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .physics.instrument import fwhm_at

if TYPE_CHECKING:
    from .lines import Line

__all__ = ["LineFit", "Peak", "SumSpectrum", "fwhm_function", "significance"]

#: How far (keV) from its energy a line's peak is searched by :meth:`SumSpectrum.fit`.
SEARCH_KEV = 0.3


def fwhm_function(resolution_keV: float, fano: float):
    """FWHM (keV) at any energy, for a FWHM at Mn Ka of ``resolution_keV``."""
    return lambda energy: fwhm_at(energy, resolution_keV, fano)


def significance(net: float, background: float) -> float:
    """Net counts over the square root of all counts, about "sigmas"."""
    return net / math.sqrt(background + max(net, 0.0) + 1.0)


@dataclass
class Peak:
    """A peak of the sum spectrum, whatever line it is.

    Attributes
    ----------
    energy : float
        Channel of its maximum, keV (of the lightly smoothed net spectrum).
    net : float
        Net counts within +-1 FWHM (above the local bias of SNIP).
    background : float
        Background counts beneath them.
    significance : float
        ``net / sqrt(background + net + 1)``, about "sigmas".
    """

    energy: float
    net: float
    background: float
    significance: float


@dataclass
class LineFit:
    """One line group fitted by :meth:`SumSpectrum.fit` (energies in keV)."""

    label: str
    element: str
    family: str
    group: str
    expected: float
    delta: float
    delta_sigma: float
    area: float  # net counts of the group
    scale: float  # fitted width / detector width
    significance: float
    group_rate: float  # the group's share of its family's lines
    group_lines: tuple[tuple[float, float], ...]  # (energy, rate) of the group
    named: tuple[Line, ...] = ()  # the family's Line objects


class SumSpectrum:
    """A sum spectrum with its SNIP background, ready for peak searches and line fits.

    Parameters
    ----------
    energy : ndarray, shape (channels,)
        Channel energies, keV, increasing.
    counts : ndarray, shape (channels,)
        Counts per channel (float64).
    fwhm : callable
        FWHM in keV at an energy in keV (:func:`fwhm_function`).

    Attributes
    ----------
    background : ndarray, shape (channels,)
        SNIP background of the lightly smoothed spectrum.
    net, smooth_net : ndarray, shape (channels,)
        Counts, and the smoothed counts, minus the background.
    """

    def __init__(self, energy, counts, fwhm):
        # lazy: PyMca5 is heavy
        from PyMca5.PyMcaMath.fitting import SpecfitFuns

        self.e, self.y, self.fwhm = energy, counts, fwhm
        self.width = np.gradient(energy)
        gain = float(np.median(np.diff(energy)))
        # SNIP over ~2.5 FWHM of a lightly smoothed spectrum, as PyMca's fits do.
        smooth = np.asarray(SpecfitFuns.SavitskyGolay(counts, 5), dtype=np.float64)
        clip = max(3, round(2.5 * float(fwhm(10.0)) / gain))
        self.background = np.asarray(SpecfitFuns.snip1d(smooth, clip, 0), dtype=np.float64)
        self.net = counts - self.background
        self.smooth_net = smooth - self.background
        self._cumulative_net = np.concatenate([[0.0], np.cumsum(self.net)])
        self._cumulative_background = np.concatenate([[0.0], np.cumsum(self.background)])
        # Channels away from every peak found (all, before a search): where SNIP's local bias
        # is measured.
        self._off_peak = np.ones(energy.size, dtype=bool)

    def window(self, energy) -> tuple[float, float]:
        """(net counts, background counts) within +-1 FWHM of ``energy``.

        SNIP sits a few percent low on noisy data, which on a sum spectrum of millions of
        counts would make every bump "significant"; the net counts are therefore taken above
        the median excess of the peak-free channels around (+-8 FWHM; peak-free as far as
        :meth:`find_peaks` knows).
        """
        e, w = self.e, float(self.fwhm(energy))  # +-1 FWHM holds ~98 % of a Gaussian peak
        i0, i1 = np.searchsorted(e, [energy - w, energy + w])
        f0, f1 = np.searchsorted(e, [energy - 8 * w, energy + 8 * w])
        quiet = self.smooth_net[f0:f1][self._off_peak[f0:f1]]
        offset = float(np.median(quiet)) if quiet.size >= 10 else 0.0
        n = self._cumulative_net[i1] - self._cumulative_net[i0] - offset * (i1 - i0)
        b = self._cumulative_background[i1] - self._cumulative_background[i0] + offset * (i1 - i0)
        return n, max(b, 0.0)

    def find_peaks(self, lo: float, hi: float, min_significance: float) -> list[Peak]:
        """Peaks between ``lo`` and ``hi`` keV at least ``min_significance`` sigmas strong.

        Local maxima of the smoothed net spectrum at least ~0.3 FWHM wide and ~0.5 FWHM apart,
        kept when their net counts (:meth:`window`) are significant. Channels within ~2 FWHM of
        ``hi`` and ~1 FWHM of ``lo`` are left out: SNIP has no support on one side there.

        Returns
        -------
        list of Peak
            Most significant first.
        """
        from scipy.signal import find_peaks

        e, net = self.e, self.smooth_net

        def fwhm(energy):
            return float(self.fwhm(energy))

        gain = float(np.median(np.diff(e)))
        margin = 2 * fwhm(hi)
        inside = (e >= lo + margin / 2) & (e <= hi - margin)
        min_width = max(1.0, 0.3 * fwhm(5.0) / gain)
        distance = max(1, int(0.5 * fwhm(2.0) / gain))
        idx, _ = find_peaks(np.where(inside, net, 0.0), width=min_width, distance=distance)
        # Two passes: the bias is first taken over all channels around, then over those away
        # from the peaks the first pass found (masking every noise maximum would leave only
        # troughs).
        self._off_peak[:] = True
        for _ in range(2):
            peaks = []
            for i in idx:
                n, b = self.window(e[i])
                s = significance(n, b)
                if n > 0 and s >= min_significance:
                    peaks.append(Peak(float(e[i]), float(n), float(b), float(s)))
            self._off_peak[:] = True
            for p in peaks:
                w = fwhm(p.energy)
                self._off_peak[np.searchsorted(e, p.energy - 1.5 * w):
                               np.searchsorted(e, p.energy + 1.5 * w)] = False
        peaks.sort(key=lambda p: p.significance, reverse=True)
        return peaks

    def template(self, lines, e, delta, scale):
        """Counts per channel at energies ``e`` of lines (energy, rate) of total area 1, shifted
        by ``delta`` keV and widened by ``scale``."""
        out = np.zeros(e.size)
        total = sum(r for _, r in lines)
        for energy, rate in lines:
            sigma = float(self.fwhm(energy)) * scale / 2.3548
            out += (rate / total) * np.exp(-0.5 * ((e - energy - delta) / sigma) ** 2) / (
                sigma * math.sqrt(2 * math.pi))
        return out * np.interp(e, self.e, self.width)

    def fit(self, label, element, family, group, group_lines, *, shift=0.0, search=SEARCH_KEV,
            minus=None) -> LineFit | None:
        """Fit a line group (its lines as Gaussians of the detector width, with a free shift,
        width scale, area and linear background) near its energy; None: no clear peak.

        The peak is searched within ``shift +- search`` keV of the group's energy; ``minus``
        (a :class:`LineFit`) is a fitted neighbour taken off first.
        """
        from scipy.optimize import least_squares

        group_rate = sum(r for _, r in group_lines)
        expected = sum(en * r for en, r in group_lines) / group_rate
        main = [en for en, r in group_lines if r >= 0.1 * max(r for _, r in group_lines)]
        e, fwhm = self.e, float(self.fwhm(expected))
        sn, net_all = self.smooth_net, self.net
        if minus is not None:
            known = minus.area * self.template(minus.group_lines, e, minus.delta, minus.scale)
            sn, net_all = sn - known, net_all - known
        i0, i1 = np.searchsorted(e, [expected + shift - search, expected + shift + search])
        if i1 - i0 < 3 or i0 == 0 or i1 >= e.size:
            return None
        # Local maxima only (a stronger neighbour's flank is not a peak), the nearer the better.
        k = np.arange(i0, i1)
        k = k[(sn[k] >= sn[k - 1]) & (sn[k] > sn[k + 1]) & (sn[k] > 0)]
        if k.size == 0:
            return None
        near = np.exp(-0.5 * ((e[k] - expected - shift) / max(search / 1.5, fwhm / 2)) ** 2)
        k = int(k[np.argmax(sn[k] * near)])
        # A peak must stand out of the structure around it (a comb of scatter bumps, SNIP's
        # wiggles on a spectrum of millions of counts), not only out of the Poisson noise.
        a0, a1, c0, c1 = np.searchsorted(e, [e[k] - 0.6, e[k] - 1.5 * fwhm, e[k] + 1.5 * fwhm,
                                             e[k] + 0.6])
        around = np.concatenate([sn[a0:a1], sn[c0:c1]])
        if around.size >= 10:
            # Spread from the channels below the median: other peaks around only add above it.
            level = float(np.median(around))
            spread = 1.4826 * float(np.median(level - around[around <= level]))
            if sn[k] - level < 3.0 * spread:
                return None
        # Where the template itself peaks, so that the first guess puts the fit on the peak.
        fine = np.linspace(min(main) - fwhm, max(main) + fwhm, 201)
        delta0 = float(e[k] - fine[np.argmax(self.template(group_lines, fine, 0.0, 1.0))])
        j0, j1 = np.searchsorted(e, [min(main) + delta0 - fwhm, max(main) + delta0 + fwhm])
        j1 = max(j1, j0 + 8)
        if j0 < 1 or j1 > e.size - 1:
            return None
        x, net, y = e[j0:j1], net_all[j0:j1], self.y[j0:j1]
        weight = 1.0 / np.sqrt(np.maximum(y, 1.0))
        centre = float(x.mean())

        def residual(p):
            area, delta, scale, c0, c1 = p
            model = area * self.template(group_lines, x, delta, scale) + c0 + c1 * (x - centre)
            return (model - net) * weight

        area0 = max(float(net.sum()), 1.0)
        lo = [0.0, max(delta0 - 0.1, -SEARCH_KEV - 0.05), 0.5, -np.inf, -np.inf]
        hi = [np.inf, min(delta0 + 0.1, SEARCH_KEV + 0.05), 2.0, np.inf, np.inf]
        start = np.clip([area0, delta0, 1.0, 0.0, 0.0], lo, hi)
        result = least_squares(residual, start, bounds=(lo, hi), x_scale="jac")
        area, delta, scale = (float(v) for v in result.x[:3])
        if not (0.55 < scale < 1.95) or abs(delta) > SEARCH_KEV or area <= 0:
            return None  # no single peak of the expected width where the line should be
        jac = result.jac
        dof = max(1, x.size - 5)
        chi2 = float(np.sum(result.fun**2)) / dof
        try:
            cov = np.linalg.inv(jac.T @ jac) * max(chi2, 1.0)
            delta_sigma = float(np.sqrt(max(cov[1, 1], 0.0)))
        except np.linalg.LinAlgError:
            delta_sigma = float("inf")
        b0, b1 = np.searchsorted(e, [expected + delta - fwhm, expected + delta + fwhm])
        beneath = float(self.background[b0:b1].sum())
        significance = area / math.sqrt(beneath + area + 1.0)
        return LineFit(label, element, family, group, expected, delta, delta_sigma, area, scale,
                    significance, group_rate, tuple(group_lines))
