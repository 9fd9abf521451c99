"""Compute the tables of docs/limits.md, section "Groups: pigments XRF cannot tell apart".

For each group of the pigment library (classes XRF alone cannot tell apart) and each member, a
pure paint layer in the mock-ups' binder (alkyd, ``MockupRecipe.binder_fraction`` by mass) over
the mock-ups' calcium carbonate ground is simulated with the package's physics (PyMca
fundamental parameters through ``FastSimulator``, the default ``Instrument``, primary
fluorescence and single scatter, no noise). The script prints, as markdown:

- per member: mass fraction of the shared element, density, expected counts per second of the
  key line (Pb Lα; Fe Kα; Cu Kα) for a 20 µm layer, a 200 µm one and an infinitely thick one,
  the thickness that gives 90 % of the infinite intensity, the Compton/Rayleigh ratio of the
  Rh Kα scatter peaks (and for lead the Pb Lβ/Lα ratio);
- per ordered pair of members (the imitation argument): the thickness of one member that gives
  the other's 20 µm key-line intensity, and the binder fraction of one member (200 µm thick)
  that gives the other's 200 µm intensity, with what the imitation leaves to tell them apart:
  the Compton/Rayleigh ratio and the counting time per pixel after which its difference exceeds
  three standard deviations of Poisson noise, the ground's Ca Kα (thin case), Pb Lβ/Lα.

Run from the repository root (a few seconds, about 500 stratigraphies; no GPU, no napari)::

    python docs/make_group_table.py

The tables go to stdout, the run time to stderr.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from napari_xrf_pigments.datasets.mockup import MockupRecipe
from napari_xrf_pigments.physics import FastSimulator, Instrument
from napari_xrf_pigments.pigments import (
    Layer,
    Stratigraphy,
    ground_layer,
    load_pigment_library,
)

BINDER = "alkyd"  # Galkyd, the binder of the paper's mock-ups (as in datasets/mockup.py)
THIN_UM = 20.0
THICK_UM = 200.0
INFINITE_UM = 5000.0  # far beyond the information depth of any line here
RH_KA_KEV = (20.0, 20.3)  # Rh Ka1 20.216, Ka2 20.074: the tube's strongest scatter peaks
PB_LA_KEV = (10.4, 10.6)  # L3M4, L3M5
PB_LB_KEV = (12.25, 12.85)  # Lb1 L2M4, Lb2 L3N5, Lb3 L1M3, Lb4 L1M2 and their neighbours

RECIPE = MockupRecipe()
GROUND_UM = float(np.mean(RECIPE.ground_um))


class Probe:
    """Key-line intensities and scatter of single paint layers over the mock-up ground."""

    def __init__(self):
        self.lib = load_pigment_library()
        self.sim = FastSimulator(Instrument(), self.lib)
        self.n_simulated = 0
        rows = self.sim.rows
        ray = [i for i, r in enumerate(rows) if r.kind == "rayleigh"]
        com = [i for i, r in enumerate(rows) if r.kind == "compton"]
        # Rayleigh and Compton rows come in the same order of tube energies.
        pick = [k for k, i in enumerate(ray) if RH_KA_KEV[0] <= rows[i].energy_keV <= RH_KA_KEV[1]]
        self.rayleigh = [ray[k] for k in pick]
        self.compton = [com[k] for k in pick]
        self.rows = rows

    def line_rows(self, element: str, window: tuple[float, float] | None = None) -> list[int]:
        """Rows of an element's Ka lines, or of its L lines in an energy window."""
        if window is None:
            return [i for i, r in enumerate(self.rows) if r.kind == "line" and r.element == element
                    and r.family == "K" and r.transition.startswith("KL")]
        return [i for i, r in enumerate(self.rows) if r.kind == "line" and r.element == element
                and window[0] <= r.energy_keV <= window[1]]

    def layer(self, pigment: str, thickness_um: float, binder_fraction: float) -> Layer:
        return Layer({pigment: 1.0}, thickness_um, binder=BINDER, binder_fraction=binder_fraction)

    def areas(self, pigment: str, thicknesses, binder_fraction=None) -> np.ndarray:
        """Expected counts per second of every row, shape (n, rows)."""
        bf = RECIPE.binder_fraction if binder_fraction is None else binder_fraction
        thicknesses = np.atleast_1d(np.asarray(thicknesses, dtype=float))
        bfs = np.broadcast_to(np.asarray(bf, dtype=float), thicknesses.shape)
        ground = ground_layer(GROUND_UM, binder=BINDER, binder_fraction=RECIPE.binder_fraction)
        strats = [Stratigraphy((self.layer(pigment, t, b), ground))
                  for t, b in zip(thicknesses, bfs)]
        self.n_simulated += len(strats)
        return self.sim.row_areas(strats, live_time_s=1.0)

    def solve(self, f, lo, hi, target, *, log=False, steps=40):
        """x in [lo, hi] with f(x) = target for a monotonic f (bisection); None if outside."""
        a, b = (np.log(lo), np.log(hi)) if log else (lo, hi)
        fa, fb = f(np.exp(a) if log else a), f(np.exp(b) if log else b)
        if not min(fa, fb) <= target <= max(fa, fb):
            return None
        rising = fb > fa
        for _ in range(steps):
            m = 0.5 * (a + b)
            fm = f(np.exp(m) if log else m)
            if (fm < target) == rising:
                a = m
            else:
                b = m
            if (np.exp(b) / np.exp(a) - 1 if log else b - a) < 1e-4:
                break
        m = 0.5 * (a + b)
        return float(np.exp(m) if log else m)


