"""Simulators against each other and against reference data; instrument files; background."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_xrf_pigments.errors import InvalidDataError, UnreadableFileError
from napari_xrf_pigments.pigments import Layer, Stratigraphy, load_pigment_library

pytest.importorskip("PyMca5")


@pytest.fixture(scope="module")
def lib():
    return load_pigment_library()


@pytest.fixture(scope="module")
def instrument():
    from napari_xrf_pigments.physics import Instrument

    return Instrument()


@pytest.fixture(scope="module")
def fast(instrument, lib):
    from napari_xrf_pigments.physics import FastSimulator

    return FastSimulator(instrument, lib, dtype=np.float64)


def _deviation(fast, instrument, lib, strats):
    from napari_xrf_pigments.physics import FaithfulSimulator

    faithful = FaithfulSimulator(instrument, lib)
    quick = fast.simulate(strats)
    worst = 0.0
    for strat, y in zip(strats, quick):
        ref = faithful.simulate(strat)
        worst = max(worst, float(np.abs(y - ref).max() / ref.max()))
    return worst


def test_fast_path_equals_pymca_on_a_layered_sample(fast, instrument, lib):
    strat = Stratigraphy.with_ground(Layer({"IO": 1}, 20), Layer({"ZW": 1}, 60))
    assert _deviation(fast, instrument, lib, [strat]) < 1e-5


@pytest.mark.slow
def test_fast_path_equals_pymca_on_mixtures_with_binder(fast, instrument, lib):
    strats = [
        Stratigraphy.with_ground(Layer({"VM": 1}, 50), Layer({"LW": 1}, 100)),
        Stratigraphy.with_ground(
            Layer({"LW": 55, "CM": 10, "PB": 25, "CB": 10}, 40, binder_fraction=0.25),
            Layer({"ZW": 10, "LW": 45, "CrY": 15, "VG": 12, "SA": 18}, 120, binder="alkyd",
                  binder_fraction=0.3)),
        Stratigraphy.with_ground(Layer({"LW": 1}, 30), Layer({"LW": 50, "VM": 50}, 80)),
    ]
    assert _deviation(fast, instrument, lib, strats) < 1e-5


def test_faithful_scatter_uses_corrected_compton(instrument, lib):
    from napari_xrf_pigments.physics import FaithfulSimulator

    strat = Stratigraphy([Layer({"CC": 1}, 500)])
    rayleigh, compton = FaithfulSimulator(instrument, lib).scatter_areas(strat)
    # Light matrix at 135 degrees: Compton outweighs Rayleigh, as XCOM says, but only by a few
    # times (PyMca's helper would make it ~10x more).
    assert 1.0 < compton.sum() / rayleigh.sum() < 10.0


@pytest.mark.parametrize("element", ["C", "O", "Ca", "Fe", "Pb"])
def test_compton_cross_section_matches_xcom(element):
    from PyMca5.PyMcaPhysics.xrf import Elements

    from napari_xrf_pigments.physics.scatter import compton_dcs, pymca_compton_dcs, rayleigh_dcs

    energy = 20.0
    theta = np.linspace(0.05, 179.95, 1201)
    weight = 2 * np.pi * np.sin(np.radians(theta)) * np.radians(theta[1] - theta[0])
    xcom = Elements.getmassattcoef(element, energy)
    compton = np.sum(weight * np.concatenate([compton_dcs(element, t, [energy]) for t in theta]))
    rayleigh = np.sum(weight * np.concatenate([rayleigh_dcs(element, t, [energy]) for t in theta]))
    assert compton == pytest.approx(xcom["compton"][0], rel=0.01)
    assert rayleigh == pytest.approx(xcom["coherent"][0], rel=0.02)
    # PyMca's helper squares the incoherent scattering function.
    original = np.sum(weight * np.concatenate(
        [pymca_compton_dcs(element, t, [energy]) for t in theta]))
    assert original > 3 * xcom["compton"][0]


def test_batch_pads_stratigraphies_of_different_depths(fast):
    a = Stratigraphy([Layer({"VM": 1}, 30)])
    b = Stratigraphy.with_ground(Layer({"VM": 1}, 30), Layer({"LW": 1}, 50))
    together = fast.simulate([a, b])
    assert np.allclose(together[0], fast.simulate(a), rtol=1e-12)
    assert np.allclose(together[1], fast.simulate(b), rtol=1e-12)


def test_readout_pool_and_live_times_for_training(fast):
    from napari_xrf_pigments.physics import random_live_times, readout_pool

    rng = np.random.default_rng(3)
    pool = readout_pool(fast.instrument.readout, rng, 3)
    assert pool[0] == fast.instrument.readout and len(set(pool)) == 3
    times = random_live_times(rng, 1000)
    assert times.min() >= 0.1 and times.max() <= 10.0
    assert np.median(times) == pytest.approx(1, rel=0.3)
    strat = Stratigraphy.with_ground(Layer({"RL": 1}, 60))
    counts = fast.simulate([strat, strat], readout=pool[1], live_time_s=times[:2])
    assert counts.shape == (2, pool[1].n_channels)
    assert counts[1].sum() / counts[0].sum() == pytest.approx(times[1] / times[0], rel=1e-6)


def test_background_from_a_measured_cube(fast):
    from napari_xrf_pigments.cube import XRFCube
    from napari_xrf_pigments.physics import estimate_background, snip_background
    from napari_xrf_pigments.preprocess import resample

    # A measured-like spectrum: a smooth continuum under resolution-wide peaks.
    e = np.arange(2048) * 0.02
    continuum = 50.0 * np.exp(-((e - 12.0) / 8.0) ** 2) + 2.0
    peaks = sum(h * np.exp(-0.5 * ((e - c) / 0.07) ** 2)
                for c, h in ((3.69, 400), (6.40, 900), (10.55, 2000), (12.61, 1200)))
    measured = np.broadcast_to(continuum + peaks, (2, 3, e.size))
    cube = XRFCube.from_array(np.array(measured), zero=0.0, gain=0.02,
                              live_time=np.full((2, 3), 10.0))
    readout = fast.instrument.readout
    rate = estimate_background(cube, readout, width_channels=20)
    target = resample(continuum, e, readout.energies())
    inside = (readout.energies() > 2) & (readout.energies() < 35)
    assert np.allclose(rate[inside] * 10.0, target[inside], rtol=0.1, atol=0.05)
    # SNIP leaves the peaks out.
    snip = snip_background(measured[0, 0], 20)
    assert snip[np.argmin(np.abs(e - 10.55))] < 1.2 * continuum[np.argmin(np.abs(e - 10.55))]
    # Resampling keeps counts per keV: 20 eV channels onto 10 eV channels halves the counts.
    assert target.sum() == pytest.approx(continuum[e < readout.energies()[-1]].sum(), rel=0.01)
    strat = Stratigraphy([Layer({"VM": 1}, 20)])
    with_bg = fast.simulate(strat, background=rate * 10.0)
    assert with_bg.sum() == pytest.approx(fast.simulate(strat).sum() + (rate * 10.0).sum())


def test_instrument_file_round_trip(tmp_path, instrument):
    from napari_xrf_pigments.physics import Filter, Instrument, Readout

    custom = instrument.replace(
        live_time_s=0.5, air_out_cm=0.3,
        attenuators=(Filter("Kapton", 1.42, 25.0, compounds=(("C1", 0.69), ("N1", 0.07),
                                                              ("O1", 0.24))),),
        readout=Readout(gain_keV=0.02, n_channels=2048))
    path = tmp_path / "elio.json"
    custom.save(path)
    assert Instrument.load(path) == custom
    data = json.loads(path.read_text())
    data["readout"]["gian_keV"] = 0.02
    path.write_text(json.dumps(data))
    with pytest.raises(UnreadableFileError, match="gian_keV"):
        Instrument.load(path)
    with pytest.raises(InvalidDataError):
        Instrument(tube=None)


def test_import_from_pymca_cfg():
    from PyMca5 import PyMcaDataDir

    from napari_xrf_pigments.physics import Instrument

    inst = Instrument.from_pymca_cfg(os.path.join(PyMcaDataDir.PYMCA_DATA_DIR, "Steel.cfg"))
    assert inst.tube is None and inst.beam.energies_keV == (16.0,)
    assert inst.excitation().flux == pytest.approx(2.024e8)
    assert inst.live_time_s == 300.0
    assert (inst.incidence_deg, inst.takeoff_deg) == (45.0, 45.0)
    assert inst.air_out_cm == pytest.approx(5.0)
    assert inst.beam_filters[0].material == "Al1"
    assert inst.beam_filters[0].thickness_um == pytest.approx(1100.0)
    assert inst.detector.thickness_um == pytest.approx(350.0)
    assert inst.detector.window_thickness_um == pytest.approx(20.0)
    assert inst.readout.gain_keV == pytest.approx(0.0119281593146)
    assert inst.readout.fano == pytest.approx(0.101156)
    assert inst.readout.hypermet_flag == 1


def test_faithful_refuses_more_layers_than_pymca_handles(instrument, lib):
    from napari_xrf_pigments.physics import FaithfulSimulator

    deep = Stratigraphy([Layer({"LW": 1}, 5)] * 11)
    with pytest.raises(InvalidDataError, match="at most 10"):
        FaithfulSimulator(instrument, lib).simulate(deep)


def test_unknown_component_gives_a_clear_error(fast):
    with pytest.raises(InvalidDataError, match="not in the pigment library"):
        fast.simulate(Stratigraphy([Layer({"XX": 1}, 5)]))


def test_physics_package_imports_pymca_lazily():
    code = ("import sys, napari_xrf_pigments.physics as ph\n"
            "before = 'PyMca5' in sys.modules\n"
            "ph.FastSimulator\n"
            "print(before, 'PyMca5' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_jittered_readout_changes_only_the_readout(fast):
    from napari_xrf_pigments.physics import jitter_readout

    base = fast.instrument.readout
    other = jitter_readout(base, np.random.default_rng(0))
    assert other != base and other.n_channels == base.n_channels
    assert dataclasses.replace(other, zero_keV=base.zero_keV, gain_keV=base.gain_keV,
                               noise_keV=base.noise_keV, fano=base.fano) == base
