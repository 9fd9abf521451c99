"""Maps files: 2-D result images (element or pigment maps) in one HDF5 file.

Layout (format ``napari-xrf-pigments/maps``, version 1)::

    /maps/<name>   (rows, columns) float32, one dataset per map; attributes:
                     kind   "element", "pigment", "scatter" (tube lines), "fit-statistic" or
                            "unexplained" (signal no called pigment explains, score in [0, 1];
                            per element with attribute ``element``)
                     unit   e.g. "probability", "counts", "score"
                     ...    stage-specific (pigment maps: abbreviation, pigment, layer,
                            evidence "checked" / "unavailable")
    /raw/<name>    optional: the network's own pigment probabilities before the evidence
                   check, same names and attributes (``evidence="raw"``)
    root attributes: format, format_version, software, version, plus the caller's provenance
                     (e.g. model, input_file). Lists and dicts are stored as JSON strings.

Every stage that writes maps uses :func:`write_maps`, so readers and widgets see one layout.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import __version__
from ..atomic import atomic_hdf5
from ..errors import InvalidDataError, UnreadableFileError

MAPS_FORMAT = "napari-xrf-pigments/maps"
MAPS_VERSION = 1
MAP_KINDS = ("element", "pigment", "scatter", "fit-statistic", "unexplained")


def _attr_value(value):
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    return value


def write_maps(
    path, maps: Mapping, root_attrs: Mapping | None = None, *, force: bool = False,
    raw: Mapping | None = None,
) -> Path:
    """Write maps atomically.

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` file.
    maps : mapping of name -> (array, attrs)
        ``array`` is 2-D (rows, columns), stored as float32; ``attrs`` must hold ``kind``
        (one of :data:`MAP_KINDS`) and ``unit``. All maps have one shape.
    root_attrs : mapping, optional
        Provenance for the root (model, input file...).
    force : bool
        Replace an existing file.
    raw : mapping of name -> (array, attrs), optional
        Maps for the ``/raw`` group (the network's own probabilities).

    Returns
    -------
    Path

    Raises
    ------
    InvalidDataError
        No maps, a bad name, shapes that differ, or missing ``kind``/``unit``.
    OutputExistsError
        If ``path`` exists and ``force`` is false.
    """
    if not maps:
        raise InvalidDataError("there are no maps to write")
    groups = {"maps": _prepare(maps), "raw": _prepare(raw or {})}
    shapes = {a.shape for g in groups.values() for a, _ in g.values()}
    if len(shapes) > 1:
        raise InvalidDataError(f"maps have different shapes: {sorted(shapes)}")
    with open_maps_writer(path, shapes.pop(), force=force) as out:
        out.set_root_attrs(root_attrs or {})
        for group_name, prepared in groups.items():
            for name, (array, attrs) in prepared.items():
                out.add(name, array, attrs, group=group_name)
    return Path(path)


@contextlib.contextmanager
def open_maps_writer(path, shape, *, force: bool = False):
    """A :class:`MapsWriter` on a temporary file that becomes ``path`` when the block ends.

    If the block raises (including cancellation), nothing is left and an existing ``path`` is
    untouched.

    Parameters
    ----------
    path : str or Path
    shape : (int, int)
        Rows and columns of every map.
    force : bool
        Replace an existing file.
    """
    with atomic_hdf5(path, force=force) as f:
        yield MapsWriter(f, shape)


class MapsWriter:
    """Maps written one by one, or block by block for maps larger than memory.

    Made by :func:`open_maps_writer`. Map attributes may be set after the data (e.g. once a
    prediction knows whether its evidence check held).

    Parameters
    ----------
    file : h5py.File
        Open for writing.
    shape : (int, int)
        Rows and columns of every map.
    """

    def __init__(self, file, shape):
        self.file = file
        self.shape = tuple(int(n) for n in shape)
        self._format = {"format": MAPS_FORMAT, "format_version": MAPS_VERSION,
                        "software": "napari-xrf-pigments", "version": __version__}
        self.file.attrs.update(self._format)
        self.file.create_group("maps", track_order=True)

    def set_root_attrs(self, attrs: Mapping) -> None:
        """Provenance for the root (model, input file...); the format attributes stay."""
        for key, value in attrs.items():
            if key not in self._format:
                self.file.attrs[key] = _attr_value(value)

    def _group(self, name: str):
        if name not in ("maps", "raw"):
            raise InvalidDataError(f"maps go to /maps or /raw, not /{name}")
        if name not in self.file:
            self.file.create_group(name, track_order=True)
        return self.file[name]

    def create(self, name: str, *, group: str = "maps", chunk_rows: int | None = None):
        """An empty map (NaN) to fill by rows: ``writer.create("VM")[0:16] = block``.

        Parameters
        ----------
        chunk_rows : int, optional
            Rows per stored chunk; give the rows of the blocks you write, so that no chunk is
            compressed twice.

        Returns
        -------
        h5py.Dataset, float32, shape (rows, columns)
        """
        _check_name(name)
        rows, cols = self.shape
        chunks = (max(1, min(rows, int(chunk_rows or rows))), max(1, cols))
        return self._group(group).create_dataset(
            name, shape=self.shape, dtype=np.float32, chunks=chunks, fillvalue=np.nan,
            compression="gzip", compression_opts=4)

    def add(self, name: str, array, attrs: Mapping, *, group: str = "maps") -> None:
        """Write a whole map (2-D, float32) with its attributes."""
        _check_name(name)
        array = np.asarray(array, dtype=np.float32)
        if array.shape != self.shape:
            raise InvalidDataError(f"map {name!r} has shape {array.shape}, others {self.shape}")
        _check_attrs(name, attrs)
        ds = self._group(group).create_dataset(name, data=array, compression="gzip", compression_opts=4)
        for key, value in attrs.items():
            ds.attrs[key] = _attr_value(value)

    def set_attrs(self, name: str, attrs: Mapping, *, group: str = "maps") -> None:
        """Attributes of a map made by :meth:`create`."""
        _check_attrs(name, attrs)
        ds = self.file[group][name]
        for key, value in attrs.items():
            ds.attrs[key] = _attr_value(value)

    def discard(self, group: str) -> None:
        """Remove a group made so far (e.g. ``/raw`` of a prediction whose check failed)."""
        if group in self.file:
            del self.file[group]


def _check_name(name) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise InvalidDataError(f"bad map name {name!r} (non-empty, no '/')")


def _check_attrs(name: str, attrs: Mapping) -> None:
    if attrs.get("kind") not in MAP_KINDS:
        raise InvalidDataError(f"map {name!r} needs attribute kind in {MAP_KINDS}")
    if "unit" not in attrs:
        raise InvalidDataError(f"map {name!r} needs a unit attribute")


def _prepare(maps: Mapping) -> dict:
    """Check map names, shapes and attributes; arrays as float32."""
    prepared = {}
    shape = None
    for name, item in maps.items():
        _check_name(name)
        try:
            array, attrs = item
        except (TypeError, ValueError):
            raise InvalidDataError(f"map {name!r} must be given as (array, attrs)") from None
        array = np.asarray(array, dtype=np.float32)
        if array.ndim != 2:
            raise InvalidDataError(f"map {name!r} must be 2-D, got shape {array.shape}")
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise InvalidDataError(f"map {name!r} has shape {array.shape}, others {shape}")
        attrs = dict(attrs or {})
        _check_attrs(name, attrs)
        prepared[name] = (array, attrs)
    return prepared


def _json_list(text) -> list:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return [str(text)]
    return value if isinstance(value, list) else [str(value)]


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_warnings(path) -> list[str]:
    """The ``warnings`` root attribute of a maps file (empty if it has none; no map is read)."""
    # lazy: h5py loads only where HDF5 is read or written
    import h5py

    with h5py.File(path, "r") as f:
        value = _decode(f.attrs.get("warnings", "[]"))
    return json.loads(value) if value else []


def read_maps(path, *, group: str = "maps") -> tuple[dict, dict]:
    """Read a maps file.

    Parameters
    ----------
    path : str or Path
    group : {"maps", "raw"}
        ``"raw"``: the network's own pigment probabilities (empty when the file has none).

    Returns
    -------
    maps : dict of name -> (ndarray float32 of shape (rows, columns), dict of attrs)
        In file order.
    root_attrs : dict

    Raises
    ------
    UnreadableFileError
        Missing file, not HDF5, or no ``/maps`` group.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise UnreadableFileError(path, f"not an HDF5 file ({exc})") from None
    with f:
        if "maps" not in f or not isinstance(f["maps"], h5py.Group):
            raise UnreadableFileError(path, "not a maps file: /maps is missing")
        root = {k: _decode(v) for k, v in f.attrs.items()}
        maps = {}
        for name, ds in (f[group].items() if group in f else ()):
            if isinstance(ds, h5py.Dataset) and ds.ndim == 2:
                attrs = {k: _decode(v) for k, v in ds.attrs.items()}
                if "members" in attrs:  # a group's member names, stored as a JSON list
                    attrs["members"] = _json_list(attrs["members"])
                maps[name] = (ds[()].astype(np.float32), attrs)
    return maps, root