def key_element(lib, group) -> str:
    shared = set(lib[group.members[0]].evidence)
    for m in group.members[1:]:
        shared &= set(lib[m].evidence)
    if len(shared) != 1:
        raise SystemExit(f"group {group.abbreviation}: expected one shared element, got {shared}")
    return shared.pop()


def fmt(x, digits=3):
    if x is None:
        return "—"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def group_tables(probe: Probe, group) -> list[str]:
    lib = probe.lib
    el = key_element(lib, group)
    lead = probe.line_rows(el) == []  # no K lines below the tube voltage: use the L lines
    key = probe.line_rows(el, PB_LA_KEV if lead else None)
    key_name = f"{el} Lα" if lead else f"{el} Kα"
    lb = probe.line_rows(el, PB_LB_KEV) if lead else []
    ca = probe.line_rows("Ca")

    def key_cps(a):
        return a[:, key].sum(axis=1)

    def compton_rayleigh(a):
        return a[:, probe.compton].sum(axis=1) / a[:, probe.rayleigh].sum(axis=1)

    def lb_la(a):
        return a[:, lb].sum(axis=1) / a[:, key].sum(axis=1)

    def seconds_3sigma(a, b):
        """Counting time (s) after which the Compton/Rayleigh ratios of two spectra (rows of
        counts per second) differ by three standard deviations of Poisson noise."""
        var = 0.0
        for x in (a, b):
            c, r = x[probe.compton].sum(), x[probe.rayleigh].sum()
            var += (c / r) ** 2 * (1 / c + 1 / r)
        diff = abs(a[probe.compton].sum() / a[probe.rayleigh].sum()
                   - b[probe.compton].sum() / b[probe.rayleigh].sum())
        return 9 * var / diff ** 2

    info = {}
    for m in group.members:
        a = probe.areas(m, [THIN_UM, THICK_UM, INFINITE_UM])
        i_inf = key_cps(a)[2]
        t90 = probe.solve(lambda t, m=m: key_cps(probe.areas(m, t))[0], 0.1, INFINITE_UM,
                          0.9 * i_inf, log=True)
        layer = probe.layer(m, THICK_UM, RECIPE.binder_fraction)
        info[m] = {"a": a, "i_inf": i_inf, "t90": t90, "w": lib[m].mass_fractions[el],
                   "rho": lib[m].density, "rho_layer": layer.density_g_cm3(lib)}

    bf = RECIPE.binder_fraction
    out = [f"**{group.name}** (`{group.abbreviation}`), shared element {el}:", ""]
    head = ["pigment", f"{el} mass % (pigment / paint)", "density g/cm3 (pigment / paint)",
            f"{key_name} cps: {THIN_UM:.0f} µm / {THICK_UM:.0f} µm / infinite",
            "µm for 90 % of infinite", f"Compton/Rayleigh: {THIN_UM:.0f} / {THICK_UM:.0f} µm"]
    if lead:
        head.append(f"Pb Lβ/Lα: {THIN_UM:.0f} / {THICK_UM:.0f} µm")
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in group.members:
        d = info[m]
        a = d["a"]
        i = key_cps(a)
        cells = [lib[m].name, f"{100 * d['w']:.0f} / {100 * d['w'] * (1 - bf):.0f}",
                 f"{d['rho']:.2f} / {d['rho_layer']:.2f}",
                 f"{i[0]:,.0f} / {i[1]:,.0f} / {i[2]:,.0f}", fmt(d["t90"], 2),
                 f"{compton_rayleigh(a)[0]:.3f} / {compton_rayleigh(a)[1]:.3f}"]
        if lead:
            cells.append(f"{lb_la(a)[0]:.3f} / {lb_la(a)[1]:.3f}")
        out.append("| " + " | ".join(cells) + " |")

    out += ["", f"Imitation of one member's {key_name} intensity by another:", ""]
    head = ["target", "imitated by", "thin: µm of it", "thin: C/R target / it",
            "thin: Ca Kα cps target / it", "thin: 3σ (s)", "thick: binder mass % of it",
            "thick: C/R target / it", "thick: 3σ (s)"]
    if lead:
        head[6:6] = ["thin: Pb Lβ/Lα target / it"]
        head.append("thick: Pb Lβ/Lα target / it")
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for target in group.members:
        ta = info[target]["a"]
        for other in group.members:
            if other == target:
                continue
            t_eq = probe.solve(lambda t, o=other: key_cps(probe.areas(o, t))[0], 0.1,
                               INFINITE_UM, key_cps(ta)[0], log=True)
            b_eq = probe.solve(lambda b, o=other: key_cps(probe.areas(o, THICK_UM, b))[0], 0.0,
                               0.99, key_cps(ta)[1])
            if t_eq is None:
                thin = [f"none (at most {100 * info[other]['i_inf'] / key_cps(ta)[0]:.0f} %)",
                        "—", "—", "—"] + (["—"] if lead else [])
            else:
                ai = probe.areas(other, t_eq)
                thin = [fmt(t_eq, 2),
                        f"{compton_rayleigh(ta)[0]:.3f} / {compton_rayleigh(ai)[0]:.3f}",
                        f"{ta[0, ca].sum():,.0f} / {ai[0, ca].sum():,.0f}",
                        fmt(seconds_3sigma(ta[0], ai[0]), 2)]
                if lead:
                    thin.append(f"{lb_la(ta)[0]:.3f} / {lb_la(ai)[0]:.3f}")
            if b_eq is None:
                a0 = probe.areas(other, THICK_UM, 0.0)
                best = 100 * key_cps(a0)[0] / key_cps(ta)[1]
                thick = [f"none (unbound: {best:.0f} %)", "—", "—"]
                thick_lb = "—"
            else:
                ai = probe.areas(other, THICK_UM, b_eq)
                thick = [f"{100 * b_eq:.0f}",
                         f"{compton_rayleigh(ta)[1]:.3f} / {compton_rayleigh(ai)[0]:.3f}",
                         fmt(seconds_3sigma(ta[1], ai[0]), 2)]
                thick_lb = f"{lb_la(ta)[1]:.3f} / {lb_la(ai)[0]:.3f}" if lead else ""
            cells = [lib[target].name, lib[other].name, *thin, *thick]
            if lead:
                cells.append(thick_lb)
            out.append("| " + " | ".join(cells) + " |")
    return out


