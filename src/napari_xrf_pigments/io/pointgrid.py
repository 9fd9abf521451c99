"""Point grids to a cube: one spectrum file per scan point -> the project's NeXus cube.

Portable and home-built scanners (an Amptek detector on a motorised stage) write one file per
point, numbered ``NAME_1.mca ... NAME_7200.mca`` for a 60 x 120 raster. :func:`assemble_job`
reads them in the order of their numbers (natural order: 2 before 10) and writes the cube of
:func:`~napari_xrf_pigments.io.hdf5.write_cube`, a block of rows at a time (never the whole
scan in memory), atomically, with progress; ``xrf-pigments assemble`` is its command.

Rules (docs/formats.md, "Point grids"):

- Point ``n`` is raster point ``n - first`` (``first`` = 0 if a file is numbered 0, else 1, or
  ``first_number``); row-major order fills row 0 from column 0 to the last, then row 1...;
  serpentine order runs odd rows from the last column back to the first.
- The last file must be the raster's last point: files numbered beyond the raster, or a last
  number short of it, are refused (wrong ``--rows``/``--columns``), never shifted to fit.
- A number missing inside the series is a masked pixel (counts 0, ``mask`` = 1), with a
  warning. A damaged point file is an error naming it, unless ``mask_unreadable`` (then it is
  masked too, with a warning).
- Every point must hold one spectrum with the first readable point's channel count and energy
  calibration (within a tenth of a channel): otherwise both files are named and nothing is
  written.

Each point is read with :func:`~napari_xrf_pigments.io.open_cube`, so any single-spectrum format
works; Amptek series go straight to the PMCA parser (no sniffing of 7200 files).
:func:`scan_points` is a first look (the series and one point's channels and calibration) for
the napari widget and the reader on a folder.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_hdf5, check_output_path
from ..errors import InvalidDataError, UnreadableFileError
from ..progress import Progress, run
from . import amptek, open_cube
from .columns import scan_pairs
from .hdf5 import create_nexus, write_pixel_maps

ORDERS = ("row-major", "serpentine")
#: Point files named in a warning before "...".
WARN_NAMES = 5
#: Two points' energies may differ by this fraction of a channel and still be one calibration.
CALIBRATION_TOLERANCE_CHANNELS = 0.1
#: Rows of counts written at once are about this many bytes (a multiple of the chunk rows).
BLOCK_BYTES = 16 * 2**20

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")
_GLOB_CHARS = re.compile(r"[*?\[]")
# Per-point header values that say nothing about the assembled cube.
_PER_POINT_KEYS = {"real_time_s", "start_time", "tag", "description", "dpp_status", "hdf5_path"}


@dataclass(frozen=True)
class PointFile:
    """A numbered point file: ``path`` and the number at the end of its name."""

    path: Path
    number: int


@dataclass
class Series:
    """Point files of one scan, sorted by number.

    Attributes
    ----------
    files : list of PointFile
    prefix, suffix : str
        The name around the number (``"scan_"``, ``".mca"``).
    width : int
        Digits of zero-padded numbers (``scan_0007.mca``: 4), 0 when not padded.
    """

    files: list[PointFile]
    prefix: str
    suffix: str
    width: int = 0

    def name(self, number: int) -> str:
        """File name of point ``number`` in this series (also for points without a file)."""
        return f"{self.prefix}{number:0{self.width}d}{self.suffix}"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}<n>{self.suffix}"


@dataclass
class AssembleResult:
    """What :func:`assemble_job` wrote.

    Attributes
    ----------
    out : Path
    shape : tuple of int
        (rows, columns, channels).
    point_format : str
        Format of the point files (e.g. ``"amptek-mca"``).
    missing : list of str
        Names of the points without a file (masked).
    unreadable : list of (str, str)
        (file name, reason) of damaged point files masked with ``mask_unreadable``.
    warnings : list of str
        One line each, for the user.
    """

    out: Path
    shape: tuple[int, ...]
    point_format: str
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def masked(self) -> int:
        return len(self.missing) + len(self.unreadable)


# --------------------------------------------------------------------------- the files


def _numbered(path: Path):
    """(prefix, number, suffix) of a numbered file name, or None."""
    stem, suffix = os.path.splitext(path.name)
    match = _NUMBERED.match(stem)
    if not match:
        return None
    return match.group("prefix"), int(match.group("number")), suffix, match.group("number")


def _expand(inputs) -> tuple[list[Path], bool]:
    """Files named by ``inputs`` (files, folders, glob patterns); True if a folder was listed
    (un-numbered files there are skipped, not refused)."""
    paths, listed = [], False
    for item in inputs:
        item = str(item)
        path = Path(item)
        if path.is_dir():
            listed = True
            paths += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        elif path.exists():
            paths.append(path)
        elif _GLOB_CHARS.search(item):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                raise UnreadableFileError(item, "no point files match this pattern")
            paths += found
        else:
            raise UnreadableFileError(path, "no such file or folder")
    unique = list(dict.fromkeys(os.path.abspath(p) for p in paths))  # a file named twice counts once
    return [Path(p) for p in unique], listed


def find_series(inputs) -> Series:
    """The numbered point files that ``inputs`` name, sorted by their number.

    Parameters
    ----------
    inputs : sequence of str or Path
        Point files, folders (their numbered files are taken; others are skipped) or glob
        patterns (``"scan/pt_*.mca"``, expanded here so that 7200 names need no shell).

    Raises
    ------
    UnreadableFileError
        A named file has no number at the end of its name, a path or pattern finds nothing,
        or two files carry the same number.
    InvalidDataError
        The files form several series (different names around the number).
    """
    paths, listed = _expand(inputs)
    groups: dict[tuple[str, str], list] = {}
    for path in paths:
        parts = _numbered(path)
        if parts is None:
            if listed and not any(os.path.abspath(str(i)) == str(path) for i in inputs):
                continue  # a folder's positions file, notes, sum spectrum...
            raise UnreadableFileError(
                path, "no point number at the end of its name (NAME_<n>.ext): assemble orders "
                      "the points by that number"
            )
        prefix, number, suffix, digits = parts
        groups.setdefault((prefix, suffix.lower()), []).append((number, digits, path))
    if not groups:
        where = ", ".join(str(i) for i in inputs)
        raise InvalidDataError(f"no numbered point files (NAME_<n>.ext) in {where}")
    if len(groups) > 1:
        listing = ", ".join(f"{p}<n>{s} ({len(v)} files)" for (p, s), v in list(groups.items())[:4])
        (prefix, suffix), entries = next(iter(groups.items()))
        example = entries[0][2].parent / f"{prefix}*{suffix}"
        raise InvalidDataError(
            f"the inputs hold several numbered series ({listing}): give one, e.g. as the glob "
            f"'{example}'"
        )
    (prefix, _), entries = next(iter(groups.items()))
    entries.sort(key=lambda e: (e[0], str(e[2])))
    for (n1, _, p1), (n2, _, p2) in itertools.pairwise(entries):
        if n1 == n2:
            raise UnreadableFileError(p2, f"point number {n2} is also the number of {p1}")
    padded = [len(d) for _, d, _ in entries if len(d) > 1 and d.startswith("0")]
    suffix = os.path.splitext(entries[0][2].name)[1]
    return Series([PointFile(p, n) for n, _, p in entries], prefix, suffix, max(padded, default=0))


def raster_position(index: int, rows: int, columns: int, order: str = "row-major") -> tuple[int, int]:
    """(row, column) of the ``index``-th point of a scan (0-based) in ``order``."""
    row, col = divmod(int(index), int(columns))
    if order == "serpentine" and row % 2 == 1:
        col = columns - 1 - col
    if not 0 <= row < rows:
        raise IndexError(f"point {index} is outside a {rows} x {columns} raster")
    return row, col


def _raster_indices(rows: int, columns: int, order: str) -> np.ndarray:
    """Point index (0-based, scan order) of every pixel, shape (rows, columns)."""
    index = np.arange(rows * columns).reshape(rows, columns)
    if order == "serpentine":
        index[1::2] = index[1::2, ::-1]
    return index


# --------------------------------------------------------------------------- a first look


@dataclass
class PointScan:
    """What assembling some point files would start from (:func:`scan_points`).

    Attributes
    ----------
    series : Series
    path : Path
        The point file read (the first readable one).
    point_format : str
        Its format (``"amptek-mca"``, ``"two-column"``...).
    n_channels : int
    energy : EnergyAxis
        Its energy axis (every point must share it).
    live_time_s : float or None
    unreadable : list of (str, str)
        (file name, reason) of the files before ``path`` that could not be read.
    """

    series: Series
    path: Path
    point_format: str
    n_channels: int
    energy: object
    live_time_s: float | None = None
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def first_number(self) -> int:
        """Number of the raster's first point by default (0 if a file is numbered 0, else 1)."""
        return 0 if self.series.files[0].number == 0 else 1

    @property
    def n_points(self) -> int:
        """Points of the raster the files imply (``rows * columns`` must be this)."""
        return self.series.files[-1].number - self.first_number + 1

    @property
    def missing(self) -> int:
        """Point numbers without a file inside the series (masked when assembled)."""
        return self.n_points - len(self.series.files)

    def summary(self) -> str:
        """One line for a user: the files, the first point's channels and calibration."""
        files = self.series.files
        text = (f"{len(files)} point files {files[0].path.name} ... {files[-1].path.name} "
                f"({self.point_format}), {self.n_points} points")
        if self.missing:
            text += f" ({self.missing} without a file: masked)"
        text += f"; {self.path.name}: {self.n_channels} channels"
        if self.energy.calibrated:
            def keV(value):  # without "-0.0000"
                return f"{round(value, 4) + 0.0:.4f}"

            first, last = self.energy.range_keV
            zero, gain, quad = self.energy.as_calibration()
            text += (f", {keV(first)} to {keV(last)} keV (zero {keV(zero)} keV, gain "
                     f"{gain * 1000:.3f} eV/ch" + (f", quad {quad:.3g} keV/ch^2)" if quad else ")"))
        else:
            text += ", no energy calibration"
        if self.live_time_s is not None:
            text += f", live time {self.live_time_s:g} s"
        if self.unreadable:
            name, reason = self.unreadable[0]
            text += (f"; {_names([n for n, _ in self.unreadable])} before it cannot be read "
                     f"(first: {reason})")
        return text


