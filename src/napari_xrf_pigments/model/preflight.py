"""Warnings before prediction: can the pigment model read this cube as it was trained to?

:func:`preflight_warnings` runs four cheap checks on a sample of the cube (at most
``max_spectra`` spectra, as evenly spaced whole rows read by slicing: a 30 GB h5py or dask cube is
never read whole) and one on the model alone, and returns one :class:`Preflight` item per
problem, an empty list when nothing looks wrong:

``"energy-range"``
    The model's energy range (``model.preprocessing.range_keV``) is not covered by the cube's
    calibrated energy axis (more than :data:`RANGE_TOLERANCE` of it missing), or holds only a
    few channels of it (a calibration in eV).
``"counts"``
    Total counts per pixel inside the model's energy range (median, 5th and 95th percentile of
    the sampled pixels that have counts) outside the range the model was trained on
    (:func:`training_conditions`): the median outside, or more than :data:`OUTSIDE_FRACTION`
    of the pixels.
``"tube"``
    The cube's metadata does not name the X-ray tube (anode and voltage), or names one unlike
    every instrument of the training set: another anode, or a voltage more than
    :data:`KV_TOLERANCE` outside the trained range.
``"calibration"``
    The energy calibration is off: peaks of lines that are (almost) always present or strong
    (Ar Ka of the air, Ca Ka, Fe Ka, Cu Ka, Zn Ka, Hg La, Pb La, Pb Lb, Sr Ka and the scattered
    Ka / La of a known tube anode) sit, in the median, more than
    :data:`~napari_xrf_pigments.calibration.CALIBRATION_TOLERANCE` of the detector FWHM away
    from their energies (:func:`~napari_xrf_pigments.calibration.measure_calibration`, which
    lives in :mod:`napari_xrf_pigments.calibration` beside the automatic calibration).
``"classes"``
    The model was trained on other classes than the pigment library in use holds (an older
    model, or a library extended since): the model's output columns (``model.pigments``,
    groups included) against the library's labels (classes, then groups) and names. The maps
    still follow the model's own columns; a library label the model lacks gets no map, a model
    column the library lacks (or names otherwise) gets no element-evidence check.

Two more codes stop the checks early: ``"uncalibrated"`` (the cube has no energy calibration;
prediction refuses it anyway) and ``"data"`` (the sample could not be read, or holds NaN or
negative counts). A check that fails for any other reason becomes an item "could not check X:
reason" of its code: :func:`preflight_warnings` never raises because of what a cube contains.

The parts are public too: :func:`measure_cube_calibration` / :func:`measure_calibration` (the
offset and the lines it was measured on, also when it is fine; :func:`cube_resolution` the
detector FWHM the cube's metadata records), :func:`training_conditions`
(counts and tubes of a model's training set, from its metadata) and :func:`cube_tube` (anode,
kV or beam from a cube's metadata).

Qt-free and Keras-free: only the model's metadata and preprocessing are used. PyMca (line
tables, SNIP) and scipy are imported when the calibration check runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The calibration check's line fits live in ..calibration (shared with the automatic
# calibration); LineMatch, CalibrationCheck and measure_calibration stay importable from here.
from ..calibration import (
    DEFAULT_FANO,
    DEFAULT_RESOLUTION_KEV,
    CalibrationCheck,
    LineMatch,
    measure_calibration,
)
from ..cube import check_counts, sample_plan
from ..datasets.training import VARIANT_ANODE_DRAW, VARIANT_KV
from ..errors import CalibrationError
from ..lines import element_symbol, normalize_symbol
from ..physics.instrument import MN_KA_KEV, Readout
from ..preprocess import channel_edges

__all__ = [
    "CalibrationCheck",
    "LineMatch",
    "Preflight",
    "TrainingConditions",
    "cube_resolution",
    "cube_tube",
    "measure_calibration",
    "measure_cube_calibration",
    "preflight_warnings",
    "training_conditions",
]

#: Largest fraction of the model's energy range the cube may miss without a warning.
RANGE_TOLERANCE = 0.05
#: Count range (total counts per spectrum on the model grid) assumed when a model's metadata
#: says nothing usable about its training spectra.
DEFAULT_COUNT_RANGE = (1.0e3, 1.0e6)
#: Counts per second on the model grid (2.8-30 keV) of the default ELIO-like instrument (Rh,
#: 40 kV, 40 uA) on painted mock-ups (simulated: median 2.4e4/s over paint on a chalk ground);
#: with the training set's live-time range it bounds the training counts when no count
#: augmentation was used.
TYPICAL_RATE_CPS = 2.0e4
#: Tube current the typical rate refers to, mA.
TYPICAL_CURRENT_MA = 0.04
#: Warn when more than this fraction of the sampled pixels lies outside the training counts.
OUTSIDE_FRACTION = 0.25
#: Tube anodes and voltages drawn for the instrument variants of a training set
#: (:func:`~napari_xrf_pigments.datasets.training.instrument_variants`), besides the base tube.
VARIANT_ANODES = tuple(dict.fromkeys(VARIANT_ANODE_DRAW))
#: How far (kV) a tube voltage may lie outside the trained range without a warning.
KV_TOLERANCE = 5.0
_TUBE_KEYS = ("tube", "xray_tube", "x_ray_tube", "source")
# Keys of the cube's metadata itself, then of a tube/source dictionary inside it (where a bare
# "voltage" or "target" cannot mean a detector's).
_ANODE_KEYS = ("tube_anode", "anode", "tube_target", "anode_material", "tube_material")
_KV_KEYS = ("tube_voltage_kV", "tube_kV", "excitation_kV", "tube_voltage", "high_voltage_kV")
_NESTED_ANODE_KEYS = _ANODE_KEYS + ("target", "material", "element")
_NESTED_KV_KEYS = _KV_KEYS + ("voltage_kV", "kV", "voltage", "high_voltage")
# FWHM at Mn Ka, in keV or eV.
_RESOLUTION_KEYS = ("resolution_keV", "fwhm_keV", "energy_resolution_keV",
                    "detector_resolution_keV")
_RESOLUTION_EV_KEYS = ("resolution_eV", "fwhm_eV", "energy_resolution_eV",
                       "detector_resolution_eV")


@dataclass(frozen=True)
class Preflight:
    """One finding of the checks before prediction.

    Attributes
    ----------
    code : str
        ``"energy-range"``, ``"counts"``, ``"tube"``, ``"calibration"``, ``"classes"``,
        ``"uncalibrated"`` or ``"data"``.
    message : str
        One line for the user: what is wrong, the measured value, what to do.
    value : float or None
        The measured value: the missing fraction of the model's range (``"energy-range"``;
        None when the cube has only a few channels there),
        the median counts per pixel (``"counts"``), the tube voltage in kV (``"tube"``), the
        calibration offset in keV, measured minus true (``"calibration"``), the number of
        labels that differ between model and library (``"classes"``); None when unknown.
    """

    code: str
    message: str
    value: float | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TrainingConditions:
    """What a model's training spectra looked like, as far as its metadata says.

    Attributes
    ----------
    counts_range : (float, float)
        Total counts per spectrum on the model grid.
    counts_source : str
        Where ``counts_range`` comes from: ``"augmentation"`` (the training's Poisson
        augmentation range), ``"live time"`` (the training set's live-time range times
        :data:`TYPICAL_RATE_CPS`) or ``"default"`` (:data:`DEFAULT_COUNT_RANGE`).
    anode : str or None
        Tube anode of the training set's base instrument (None: not recorded, or a beam).
    kv : float or None
        Its voltage, kV.
    anodes : tuple of str
        Every anode of the training instruments (empty when unknown).
    kv_range : (float, float) or None
        Range of their voltages, kV.
    """

    counts_range: tuple[float, float]
    counts_source: str
    anode: str | None = None
    kv: float | None = None
    anodes: tuple[str, ...] = ()
    kv_range: tuple[float, float] | None = None

    @property
    def tube_description(self) -> str:
        """E.g. ``"Rh 40 kV and variants (Rh, W, Mo, Ag, Cu anodes, 30-50 kV)"``."""
        if self.anode is None:
            return "an unrecorded tube"
        text = f"{self.anode} {self.kv:g} kV"
        if len(self.anodes) > 1 or (self.kv_range and self.kv_range[0] != self.kv_range[1]):
            text += (f" and variants ({', '.join(self.anodes)} anodes, "
                     f"{self.kv_range[0]:.0f}-{self.kv_range[1]:.0f} kV)")
        return text


# -- the checks together ----------------------------------------------------------------------


def preflight_warnings(cube, model, *, max_spectra: int = 20000,
                       library=None) -> list[Preflight]:
    """Problems that make the model's maps of ``cube`` untrustworthy, found before prediction.

    Parameters
    ----------
    cube : XRFCube
        Counts (rows, columns, channels) as numpy, h5py or dask arrays; only sampled rows are
        read.
    model : PigmentModel
        Anything with ``preprocessing`` (:class:`~napari_xrf_pigments.preprocess.Preprocessing`)
        and ``metadata`` (dict), and ``pigments`` (its output columns, pairs of abbreviation and
        name) for the class check; the network is not used.
    max_spectra : int
        Most spectra read: evenly spaced whole rows (every row of a small cube; with more
        columns than this, every n-th spectrum of the middle row).
    library : PigmentLibrary, optional
        The pigment library the model's classes are compared with; default the built-in one.

    Returns
    -------
    list of Preflight
        In the order energy range, counts, tube, calibration, classes; empty when nothing looks
        wrong. A single ``"uncalibrated"`` item for a cube without an energy calibration.
    """
    try:
        energies = _cube_energies(cube)
    except Exception as exc:  # noqa: BLE001 - the cube cannot be read as calibrated
        return [Preflight("uncalibrated", f"the cube's energy axis cannot be used: {_reason(exc)}; "
                          "calibrate it (Energy calibration widget) before predicting")]
    if energies is None:
        return [Preflight(
            "uncalibrated",
            "the cube's energy axis is not calibrated, so the model cannot read it: calibrate it "
            "(Energy calibration widget: type zero/gain or pick two peaks), or in scripts "
            "cube.with_calibration(zero_keV, gain_keV)",
        )]
    metadata = getattr(cube, "metadata", None) or {}
    items: list[Preflight] = []
    items += _guarded("energy-range", "the energy range", _check_energy_range, energies, model)
    try:
        conditions = training_conditions(model)
    except Exception:  # noqa: BLE001 - unreadable metadata: fall back to the defaults
        conditions = TrainingConditions(DEFAULT_COUNT_RANGE, "default")
    model_range = _model_channels(energies, model)
    try:
        sums, totals = _read_sample(cube, model_range, max_spectra)
    except Exception as exc:  # noqa: BLE001 - unreadable or invalid counts
        items.append(Preflight("data", f"could not check the counts and the energy calibration: "
                               f"{_reason(exc)}"))
        items += _guarded("tube", "the tube", _check_tube, metadata, conditions)
        items += _guarded("classes", "the model's classes", _check_classes, model, library)
        return items
    if model_range is not None:
        items += _guarded("counts", "the counts per pixel", _check_counts, totals, conditions,
                          energies[model_range])
    items += _guarded("tube", "the tube", _check_tube, metadata, conditions)
    items += _guarded("calibration", "the energy calibration", _check_calibration, energies,
                      sums, metadata, totals.size)
    items += _guarded("classes", "the model's classes", _check_classes, model, library)
    return items


def _guarded(code, what, check, *args) -> list[Preflight]:
    try:
        return list(check(*args))
    except Exception as exc:  # noqa: BLE001 - a check must never stop a prediction
        return [Preflight(code, f"could not check {what}: {_reason(exc)}")]


def _reason(exc) -> str:
    """An exception as one line (messages are shown one per line)."""
    text = " ".join(str(exc).split())
    return text if text else type(exc).__name__


def _cube_energies(cube) -> np.ndarray | None:
    """Channel energies (keV) of the cube, None when uncalibrated."""
    if not cube.energy.calibrated:
        return None
    e = np.asarray(cube.energy.energies(), dtype=np.float64)
    if e.size < 2 or not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
        raise ValueError("its channel energies do not increase with channel (check the gain)")
    return e


def _model_channels(energies, model) -> slice | None:
    """Cube channels whose centres lie inside the model grid's outer edges (None: none)."""
    edges = channel_edges(model.preprocessing.grid)
    i0, i1 = np.searchsorted(energies, [edges[0], edges[-1]])
    return slice(int(i0), int(i1)) if i1 > i0 else None