def main() -> int:
    start = time.perf_counter()
    probe = Probe()
    built = time.perf_counter() - start
    bf = RECIPE.binder_fraction
    lines = [(
        f"Pure paint of each member ({100 * (1 - bf):.0f} % pigment, {100 * bf:.0f} % {BINDER} "
        f"by mass) over {GROUND_UM:.0f} µm of CaCO3 ground ({100 * bf:.0f} % {BINDER}), "
        "simulated with the default instrument (ELIO-like, Rh 40 kV 40 µA); cps: expected "
        "counts per second in the line; "
        f"C/R: Compton/Rayleigh ratio of the Rh Kα scatter peaks. Imitation, thin: the target "
        f"is {THIN_UM:.0f} µm thick and the imitating member's thickness is chosen to give the "
        f"same key-line intensity; thick: both are {THICK_UM:.0f} µm and the imitating "
        "member's binder fraction is chosen instead ('none': out of reach, with the best it "
        "gets). 3σ: counting time per pixel after which the C/R difference exceeds three "
        "standard deviations of counting noise."),
        "",
    ]
    for group in probe.lib.groups:
        lines += group_tables(probe, group) + [""]
    print("\n".join(lines).rstrip())
    print(f"# {probe.n_simulated} stratigraphies; physics built in {built:.1f} s, "
          f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