def scan_points(inputs, *, tries: int = WARN_NAMES) -> PointScan:
    """The numbered series ``inputs`` name and its first readable point, reading one file.

    For a first look before :func:`assemble_job` (how many files, what the raster must make,
    channels and calibration); assembling still checks every point.

    Parameters
    ----------
    inputs : sequence of str or Path
        As :func:`find_series`.
    tries : int
        Files read before giving up when the first ones are damaged.

    Raises
    ------
    UnreadableFileError, InvalidDataError
        As :func:`find_series`; none of the first ``tries`` files can be read; a file holds
        more than one spectrum.
    """
    series = find_series(inputs)
    read = _reader(series.files[0].path)
    unreadable = []
    for point in series.files[:max(1, tries)]:
        try:
            cube = read(point.path)
        except UnreadableFileError as exc:
            unreadable.append((point.path.name, exc.reason))
            continue
        if cube.shape[:2] != (1, 1):
            raise InvalidDataError(
                f"{point.path} holds {cube.shape[0]} x {cube.shape[1]} spectra, not one point's "
                "spectrum: assemble takes one spectrum per file"
            )
        live = cube.live_time
        live = float(np.asarray(live).ravel()[0]) if live is not None and np.size(live) else None
        return PointScan(series, point.path, cube.format, cube.n_channels, cube.energy, live,
                         unreadable)
    name, reason = unreadable[0]
    raise UnreadableFileError(
        series.files[0].path.parent / name,
        f"{reason} (and the next {len(unreadable) - 1} point files cannot be read either)"
        if len(unreadable) > 1 else reason,
    )