def _read_sample(cube, model_range, max_spectra) -> tuple[np.ndarray, np.ndarray]:
    """Sum spectrum (channels,) and counts per pixel in the model range (n_sampled,), float64."""
    slices, col_step = sample_plan(cube.shape, cube.dtype, max_spectra)
    sums = np.zeros(cube.shape[2], dtype=np.float64)
    totals = []
    for sl in slices:
        part = cube.counts[sl] if col_step == 1 else cube.counts[sl, ::col_step]
        block = np.asarray(part)
        check_counts(block, where=f"rows {sl.start}-{sl.stop - 1}")
        sums += block.sum(axis=(0, 1), dtype=np.float64)
        if model_range is not None:
            totals.append(block[..., model_range].sum(axis=2, dtype=np.float64).ravel())
    return sums, (np.concatenate(totals) if totals else np.zeros(0))


# -- 1. energy range --------------------------------------------------------------------------


def _check_energy_range(energies, model):
    g0, g1 = model.preprocessing.range_keV
    e0, e1 = float(energies[0]), float(energies[-1])
    if e1 <= g0 or e0 >= g1:
        yield Preflight(
            "energy-range",
            f"the cube's energy axis ({e0:.2f} to {e1:.2f} keV) does not overlap the model's "
            f"({g0:.2f} to {g1:.2f} keV): check the calibration (keV, not eV) or use a model made "
            "for this range",
            1.0,
        )
        return
    inside = int(np.count_nonzero((energies >= g0) & (energies <= g1)))
    if inside < 0.1 * model.preprocessing.n_channels:
        # Channels keV wide: a calibration typed in eV, or a gain off by a factor of 1000.
        yield Preflight(
            "energy-range",
            f"the cube has only {inside} channels between {g0:.2f} and {g1:.2f} keV (the model "
            f"reads {model.preprocessing.n_channels}; channels {np.median(np.diff(energies)):g} "
            "keV wide): check the calibration (keV, not eV)",
            None,
        )
        return
    low, high = max(0.0, e0 - g0), max(0.0, g1 - e1)
    missing = (low + high) / (g1 - g0)
    if missing <= RANGE_TOLERANCE:
        return
    # A side is named when it misses more than 1 % of the range (not a channel or two).
    low, high = low > 0.01 * (g1 - g0), high > 0.01 * (g1 - g0)
    if low and high:
        what = (f"the cube's energy axis covers only {e0:.2f} to {e1:.1f} keV; the model reads "
                f"{g0:.2f} to {g1:.1f} keV: lines below {e0:.2f} and above {e1:.1f} keV are "
                "missing")
    elif high:
        what = (f"the cube's energy axis ends at {e1:.1f} keV; the model reads up to {g1:.1f} "
                "keV: lines above are missing")
    else:
        what = (f"the cube's energy axis starts at {e0:.2f} keV; the model reads from {g0:.2f} "
                "keV: lines below are missing")
    yield Preflight(
        "energy-range",
        f"{what} ({missing:.0%} of the model's range, seen as zero counts): pigments "
        "recognised by those lines may be missed; measure the full range or use a model trained "
        "for this one",
        float(missing),
    )


