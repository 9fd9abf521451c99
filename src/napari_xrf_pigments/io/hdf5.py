"""HDF5 XRF cubes: NeXus NXdata, PyMca HDF5 stacks, APS MAPS, generic HDF5; NeXus writer.

Which dataset holds the counts and which of its axes is energy is decided from the file's
structure only (attributes, names, shapes); the counts are never read when a file is opened.
Layouts, most specific first:

``maps-hdf5``
    XRF-Maps / MAPS v9-v10: ``/MAPS/Spectra/mca_arr`` (or ``/MAPS/mca_arr``) of shape
    (channels, rows, columns), calibration ``Energy_Calibration`` (or ``energy_calib``) =
    [offset keV, slope keV/ch, quad keV/ch^2], live time ``Elapsed_Livetime`` (rows, columns).
``nexus`` / ``pymca-hdf5``
    An NXdata group (found through the ``default`` attributes, else the first usable one)
    whose ``signal`` is 3-D; its ``axes`` (or ``AXIS_indices``) name the energy axis, in any
    position; PyMca's stacks (``/data/NXdata``) give it through ``interpretation``.
``hdf5``
    Exactly one 3-D counts dataset plus an energy dataset whose length matches one of its axes,
    or calibration attributes (zero/gain/quad, offset/slope/quad, calibration=[...]) on the
    dataset, its group or the file (then energy is the last axis, or the first with
    ``interpretation="image"``).

Refused with a reason: raw APS fly-scan files (``/MAPS_RAW/data_a..d``: no calibration, and the
map size comes from the scan's .mda, see docs/formats.md), damaged files, HDF5 without a 3-D
dataset, 3-D data whose energy axis cannot be told.

Counts whose energy axis is not last are transposed lazily with dask to (rows, columns,
channels).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_hdf5
from ..cube import EnergyAxis, XRFCube, default_rows_per_block
from ..errors import UnreadableFileError
from ..progress import Progress, run
from ._common import (
    as_str,
    check_dtype,
    check_small_counts,
    energy_factor_to_keV,
    length_factor_to_mm,
    never_raises,
    plausible_calibration,
    wrap_errors,
)

FORMATS = ("maps-hdf5", "nexus", "pymca-hdf5", "hdf5")

# Read each file's structure first in a child process with a timeout (io/_isolated.py): damaged
# HDF5 metadata can make the library loop forever or crash inside one call.
PROBE_IN_CHILD = True
# HDF5's own words on damaged files: `xrf-pigments --debug` prints them.
_log = logging.getLogger("napari_xrf_pigments.io")

# Counts declaring more than this (1 TiB) come from a damaged header, not from a scanner.
MAX_CUBE_BYTES = 2**40
# Declared counts above this size must be stored in at least 1/MAX_SPARSE_RATIO of their size
# (compressed XRF counts, even mostly empty, stay well above that; a header whose sizes were
# damaged does not).
SPARSE_CHECK_BYTES = 64 * 2**30
MAX_SPARSE_RATIO = 10_000
# Axes, positions and live times larger than this (values) are damaged headers.
MAX_AUX_VALUES = 2**27

HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".nx", ".h5nx", ".hdf5nx"}
_SIGNATURE = b"\x89HDF\r\n\x1a\n"

_ENERGY_NAMES = {"energy", "energies", "e", "en", "energy_kev", "energy_ev", "kev", "ev"}
_CHANNEL_NAMES = {"channel", "channels", "channel_number", "channel_index", "mca_channel", "chan"}
_COUNTS_NAMES = re.compile(r"(count|spectr|mca|data|signal|xrf|cube)", re.IGNORECASE)
_LIVE_TIME_NAMES = {"live_time", "livetime", "elapsed_livetime", "live_time_s"}

# (zero, gain, quad) attribute spellings; the first two of a set must both be present.
_CAL_TRIPLETS = (
    ("zero", "gain", "quad"),
    ("cal_offset", "cal_slope", "cal_quad"),
    ("energy_offset", "energy_slope", "energy_quad"),
    ("energy_zero", "energy_gain", "energy_quad"),
    ("calibration_zero", "calibration_gain", "calibration_quad"),
    ("offset", "slope", "quad"),
)
_CAL_ARRAYS = ("calibration", "energy_calibration", "mcacalib", "mca_calib", "calib")



@dataclass
class _Layout:
    """Where the cube is in a file (paths and axis numbers only; nothing read)."""

    format: str
    counts: str
    energy_axis: int
    energy_values: str | None = None  # dataset of channel energies
    energy_factor: float | None = None  # to keV; None: guess from the magnitude
    calibration: tuple | None = None  # (zero, gain, quad) keV
    live_time: str | None = None
    mask: str | None = None  # (rows, columns) dataset, nonzero = no measured spectrum
    position_axes: tuple = (None, None)  # (dataset path, factor to mm) for rows, columns
    pixel_size: tuple | None = None
    metadata: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------- sniffing


def _has_signature(path: Path) -> bool:
    """HDF5 signature at offset 0 or after a user block (512, 1024, 2048, ... bytes)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            offset = 0
            while offset + 8 <= size and offset <= 2**20:
                fh.seek(offset)
                if fh.read(8) == _SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def _inspect(path: Path) -> tuple[_Layout | None, str | None]:
    """(layout, None) for a readable XRF cube; (None, reason) for an HDF5 file it cannot
    read; (None, None) for a file that is not HDF5 at all."""
    if not _has_signature(path):
        if path.suffix.lower() in HDF5_SUFFIXES:
            head = b""
            try:
                with open(path, "rb") as fh:
                    head = fh.read(512)
            except OSError:
                pass
            kind = "it is empty" if not head else (
                "it holds text" if _looks_like_text(head) else "its first bytes are not HDF5's"
            )
            return None, f"not an HDF5 file although named {path.suffix} ({kind})"
        return None, None
    # lazy: h5py loads only where HDF5 is read or written
    import h5py

    if PROBE_IN_CHILD:
        # here, not at the top: the tests monkeypatch this name on its module
        from ._isolated import probe_hdf5

        problem = probe_hdf5(path)
        if problem:
            return None, problem
    try:
        h5 = h5py.File(path, "r")
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError with HDF5's own text
        _log.debug("%s: h5py could not open it: %r", path, exc)
        if "truncated file" in str(exc):
            return None, (f"the HDF5 file is truncated or damaged (cut short: {path.stat().st_size:,} "
                          "bytes where its header says it is longer)")
        return None, "the HDF5 file is truncated or damaged (its superblock or root group cannot be read)"
    try:
        return _find_layout(h5)
    except Exception as exc:  # noqa: BLE001 - damaged object headers surface here
        _log.debug("%s: reading its structure failed: %r", path, exc)
        return None, "the HDF5 file is damaged (its groups, datasets or attributes cannot be read)"
    finally:
        h5.close()


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@never_raises
def sniff(path) -> str | None:
    """``"maps-hdf5"``, ``"nexus"``, ``"pymca-hdf5"`` or ``"hdf5"`` if ``path`` holds an XRF
    cube this module reads, else None. Reads the HDF5 structure, never the counts."""
    layout, _ = _inspect(path)
    return layout.format if layout else None


