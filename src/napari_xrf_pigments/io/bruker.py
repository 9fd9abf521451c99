"""Bruker Esprit files through RosettaSciIO (``rsciio.bruker``).

- ``.bcf`` spectrum images (M4 Tornado, M6 Jetstream, SEM-EDS hypermaps): the first hypermap
  in the file, (rows, columns, channels). Decoding a .bcf is all-or-nothing, so the counts are
  a dask array that decodes the file once, the first time counts are needed.
- ``.spx`` single spectra: a 1 x 1 cube with the live time of the acquisition.

The energy calibration is the spectrum header's ``CalibAbs`` (keV) and ``CalibLin`` (keV per
channel), which rsciio returns as the energy axis offset and scale in keV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cube import EnergyAxis, XRFCube
from ..errors import UnreadableFileError
from ._common import (
    head_text,
    length_factor_to_mm,
    never_raises,
    parse_once_dask,
    read_head,
    wrap_errors,
)

FORMATS = ("bruker-bcf", "bruker-spx")

_SFS_MAGIC = b"AAMVHFSS"


@never_raises
def sniff(path) -> str | None:
    """``"bruker-bcf"`` for a Bruker SFS container holding a hypermap, ``"bruker-spx"`` for a
    Bruker XML spectrum; else None. Reads the container's file table / the XML head only."""
    path = Path(path)
    if read_head(path, 8) == _SFS_MAGIC:
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


def _read_bcf(path: Path) -> XRFCube:
    from rsciio.bruker._api import bcf_reader

    items = bcf_reader(str(path), select_type="spectrum_image", lazy=True)
    if not items:
        raise UnreadableFileError(path, "the .bcf holds no spectrum image")
    item = items[0]
    lazy = item["data"]  # dask array that re-decodes the whole file at each compute
    if lazy.ndim != 3:
        raise UnreadableFileError(path, f"unexpected spectrum image shape {lazy.shape}")
    # Synchronous: this runs inside the outer array's own compute.
    counts = parse_once_dask(lambda: lazy.compute(scheduler="synchronous"), lazy.shape, lazy.dtype)
    height, width, energy_axis = item["axes"]
    pixel_size = None
    factor = length_factor_to_mm(height.get("units"))
    if factor:
        pixel_size = (float(height["scale"]) * factor, float(width["scale"]) * factor)
    return XRFCube(
        counts,
        _energy(energy_axis, lazy.shape[2]),
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
    return meta
