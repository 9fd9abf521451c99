"""The built-in sample: a simulated mock-up painting with its ground truth, cached on disk.

napari's File > Open Sample and ``xrf-pigments demo`` both use it. The first call simulates it
(a few seconds); later calls read the cached files. The cache folder is
``$XRF_PIGMENTS_CACHE`` if set, else the user's cache folder
(``~/.cache/napari-xrf-pigments`` on Linux).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .. import __version__
from ..io import write_cube
from ..progress import Progress

SAMPLE_SEED = 0
SAMPLE_NAME = "mockup"
SAMPLE_TITLE = "Simulated XRF mock-up painting"


def cache_dir() -> Path:
    """Folder for cached sample data (created on demand)."""
    env = os.environ.get("XRF_PIGMENTS_CACHE")
    if env:
        return Path(env)
    # lazy: only the sample data needs it
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-xrf-pigments"))


def sample_paths(folder=None) -> tuple[Path, Path]:
    """Where the sample cube and its truth are cached: ``(cube.h5, truth.h5)``.

    The package version is part of the name and a digest of the built-in pigment library
    names the sub-folder: a new version, whose simulator may differ, or a changed library
    (other classes in the truth) simulates its own sample.
    """
    from ..pigments import BUILTIN_PATH

    library = hashlib.sha256(BUILTIN_PATH.read_bytes()).hexdigest()[:12]
    folder = (cache_dir() if folder is None else Path(folder)) / f"library-{library}"
    stem = f"{SAMPLE_NAME}-seed{SAMPLE_SEED}-v{__version__}"
    return folder / f"{stem}.h5", folder / f"{stem}-truth.h5"


def sample_mockup(folder=None):
    """The sample mock-up's files, simulated on first use (a progress job).

    The paper's Fig. 7 layout (four top strips across six bottom strips, Table 2 mixtures at
    25 wt% binder, 10 s per pixel, ELIO-like instrument), seed :data:`SAMPLE_SEED`.

    Parameters
    ----------
    folder : str or Path, optional
        Cache folder (default :func:`cache_dir`).

    Yields
    ------
    Progress
        Rows simulated (nothing when the files are cached).

    Returns
    -------
    cube_path, truth_path : Path
        A NeXus cube (39 x 57 pixels x 4096 channels) and its ground truth
        (:func:`~napari_xrf_pigments.datasets.mockup.write_truth` layout).
    """
    from .mockup import simulate_mockup, write_truth

    cube_path, truth_path = sample_paths(folder)
    if cube_path.is_file() and truth_path.is_file():
        return cube_path, truth_path
    cube_path.parent.mkdir(parents=True, exist_ok=True)
    cube, truth = yield from simulate_mockup(seed=SAMPLE_SEED)
    yield Progress(1, 1, "writing the sample to the cache")
    # Both files are written atomically; force: another process may have cached them meanwhile
    # (the same seed gives the same content).
    write_truth(truth_path, truth, force=True)
    write_cube(cube_path, cube, force=True)
    return cube_path, truth_path
