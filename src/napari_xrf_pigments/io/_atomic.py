"""Moved to :mod:`napari_xrf_pigments.atomic`; this re-export goes once no module imports it."""

from ..atomic import (  # noqa: F401
    WRITE_ERRORS,
    atomic_hdf5,
    atomic_output,
    check_output_path,
    naming_write_errors,
    normal_permissions,
)
