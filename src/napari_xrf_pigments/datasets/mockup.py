"""Geometry of simulated mock-up paintings: crossed paint strips over a ground (paper Fig. 1, 7).

Bottom-layer strips run vertically, top-layer strips horizontally, with gaps between strips so
that every combination occurs: top over bottom, top over ground, bottom exposed, bare ground.
A strip is a named mixture of the pigment library (Table 2 of the paper) or one material of it,
a class pigment or an out-of-library distractor (e.g. ``"TiR"``, titanium white).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from ..atomic import atomic_hdf5
from ..cube import XRFCube
from ..errors import InvalidDataError, UnreadableFileError
from ..progress import Progress
from .detectable import detectable_labels

#: Truth groups that files may lack (written before they existed, or empty).
OPTIONAL_TRUTH = ("detectable", "distractor")
# The arrangement of the paper's Fig. 7 mock-up.
FIG7_TOPS = ("Top 2", "Top 1", "Top 3", "Top 4")
FIG7_BOTTOMS = ("Bottom 2A", "Bottom 2B", "Bottom 2C", "Bottom 1A", "Bottom 1C", "Bottom 1B")


@dataclass(frozen=True)
class StripLayout:
    """Which strip covers each pixel.

    Attributes
    ----------
    top_index, bottom_index : ndarray of int, shape (rows, columns)
        Index into ``tops`` / ``bottoms`` of the strip at each pixel, -1 where there is none.
    tops, bottoms : tuple of str
        Names of the top (horizontal) and bottom (vertical) strips.
    """

    top_index: np.ndarray
    bottom_index: np.ndarray
    tops: tuple[str, ...]
    bottoms: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.top_index.shape


def crossed_strips(
    tops=FIG7_TOPS, bottoms=FIG7_BOTTOMS, *, strip_px: int = 6, gap_px: int = 3, margin_px: int = 3
) -> StripLayout:
    """Lay out horizontal top strips across vertical bottom strips.

    Parameters
    ----------
    tops, bottoms : sequence of str
        Strip names, top to bottom of the image / left to right: mixture names of the pigment
        library (``"Top 2"``) or material abbreviations (``"VM"``, ``"TiR"``) for a pure
        paint. :func:`simulate_mockup` checks them.
    strip_px, gap_px, margin_px : int
        Strip width, gap between strips and border, in pixels.

    Returns
    -------
    StripLayout
        rows = 2*margin + n_tops*strip + (n_tops-1)*gap, columns likewise for bottoms.
    """

    def bands(n):
        size = 2 * margin_px + n * strip_px + max(0, n - 1) * gap_px
        index = np.full(size, -1, dtype=np.int16)
        for i in range(n):
            start = margin_px + i * (strip_px + gap_px)
            index[start : start + strip_px] = i
        return index

    rows, cols = bands(len(tops)), bands(len(bottoms))
    top_index = np.repeat(rows[:, None], cols.size, axis=1)
    bottom_index = np.repeat(cols[None, :], rows.size, axis=0)
    return StripLayout(top_index, bottom_index, tuple(tops), tuple(bottoms))


@dataclass(frozen=True)
class MockupRecipe:
    """Materials and thicknesses of a simulated mock-up (paper section 2.1.1).

    Attributes
    ----------
    top_um : (float, float)
        Range of top-strip thicknesses; each strip gets one value (paper: 30-200 um).
    bottom_um, ground_um : (float, float)
        Bottom-strip and ground thickness ranges (paper: about 100-150 and 150-200 um).
    thickness_jitter : float
        Relative standard deviation of the thickness from pixel to pixel (hand-cast paint).
    binder_fraction : float
        Binder mass fraction of every paint (paper: pigment:binder 3:1).
    """

    top_um: tuple[float, float] = (30.0, 200.0)
    bottom_um: tuple[float, float] = (100.0, 150.0)
    ground_um: tuple[float, float] = (150.0, 200.0)
    thickness_jitter: float = 0.08
    binder_fraction: float = 0.25


def strip_pigments(name: str, library) -> dict[str, float]:
    """The pigments of a strip: a named mixture, one material of the library, or a mixture spec.

    Parameters
    ----------
    name : str
        Mixture name (``"Bottom 4A"``; wins if a material has the same name), abbreviation of
        a pigment or distractor (``"LW"``, ``"Azu"``), or mass parts of materials joined by
        ``+`` (``"LTY:50+Azu:50"``).
    library : PigmentLibrary

    Returns
    -------
    dict of str to float
        Abbreviation to mass fraction.

    Raises
    ------
    InvalidDataError
        For an unknown name or a ground or binder, listing the names that work.
    """
    for mix in library.mixtures:
        if mix.name == name:
            return dict(mix.pigments)
    if name in library and library[name].kind in ("pigment", "distractor"):
        return {name: 1.0}
    parts = [part.strip().rpartition(":") for part in name.split("+")]
    if all(sep for _, sep, _ in parts):
        fractions = {}
        for abbr, _, amount in parts:
            try:
                value = float(amount)
            except ValueError:
                value = float("nan")
            if not value > 0 or value == float("inf"):
                raise InvalidDataError(
                    f"strip {name!r}: {amount!r} is not a positive mass part of {abbr!r}")
            fractions[abbr] = fractions.get(abbr, 0.0) + value
        for abbr in fractions:
            strip_pigments(abbr, library)  # one material each (or the error listing them)
        total = sum(fractions.values())
        return {abbr: value / total for abbr, value in fractions.items()}
    mixtures = ", ".join(m.name for m in library.mixtures)
    materials = ", ".join(m.abbreviation for m in library
                          if m.kind in ("pigment", "distractor"))
    raise InvalidDataError(
        f"unknown strip {name!r}: not a mixture or a pigment of the library, nor mass parts "
        f"such as LTY:50+Azu:50 (mixtures: {mixtures}; pigments and distractors: {materials})"
    )


def simulate_mockup(
    layout: StripLayout | None = None,
    *,
    seed: int = 0,
    instrument=None,
    library=None,
    recipe: MockupRecipe | None = None,
    live_time_s: float | None = None,
    pixel_size_mm: float = 1.0,
):
    """Simulate a scanned mock-up painting and its ground truth (a progress job).

    Parameters
    ----------
    layout : StripLayout, optional
        Default: the paper's Fig. 7 arrangement (:func:`crossed_strips`).
    seed : int
        Thicknesses and counting noise are determined by the seed.
    instrument : Instrument, optional
        Default: the ELIO-like default instrument.
    library : PigmentLibrary, optional
    recipe : MockupRecipe, optional
    live_time_s : float, optional
        Dwell per pixel in s; default the instrument's (10 s, as the paper's mock-up scans).
    pixel_size_mm : float
        Step size (the paper scanned at 1 mm).

    Yields
    ------
    Progress
        Rows simulated.

    Returns
    -------
    cube : XRFCube
        Poisson counts (rows, columns, channels) as uint32 in memory.
    truth : dict
        ``present`` and ``top``: dict of class abbreviation -> bool (rows, columns);
        ``detectable``: the same, where the class's own lines reach the detector above noise
        (:mod:`.detectable`; a subset of ``present``);
        ``distractor``: dict of distractor abbreviation -> bool (rows, columns), the
        distractor in any layer, for each distractor the strips use (empty if none);
        ``top_index``/``bottom_index`` strip maps; ``attrs``: what was simulated.
    """
    # here: physics loads FastSimulator (PyMca5) on first use
    from ..physics import FastSimulator, Instrument
    from ..pigments import Layer, Stratigraphy, ground_layer, load_pigment_library

    layout = crossed_strips() if layout is None else layout
    instrument = Instrument() if instrument is None else instrument
    library = load_pigment_library() if library is None else library
    recipe = MockupRecipe() if recipe is None else recipe
    live_time_s = instrument.live_time_s if live_time_s is None else float(live_time_s)
    pigments = {name: strip_pigments(name, library) for name in (*layout.tops, *layout.bottoms)}
    used = {abbr for fractions in pigments.values() for abbr, f in fractions.items() if f > 0}
    distractors = tuple(m.abbreviation for m in library.distractors() if m.abbreviation in used)
    rng = np.random.default_rng(seed)
    classes = library.labels  # the classes, then the groups
    rows, cols = layout.shape

    top_um = rng.uniform(*recipe.top_um, len(layout.tops))
    bottom_um = rng.uniform(*recipe.bottom_um, len(layout.bottoms))
    ground_um = float(rng.uniform(*recipe.ground_um))

    def jittered(thickness):
        return float(thickness * np.exp(rng.normal(0.0, recipe.thickness_jitter)))

    def paint(name, thickness):
        # Galkyd (an alkyd) was the mock-ups' binder.
        return Layer(pigments[name], jittered(thickness), binder="alkyd",
                     binder_fraction=recipe.binder_fraction)

    present = np.zeros((len(classes), rows, cols), dtype=bool)
    top = np.zeros_like(present)
    foreign = {abbr: np.zeros((rows, cols), dtype=bool) for abbr in distractors}
    strata = []
    for r in range(rows):
        for c in range(cols):
            t, b = layout.top_index[r, c], layout.bottom_index[r, c]
            layers = []
            if t >= 0:
                layers.append(paint(layout.tops[t], top_um[t]))
            if b >= 0:
                layers.append(paint(layout.bottoms[b], bottom_um[b]))
            ground = ground_layer(jittered(ground_um), binder="alkyd", binder_fraction=recipe.binder_fraction)
            strat = Stratigraphy((*layers, ground))
            present[:, r, c], top[:, r, c] = strat.labels(library, classes)
            for layer in layers:
                for abbr, f in layer.pigments:
                    if f > 0 and abbr in foreign:
                        foreign[abbr][r, c] = True
            strata.append(strat)

    yield Progress(0, rows, "building the instrument physics")
    # Only the distractors in use: the simulator's components (and so the counts of mock-ups
    # without distractors) stay those of the library before distractors existed.
    simulator = FastSimulator(instrument, library.without_distractors(keep=distractors))
    # Integer counts, as detectors write them.
    counts = np.empty((rows, cols, instrument.readout.n_channels), dtype=np.uint32)
    expected = np.empty(counts.shape, dtype=np.float32)
    for r in range(rows):
        expected[r] = simulator.simulate(strata[r * cols : (r + 1) * cols], live_time_s=live_time_s)
        counts[r] = rng.poisson(np.clip(expected[r], 0.0, None))
        yield Progress(r + 1, rows, "simulating spectra")
    yield Progress(rows, rows, "which pigments reach the detector")
    detectable = detectable_labels(
        strata, present.reshape(len(classes), -1).T, classes, simulator, library,
        live_time_s=live_time_s, expected=expected.reshape(rows * cols, -1),
    ).T.reshape(present.shape)

    attrs = {
        "tops": list(layout.tops),
        "bottoms": list(layout.bottoms),
        "top_um": [round(float(v), 2) for v in top_um],
        "bottom_um": [round(float(v), 2) for v in bottom_um],
        "ground_um": round(ground_um, 2),
        "binder_fraction": recipe.binder_fraction,
        "live_time_s": live_time_s,
        "seed": seed,
        "instrument": instrument.name,
    }
    cube = XRFCube(
        counts,
        instrument.readout.energy_axis(),
        live_time=live_time_s,
        pixel_size=(pixel_size_mm, pixel_size_mm),
        positions=(np.arange(rows) * pixel_size_mm, np.arange(cols) * pixel_size_mm),
        format="simulated",
        metadata={"mockup": attrs, "instrument": instrument.to_dict()},
    )
    truth = {
        "present": dict(zip(classes, present)),
        "top": dict(zip(classes, top)),
        "detectable": dict(zip(classes, detectable)),
        "distractor": foreign,
        "top_index": layout.top_index,
        "bottom_index": layout.bottom_index,
        "attrs": attrs,
    }
    return cube, truth


def write_truth(path, truth: dict, library=None, *, force: bool = False):
    """Write mock-up ground truth (HDF5), atomically.

    Layout: ``/present/<ABBR>`` and ``/top/<ABBR>`` boolean (rows, columns) maps (pigment in
    any layer / in the top layer), ``/detectable/<ABBR>`` (its lines reach the detector),
    ``/distractor/<ABBR>`` (only if the mock-up holds distractors: distractor in any layer),
    ``/strips/top_index`` and ``/strips/bottom_index``
    (int16, -1 = no strip), root attribute ``mockup`` (JSON: recipes, thicknesses, seed,
    instrument) and ``pigments`` (JSON list of {abbreviation, name} of the classes).
    """
    from ..pigments import load_pigment_library

    library = load_pigment_library() if library is None else library
    with atomic_hdf5(path, force=force) as h5:
        for group in ("present", "top", *OPTIONAL_TRUTH):
            if group in OPTIONAL_TRUTH and not truth.get(group):
                continue
            g = h5.create_group(group)
            for abbr, mask in truth[group].items():
                g.create_dataset(abbr, data=np.asarray(mask, dtype=bool))
                if abbr in library or library.group(abbr) is not None:
                    g[abbr].attrs["pigment"] = library.name_of(abbr)
        strips = h5.create_group("strips")
        strips.create_dataset("top_index", data=truth["top_index"])
        strips.create_dataset("bottom_index", data=truth["bottom_index"])
        h5.attrs["mockup"] = json.dumps(truth["attrs"])
        h5.attrs["pigments"] = json.dumps(
            [{"abbreviation": a, "name": library.name_of(a)} for a in truth["present"]]
        )
    return path


def read_truth(path) -> dict:
    """Read a ground-truth file written by :func:`write_truth`.

    Returns
    -------
    dict
        ``present``/``top``: dict of abbreviation -> bool (rows, columns) array;
        ``detectable`` and ``distractor``: the same, empty for files without them.
    """
    import h5py


    try:
        with h5py.File(path, "r") as h5:
            if "present" not in h5:
                raise UnreadableFileError(path, "not a ground-truth file (no /present group)")
            truth = {
                group: {k: h5[group][k][()].astype(bool) for k in h5[group]}
                for group in ("present", "top")
                if group in h5
            }
            for name in OPTIONAL_TRUTH:  # older files and mock-ups without distractors
                group = h5.get(name)
                truth[name] = {} if group is None else {k: group[k][()].astype(bool) for k in group}
            return truth
    except OSError as exc:
        raise UnreadableFileError(path, f"not a readable HDF5 file ({exc})") from None
