"""Physics facts the simulator must reproduce (line energies, edges, shielding, matrix effects)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_xrf_pigments.pigments import Layer, Stratigraphy, load_pigment_library

pytest.importorskip("PyMca5")


@pytest.fixture(scope="module")
def lib():
    return load_pigment_library()


@pytest.fixture(scope="module")
def sim(lib):
    from napari_xrf_pigments.physics import FastSimulator, Instrument

    return FastSimulator(Instrument(), lib)


def line_energy(element, transition):
    from PyMca5.PyMcaPhysics.xrf import Elements

    return Elements.getxrayenergy(element, transition)


def test_as_ka_overlaps_pb_la():
    # The classic overlap (PyMca's ElementsTest): As Ka 10.54 keV vs Pb La 10.55 keV.
    as_ka, pb_la = line_energy("As", "KL3"), line_energy("Pb", "L3M5")
    assert as_ka == pytest.approx(10.54, abs=0.01)
    assert pb_la == pytest.approx(10.55, abs=0.01)
    assert abs(as_ka - pb_la) < 0.02


def test_hg_l3_edge_lies_between_pb_la_and_lb():
    from napari_xrf_pigments.physics import _pymca

    edge = _pymca.binding_energy("Hg", "L")
    assert edge == pytest.approx(12.28, abs=0.01)
    assert line_energy("Pb", "L3M5") < edge < line_energy("Pb", "L2M4")


def test_emerald_green_and_lead_white_peak_at_the_same_channel(sim, lib):
    # Why the paper's model confuses As and Pb: their strongest lines share a channel.
    eg = sim.simulate(Stratigraphy([Layer({"SA": 1}, 300)]))
    lw = sim.simulate(Stratigraphy([Layer({"LW": 1}, 300)]))
    e = sim.energy_axis().energies()
    window = (e > 9.0) & (e < 11.5)
    peak_eg = e[window][np.argmax(eg[window])]
    peak_lw = e[window][np.argmax(lw[window])]
    assert peak_eg == pytest.approx(10.54, abs=0.015) and peak_lw == pytest.approx(10.55, abs=0.015)


def _pb_lb_over_la(sim, strat):
    areas = sim.row_areas([strat])[0]
    la = lb = 0.0
    for row, a in zip(sim.rows, areas):
        if row.kind == "line" and row.group == "Pb L":
            if row.transition.startswith(("L3M5", "L3M4")):
                la += a
            elif row.transition.startswith(("L2M4", "L3N5", "L3N4")):
                lb += a
    return lb / la


def test_vermilion_over_lead_white_lowers_pb_lb_over_la(sim):
    # Hg absorbs above its L3 edge (12.28 keV): Pb Lb (12.6) more than Pb La (10.55).
    lead_white = Layer({"LW": 1}, 100)
    ratios = [_pb_lb_over_la(sim, Stratigraphy.with_ground(lead_white))]
    for um in (5, 10, 20, 40):
        ratios.append(_pb_lb_over_la(sim, Stratigraphy.with_ground(Layer({"VM": 1}, um),
                                                                   lead_white)))
    assert all(b < a for a, b in zip(ratios, ratios[1:]))
    assert ratios[-1] < 0.6 * ratios[0]
    # An Hg-free layer of similar weight (chrome oxide) changes the ratio much less.
    cr = _pb_lb_over_la(sim, Stratigraphy.with_ground(Layer({"CrG": 1}, 62), lead_white))
    assert (ratios[0] - cr) < 0.3 * (ratios[0] - ratios[-1])


def test_ground_calcium_vanishes_under_dense_paint(sim):
    bare = sim.line_areas(Stratigraphy.with_ground())["Ca K"]
    thin = sim.line_areas(Stratigraphy.with_ground(Layer({"LW": 1}, 5))).get("Ca K", 0.0)
    thick = sim.line_areas(Stratigraphy.with_ground(Layer({"LW": 1}, 100))).get("Ca K", 0.0)
    vm = sim.line_areas(Stratigraphy.with_ground(Layer({"VM": 1}, 100))).get("Ca K", 0.0)
    assert 1e-3 * bare < thin < 0.5 * bare
    assert thick < 1e-9 * bare and vm < 1e-9 * bare


def test_prussian_blue_and_iron_oxide_show_only_iron(sim):
    for abbr in ("PB", "IO"):
        groups = sim.line_areas(Stratigraphy([Layer({abbr: 1}, 300)]))
        assert set(groups) == {"Fe K"}
    # Iron oxide holds far more iron per gram than Prussian blue.
    io = sim.line_areas(Stratigraphy([Layer({"IO": 1}, 300)]))["Fe K"]
    pb = sim.line_areas(Stratigraphy([Layer({"PB": 1}, 300)]))["Fe K"]
    assert io > pb


def test_more_binder_lets_more_of_the_lower_layer_through(sim):
    lower = Layer({"LW": 1}, 100)
    pb = [sim.line_areas(Stratigraphy.with_ground(
        Layer({"VM": 1}, 40, binder_fraction=f), lower))["Pb L"] for f in (0.0, 0.2, 0.4, 0.6)]
    assert all(b > a for a, b in zip(pb, pb[1:]))
    assert pb[-1] > 3 * pb[0]


def test_thicker_top_layer_gives_more_of_its_own_signal_until_saturation(sim):
    hg = [sim.line_areas(Stratigraphy.with_ground(Layer({"VM": 1}, um)))["Hg L"]
          for um in (5, 20, 80, 200)]
    assert all(b > a for a, b in zip(hg, hg[1:]))
    assert hg[3] / hg[2] < 1.05  # infinitely thick for Hg L at 80 um


def test_counts_scale_with_live_time_and_poisson_noise_is_seeded(sim):
    strat = Stratigraphy.with_ground(Layer({"IO": 1}, 30))
    one = sim.simulate(strat, live_time_s=1.0).astype(np.float64)
    ten = sim.simulate(strat, live_time_s=10.0).astype(np.float64)
    assert ten.sum() == pytest.approx(10 * one.sum(), rel=1e-5)
    a = sim.simulate([strat] * 3, rng=np.random.default_rng(7))
    b = sim.simulate([strat] * 3, rng=np.random.default_rng(7))
    c = sim.simulate([strat] * 3, rng=np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(a == np.round(a)) and np.all(a >= 0)
    assert a.sum() == pytest.approx(3 * ten.sum(), rel=0.01)


def test_rayleigh_and_compton_peaks_of_the_rh_tube_lines(sim):
    from napari_xrf_pigments.physics.scatter import compton_energy

    counts = sim.simulate(Stratigraphy([Layer({"CC": 1}, 2000)]))
    e = sim.energy_axis().energies()
    # Rh Ka1 and Ka2 (2:1) are not resolved: the peaks sit at their mean energy.
    rh_ka = (2 * line_energy("Rh", "KL3") + line_energy("Rh", "KL2")) / 3
    theta = sim.instrument.scattering_angle
    assert theta == 135.0
    for expected in (rh_ka, float(compton_energy(rh_ka, theta))):
        window = np.abs(e - expected) < 0.4
        assert e[window][np.argmax(counts[window])] == pytest.approx(expected, abs=0.05)
    # A light matrix scatters more, relative to its fluorescence, than a heavy one.
    heavy = sim.simulate(Stratigraphy([Layer({"LW": 1}, 2000)]))
    near = np.abs(e - rh_ka) < 1.0
    assert counts[near].sum() / counts.sum() > 3 * heavy[near].sum() / heavy.sum()


def test_escape_peak_and_calibration(sim, lib):
    import dataclasses

    strat = Stratigraphy([Layer({"IO": 1}, 100)])
    base = sim.instrument.readout
    e = base.energies()
    with_escape = sim.simulate(strat)
    without = sim.simulate(strat, readout=dataclasses.replace(base, escape=False))
    fe_ka = line_energy("Fe", "KL3")
    esc = np.abs(e - (fe_ka - 1.74)) < 0.05
    assert with_escape[esc].sum() > 1.5 * without[esc].sum()
    shifted = sim.simulate(strat, readout=dataclasses.replace(base, zero_keV=-0.2))
    assert np.argmax(shifted) - np.argmax(with_escape) == 20  # 0.2 keV / 10 eV per channel
    broad = sim.simulate(strat, readout=dataclasses.replace(base, noise_keV=0.15))
    assert broad.max() < 0.8 * with_escape.max()


@pytest.mark.slow  # PyMca's faithful simulation
def test_exact_and_pymca_line_ratios(lib):
    from napari_xrf_pigments.physics import FastSimulator, Instrument

    inst = Instrument()
    pymca = FastSimulator(inst, lib)
    exact = FastSimulator(inst, lib, line_ratios="exact")
    def deviation(strat):
        a, b = pymca.simulate(strat), exact.simulate(strat)
        return np.abs(a - b).max() / b.max()

    # Each element in one layer: the same spectrum (PyMca only drops lines < 5e-5 of a group).
    assert deviation(Stratigraphy.with_ground(Layer({"VM": 1}, 20), Layer({"LW": 1}, 100))) < 1e-4
    # Lead in two layers at different concentrations: PyMca's line ratios ignore that.
    both = Stratigraphy.with_ground(Layer({"LW": 0.1, "CrG": 0.9}, 30),
                                    Layer({"VM": 0.5, "LW": 0.5}, 60))
    a, b = pymca.line_areas(both), exact.line_areas(both)
    assert a["Pb L"] == pytest.approx(b["Pb L"], rel=1e-6)  # group totals are the same
    assert deviation(both) > 1e-3
