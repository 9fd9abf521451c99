"""Training sets of simulated layered-paint spectra with pigment labels.

The paper trains on one pure pigment per layer, one instrument, 10 s dwell (section 2.1.2). A
model trained so fails on real scans, so besides the paper's grid this generator draws:

- layers that are Table 2 recipes of the pigment library (jittered) or random mixtures of 2-4 pigments;
- binder from none to 50 wt% (the mock-ups hold 25 wt%: ~3x less pigment per um);
- one or two paint layers, sometimes bare ground, with thickness jitter;
- instrument variants (tube anode and voltage, angles, air path, detector), each with a pool
  of jittered readouts (calibration offset/gain, resolution);
- counting times from 0.1 s to 10 s (log-uniform) and a tube-current factor;
- optionally a measured background (SNIP of a real cube's mean spectrum), randomly scaled;
- optionally (``p_distractor``) out-of-library "distractor" paints, pure or mixed with class
  pigments, labelled as none of the classes, so that the model learns to call nothing there.

All spectra are written on the base instrument's nominal energy axis: jittered calibrations
then look, to the model, like the calibration errors of real files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import threading
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..physics import Instrument, readout_pool
from ..pigments import Layer, Stratigraphy, ground_layer
from ..progress import Progress
from .detectable import detectable_labels
from .mockup import MockupRecipe
from .trainset import TrainingSet, as_pigment_labels

BINDERS = ("alkyd", "linseed_oil")


@dataclass(frozen=True)
class TrainingRecipe:
    """How training stratigraphies and instruments are drawn (fractions are probabilities).

    Attributes
    ----------
    p_two_layers, p_bare_ground : float
        Two paint layers; no paint at all. The rest has one paint layer.
    p_pure, p_table2 : float
        A layer is one pure pigment (the paper's grid); a jittered Table 2 recipe. The rest is
        a random mixture of 2-4 pigments.
    p_no_binder : float
        A layer has no binder (the paper's simulation); otherwise binder is uniform in
        ``binder_range``.
    top_um, bottom_um, ground_um : (float, float)
        Thickness ranges in um (paper: 50-200, 100-150, mock-ups 30-200 and 150-200).
    live_time_s : (float, float)
        Counting-time range (log-uniform), s.
    current_factor : (float, float)
        Tube-current factor range (log-uniform) on top of the counting time.
    n_instruments, readouts_per_instrument : int
        Instrument variants (the base instrument is the first) and jittered readouts each.
    min_fraction : float
        Smallest pigment mass fraction in random mixtures.
    p_distractor : float
        A layer holds distractors (out-of-library paints, never a class): half of these are a
        pure distractor, the others a random mixture of 1-3 class pigments and 1-2
        distractors. Labels are those of the class pigments only. With 0 (the default) the
        generator draws exactly what it drew before distractors existed.
    distractor_split : {"train", "test"}
        Which of the library's distractors are drawn (keep ``"test"`` for evaluation).
    """

    p_two_layers: float = 0.6
    p_bare_ground: float = 0.04
    p_pure: float = 0.35
    p_table2: float = 0.25
    p_no_binder: float = 0.2
    binder_range: tuple[float, float] = (0.1, 0.5)
    top_um: tuple[float, float] = (10.0, 200.0)
    bottom_um: tuple[float, float] = (30.0, 200.0)
    ground_um: tuple[float, float] = (100.0, 300.0)
    live_time_s: tuple[float, float] = (0.1, 10.0)
    current_factor: tuple[float, float] = (0.5, 2.0)
    n_instruments: int = 6
    readouts_per_instrument: int = 6
    min_fraction: float = 0.03
    p_distractor: float = 0.0
    distractor_split: str = "train"

    def __post_init__(self):
        if not 0.0 <= self.p_distractor <= 1.0:
            raise ValueError(f"p_distractor must be in [0, 1], got {self.p_distractor!r}")
        if self.distractor_split not in ("train", "test"):
            raise ValueError(
                f"distractor_split must be 'train' or 'test', got {self.distractor_split!r}")


#: Tube anodes of the instrument variants, as drawn (Rh twice as often), and their voltages.
VARIANT_ANODE_DRAW = ("Rh", "Rh", "W", "Mo", "Ag", "Cu")
VARIANT_KV = (30.0, 50.0)


def instrument_variants(base, rng, n: int) -> list:
    """``n`` instruments: ``base`` first, then variants of tube, geometry, air and detector.

    Parameters
    ----------
    base : Instrument
    rng : numpy.random.Generator
    n : int

    Returns
    -------
    list of Instrument
    """
    variants = [base]
    for _ in range(n - 1):
        tube = base.tube
        if tube is not None:
            tube = dataclasses.replace(
                tube,
                anode=str(rng.choice(VARIANT_ANODE_DRAW)),
                voltage_kV=float(rng.uniform(*VARIANT_KV)),
                window_thickness_um=float(rng.uniform(50.0, 300.0)),
            )
        detector = dataclasses.replace(
            base.detector,
            thickness_um=float(rng.uniform(300.0, 1000.0)),
            window_thickness_um=float(rng.uniform(8.0, 25.0)),
        )
        variants.append(
            base.replace(
                name=f"{base.name} variant",
                tube=tube,
                incidence_deg=float(rng.uniform(45.0, 90.0)),
                takeoff_deg=float(rng.uniform(30.0, 70.0)),
                air_in_cm=float(rng.uniform(0.2, 3.0)),
                air_out_cm=float(rng.uniform(0.2, 3.0)),
                detector=detector,
            )
        )
    return variants


def _log_uniform(rng, low, high, size=None):
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


class _LayerSampler:
    """Draws paint layers (see TrainingRecipe) and the matching labels."""

    def __init__(self, library, recipe: TrainingRecipe, rng):
        self.library, self.recipe, self.rng = library, recipe, rng
        self.classes = tuple(library.classes)
        # The Table 2 branch draws the paper's recipes (those with a position); the others are
        # mock-up strips.
        self.mixtures = tuple(mix for mix in library.mixtures if mix.position is not None)
        self.distractors = ()
        if recipe.p_distractor > 0:
            self.distractors = tuple(
                m.abbreviation for m in library.distractors(recipe.distractor_split))
            if not self.distractors:
                raise ValueError(
                    f"p_distractor > 0 but the library has no {recipe.distractor_split!r} "
                    "distractors")

    def pigments_of(self, cls: str) -> dict:
        # A class with a mock-up substitute (emerald green: verdigris + sodium arsenite)
        # appears as either, half of the time each.
        if self.rng.random() < 0.5:
            return self.library.expand_substitutes({cls: 1.0})
        return {cls: 1.0}

    def with_distractors(self) -> dict:
        r, rng = self.recipe, self.rng
        if rng.random() < 0.5:
            return {str(rng.choice(self.distractors)): 1.0}
        k = int(rng.choice([1, 2, 2, 3]))
        d = int(rng.integers(1, min(2, len(self.distractors)) + 1))
        chosen = [str(c) for c in rng.choice(self.classes, size=k, replace=False)]
        foreign = [str(a) for a in rng.choice(self.distractors, size=d, replace=False)]
        fractions = np.maximum(rng.dirichlet(np.ones(k + d)), r.min_fraction)
        fractions = fractions / fractions.sum()
        out = self.class_mixture(chosen, fractions[:k])
        for abbr, f in zip(foreign, fractions[k:]):
            out[abbr] = out.get(abbr, 0.0) + float(f)
        return out

    def composition(self) -> dict:
        r, rng = self.recipe, self.rng
        # No draw at all without distractors: default recipes give the same sets as before.
        if r.p_distractor > 0 and rng.random() < r.p_distractor:
            return self.with_distractors()
        u = rng.random()
        if u < r.p_pure:
            return self.pigments_of(str(rng.choice(self.classes)))
        if u < r.p_pure + r.p_table2:
            mixture = self.mixtures[int(rng.integers(len(self.mixtures)))]
            # Relative jitter of the recipe's fractions (mock-up paint is hand-mixed).
            return {k: v * float(np.exp(rng.normal(0.0, 0.3))) for k, v in mixture.pigments}
        k = int(rng.choice([2, 2, 3, 4]))
        chosen = rng.choice(self.classes, size=k, replace=False)
        fractions = rng.dirichlet(np.ones(k))
        fractions = np.maximum(fractions, r.min_fraction)
        return self.class_mixture(chosen, fractions / fractions.sum())

    def class_mixture(self, classes, fractions) -> dict:
        """Abbreviation -> mass fraction of class pigments (substitutes drawn per class)."""
        out: dict = {}
        for cls, f in zip(classes, fractions):
            for abbr, part in self.pigments_of(str(cls)).items():
                out[abbr] = out.get(abbr, 0.0) + float(f) * part
        return out

    def layer(self, thickness_range):
        r, rng = self.recipe, self.rng
        binder_fraction = 0.0 if rng.random() < r.p_no_binder else float(rng.uniform(*r.binder_range))
        return Layer(
            self.composition(),
            float(rng.uniform(*thickness_range)),
            binder=str(rng.choice(BINDERS)),
            binder_fraction=binder_fraction,
        )

    def stratigraphy(self):
        r, rng = self.recipe, self.rng
        u = rng.random()
        if u < r.p_bare_ground:
            paint = []
        elif u < r.p_bare_ground + r.p_two_layers:
            paint = [self.layer(r.top_um), self.layer(r.bottom_um)]
        else:
            paint = [self.layer(r.top_um)]
        ground = ground_layer(
            float(rng.uniform(*r.ground_um)),
            binder="alkyd",
            binder_fraction=MockupRecipe.binder_fraction if rng.random() < 0.5 else 0.0,
        )
        return Stratigraphy((*paint, ground)), len(paint)


def generate_training_set(
    n: int,
    *,
    seed: int = 0,
    instrument=None,
    library=None,
    recipe: TrainingRecipe | None = None,
    background_cps=None,
    batch_size: int = 512,
    detectable: bool = True,
    noise: bool = True,
    pool=None,
):
    """Simulate a labelled training set (a progress job; see :mod:`..progress`).

    Parameters
    ----------
    n : int
        Number of spectra.
    seed : int
        Everything drawn is determined by the seed.
    instrument : Instrument, optional
        Base instrument (default: the ELIO-like default). Spectra are on its readout's axis.
    library : PigmentLibrary, optional
    recipe : TrainingRecipe, optional
    background_cps : ndarray, shape (channels,), optional
        Background counts per second on the base readout's axis (e.g. from
        :func:`~napari_xrf_pigments.physics.estimate_background`); added scaled by the live
        time and a random level in [0.5, 2].
    batch_size : int
        Spectra simulated per step.
    detectable : bool
        Also label which present classes reach the detector (:mod:`.detectable`; costs one
        more simulation per present class, about 3x the time; the spectra do not change).
    noise : bool
        Poisson counts (default). False writes the expected counts themselves, for measuring
        what the physics allows without counting noise (the same paint and labels for the
        same seed).
    pool : ClusterPool, optional
        Simulate the batches on a dask.distributed cluster (:mod:`napari_xrf_pigments.cluster`).
        The set is the same, to the bit, as without it: only the physics of each batch (no
        random draw) runs on the workers; every draw, the Poisson counts included, is made here
        from the one stream, in the order of a run in this process.

    Yields
    ------
    Progress
        Spectra done out of ``n``.

    Returns
    -------
    TrainingSet
        Poisson counts (n, channels) on the base readout's axis, labels per pigment class
        (present, top, and detectable if asked), per-spectrum ``params`` (layers, thicknesses, live
        time, instrument variant; with
        ``recipe.p_distractor > 0`` also ``distractor_present``/``distractor_top``, a
        distractor in any / the top layer) and the generation parameters as ``provenance``.
    """
    # here, not at the top: the tests monkeypatch this name on its module
    from ..pigments import load_pigment_library

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    instrument = Instrument() if instrument is None else instrument
    library = load_pigment_library() if library is None else library
    recipe = TrainingRecipe() if recipe is None else recipe
    rng = np.random.default_rng(seed)
    sampler = _LayerSampler(library, recipe, rng)
    classes = library.labels  # the classes, then the groups
    energy = instrument.readout.energies()
    if background_cps is not None:
        background_cps = np.asarray(background_cps, dtype=np.float64)
        if background_cps.shape != energy.shape:
            raise ValueError(
                f"background has {background_cps.shape} channels, expected {energy.shape}"
            )

    instruments = instrument_variants(instrument, rng, max(1, recipe.n_instruments))
    readouts = [readout_pool(inst.readout, rng, recipe.readouts_per_instrument) for inst in instruments]
    which_instrument = rng.integers(0, len(instruments), n)
    which_readout = rng.integers(0, recipe.readouts_per_instrument, n)
    live_time = _log_uniform(rng, *recipe.live_time_s, n) * _log_uniform(rng, *recipe.current_factor, n)
    background_level = rng.uniform(0.5, 2.0, n)

    spectra = np.empty((n, energy.size), dtype=np.float32)
    present = np.zeros((n, len(classes)), dtype=bool)
    detectable = np.zeros((n, len(classes)), dtype=bool) if detectable else None
    top = np.zeros((n, len(classes)), dtype=bool)
    n_layers = np.zeros(n, dtype=np.int8)
    top_um = np.zeros(n, dtype=np.float32)
    bottom_um = np.zeros(n, dtype=np.float32)
    foreign = set(sampler.distractors)
    foreign_present = np.zeros(n, dtype=bool)
    foreign_top = np.zeros(n, dtype=bool)
    strats = []
    for i in range(n):
        strat, n_paint = sampler.stratigraphy()
        strats.append(strat)
        present[i], top[i] = strat.labels(library, classes)
        n_layers[i] = n_paint
        if n_paint:
            top_um[i] = strat.layers[0].thickness_um
        if n_paint == 2:
            bottom_um[i] = strat.layers[1].thickness_um
        if foreign:
            hits = [any(a in foreign for a, f in layer.pigments if f > 0)
                    for layer in strat.layers[:n_paint]]
            foreign_present[i] = any(hits)
            foreign_top[i] = bool(hits) and hits[0]

    # The physics of a batch draws nothing: it may run anywhere, in any order. The Poisson
    # counts are drawn here, batch after batch in the order of the loops below, so that the
    # stream is consumed as it always was, wherever and whenever the physics was done.
    batches = []  # (instrument variant, readout, spectra)
    for k in range(len(instruments)):
        for r in range(len(readouts[k])):
            idx = np.flatnonzero((which_instrument == k) & (which_readout == r))
            batches += [(k, r, idx[start : start + batch_size]) for start in range(0, idx.size, batch_size)]
    # Only the distractors that can be drawn: without them the simulator's components are
    # those of the library before distractors existed (same numbers, faster set-up).
    sim_library = library.without_distractors(keep=sampler.distractors)
    work = [(readouts[k][r], [strats[i] for i in part], present[part], live_time[part],
             background_level[part]) for k, r, part in batches]
    options = (background_cps, detectable is not None)
    if pool is None:
        yield Progress(0, n, "building the physics of the instrument variants")
        results = _batches_here(instruments, sim_library, library, batches, work, options)
    else:
        yield Progress(0, n, f"{len(batches)} batches on the cluster")
        results = _batches_on(pool, instruments, sim_library, library, batches, work, options)
    drawn, finished, done = 0, np.zeros(len(batches), dtype=bool), 0
    for b, (expected_counts, labels) in results:
        k, _, part = batches[b]
        # Held here until its turn comes: float32 from the simulator, the spectra's dtype, so
        # the Poisson draw below gets the very numbers a draw straight from the batch got.
        spectra[part] = expected_counts
        if labels is not None:
            detectable[part] = labels
        finished[b] = True
        while drawn < len(batches) and finished[drawn]:
            if noise:
                at = batches[drawn][2]
                spectra[at] = rng.poisson(spectra[at])
            drawn += 1
        done += part.size
        message = (f"instrument {k + 1}/{len(instruments)}" if pool is None
                   else f"batches {int(finished.sum())}/{len(batches)}")
        yield Progress(done, n, message)

    provenance = {
        "generator": "napari_xrf_pigments.datasets.training.generate_training_set",
        "package_version": __version__,
        "seed": seed,
        "n": n,
        "recipe": dataclasses.asdict(recipe),
        "instrument": instrument.to_dict(),
        # The tubes actually drawn (base first): what the preflight's tube check compares with.
        "tubes": [{"anode": inst.tube.anode, "voltage_kV": inst.tube.voltage_kV}
                  for inst in instruments if inst.tube is not None],
        "background": background_cps is not None,
        "noise": noise,
        "groups": [g.to_dict() for g in library.groups],
    }
    params = {
        "n_layers": n_layers,
        "top_um": top_um,
        "bottom_um": bottom_um,
        "live_time_s": live_time.astype(np.float32),
        "instrument": which_instrument.astype(np.int16),
    }
    if foreign:  # only then: files of default recipes keep their layout
        params["distractor_present"] = foreign_present
        params["distractor_top"] = foreign_top
    return TrainingSet(
        spectra=spectra,
        energy=energy,
        present=present,
        top=top,
        pigments=as_pigment_labels([(c, library.name_of(c)) for c in classes]),
        provenance=json.loads(json.dumps(provenance, default=str)),
        params=params,
        detectable=detectable,
    )


# -- the physics of a batch: no random draw, so it runs here or on a cluster's workers -------


def batch_counts(simulator, library, batch, options):
    """Expected counts and detectable labels of one batch of stratigraphies.

    Parameters
    ----------
    simulator : FastSimulator
        Of the batch's instrument variant (float32 spectra).
    library : PigmentLibrary
        The whole library (the detectable labels ask it for classes and evidence).
    batch : tuple
        ``(readout, stratigraphies, present (b, n_classes), live_time_s (b,),
        background_level (b,))``.
    options : tuple
        ``(background_cps or None, detectable labels wanted)``.

    Returns
    -------
    counts : ndarray of float32, shape (b, channels)
        Expected counts (measured background included), clipped at 0.
    labels : ndarray of bool, shape (b, n_classes), or None
    """
    readout, strats, present, live_time, background_level = batch
    background_cps, wants_labels = options
    expected = simulator.simulate(strats, readout=readout, live_time_s=live_time)
    background = None
    if background_cps is not None:
        background = ((live_time * background_level)[:, None] * background_cps).astype(expected.dtype)
        expected = expected + background
    labels = None
    if wants_labels:
        labels = detectable_labels(strats, present, library.labels, simulator, library,
                                   live_time_s=live_time, readout=readout, expected=expected,
                                   background=background)
    return np.clip(expected, 0.0, None), labels


def _batches_here(instruments, sim_library, library, batches, work, options):
    """(batch index, :func:`batch_counts`) in order, in this process."""
    from ..physics import FastSimulator

    simulator, current = None, None
    for b, (k, _, _) in enumerate(batches):
        if k != current:  # one simulator at a time: the batches come instrument by instrument
            simulator, current = FastSimulator(instruments[k], sim_library), k
        yield b, batch_counts(simulator, library, work[b], options)


def _batches_on(pool, instruments, sim_library, library, batches, work, options):
    """(batch index, :func:`batch_counts`) as the cluster's workers finish them.

    A task carries its instrument variant, the libraries and its batch's stratigraphies (tens
    of kB), never spectra; a worker builds each variant's simulator once
    (:func:`simulate_batch_task`). The batches of one variant go preferably to one worker, so
    the simulators' set-up (seconds each) is split among the workers rather than repeated by
    each.
    """
    # The simulator a worker keeps is named by what it is made of.
    keys = [hashlib.sha256(pickle.dumps((inst, sim_library))).hexdigest() for inst in instruments]
    calls = [(keys[k], instruments[k], sim_library, library, work[b], options)
             for b, (k, _, _) in enumerate(batches)]
    yield from pool.spread(simulate_batch_task, calls, weights=[part.size for _, _, part in batches],
                           groups=[k for k, _, _ in batches])


_SIMULATORS: dict = {}  # on a worker: key -> FastSimulator, the most recently used last
_SIMULATORS_KEPT = 4  # a simulator with its readouts' responses is ~100 MB
_SIMULATORS_LOCK = threading.Lock()


def simulate_batch_task(key, instrument, sim_library, library, batch, options):
    """Task: :func:`batch_counts` on a worker, with the simulator it keeps for ``key``."""
    from ..physics import FastSimulator

    with _SIMULATORS_LOCK:
        simulator = _SIMULATORS.pop(key, None)
    if simulator is None:
        simulator = FastSimulator(instrument, sim_library)
    with _SIMULATORS_LOCK:
        _SIMULATORS[key] = simulator
        while len(_SIMULATORS) > _SIMULATORS_KEPT:
            _SIMULATORS.pop(next(iter(_SIMULATORS)))
        # The readout's response is cached inside the simulator: made under the lock, so that
        # threads of one worker do not build (and evict) it side by side.
        simulator.response(batch[0])
    return batch_counts(simulator, library, batch, options)