# -- 2. counts per pixel ----------------------------------------------------------------------


def training_conditions(model) -> TrainingConditions:
    """Counts and tubes of a model's training spectra, from its metadata.

    Read from ``metadata["training"]`` (for a finetuned model, that of its base model, followed
    back to the simulated training set):

    - counts: ``augmentation.counts`` (every training spectrum was Poisson-resampled to a total
      in that range on the model grid); else the training set's ``provenance.recipe``
      ``live_time_s`` times ``current_factor`` ranges times :data:`TYPICAL_RATE_CPS` (scaled by
      the base tube current); else :data:`DEFAULT_COUNT_RANGE` (1e3 to 1e6 counts).
    - tubes: ``data.provenance.tubes``, the tubes drawn for the training instruments (anode,
      ``voltage_kV``); for training sets that do not list them, the base instrument's tube
      (``provenance.instrument.tube``) and, with ``recipe.n_instruments > 1``, every anode and
      voltage the variants could draw (:data:`VARIANT_ANODES`, :data:`VARIANT_KV`).

    Parameters
    ----------
    model : PigmentModel or dict
        A model, or its metadata.

    Returns
    -------
    TrainingConditions
    """
    meta = model if isinstance(model, dict) else (getattr(model, "metadata", None) or {})
    training = _base_training(meta)
    provenance = ((training.get("data") or {}).get("provenance")) or {}
    recipe = provenance.get("recipe") if isinstance(provenance.get("recipe"), dict) else None
    instrument = provenance.get("instrument")
    instrument = instrument if isinstance(instrument, dict) else {}
    tube = instrument.get("tube") if isinstance(instrument.get("tube"), dict) else {}

    counts_range, source = None, "default"
    augmented = _range((training.get("augmentation") or {}).get("counts"))
    if augmented is not None:
        counts_range, source = augmented, "augmentation"
    elif recipe is not None and _range(recipe.get("live_time_s")) is not None:
        t0, t1 = _range(recipe.get("live_time_s"))
        f0, f1 = _range(recipe.get("current_factor")) or (1.0, 1.0)
        current = _number(tube.get("current_mA")) or TYPICAL_CURRENT_MA
        rate = TYPICAL_RATE_CPS * current / TYPICAL_CURRENT_MA
        counts_range, source = (t0 * f0 * rate, t1 * f1 * rate), "live time"
    if counts_range is None:
        counts_range = DEFAULT_COUNT_RANGE

    anode = _anode_symbol(tube.get("anode")) if tube else None
    kv = _kv(tube.get("voltage_kV")) if tube else None
    anodes, kv_range = (), None
    drawn = [(_anode_symbol(t.get("anode")), _kv(t.get("voltage_kV")))
             for t in (provenance.get("tubes") or ()) if isinstance(t, dict)]
    drawn = [(a, v) for a, v in drawn if a is not None and v is not None]
    if drawn:
        anodes = tuple(dict.fromkeys(a for a, _ in drawn))
        kv_range = (min(v for _, v in drawn), max(v for _, v in drawn))
    elif anode is not None and kv is not None:
        # Older training sets do not list their tubes: every anode the variants could draw.
        n_instruments = int((recipe or {}).get("n_instruments", 6 if recipe is not None else 1))
        if n_instruments > 1:
            anodes = tuple(dict.fromkeys((anode, *VARIANT_ANODES)))
            kv_range = (min(kv, VARIANT_KV[0]), max(kv, VARIANT_KV[1]))
        else:
            anodes, kv_range = (anode,), (kv, kv)
    return TrainingConditions(tuple(float(v) for v in counts_range), source, anode, kv, anodes,
                              kv_range)