# --------------------------------------------------------------------------- positions


def read_positions(path, n_points: int) -> np.ndarray:
    """Stage positions of a scan's points from a text file.

    Format: one line per point in the order of the point numbers (line k = point k, whether
    or not its file exists), ``x,y`` in mm (comma, semicolon, tab or spaces), an optional
    header line, ``#`` comments.

    Returns
    -------
    ndarray of float64, shape (n_points, 2)
        (x, y) in mm.

    Raises
    ------
    UnreadableFileError
        A line that is not two numbers, or not ``n_points`` lines.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError(path, "no such file" if not path.exists() else "not a file")
    with open(path, encoding="latin-1") as fh:
        rows = scan_pairs(fh.read().splitlines())
    if rows.bad is not None:
        number, line = rows.bad
        raise UnreadableFileError(path, f"line {number} is not two numbers (x, y in mm): {line[:30]!r}")
    xy = np.array(rows.values, dtype=np.float64).reshape(-1, 2)
    if xy.shape[0] != n_points:
        raise UnreadableFileError(
            path, f"{xy.shape[0]} positions for a raster of {n_points} points (one x,y line per "
                  "point, in point-number order)"
        )
    if not np.all(np.isfinite(xy)):
        raise UnreadableFileError(path, "a position is not a finite number")
    return xy


def grid_from_positions(xy: np.ndarray, rows: int, columns: int, order: str, path=None):
    """Row and column coordinates of a raster from its points' (x, y) positions.

    Parameters
    ----------
    xy : ndarray, shape (rows*columns, 2)
        (x, y) in mm in scan order.

    Returns
    -------
    (y, x, pixel_size)
        y of shape (rows,) and x of shape (columns,) in mm (means over the raster's rows and
        columns); pixel size (row, column) in mm (median steps), or None for a single point.

    Raises
    ------
    UnreadableFileError
        The positions contradict ``order`` (rows run in alternating x directions, or all the
        same way for serpentine), do not change along a scanned axis, or are off a regular
        grid by more than half a step.
    """
    index = _raster_indices(rows, columns, order)
    X, Y = xy[index, 0], xy[index, 1]
    name = path if path is not None else "the positions"
    if columns > 1 and rows > 1:
        directions = np.sign(X[:, -1] - X[:, 0])
        if np.any(directions != directions[0]):
            r = int(np.flatnonzero(directions != directions[0])[0])
            other = "serpentine" if order == "row-major" else "row-major"
            raise UnreadableFileError(
                name, f"rows 0 and {r} run in opposite x directions in --order {order}: the scan "
                      f"looks {other}; give --order {other}"
            )
    y, x = Y.mean(axis=1), X.mean(axis=0)
    steps = []
    for axis, values in (("row (y)", y), ("column (x)", x)):
        if values.size > 1:
            diffs = np.diff(values)
            if not (np.all(diffs > 0) or np.all(diffs < 0)):
                raise UnreadableFileError(
                    name, f"the {axis} positions do not change steadily along the raster (is "
                          "the raster --rows x --columns right?)"
                )
            steps.append(float(np.median(np.abs(diffs))))
        else:
            steps.append(None)
    if steps == [None, None]:
        return y, x, None
    dy = steps[0] if steps[0] is not None else steps[1]
    dx = steps[1] if steps[1] is not None else steps[0]
    off = np.maximum(np.abs(Y - y[:, None]) / dy, np.abs(X - x[None, :]) / dx)
    if off.max() > 0.5:
        r, c = np.unravel_index(int(np.argmax(off)), off.shape)
        raise UnreadableFileError(
            name, f"point {int(index[r, c]) + 1} is {off[r, c]:.2f} steps off its place in a "
                  f"regular grid ({dy:g} x {dx:g} mm): the cube needs a regular raster"
        )
    return y, x, (dy, dx)


# --------------------------------------------------------------------------- assembling


@dataclass
class _Plan:
    series: Series
    out: Path
    rows: int
    columns: int
    order: str
    first: int
    positions: tuple | None
    pixel_size: tuple | None
    mask_unreadable: bool
    force: bool


def assemble_job(inputs, out, *, rows: int, columns: int, order: str = "row-major",
                 positions=None, pixel_size=None, first_number: int | None = None,
                 mask_unreadable: bool = False, force: bool = False):
    """Assemble numbered point files into a NeXus cube; a job yielding Progress per raster row.

    The inputs, the raster and the output path are checked now (errors are raised here); the
    returned generator reads the points a block of rows at a time and writes the cube
    atomically: an error, a cancel (``close()``) or Ctrl-C leaves no file.

    Parameters
    ----------
    inputs : sequence of str or Path
        Point files, a folder of them or glob patterns (see :func:`find_series`).
    out : str or Path
        Cube file to write (NeXus HDF5, the layout of ``write_cube`` plus ``mask``).
    rows, columns : int
        Raster size; ``rows * columns`` must be the number of the last point.
    order : {"row-major", "serpentine"}
    positions : str or Path, optional
        Positions file (:func:`read_positions`): stage coordinates and pixel size.
    pixel_size : float or (float, float), optional
        Step in mm (one number: square pixels; else (row, column)). Not with ``positions``.
    first_number : int, optional
        Number of the raster's first point (default 0 if a file is numbered 0, else 1).
    mask_unreadable : bool
        Mask damaged point files (with a warning) instead of refusing them.
    force : bool
        Replace an existing ``out``.

    Returns
    -------
    generator
        Yields :class:`~napari_xrf_pigments.progress.Progress` (points done of all);
        returns an :class:`AssembleResult`.

    Raises
    ------
    InvalidDataError, UnreadableFileError, OutputExistsError
        Bad raster size or order, files that do not fit the raster, a bad positions file.
    """
    rows, columns = int(rows), int(columns)
    if rows < 1 or columns < 1:
        raise InvalidDataError(f"the raster needs at least one row and one column, got {rows} x {columns}")
    if order not in ORDERS:
        raise InvalidDataError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if positions is not None and pixel_size is not None:
        raise InvalidDataError("give a positions file or a pixel size, not both (the positions set the pixel size)")
    out = check_output_path(out, force=force)
    series = find_series(inputs)
    n = rows * columns
    numbers = [f.number for f in series.files]
    first = first_number if first_number is not None else (0 if numbers[0] == 0 else 1)
    if numbers[0] < first:
        raise UnreadableFileError(
            series.files[0].path, f"numbered {numbers[0]}, before the first point number {first}"
        )
    last = numbers[-1] - first + 1  # 1-based place of the last file in the scan
    if last != n:
        beyond = last > n
        raise InvalidDataError(
            f"the point files run from {series.name(numbers[0])} to {series.name(numbers[-1])} "
            f"({len(numbers)} files, the last is point {last}) but --rows {rows} x --columns "
            f"{columns} makes {n} points: "
            + ("the files do not fit that raster" if beyond else "the raster is larger than the scan")
            + "; check --rows and --columns (a scan stopped early: give the rows it completed, "
              "and only their files)"
        )
    grid = None
    if positions is not None:
        xy = read_positions(positions, n)
        grid = grid_from_positions(xy, rows, columns, order, path=Path(positions))
    if pixel_size is not None:
        size = np.atleast_1d(np.asarray(pixel_size, dtype=np.float64))
        if size.size not in (1, 2) or not np.all(np.isfinite(size)) or np.any(size <= 0):
            raise InvalidDataError(f"pixel size must be one or two positive numbers (mm), got {pixel_size!r}")
        pixel_size = (float(size[0]), float(size[-1]))
    plan = _Plan(series, out, rows, columns, order, first,
                 (grid[0], grid[1]) if grid else None, grid[2] if grid else pixel_size,
                 mask_unreadable, force)
    return _assemble(plan)


def assemble(inputs, out, **kwargs) -> AssembleResult:
    """:func:`assemble_job` run to its end (for scripts); the same arguments."""
    return run(assemble_job(inputs, out, **kwargs))


def _reader(path: Path):
    """The function reading a point file like ``path``: the PMCA parser for Amptek series
    (no sniffing of thousands of files), else ``open_cube``."""
    return amptek.read if amptek.sniff(path) else open_cube


def _describe_energy(axis) -> str:
    if not axis.calibrated:
        return "no energy calibration"
    first, last = axis.range_keV
    return f"{first:.4f}-{last:.4f} keV"


class _Points:
    """Reads the point files and checks each against the first readable one."""

    def __init__(self, plan: _Plan):
        self.plan = plan
        self.series = plan.series
        self.read = _reader(self.series.files[0].path)
        self.reference = None  # (PointFile, XRFCube)
        self.unreadable: list[tuple[str, str]] = []
        self.tolerance_keV = 0.0

    def load(self, point: PointFile):
        """The point's cube; None if it is damaged and damaged points are masked."""
        try:
            cube = self.read(point.path)
        except UnreadableFileError as exc:
            if not self.plan.mask_unreadable:
                raise UnreadableFileError(
                    point.path, f"{exc.reason} (--mask-unreadable assembles the other points and "
                                "masks this one)"
                ) from exc
            self.unreadable.append((point.path.name, exc.reason))
            return None
        if cube.shape[:2] != (1, 1):
            raise InvalidDataError(
                f"{point.path} holds {cube.shape[0]} x {cube.shape[1]} spectra, not one point's "
                "spectrum: assemble takes one spectrum per file"
            )
        if self.reference is None:
            self.reference = (point, cube)
            if cube.energy.calibrated:
                energies = cube.energy.energies()
                width = float(np.median(np.diff(energies))) if energies.size > 1 else 0.0
                self.tolerance_keV = CALIBRATION_TOLERANCE_CHANNELS * width
        else:
            self._check(point, cube)
        return cube

    def _check(self, point: PointFile, cube) -> None:
        ref_point, ref = self.reference
        if cube.n_channels != ref.n_channels:
            raise InvalidDataError(
                f"{point.path} has {cube.n_channels} channels but {ref_point.path} has "
                f"{ref.n_channels}: the point files of one scan must share the channel count"
            )
        a, b = ref.energy, cube.energy
        if a.calibrated != b.calibrated:
            raise InvalidDataError(
                f"{point.path} has {_describe_energy(b)} but {ref_point.path} has "
                f"{_describe_energy(a)}: the point files of one scan must share one calibration"
            )
        if a.calibrated and not (a.gain is not None and a == b):
            diff = float(np.max(np.abs(a.energies() - b.energies())))
            if diff > self.tolerance_keV:
                raise InvalidDataError(
                    f"the energy calibration of {point.path} differs from that of "
                    f"{ref_point.path} by up to {diff * 1000:.1f} eV: the point files of one "
                    "scan must share one calibration"
                )


