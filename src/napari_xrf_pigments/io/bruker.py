"""Bruker Esprit files through RosettaSciIO (``rsciio.bruker``).

- ``.bcf`` spectrum images (M4 Tornado, M6 Jetstream, SEM-EDS hypermaps): the first hypermap
  in the file, (rows, columns, channels). The container's tables are checked first (a bounded
  pre-pass, :func:`sfs_damage`), and the spectra are never decoded in this process: rsciio's
  compiled decoder crashes (SIGSEGV, SIGBUS) on damaged files, so it runs in a child process
  (``_isolated.decode_bcf``) and a crash there is a one-line "damaged data" error. Maps up to
  ``DECODE_AT_OPEN_BYTES`` are decoded when the file is opened (damage is reported then); bigger
  ones are a dask array decoded once, the first time counts are needed.
- ``.spx`` single spectra: a 1 x 1 cube with the live time of the acquisition.

The energy calibration is the spectrum header's ``CalibAbs`` (keV) and ``CalibLin`` (keV per
channel), which rsciio returns as the energy axis offset and scale in keV.
"""

from __future__ import annotations

import functools
import math
import os
import re
import struct
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ..lines import element_symbol
from ._common import (
    head_text,
    length_factor_to_mm,
    never_raises,
    parse_once_dask,
    read_head,
    wrap_errors,
)
from ._isolated import decode_bcf

FORMATS = ("bruker-bcf", "bruker-spx")

_SFS_MAGIC = b"AAMVHFSS"
# Spectrum images up to this size (decoded) are decoded when the file is opened, so damaged
# data is reported then; bigger ones when their counts are first needed.
DECODE_AT_OPEN_BYTES = 512 * 2**20
# A header declaring more than this is damaged (M4/M6 maps are at most tens of GB decoded).
MAX_BCF_BYTES = 256 * 2**30


_SFS_ITEM = struct.Struct("<iQQQQIi176s?3s256s32s")  # one 0x200-byte entry of the file table


def sfs_damage(path) -> str | None:
    """Why the SFS container's own tables are damaged, or None when they are consistent.

    A bounded pre-pass over what rsciio's ``SFS_reader`` trusts (chunk size, file-table size and
    address, each entry's size, parent and pointer-table address, the chain of table chunks):
    with these checked, its loops are bounded by the file size. Damaged values would otherwise
    make it loop on a cycle of parents or read pointer tables of 2^64 bytes (a hang or a memory
    blowup in napari's reader check). Reads the first 0x14C bytes and the file table only.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(0x14C)
        if len(head) < 0x14C:
            return "the Bruker container is cut short before its file table"
        _, chunksize = struct.unpack_from("<fI", head, 0x124)
        tree_address, n_items, _ = struct.unpack_from("<III", head, 0x140)
        if not (0x200 <= chunksize <= 2**26) or chunksize & (chunksize - 1):
            return f"the Bruker container's chunk size ({chunksize}) is damaged"
        n_file_chunks = -(-size // chunksize)
        usable = chunksize - 0x20
        if not (1 <= n_items <= 2**16) or n_items * 0x200 > size:
            return f"the Bruker container's file table declares {n_items} entries"
        per_chunk = usable // 0x200
        n_table_chunks = -(-n_items // per_chunk)
        raw, address = b"", tree_address
        for _ in range(n_table_chunks):
            if address >= n_file_chunks:
                return "the Bruker container's file table points outside the file"
            fh.seek(chunksize * address + 0x118)
            link = fh.read(4)
            fh.seek(28, 1)
            raw += fh.read(per_chunk * 0x200 if n_table_chunks > 1 else n_items * 0x200)
            if len(link) < 4:
                return "the Bruker container is cut short inside its file table"
            address = struct.unpack("<I", link)[0]
        if len(raw) < n_items * 0x200:
            return "the Bruker container is cut short inside its file table"
    parents = []
    for i in range(n_items):
        pointer_table, item_size, *_rest = _SFS_ITEM.unpack_from(raw, i * 0x200)
        parent, is_dir = _rest[4], _rest[6]
        if not (parent == -1 or 0 <= parent < n_items) or parent == i:
            return f"entry {i} of the Bruker container's file table has a damaged parent ({parent})"
        if not is_dir and (item_size > size or not 0 <= pointer_table < n_file_chunks):
            return f"entry {i} of the Bruker container's file table declares data outside the file"
        parents.append(parent)
    for i in range(n_items):  # no cycles: every chain of parents reaches the root
        seen, j = 0, i
        while j != -1:
            j, seen = parents[j], seen + 1
            if seen > n_items:
                return "the Bruker container's file table has a cycle of folders"
    return None


@never_raises
def sniff(path) -> str | None:
    """``"bruker-bcf"`` for a Bruker SFS container holding a hypermap, ``"bruker-spx"`` for a
    Bruker XML spectrum; else None. Reads the container's file table / the XML head only."""
    path = Path(path)
    if read_head(path, 8) == _SFS_MAGIC:
        if sfs_damage(path):
            return None
        # lazy: rosettasciio is heavy
        from rsciio.bruker._api import SFS_reader

        vfs = SFS_reader(str(path)).vfs
        database = vfs.get("EDSDatabase", {})
        if "HeaderData" in database and any("SpectrumData" in k for k in database):
            return "bruker-bcf"
        return None
    text = head_text(path, 4096)
    if text and "<TRTSpectrum" in text:
        return "bruker-spx"
    return None