#: The refusal of a raw APS fly-scan file: XRF data, of a kind no reader here handles.
RAW_FLY_SCAN = (
    "raw APS fly-scan HDF5 (/MAPS_RAW/data_a..d: channels x rows x columns of one "
    "detector element each, no energy calibration; the map size comes from the "
    "scan's .mda file): process it with XRF-Maps into a MAPS HDF5 "
    "(/MAPS/Spectra/mca_arr) or convert it to NeXus, then open that"
)


def explain(path) -> str | None:
    """Why an HDF5 file (or a file named like one) cannot be read; None if it can, or if it
    is not HDF5 at all."""
    try:
        return _inspect(Path(path))[1]
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- layouts


def _find_layout(h5) -> tuple[_Layout | None, str | None]:
    import h5py

    if "MAPS_RAW" in h5:
        return None, RAW_FLY_SCAN
    if "MAPS" in h5 and isinstance(h5["MAPS"], h5py.Group):
        layout = _maps_layout(h5)
        if layout is not None:
            return layout, None

    reasons = []
    for group in _nxdata_groups(h5):
        layout, reason = _nxdata_layout(h5, group)
        reason = reason or (_not_fluorescence(h5, layout) if layout else None)
        if reason:
            reasons.append(reason)
        elif layout is not None:
            return layout, None

    layout, reason = _generic_layout(h5)
    reason = reason or (_not_fluorescence(h5, layout) if layout else None)
    if layout is not None and not reason:
        return layout, None
    return None, (reasons[0] if reasons else reason)


def _not_fluorescence(h5, layout: _Layout) -> str | None:
    """A reason if the energy axis is not an MCA's (e.g. a XANES stack's incident energies).

    Fluorescence spectra span keV; an absorption scan covers a few hundred eV around an edge
    (S K at 2.47 keV and up). Reads only the small energy dataset.
    """
    if not layout.energy_values or layout.calibration is not None:
        return None
    n_channels = h5[layout.counts].shape[layout.energy_axis]
    values = _values_keV(h5, layout, n_channels, [])
    if values is None:
        return None
    if values[0] > 2.0 and values[-1] - values[0] < 1.0:
        return (
            f"its energy axis ({values[0]:.3f}-{values[-1]:.3f} keV over {values.size} points) "
            "is not a fluorescence spectrum's (an absorption / XANES energy scan?)"
        )
    return None