def _spectrum_into(spectrum: np.ndarray, dtype, point: PointFile, ref_point: PointFile) -> np.ndarray:
    """``spectrum`` as ``dtype`` (the first point's), refused if that would change a count."""
    if np.can_cast(spectrum.dtype, dtype, "safe"):
        return spectrum
    cast = spectrum.astype(dtype)
    if not np.array_equal(cast, spectrum):
        raise InvalidDataError(
            f"{point.path} holds {spectrum.dtype} counts that do not fit the {np.dtype(dtype)} "
            f"counts of {ref_point.path} (point files of different formats?)"
        )
    return cast


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:WARN_NAMES])
    return shown + (", ..." if len(names) > WARN_NAMES else "")


def _metadata(plan: _Plan, point_format: str, ref_cube) -> dict:
    series = plan.series
    metadata = {
        "assembled_from": {
            "folder": os.path.abspath(series.files[0].path.parent),
            "series": series.pattern,
            "first_file": series.files[0].path.name,
            "last_file": series.files[-1].path.name,
            "point_files": len(series.files),
            "first_number": plan.first,
            "order": plan.order,
            "point_format": point_format,
        },
    }
    # What the points share (instrument, calibration) at the top, as a single file has it.
    for key, value in ref_cube.metadata.items():
        if key not in _PER_POINT_KEYS and key not in ("mask", "masked_pixels"):
            metadata[key] = value
    return metadata