def _base_training(meta) -> dict:
    training = meta.get("training") if isinstance(meta, dict) else None
    for _ in range(16):  # finetuned models nest their base model's training record
        if not isinstance(training, dict) or training.get("kind") != "finetune":
            break
        training = (training.get("base_model") or {}).get("training")
    return training if isinstance(training, dict) else {}


def _range(value) -> tuple[float, float] | None:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if 0 < lo <= hi and math.isfinite(hi) else None


def _number(value) -> float | None:
    try:
        value = float(np.ravel(value)[0]) if np.ndim(value) else float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _check_counts(totals, conditions: TrainingConditions, model_energies):
    lo, hi = conditions.counts_range
    where = f"between {model_energies[0]:.2f} and {model_energies[-1]:.2f} keV"
    counted = totals[totals > 0]
    if counted.size == 0:
        yield Preflight(
            "counts",
            f"no sampled pixel has counts {where} (the model's range): the maps would be empty; "
            "check that the right cube and energy calibration are used",
            0.0,
        )
        return
    median = float(np.median(counted))
    p5, p95 = (float(v) for v in np.percentile(counted, [5, 95]))
    below, above = float(np.mean(counted < lo)), float(np.mean(counted > hi))
    if not (median < lo or median > hi or below + above > OUTSIDE_FRACTION):
        return
    spread = (f"median {_fmt(median)} counts per pixel {where} (5th-95th percentile "
              f"{_fmt(p5)}-{_fmt(p95)}")
    trained = f"the model was trained on {_fmt(lo)} to {_fmt(hi)} counts per spectrum"
    if below >= above:
        yield Preflight(
            "counts",
            f"counts per pixel are low for this model: {spread}, {below:.0%} of pixels below "
            f"{_fmt(lo)}); {trained}: expect noisy maps and missed pigments; sum neighbouring "
            "pixels (bin the cube) or measure longer",
            median,
        )
    else:
        yield Preflight(
            "counts",
            f"counts per pixel are high for this model: {spread}, {above:.0%} of pixels above "
            f"{_fmt(hi)}); {trained}: the model never saw spectra this clean; check its maps "
            "against element maps",
            median,
        )