def _maps_layout(h5) -> _Layout | None:
    import h5py

    maps = h5["MAPS"]
    for name in ("Spectra/mca_arr", "mca_arr"):
        dset = maps.get(name)
        if isinstance(dset, h5py.Dataset) and dset.ndim == 3:
            break
    else:
        return None
    layout = _Layout("maps-hdf5", dset.name, energy_axis=0)
    for cal_name in ("Spectra/Energy_Calibration", "energy_calib"):
        cal = maps.get(cal_name)
        if isinstance(cal, h5py.Dataset) and cal.size in (2, 3) and cal.dtype.kind in "fiu":
            values = np.asarray(cal[()], dtype=np.float64).ravel()
            layout.calibration = plausible_calibration(*(list(values) + [0.0])[:3], units="keV")
            if layout.calibration:
                layout.notes.append(f"calibration from {cal.name} (keV)")
                break
    if layout.calibration is None:
        for e_name in ("Spectra/Energy", "energy"):
            energy = maps.get(e_name)
            if isinstance(energy, h5py.Dataset) and energy.shape == (dset.shape[0],):
                layout.energy_values, layout.energy_factor = energy.name, 1.0
                break
    for lt_name in ("Spectra/Elapsed_Livetime",):
        lt = maps.get(lt_name)
        if isinstance(lt, h5py.Dataset) and lt.shape == dset.shape[1:]:
            layout.live_time = lt.name
    return layout


def _nxdata_groups(h5):
    """NXdata groups: the ``default`` chain first, then every other one in file order."""
    import h5py

    found = []

    def nx_class(obj):
        return as_str(obj.attrs.get("NX_class", ""))

    node = h5
    for _ in range(4):  # root -> entry -> (subentry) -> data
        default = node.attrs.get("default")
        if default is None:
            break
        child = node.get(as_str(default))
        if not isinstance(child, h5py.Group):
            break
        node = child
        if nx_class(node) == "NXdata":
            found.append(node.name)
            break

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and nx_class(obj) == "NXdata":
            if "/" + name not in found:
                found.append("/" + name)

    h5.visititems(visit)
    return [h5[name] for name in found]


def _axes_names(group, signal) -> list[str]:
    axes = group.attrs.get("axes")
    if axes is None:
        axes = signal.attrs.get("axes")  # NeXus 2 (legacy): "y:x:energy" on the signal
    if axes is None:
        return []
    if isinstance(axes, (bytes, str, np.bytes_, np.str_)):
        text = as_str(axes).strip().strip("[]")
        return [a.strip().strip("'\"") for a in re.split(r"[:,\s]+", text) if a.strip()]
    return [as_str(a) for a in np.atleast_1d(axes)]


def _is_energy(name: str, obj) -> bool:
    if name.lower() in _ENERGY_NAMES or "energy" in name.lower():
        return True
    return obj is not None and energy_factor_to_keV(obj.attrs.get("units")) is not None


def _nxdata_layout(h5, group) -> tuple[_Layout | None, str | None]:
    import h5py

    signal_name = group.attrs.get("signal")
    signal = None
    if signal_name is not None:
        signal = group.get(as_str(signal_name))
    else:  # NeXus 2 (legacy): the signal dataset carries signal=1
        for obj in group.values():
            if isinstance(obj, h5py.Dataset) and str(obj.attrs.get("signal", "")) in ("1", "b'1'"):
                signal = obj
                break
    if not isinstance(signal, h5py.Dataset) or signal.ndim != 3:
        return None, None

    fmt = "nexus"
    entry = group.parent
    title = entry.get("title") if isinstance(entry, h5py.Group) else None
    if isinstance(title, h5py.Dataset) and "PyMca" in as_str(title[()]):
        fmt = "pymca-hdf5"

    # Axis positions from `axes` and `<name>_indices`.
    index = {}
    for i, name in enumerate(_axes_names(group, signal)[:3]):
        if name != ".":
            index[name] = i
    for key, value in group.attrs.items():
        if key.endswith("_indices") and np.size(value) == 1:
            index[key[: -len("_indices")]] = int(np.ravel(value)[0])

    layout = None
    for name, i in index.items():
        obj = group.get(name)
        obj = obj if isinstance(obj, h5py.Dataset) else None
        if _is_energy(name, obj) and 0 <= i < 3:
            layout = _Layout(fmt, signal.name, energy_axis=i)
            if obj is not None and obj.ndim == 1:
                layout.energy_values = obj.name
                layout.energy_factor = energy_factor_to_keV(obj.attrs.get("units"))
                layout.calibration = _calibration_attrs(obj)
            break
    if layout is None:
        for name, i in index.items():
            if name.lower() in _CHANNEL_NAMES and 0 <= i < 3:
                layout = _Layout(fmt, signal.name, energy_axis=i)
                break
    if layout is None:
        interpretation = as_str(signal.attrs.get("interpretation", "")).lower()
        if interpretation in ("spectrum", "image"):
            # PyMca: "spectrum" = channels last, "image" = stack of images, channels first.
            layout = _Layout(fmt, signal.name, energy_axis=2 if interpretation == "spectrum" else 0)
        elif fmt == "pymca-hdf5":
            # PyMca saved it without axes or interpretation: its default McaIndex -1 applies.
            layout = _Layout(fmt, signal.name, energy_axis=2)
            layout.notes.append("PyMca stack without axes: channels taken as the last axis")
    if layout is None:
        return None, (
            f"{signal.name} is 3-D but its NXdata group names no energy or channel axis "
            "(set the 'axes' attribute, e.g. ['y', 'x', 'energy'])"
        )

    if layout.calibration is None and layout.energy_values is None:
        for obj in (signal, group, h5):
            layout.calibration = _calibration_attrs(obj)
            if layout.calibration:
                break

    # Positions of the two other axes, in mm when their units say so.
    names_by_index = {i: n for n, i in index.items()}
    spatial = [i for i in range(3) if i != layout.energy_axis]
    positions = []
    for i in spatial:
        name = names_by_index.get(i)
        obj = group.get(name) if name else None
        factor = length_factor_to_mm(obj.attrs.get("units")) if isinstance(obj, h5py.Dataset) else None
        if isinstance(obj, h5py.Dataset) and obj.shape == (signal.shape[i],) and factor:
            positions.append((obj.name, factor))
        else:
            positions.append(None)
    layout.position_axes = tuple(positions)
    if "pixel_size_mm" in group.attrs and np.size(group.attrs["pixel_size_mm"]) == 2:
        layout.pixel_size = tuple(float(v) for v in np.ravel(group.attrs["pixel_size_mm"]))

    spatial_shape = tuple(signal.shape[i] for i in spatial)
    for where in (group, group.parent):
        for key, obj in where.items():
            if key.lower() in _LIVE_TIME_NAMES and isinstance(obj, h5py.Dataset):
                if obj.shape in ((), (1,), spatial_shape):
                    layout.live_time = obj.name
                    break
        if layout.live_time:
            break
    mask = group.get("mask")
    if isinstance(mask, h5py.Dataset) and mask.shape == spatial_shape and mask.dtype.kind in "uib":
        layout.mask = mask.name

    layout.metadata["hdf5_path"] = signal.name
    for key, value in group.attrs.items():
        if key not in ("NX_class", "signal", "axes") and not key.endswith("_indices"):
            layout.metadata[key] = _plain(value)
    if isinstance(group.parent, h5py.Group) and "metadata_json" in group.parent.attrs:
        try:
            layout.metadata.update(json.loads(as_str(group.parent.attrs["metadata_json"])))
        except ValueError:
            pass
    return layout, None