def explain(path) -> str | None:
    """Why a Bruker-looking file cannot be read (None when it can or is not Bruker's)."""
    path = Path(path)
    if read_head(path, 8) == _SFS_MAGIC and sniff(path) is None:
        try:
            damage = sfs_damage(path)
        except OSError:
            damage = None
        if damage:
            return f"damaged Bruker .bcf: {damage}"
        return "Bruker SFS container without a spectrum image (no EDSDatabase/SpectrumData)"
    return None


@wrap_errors
def read(path) -> XRFCube:
    """Read a Bruker .bcf (lazily) or .spx.

    Returns
    -------
    XRFCube
        counts (rows, columns, channels): dask array for .bcf, numpy (1, 1, channels) for
        .spx; energy calibrated from CalibAbs / CalibLin (keV).
    """
    fmt = sniff(path)
    if fmt == "bruker-bcf":
        return _read_bcf(path)
    if fmt == "bruker-spx":
        return _read_spx(path)
    raise UnreadableFileError(path, "not a Bruker .bcf spectrum image or .spx spectrum")


def _energy(axis: dict, n_channels: int) -> EnergyAxis:
    units = str(axis.get("units", "keV")).strip()
    factor = {"keV": 1.0, "eV": 1e-3}.get(units)
    if factor is None or not axis.get("scale"):
        return EnergyAxis.uncalibrated(n_channels)
    return EnergyAxis.from_calibration(n_channels, axis["offset"] * factor, axis["scale"] * factor)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _read_bcf(path: Path) -> XRFCube:
    from rsciio.bruker._api import BCF_reader, bcf_hyperspectra

    # Headers only (pure Python XML and the SFS file table); the spectra are never decoded in
    # this process: the compiled decoder crashes on damaged files (see _isolated.py).
    bcf = BCF_reader(str(path))
    items = bcf_hyperspectra(bcf, downsample=1, lazy=True)
    if not items:
        raise UnreadableFileError(path, "the .bcf holds no spectrum image")
    item = items[0]
    lazy = item["data"]  # dask array over rsciio's decoder: never computed here
    if lazy.ndim != 3 or min(lazy.shape) < 1:
        raise UnreadableFileError(path, f"unexpected spectrum image shape {lazy.shape}")
    shape, dtype = tuple(int(n) for n in lazy.shape), np.dtype(lazy.dtype)
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    memory = _memory_bytes()
    if nbytes > MAX_BCF_BYTES or (memory and nbytes > memory):
        raise UnreadableFileError(
            path, f"its header declares a {shape[0]} x {shape[1]} x {shape[2]} spectrum image "
                  f"({nbytes / 2**30:.1f} GiB decoded), more than "
                  + (f"this computer's memory ({memory / 2**30:.1f} GiB)" if memory and nbytes > memory
                     else f"the {MAX_BCF_BYTES / 2**30:.0f} GiB a .bcf can hold")
                  + "; the header is damaged or the map too big to decode whole"
        )
    index = bcf.def_index
    decode = functools.partial(decode_bcf, path, index, shape, dtype)
    if nbytes <= DECODE_AT_OPEN_BYTES:
        counts = decode()  # small: decoded (in a child) now, so damage is reported at open
    else:
        counts = parse_once_dask(decode, shape, dtype)
    height, width, energy_axis = item["axes"]
    pixel_size = None
    factor = length_factor_to_mm(height.get("units"))
    if factor:
        pixel_size = (float(height["scale"]) * factor, float(width["scale"]) * factor)
    return XRFCube(
        counts,
        _energy(energy_axis, shape[2]),
        pixel_size=pixel_size,
        source=str(path),
        format="bruker-bcf",
        metadata=_metadata(item),
    )


def _read_spx(path: Path) -> XRFCube:
    from rsciio.bruker._api import spx_reader

    item = spx_reader(str(path))[0]
    data = np.asarray(item["data"])
    if data.ndim != 1 or data.size == 0:
        raise UnreadableFileError(path, f"unexpected spectrum shape {data.shape}")
    metadata = _metadata(item)
    tube = _xrf_tube(path)
    if tube:
        metadata["tube"] = tube
    live_time = metadata.get("live_time_s")
    return XRFCube(
        data.reshape(1, 1, -1),
        _energy(item["axes"][0], data.size),
        live_time=live_time,
        source=str(path),
        format="bruker-spx",
        metadata=metadata,
    )