def _assemble(plan: _Plan):
    series = plan.series
    rows, columns = plan.rows, plan.columns
    n = rows * columns
    points = _Points(plan)
    by_index = {f.number - plan.first: f for f in series.files}
    cache = {}
    for point in series.files:  # the first readable point sets channels, calibration, dtype
        cube = points.load(point)
        if cube is not None:
            cache[point.number] = cube
            break
    if points.reference is None:
        reason = points.unreadable[0][1] if points.unreadable else "?"
        raise UnreadableFileError(
            series.files[0].path, f"none of the {len(series.files)} point files can be read ({reason})"
        )
    ref_point, ref = points.reference
    point_format = ref.format
    dtype = ref.dtype
    n_channels = ref.n_channels
    index = _raster_indices(rows, columns, plan.order)
    live = np.zeros((rows, columns), dtype=np.float64)
    has_live = False
    mask = np.zeros((rows, columns), dtype=bool)
    missing = []
    result = AssembleResult(plan.out, (rows, columns, n_channels), point_format)

    with atomic_hdf5(plan.out, force=plan.force) as h5:
        data = create_nexus(
            h5, shape=(rows, columns, n_channels), dtype=dtype, energy=ref.energy,
            source=os.path.join(os.path.abspath(ref_point.path.parent), series.pattern),
            format=f"point-grid ({point_format})",
            metadata=_metadata(plan, point_format, ref), positions=plan.positions,
            pixel_size=plan.pixel_size,
        )
        counts = data["counts"]
        chunk_rows = counts.chunks[0]
        row_bytes = columns * n_channels * np.dtype(dtype).itemsize
        # Whole chunks per block where a block holds several (no chunk is compressed twice).
        block_rows = max(1, min(rows, BLOCK_BYTES // max(row_bytes, 1)))
        if block_rows >= chunk_rows:
            block_rows -= block_rows % chunk_rows
        done = 0
        for start in range(0, rows, block_rows):
            stop = min(rows, start + block_rows)
            block = np.zeros((stop - start, columns, n_channels), dtype=dtype)
            for r in range(start, stop):
                for c in range(columns):
                    k = int(index[r, c])
                    point = by_index.get(k)
                    if point is None:
                        mask[r, c] = True
                        missing.append(series.name(k + plan.first))
                        continue
                    cube = cache.pop(point.number) if point.number in cache else points.load(point)
                    if cube is None:
                        mask[r, c] = True
                        continue
                    spectrum = np.asarray(cube.counts).reshape(-1)
                    block[r - start, c] = _spectrum_into(spectrum, dtype, point, ref_point)
                    if cube.live_time is not None:
                        live[r, c] = float(np.asarray(cube.live_time).ravel()[0])
                        has_live = True
                done += columns
                yield Progress(done, n, f"row {r + 1} of {rows}")
            counts[start:stop] = block
        write_pixel_maps(data, live_time=live if has_live else None, mask=mask)

    result.missing = missing
    result.unreadable = list(points.unreadable)
    if missing:
        result.warnings.append(
            f"{len(missing)} of {n} points have no file and are masked (counts 0): {_names(missing)}"
        )
    if points.unreadable:
        names = [name for name, _ in points.unreadable]
        result.warnings.append(
            f"{len(names)} of {n} point files cannot be read and are masked (counts 0): "
            f"{_names(names)} (first: {points.unreadable[0][1]})"
        )
    return result