def _generic_layout(h5) -> tuple[_Layout | None, str | None]:
    import h5py

    cubes, others = [], []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            if obj.ndim == 3 and obj.dtype.kind in "uif":
                cubes.append(obj)
            elif len(others) < 6:
                others.append(f"/{name} {obj.shape}")

    h5.visititems(visit)
    if not cubes:
        listing = ", ".join(others) if others else "nothing"
        return None, f"no 3-D dataset in this HDF5 file (it holds: {listing})"
    if len(cubes) > 1:
        named = [c for c in cubes if _COUNTS_NAMES.search(c.name.rsplit("/", 1)[-1])]
        if len(named) != 1:
            names = ", ".join(c.name for c in cubes[:6])
            return None, f"several 3-D datasets ({names}) and nothing says which holds the counts"
        cubes = named
    dset = cubes[0]

    # An energy dataset beside the counts (or anywhere) whose length matches one axis.
    energy = None
    for where in (dset.parent, h5):
        for key, obj in where.items():
            if (
                isinstance(obj, h5py.Dataset)
                and obj.ndim == 1
                and (key.lower() in _ENERGY_NAMES or "energy" in key.lower())
                and "calib" not in key.lower()  # e.g. MAPS energy_calib = [offset, slope, quad]
                and obj.shape[0] >= 8
                and obj.shape[0] in dset.shape
            ):
                energy = obj
                break
        if energy is not None:
            break
    interpretation = as_str(dset.attrs.get("interpretation", "")).lower()
    if energy is not None:
        matches = [i for i, n in enumerate(dset.shape) if n == energy.shape[0]]
        axis = 0 if interpretation == "image" and 0 in matches else matches[-1]
        layout = _Layout("hdf5", dset.name, energy_axis=axis)
        layout.energy_values = energy.name
        layout.energy_factor = energy_factor_to_keV(energy.attrs.get("units"))
        layout.calibration = _calibration_attrs(energy)
        if len(matches) > 1:
            layout.notes.append(f"energy length fits axes {matches}; took axis {axis}")
        return layout, None
    for obj in (dset, dset.parent, h5):
        calibration = _calibration_attrs(obj)
        if calibration:
            layout = _Layout("hdf5", dset.name, energy_axis=0 if interpretation == "image" else 2)
            layout.calibration = calibration
            layout.notes.append(f"calibration from attributes of {obj.name}")
            return layout, None
    return None, (
        f"{dset.name} is 3-D {dset.shape} but the file has no energy dataset or calibration "
        "attributes saying which axis is energy"
    )