def _fmt(counts: float) -> str:
    """1234.5 -> '1,234'; large counts to 3 significant digits: 4585665 -> '4,590,000'."""
    if counts >= 1e4:
        counts = float(f"{counts:.3g}")
    return f"{counts:,.0f}"


# -- 3. tube ----------------------------------------------------------------------------------


def cube_tube(metadata) -> tuple[str | None, float | None, str | None]:
    """Tube anode, tube voltage and explicit beam described in a cube's metadata.

    Looks in ``metadata["instrument"]`` (an instrument description as simulated cubes carry:
    ``tube.anode``, ``tube.voltage_kV``, or ``beam``), then in the keys readers write:
    ``excitation_kV`` (Bruker), and ``tube_anode`` / ``anode`` / ``target``, ``tube_kV`` /
    ``voltage_kV``, also inside a ``tube`` or ``source`` dictionary. Keys are matched without
    regard to case.

    Returns
    -------
    anode : str or None
        Element symbol.
    kv : float or None
        Tube voltage, kV.
    beam : str or None
        Description of an explicit excitation beam (e.g. monochromatic), when there is one.
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    anode = kv = beam = None
    instrument = _get(metadata, ("instrument",))
    if isinstance(instrument, dict):
        tube = instrument.get("tube")
        if isinstance(tube, dict):
            anode = _anode_symbol(tube.get("anode"))
            kv = _kv(tube.get("voltage_kV"))
        beam_d = instrument.get("beam")
        if isinstance(beam_d, dict) and beam_d.get("energies_keV"):
            energies = np.ravel(beam_d["energies_keV"]).astype(float)
            beam = (f"{energies[0]:g} keV" if energies.size == 1
                    else f"{energies.size} energies, {energies.min():g}-{energies.max():g} keV")
    nested = [d for d in (_get(metadata, (k,)) for k in _TUBE_KEYS) if isinstance(d, dict)]
    places = [(metadata, _ANODE_KEYS, _KV_KEYS)] + [
        (d, _NESTED_ANODE_KEYS, _NESTED_KV_KEYS) for d in nested]
    for place, anode_keys, kv_keys in places:
        if anode is None:
            anode = _anode_symbol(_get(place, anode_keys))
        if kv is None:
            kv = _kv(_get(place, kv_keys))
    if anode is None:
        tube = _get(metadata, _TUBE_KEYS)
        if isinstance(tube, str):
            anode = _anode_symbol(tube)
    return anode, kv, beam


def _get(mapping, keys):
    """The value of the first of ``keys`` in ``mapping`` (case-insensitive), else None."""
    lowered = {str(k).lower(): v for k, v in mapping.items()}
    for key in keys:
        value = lowered.get(key.lower())
        if value is not None:
            return value
    return None


def _anode_symbol(value) -> str | None:
    """'Rh', 'rh', 'Rh1', 45 -> 'Rh'; None when not an element."""
    if value is None or isinstance(value, (dict, list, tuple)):
        return None

    try:
        if isinstance(value, (int, float, np.integer, np.floating)):
            return element_symbol(int(value))
        text = str(value).strip()
        text = text.rstrip("0123456789") if text[:1].isalpha() else text
        if text.isdigit():
            return _anode_symbol(int(text))
        return normalize_symbol(text)
    except (ValueError, IndexError):
        return None


def _kv(value) -> float | None:
    kv = _number(value)
    if kv is not None and kv > 1000:  # written in volts
        kv /= 1000.0
    return kv if kv is not None and 1.0 <= kv <= 1000.0 else None


def _check_tube(metadata, conditions: TrainingConditions):
    if conditions.anode is None or conditions.kv_range is None:
        yield Preflight(
            "tube",
            "could not check the tube: the model's metadata does not record the instrument its "
            "training spectra were simulated with",
        )
        return
    trained = f"the model was trained with {conditions.tube_description}"
    advice = ("scatter peaks it never saw may be taken for pigments; check the maps against "
              "element maps, or finetune the model on this scanner")
    anode, kv, beam = cube_tube(metadata)
    if beam is not None and anode is None:
        yield Preflight("tube", f"the cube was excited by an explicit beam ({beam}), not an X-ray "
                        f"tube; {trained}: {advice}", kv)
        return
    k0, k1 = conditions.kv_range
    kv_out = kv is not None and not (k0 - KV_TOLERANCE <= kv <= k1 + KV_TOLERANCE)
    anode_out = anode is not None and anode not in conditions.anodes
    if anode is None and kv is None:
        yield Preflight("tube", f"unknown tube: the cube's metadata names no X-ray tube anode or "
                        f"voltage; {trained}: make sure the scanner's tube is among these, else "
                        f"{advice}", None)
    elif anode is None:
        extra = f" (outside the trained {k0:g}-{k1:g} kV)" if kv_out else ""
        yield Preflight("tube", f"unknown tube anode: the cube records {kv:g} kV{extra} but no "
                        f"anode; {trained}: make sure the scanner's anode is among these, else "
                        f"{advice}", kv)
    elif kv is None:
        extra = (f", an anode the model was not trained with ({', '.join(conditions.anodes)})"
                 if anode_out else "")
        yield Preflight("tube", f"unknown tube voltage: the cube's tube is {anode}{extra} but its "
                        f"voltage is not recorded; {trained}: make sure the scanner ran at "
                        f"{k0:g}-{k1:g} kV, else {advice}", None)
    elif anode_out or kv_out:
        what = []
        if anode_out:
            what.append(f"no {anode} anode in training")
        if kv_out:
            what.append(f"{kv:g} kV is outside the trained {k0:g}-{k1:g} kV")
        yield Preflight("tube", f"tube unlike the training instruments: {anode} {kv:g} kV "
                        f"({', and '.join(what)}); {trained}: {advice}", kv)


# -- 4. energy calibration --------------------------------------------------------------------


def measure_cube_calibration(cube, *, max_spectra: int = 20000) -> CalibrationCheck:
    """:func:`measure_calibration` on the sum of a sample of the cube's spectra.

    The tube anode and voltage come from the cube's metadata (:func:`cube_tube`), and so does
    the detector resolution when it is recorded (``instrument.readout`` noise and Fano, or a
    ``resolution_keV`` / ``resolution_eV`` key; else :data:`DEFAULT_RESOLUTION_KEV`).

    Parameters
    ----------
    cube : XRFCube
        Calibrated cube; at most ``max_spectra`` spectra are read (evenly spaced whole rows).
    max_spectra : int

    Returns
    -------
    CalibrationCheck

    Raises
    ------
    CalibrationError
        If the cube is not calibrated.
    InvalidDataError
        If the sampled counts hold NaN or negative values.
    """
    energies = _cube_energies(cube)
    if energies is None:
        raise CalibrationError("the cube's energy axis is not calibrated")
    sums, _ = _read_sample(cube, None, max_spectra)
    return _measure(energies, sums, getattr(cube, "metadata", None) or {})


def _measure(energies, sums, metadata) -> CalibrationCheck:
    anode, kv, _ = cube_tube(metadata)
    resolution, fano = cube_resolution(metadata)
    return measure_calibration(energies, sums, anode=anode, kv=kv, resolution_keV=resolution,
                               fano=fano)


def _check_calibration(energies, sums, metadata, n_spectra):
    check = _measure(energies, sums, metadata)
    if check.offset_keV is None:
        yield Preflight("calibration", f"could not check the energy calibration: {check.note} "
                        f"(sum of {n_spectra} sampled spectra); check it on a known peak with the "
                        "Energy calibration widget")
        return
    if not check.off:
        return
    offset = check.offset_keV
    found = ", ".join(f"{m.line} at {m.measured_keV:.3f} keV" for m in check.lines)
    expected = ", ".join(f"{m.expected_keV:.3f}" for m in check.lines)
    yield Preflight(
        "calibration",
        f"energy calibration looks {abs(offset) * 1000:.0f} eV {'low' if offset < 0 else 'high'}: "
        f"{found} (expected {expected}; tolerance {check.tolerance_keV * 1000:.0f} eV); "
        "recalibrate (Energy calibration widget) before trusting the maps",
        float(offset),
    )


def cube_resolution(metadata) -> tuple[float, float]:
    """(FWHM at Mn Ka in keV, Fano factor) from the cube's metadata, else the defaults.

    Read from ``instrument.readout`` (noise and Fano, as simulated cubes carry), else from a
    ``resolution_keV`` / ``fwhm_keV`` (or ``..._eV``) key; else
    (:data:`~napari_xrf_pigments.calibration.DEFAULT_RESOLUTION_KEV`,
    :data:`~napari_xrf_pigments.calibration.DEFAULT_FANO`).
    """
    metadata = metadata if isinstance(metadata, dict) else {}
    instrument = _get(metadata, ("instrument",))
    readout = instrument.get("readout") if isinstance(instrument, dict) else None
    if isinstance(readout, dict):
        noise, fano = _number(readout.get("noise_keV")), _number(readout.get("fano"))
        if noise is not None and fano is not None:
            return float(Readout(noise_keV=noise, fano=fano).fwhm_keV(MN_KA_KEV)), fano
    value = _number(_get(metadata, _RESOLUTION_KEYS))
    if value is None and (ev := _number(_get(metadata, _RESOLUTION_EV_KEYS))) is not None:
        value = ev / 1000.0
    if value is not None and 0.05 <= value <= 1.0:
        return value, DEFAULT_FANO
    return DEFAULT_RESOLUTION_KEV, DEFAULT_FANO


# -- 5. the model's classes against the pigment library ---------------------------------------

#: At most this many labels are named in each list of the ``"classes"`` warning.
MAX_NAMED_LABELS = 10


def _check_classes(model, library=None):
    """The model's output columns against the library's labels (classes, then groups)."""
    pigments = getattr(model, "pigments", None)
    if not pigments:
        return
    if library is None:
        # here, not at the top: the tests monkeypatch this name on its module
        from ..pigments import load_pigment_library

        library = load_pigment_library()
    columns = [(str(abbreviation), str(name)) for abbreviation, name in pigments]
    have = [abbreviation for abbreviation, _ in columns]
    labels = tuple(library.labels)
    not_in_model = [label for label in labels if label not in have]
    only_in_model = [abbreviation for abbreviation in have if abbreviation not in labels]
    renamed = [(abbreviation, name, library.name_of(abbreviation))
               for abbreviation, name in columns
               if abbreviation in labels and library.name_of(abbreviation) != name]
    differ = len(not_in_model) + len(only_in_model) + len(renamed)
    if not differ:
        return  # the same labels; another order changes nothing (maps follow the columns)
    groups = _model_groups(model)
    n_groups = sum(1 for a in have if a in groups or library.group(a) is not None)
    parts = []
    if not_in_model:
        parts.append(f"not in the model: {_named(not_in_model)} (their maps are not made)")
    if only_in_model:
        parts.append(f"only in the model: {_named(only_in_model)} (no evidence check)")
    if renamed:
        shown = [f"{a} ({model_name!r} in the model, {library_name!r} in the library)"
                 for a, model_name, library_name in renamed]
        parts.append(f"named differently: {_named(shown)} (no evidence check)")
    name = getattr(model, "name", None)
    yield Preflight(
        "classes",
        (f"model {name}" if name else "the model")
        + f" was trained on {_counted(len(have) - n_groups, n_groups)}; the pigment "
        f"library has {_counted(len(library.classes), len(library.groups))}: "
        + "; ".join(parts),
        float(differ),
    )


def _model_groups(model) -> set:
    """Abbreviations of the model's group columns (``model.groups``, else its metadata)."""
    groups = getattr(model, "groups", None)
    if groups is None:
        groups = [g["abbreviation"] for g in (getattr(model, "metadata", None) or {}).get("groups", ())]
    return set(groups)


def _counted(n_classes: int, n_groups: int) -> str:
    """``"11 classes"``, ``"22 classes and 3 groups"``, ``"1 class and 1 group"``."""
    text = f"{n_classes} class{'es' if n_classes != 1 else ''}"
    if n_groups:
        text += f" and {n_groups} group{'s' if n_groups != 1 else ''}"
    return text


def _named(items, limit: int = MAX_NAMED_LABELS) -> str:
    """``"A, B, C"``, or the first ``limit`` and ``"and N more"``."""
    items = list(items)
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"