def _metadata(item: dict) -> dict:
    """Acquisition facts worth keeping (excitation, detector, times, date)."""
    meta = {}
    instrument = item.get("metadata", {}).get("Acquisition_instrument", {})
    for mode in instrument.values():  # "SEM" / "TEM" is rsciio's guess; XRF files land there
        if "beam_energy" in mode:
            meta["excitation_kV"] = mode["beam_energy"]
        eds = mode.get("Detector", {}).get("EDS", {})
        for key, name in (("live_time", "live_time_s"), ("real_time", "real_time_s"),
                          ("detector_type", "detector"), ("elevation_angle", "elevation_angle_deg")):
            if key in eds:
                meta[name] = eds[key]
    general = item.get("metadata", {}).get("General", {})
    for key in ("date", "time", "title"):
        if general.get(key):
            meta[key] = general[key]
    elements = item.get("metadata", {}).get("Sample", {}).get("elements")
    if elements:
        meta["elements"] = list(elements)
    spectrum = item.get("original_metadata", {}).get("Spectrum", {})
    if "CalibAbs" in spectrum:
        meta["CalibAbs_keV"] = spectrum["CalibAbs"]
        meta["CalibLin_keV_per_channel"] = spectrum.get("CalibLin")
    instrument = _detector_description(item.get("original_metadata", {}))
    if instrument:
        meta["instrument"] = instrument
    return meta


def _detector_description(original: dict) -> dict:
    """The detector's resolution, crystal and window as parts of an instrument description
    (:class:`~napari_xrf_pigments.physics.instrument.Readout` / ``Detector`` fields).

    Bruker records the peak width as ``sigma^2 = SigmaAbs + SigmaLin * E`` (keV^2, E in keV):
    PyMca's ``FWHM^2 = noise^2 + 0.00385 * Fano * 2.3548^2 * E`` with ``noise = 2.3548 *
    sqrt(SigmaAbs)`` and ``Fano = SigmaLin / 0.00385``.
    """
    out = {}
    spectrum, detector = original.get("Spectrum", {}), original.get("Detector", {})
    try:
        sigma_abs, sigma_lin = float(spectrum["SigmaAbs"]), float(spectrum["SigmaLin"])
        if sigma_abs > 0 and sigma_lin > 0:
            out["readout"] = {"noise_keV": 2.3548 * math.sqrt(sigma_abs), "fano": sigma_lin / 0.00385}
    except (KeyError, TypeError, ValueError):
        pass
    parts = {}
    try:
        parts["thickness_um"] = float(detector["DetectorThickness"]) * 1000.0  # mm
    except (KeyError, TypeError, ValueError):
        pass
    window = detector.get("WindowLayers", {})
    layers = list(window.values()) if isinstance(window, dict) else []
    if len(layers) == 1 and str(layers[0].get("Atom")) == "4":  # a plain beryllium window
        try:
            parts.update(window="Be", window_thickness_um=float(layers[0]["Thickness"]))
        except (KeyError, TypeError, ValueError):
            pass
    if parts:
        out["detector"] = parts
    return out


#: Most bytes of a .spx searched for its X-ray source header (real ones are well under 1 MB).
_SPX_HEADER_BYTES = 16 * 2**20


def _xrf_tube(path) -> dict:
    """The X-ray tube a Bruker M4/M6 .spx describes (its ``TRTXrfHeader``): ``anode`` (symbol),
    ``voltage_kV``, ``current_uA``, ``type``; {} when the file has no such header (SEM-EDS).

    rsciio keeps neither the anode nor the tube voltage of XRF files; the anode tells which
    scattered tube lines the spectrum holds (the energy calibration's check uses them).
    """

    with open(path, "rb") as fh:
        text = fh.read(_SPX_HEADER_BYTES).decode("latin-1")
    block = re.search(r'<ClassInstance Type="TRTXrfHeader">.*?</ClassInstance>', text, re.S)
    if block is None:
        return {}
    try:
        header = ElementTree.fromstring(block.group(0))
    except ElementTree.ParseError:
        return {}
    tube = {}
    for key, tag, convert in (("anode", "Anode", lambda v: element_symbol(int(v))),
                              ("voltage_kV", "Voltage", float), ("current_uA", "Current", float),
                              ("type", "TubeType", str),
                              # On the anode (Ebel's alpha_e and alpha_x), degrees.
                              ("electron_angle_deg", "TubeIncidentAngle", float),
                              ("takeoff_angle_deg", "TubeTakeOffAngle", float)):
        value = header.findtext(tag)
        try:
            tube[key] = convert(value.strip()) if value else None
        except (ValueError, IndexError):
            tube[key] = None
    window = header.find("TubeWindow")
    if window is not None and window.findtext("AtomicNumber", "").strip() == "4":
        try:
            tube["window_thickness_um"] = float(window.findtext("Thickness"))  # beryllium
        except (TypeError, ValueError):
            pass
    return {k: v for k, v in tube.items() if v is not None}