def _calibration_attrs(obj) -> tuple | None:
    """(zero, gain, quad) in keV from attributes of ``obj``, or None."""
    attrs = {k.lower(): v for k, v in obj.attrs.items()}
    units = attrs.get("calibration_units", attrs.get("energy_units"))
    values = None
    for key in _CAL_ARRAYS:
        value = attrs.get(key)
        if value is not None and np.size(value) in (2, 3):
            try:
                values = [float(v) for v in np.ravel(value)]
            except (TypeError, ValueError):
                continue
            break
    if values is None:
        for zero_key, gain_key, quad_key in _CAL_TRIPLETS:
            if zero_key in attrs and gain_key in attrs:
                try:
                    values = [float(np.ravel(attrs[zero_key])[0]), float(np.ravel(attrs[gain_key])[0])]
                    if quad_key in attrs:
                        values.append(float(np.ravel(attrs[quad_key])[0]))
                except (TypeError, ValueError, IndexError):
                    values = None
                    continue
                break
    if values is None:
        return None
    zero, gain, quad = (values + [0.0])[:3]
    return plausible_calibration(zero, gain, quad, units)


def _plain(value):
    """An attribute value as a JSON-friendly Python object."""
    if isinstance(value, (bytes, np.bytes_)):
        return as_str(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SOU":
            return [as_str(v) for v in value.ravel()]
        return value.tolist() if value.size <= 64 else f"array{value.shape}"
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- reading


@wrap_errors
def read(path) -> XRFCube:
    """Open an HDF5 XRF cube lazily.

    Returns
    -------
    XRFCube
        ``counts`` is the open h5py dataset of shape (rows, columns, channels), or a dask
        array transposing it when the file stores energy first or in the middle.

    Raises
    ------
    UnreadableFileError
        Not HDF5, damaged, raw fly-scan data, no 3-D dataset, no energy axis, bad values.
    """
    import h5py

    layout, reason = _inspect(path)
    if layout is None:
        raise UnreadableFileError(path, reason or "not an HDF5 file")
    h5 = h5py.File(path, "r")  # stays open: the cube reads its counts from it on demand
    try:
        return _build(path, h5, layout)
    except BaseException:
        h5.close()
        raise


def structure_pass(path: Path) -> None:
    """Every HDF5 call opening ``path`` makes, without building the cube (no dask): the layout
    search, the counts' size checks and sample spectra, the energy axis, live time and positions.
    Run by the child-process probe (``_isolated.probe_hdf5``); raises what opening would raise."""
    import h5py

    layout, _ = _inspect(path)
    if layout is None:
        return
    with h5py.File(path, "r") as h5:
        dset = h5[layout.counts]
        _check_declared_size(path, dset)
        _check_sample(path, dset, layout.energy_axis)
        _energy_axis(h5, layout, dset.shape[layout.energy_axis], [])
        for name in [layout.live_time, layout.mask, *(a[0] for a in layout.position_axes if a)]:
            if name:
                _small(path, h5[name])[()]


def _where(key, shape) -> str:
    """Which pixels an index covers, in words ("rows 3-5", "row 2, column 7")."""
    key = key if isinstance(key, tuple) else (key,)
    parts = []
    for axis, name in zip(key[:2], ("row", "column")):
        if isinstance(axis, (int, np.integer)):
            parts.append(f"{name} {int(axis)}")
        elif isinstance(axis, slice):
            start, stop, _ = axis.indices(shape[len(parts)])
            if (start, stop) != (0, shape[len(parts)]):
                parts.append(f"{name}s {start}-{max(start, stop - 1)}")
    return ", ".join(parts)


def _checked(dset, path: Path):
    """``dset`` whose read errors (a damaged or missing chunk, a failing filter) are one-line
    :class:`UnreadableFileError`s "damaged data at rows a-b" naming the file, wherever the
    counts are read later: napari drawing a channel, a fit, a prediction."""
    import h5py

    class CheckedDataset(h5py.Dataset):
        def __getitem__(self, key, *args, **kwargs):
            try:
                return super().__getitem__(key, *args, **kwargs)
            except (OSError, RuntimeError) as exc:
                where = self._locate(key)
                raise UnreadableFileError(
                    path, f"damaged data {'at ' + where + ' of' if where else 'in'} {self.name} "
                          "(the counts cannot be read or decompressed)"
                ) from exc

        def _locate(self, key) -> str:
            """The first unreadable row of a failed read of several rows (failure path only)."""
            first = key[0] if isinstance(key, tuple) and key else key
            if isinstance(first, slice) and len(self.shape) == 3:
                rows = range(*first.indices(self.shape[0]))
                if 1 < len(rows) <= 65536:
                    rest = key[1:] if isinstance(key, tuple) else ()
                    for row in rows:
                        try:
                            super().__getitem__((row, *rest))
                        except (OSError, RuntimeError):
                            return _where((row, *rest), self.shape)
            return _where(key, self.shape)

        def read_direct(self, *args, **kwargs):
            try:
                return super().read_direct(*args, **kwargs)
            except (OSError, RuntimeError) as exc:
                raise UnreadableFileError(
                    path, f"damaged data in {self.name} (the counts cannot be read or decompressed)"
                ) from exc

    return CheckedDataset(dset.id)


def _build(path: Path, h5, layout: _Layout) -> XRFCube:
    dset = _checked(h5[layout.counts], path)
    check_dtype(dset.dtype, path)
    e_axis = layout.energy_axis
    n_channels = dset.shape[e_axis]
    metadata = dict(layout.metadata)
    notes = list(layout.notes)

    energy = _energy_axis(h5, layout, n_channels, notes)

    if e_axis == 2:
        counts = dset
    else:
        import dask.array as da

        order = [i for i in range(3) if i != e_axis] + [e_axis]
        final_shape = tuple(dset.shape[i] for i in order)
        rows = default_rows_per_block(final_shape, dset.dtype)
        chunks = [-1, -1, -1]
        chunks[order[0]] = rows  # blocks of whole rows once transposed
        counts = da.from_array(dset, chunks=tuple(chunks), lock=True).transpose(order)
        notes.append(f"energy was axis {e_axis} in the file; transposed lazily")

    _check_declared_size(path, dset)
    check_small_counts(dset, path)
    _check_sample(path, dset, e_axis)

    live_time = None
    if layout.live_time:
        live_time = np.asarray(_small(path, h5[layout.live_time])[()], dtype=np.float64)
        live_time = float(live_time.ravel()[0]) if live_time.size == 1 else live_time

    if layout.mask:
        # Pixels without a measured spectrum (missing point files of `assemble`): counts 0.
        mask = np.asarray(_small(path, h5[layout.mask])[()]) != 0
        metadata["mask"] = mask
        metadata["masked_pixels"] = int(mask.sum())

    positions = None
    pixel_size = layout.pixel_size
    if all(layout.position_axes):
        (y_path, y_factor), (x_path, x_factor) = layout.position_axes
        y = np.asarray(_small(path, h5[y_path])[()], dtype=np.float64) * y_factor
        x = np.asarray(_small(path, h5[x_path])[()], dtype=np.float64) * x_factor
        positions = (y, x)
        if pixel_size is None and y.size > 1 and x.size > 1:
            pixel_size = (float(np.median(np.abs(np.diff(y)))), float(np.median(np.abs(np.diff(x)))))

    if notes:
        metadata["reader_notes"] = notes
    return XRFCube(
        counts,
        energy,
        live_time=live_time,
        pixel_size=pixel_size,
        positions=positions,
        source=str(path),
        format=layout.format,
        metadata=metadata,
    )


def _small(path: Path, dset):
    """``dset`` if it is small enough to read whole (axes, live times), else a one-line error."""
    size = int(np.prod(dset.shape, dtype=np.float64)) if dset.shape else 1
    if size > MAX_AUX_VALUES:
        raise UnreadableFileError(
            path, f"{dset.name} declares {size:,} values, far more than the map has pixels or "
                  "channels: its header is damaged"
        )
    return dset


def _check_declared_size(path: Path, dset) -> None:
    """A declared size beyond any real scan, or contiguous counts beyond the file's end."""
    nbytes = int(np.prod(dset.shape, dtype=np.float64)) * dset.dtype.itemsize
    shape = " x ".join(str(n) for n in dset.shape)
    if nbytes > MAX_CUBE_BYTES:
        raise UnreadableFileError(
            path, f"{dset.name} declares {shape} counts ({nbytes / 2**40:.1f} TiB), more than any "
                  f"scan holds (at most {MAX_CUBE_BYTES / 2**40:.0f} TiB read here): its header is damaged"
        )
    file_size = path.stat().st_size
    if nbytes > SPARSE_CHECK_BYTES and nbytes > MAX_SPARSE_RATIO * file_size:
        raise UnreadableFileError(
            path, f"{dset.name} declares {shape} counts ({nbytes / 2**30:,.0f} GiB) in a file of "
                  f"{file_size / 2**20:,.1f} MiB: its header is damaged (or the scan was never "
                  "written); reading it would take hours of fill values"
        )
    if dset.chunks is None and dset.compression is None:
        offset = dset.id.get_offset()
        if offset is not None and offset + nbytes > path.stat().st_size:
            raise UnreadableFileError(
                path, f"{dset.name} ({shape} counts) ends {offset + nbytes - path.stat().st_size:,} "
                      "bytes after the end of the file: the file is cut short or damaged"
            )


def _check_sample(path: Path, dset, e_axis: int) -> None:
    """Read and decode three spectra (first, middle and last pixel) so that damaged counts are
    reported when the file is opened, not in the middle of a fit or a napari draw."""
    spatial = [n for i, n in enumerate(dset.shape) if i != e_axis]
    if min(dset.shape) < 1:
        return  # refused as zero-sized by XRFCube
    pixels = {(0, 0), (spatial[0] // 2, spatial[1] // 2), (spatial[0] - 1, spatial[1] - 1)}
    for row, col in sorted(pixels):
        index = [row, col]
        index.insert(e_axis, slice(None))
        try:
            spectrum = dset[tuple(index)]
        except Exception as exc:  # noqa: BLE001 - HDF5 / filter errors on damaged chunks
            raise UnreadableFileError(
                path, f"damaged data at row {row}, column {col} of {dset.name} (the spectrum "
                      "cannot be read or decompressed)"
            ) from exc
        if spectrum.dtype.kind == "f" and not np.all(np.isfinite(spectrum)):
            raise UnreadableFileError(
                path, f"damaged data at row {row}, column {col} of {dset.name} (NaN or infinite counts)"
            )


def _values_keV(h5, layout: _Layout, n_channels: int, notes: list) -> np.ndarray | None:
    """Channel energies in keV from the layout's energy dataset; None (with a note) if unusable."""
    values = np.asarray(h5[layout.energy_values][()], dtype=np.float64).ravel()
    if values.size == n_channels + 1:  # bin edges
        values = 0.5 * (values[1:] + values[:-1])
    if values.size != n_channels:
        notes.append(f"energy dataset has {values.size} values for {n_channels} channels; ignored")
        return None
    if not (np.all(np.isfinite(values)) and np.all(np.diff(values) > 0)):
        notes.append("energy dataset is not strictly increasing; ignored")
        return None
    factor = layout.energy_factor
    if factor is None:
        # No unit given: XRF energies are below ~150 keV, eV values are far above.
        factor = 1e-3 if np.nanmax(np.abs(values)) > 200 else 1.0
        notes.append(f"energy has no units; read as {'eV' if factor != 1 else 'keV'}")
    return values * factor


def _energy_axis(h5, layout: _Layout, n_channels: int, notes: list) -> EnergyAxis:
    if layout.energy_values:
        values = _values_keV(h5, layout, n_channels, notes)
        if values is not None:
            if layout.calibration is not None:
                axis = EnergyAxis.from_calibration(n_channels, *layout.calibration)
                if np.allclose(axis.energies(), values, rtol=0, atol=1e-6):
                    return axis  # the exact polynomial the values came from
            return EnergyAxis.from_values(values)
    if layout.calibration is not None:
        return EnergyAxis.from_calibration(n_channels, *layout.calibration)
    notes.append("no energy calibration in the file")
    return EnergyAxis.uncalibrated(n_channels)


# --------------------------------------------------------------------------- writing


def _spectra_chunks(shape, dtype, target_bytes: int = 2**20) -> tuple[int, int, int]:
    """Chunks of whole spectra, about ``target_bytes`` each."""
    rows, cols, chans = (int(s) for s in shape)
    n = max(1, target_bytes // max(1, chans * np.dtype(dtype).itemsize))
    c = min(cols, n)
    r = min(rows, max(1, n // c))
    return (r, c, chans)


def write_cube(path, cube: XRFCube, *, force: bool = False, compression: str | None = "gzip") -> Path:
    """Write a cube as NeXus HDF5 (NXentry/NXdata), atomically.

    Layout: ``/entry/data/counts`` (rows, columns, channels) in the cube's dtype, chunked by
    whole spectra; ``energy`` (channels,) in keV with attribute ``calibration`` = [zero keV,
    gain keV/ch, quad keV/ch^2] when the cube has a polynomial calibration, or ``channel``
    (channels,) when uncalibrated; ``y``/``x`` stage positions in mm when known;
    ``live_time`` in s (scalar or (rows, columns)) when known; ``mask`` (rows, columns) uint8
    when ``cube.metadata["mask"]`` holds one (1 = no measured spectrum there, e.g. a missing
    point file of ``xrf-pigments assemble``). ``open_cube`` reads it back.

    Parameters
    ----------
    path : str or Path
        Output file; its folder must exist.
    cube : XRFCube
        Counts are streamed block by block (NaN / negative counts raise InvalidDataError).
    force : bool
        Replace an existing file.
    compression : str or None
        h5py filter for the counts ("gzip" keeps files readable everywhere; None is fastest).

    Returns
    -------
    Path
        ``path``.
    """
    return run(write_cube_job(path, cube, force=force, compression=compression))


def write_cube_job(path, cube: XRFCube, *, force: bool = False, compression: str | None = "gzip"):
    """:func:`write_cube` as a job: yields Progress (rows written), returns the path.

    Closing the job (cancelling) leaves no file and an existing ``path`` untouched.
    """
    path = Path(path)
    rows = cube.shape[0]
    with atomic_hdf5(path, force=force) as h5:
        data = create_nexus(
            h5, shape=cube.shape, dtype=cube.dtype, energy=cube.energy, source=cube.source,
            format=cube.format, metadata=cube.metadata, positions=cube.positions,
            pixel_size=cube.pixel_size, compression=compression,
        )
        write_pixel_maps(data, live_time=cube.live_time, mask=cube.metadata.get("mask"))
        counts = data["counts"]
        yield Progress(0, rows, "writing the counts")
        for block_rows, block in cube.iter_blocks():
            counts[block_rows] = block
            yield Progress(block_rows.stop, rows, "writing the counts")
    return path


def create_nexus(h5, *, shape, dtype, energy: EnergyAxis, source=None, format: str = "array",
                 metadata: dict | None = None, positions=None, pixel_size=None,
                 compression: str | None = "gzip"):
    """The layout of :func:`write_cube` in an open, empty HDF5 file, counts not yet written.

    For writers that fill the counts themselves, block by block (``io.pointgrid``); then
    :func:`write_pixel_maps` adds live time and mask.

    Parameters
    ----------
    h5 : h5py.File
        Open for writing (from :func:`~napari_xrf_pigments.atomic.atomic_hdf5`).
    shape : tuple of int
        (rows, columns, channels).
    dtype : numpy dtype
        Of the counts.
    energy : EnergyAxis
    source, format, metadata, positions, pixel_size
        As the :class:`~napari_xrf_pigments.cube.XRFCube` fields (positions in mm, pixel size
        (row, column) in mm); ``metadata["mask"]`` is not stored in the JSON metadata.
    compression : str or None

    Returns
    -------
    h5py.Group
        ``/entry/data``; its ``counts`` dataset has ``shape``, chunks of whole spectra and
        reads as 0 where nothing was written.
    """
    shape = tuple(int(n) for n in shape)
    h5.attrs["NX_class"] = "NXroot"
    h5.attrs["default"] = "entry"
    h5.attrs["creator"] = f"napari-xrf-pigments {__version__}"
    entry = h5.create_group("entry")
    entry.attrs["NX_class"] = "NXentry"
    entry.attrs["default"] = "data"
    if source:
        entry.attrs["source_file"] = str(source)
    entry.attrs["source_format"] = format
    meta = _json_metadata({k: v for k, v in (metadata or {}).items() if k != "mask"})
    if meta:
        entry.attrs["metadata_json"] = meta
    data = entry.create_group("data")
    data.attrs["NX_class"] = "NXdata"
    data.attrs["signal"] = "counts"

    kwargs = {"compression": compression, "shuffle": True} if compression else {}
    if compression == "gzip":
        kwargs["compression_opts"] = 4
    counts = data.create_dataset(
        "counts", shape=shape, dtype=dtype, chunks=_spectra_chunks(shape, dtype), **kwargs
    )
    counts.attrs["units"] = "counts"
    counts.attrs["axes_order"] = "rows, columns, channels"

    if energy.calibrated:
        e_data = data.create_dataset("energy", data=energy.energies())
        e_data.attrs["units"] = "keV"
        e_data.attrs["long_name"] = "energy (keV)"
        if energy.gain is not None:
            e_data.attrs["calibration"] = np.array(energy.as_calibration())
            e_data.attrs["calibration_doc"] = "E = zero + gain*ch + quad*ch^2 (keV)"
        e_name = "energy"
    else:
        data.create_dataset("channel", data=np.arange(shape[2], dtype=np.int32))
        e_name = "channel"
    y_name = x_name = "."
    if positions is not None:
        y, x = (np.asarray(p, dtype=np.float64) for p in positions)
        if y.shape == (shape[0],) and x.shape == (shape[1],):
            data.create_dataset("y", data=y).attrs["units"] = "mm"
            data.create_dataset("x", data=x).attrs["units"] = "mm"
            y_name, x_name = "y", "x"
    data.attrs["axes"] = [y_name, x_name, e_name]
    data.attrs[f"{e_name}_indices"] = 2
    if y_name != ".":
        data.attrs["y_indices"] = 0
        data.attrs["x_indices"] = 1
    if pixel_size is not None:
        data.attrs["pixel_size_mm"] = np.asarray(pixel_size, dtype=np.float64)
    return data


def write_pixel_maps(data, *, live_time=None, mask=None) -> None:
    """Add ``live_time`` (s; scalar or (rows, columns)) and ``mask`` ((rows, columns), stored
    uint8, 1 = no measured spectrum) to a group from :func:`create_nexus`; values of another
    shape are left out."""
    shape = data["counts"].shape[:2]
    if live_time is not None:
        live = np.asarray(live_time, dtype=np.float64)
        if live.shape in ((), shape):
            data.create_dataset("live_time", data=live).attrs["units"] = "s"
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape == shape:
            dset = data.create_dataset("mask", data=(mask != 0).astype(np.uint8))
            dset.attrs["doc"] = "1 = no measured spectrum at this pixel (its counts are 0)"


def _json_metadata(metadata: dict) -> str | None:
    """The JSON-able part of a cube's metadata (large arrays dropped)."""

    def convert(value):
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, np.ndarray):
            return value.tolist() if value.size <= 4096 else None
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        return str(value)

    if not metadata:
        return None
    try:
        return json.dumps(convert(metadata))
    except (TypeError, ValueError):
        return None
