"""The per-spectrum arithmetic of the fast linear fit, shared by the parent and the workers.

This module runs in the fit's worker processes. Its top level imports only the standard library
so that :func:`init_worker` can limit BLAS to one thread *before* numpy loads (two workers with
two BLAS threads each would fight over the two cores).

The background subtraction and the solve copy what PyMca's
``FastXRFLinearFit._fitBkgSubtract`` and ``_fitLstSqAll`` do for one spectrum (PyMca5 5.9), in
the same dtypes, so that a chunk gives the same numbers as PyMca's own batch call;
``tests/test_fitting.py`` checks this against ``fitMultipleSpectra``.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass, field
from typing import Any

BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class LinearModel:
    """Everything a worker needs to fit spectra: the linear basis and the background recipe.

    Attributes
    ----------
    derivatives : ndarray of float64, shape (n_obs, n_free)
        PyMca's linear basis: column j is the spectrum of unit area of free parameter j over the
        fitted channels.
    free_names : list of str
        Names of the free parameters (``"Fe K"``, ``"Pb L"``, ``"Scatter Peak000"``...).
    n_free_bkg : int
        How many of the first free parameters are background terms (not peak areas).
    first, stop : int
        Fitted channels are ``first:stop``.
    strip : bool
        Subtract a SNIP background from each spectrum before the solve.
    snip_width, filter_width : int
        SNIP width and Savitsky-Golay smoothing width, in channels.
    anchors : list of int
        Background anchor channels, relative to ``first``.
    lstsq_kwargs : dict
        ``svd``, ``sigma_b`` and ``weight`` for ``PyMca5.PyMcaMath.linalg.lstsq``.
    result_dtype : str
        dtype PyMca stores results in (``float32`` for counts of 4 bytes or less).
    """

    derivatives: object
    free_names: list[str]
    n_free_bkg: int
    first: int
    stop: int
    strip: bool
    snip_width: int
    filter_width: int
    anchors: list[int] = field(default_factory=list)
    lstsq_kwargs: dict[str, Any] = field(default_factory=dict)
    result_dtype: str = "float32"

    @property
    def n_obs(self) -> int:
        return self.stop - self.first

    @property
    def n_free(self) -> int:
        return len(self.free_names)


# Model of the current fit in this worker, keyed by a token so a blob is unpickled once.
_CURRENT: tuple[str, LinearModel] | None = None


def init_worker(single_thread_blas: bool = True, parent_pid: int | None = None) -> None:
    """Process-pool initializer: end with the parent, one BLAS thread, then load numpy and
    PyMca's C helpers."""
    if parent_pid is not None:
        _end_with_parent(parent_pid)
    numpy_loaded = "numpy" in sys.modules
    if single_thread_blas and not numpy_loaded:
        for name in BLAS_THREAD_VARIABLES:
            os.environ[name] = "1"
    import numpy  # noqa: F401
    from PyMca5.PyMcaMath.fitting import SpecfitFuns  # noqa: F401
    from PyMca5.PyMcaMath.linalg import lstsq  # noqa: F401

    if single_thread_blas and numpy_loaded:
        # numpy loaded before this (spawn re-imports the main script, which may import it):
        # limit the BLAS and OpenMP pools already loaded through their own APIs.
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)


def _end_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this worker when the parent dies (Linux), even by SIGKILL: a worker
    never outlives its fit, adopted by init.

    Strictly, when the parent's thread that started the worker ends: the thread that made the
    pool (every worker starts in ``_Pool.__init__``), which also closes it.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def warm_up() -> int:
    """A no-op task that makes the pool start its processes early; returns the worker's pid."""
    return os.getpid()


def _model(token: str, blob: bytes) -> LinearModel:
    global _CURRENT
    if _CURRENT is None or _CURRENT[0] != token:
        _CURRENT = (token, pickle.loads(blob))
    return _CURRENT[1]


def subtract_background(spectra, model: LinearModel) -> None:
    """Subtract PyMca's SNIP background from each spectrum, in place.

    Parameters
    ----------
    spectra : ndarray, shape (n_spectra, n_obs), float32 or float64
        Counts over the fitted channels, in ``model.result_dtype`` (as PyMca converts them).
    """
    from PyMca5.PyMcaMath.fitting import SpecfitFuns

    savitsky_golay, snip1d = SpecfitFuns.SavitskyGolay, SpecfitFuns.snip1d
    snip_width, filter_width = model.snip_width, model.filter_width
    n = spectra.shape[1]
    # PyMca's anchor walk, done once: SNIP runs on each segment between anchors.
    segments, last = [], 0
    for anchor in model.anchors:
        if last < anchor < n:
            segments.append((last, anchor))
            last = anchor
    if last < n:
        segments.append((last, n))
    for k in range(spectra.shape[0]):
        background = savitsky_golay(spectra[k], filter_width)
        for a, b in segments:
            background[a:b] = snip1d(background[a:b], snip_width, 0)
        spectra[k] -= background


# SVDs of the (weighted) model matrix, by id of the model and its columns: a model is the same
# for every chunk, so PyMca reuses the SVD too (its ``last_svd``).
_SVD_CACHE: dict = {}


def _svd(key, a):
    import numpy as np

    svd = _SVD_CACHE.get(key) if key is not None else None
    if svd is None:
        svd = np.linalg.svd(a, full_matrices=False)
        if key is not None:
            if len(_SVD_CACHE) > 64:
                _SVD_CACHE.clear()
            _SVD_CACHE[key] = svd
    return svd


def solve(spectra, derivatives, lstsq_kwargs, key=None):
    """Least-squares peak areas, float64 of shape (n_columns_of_derivatives, n_spectra).

    ``spectra`` has shape (n_spectra, n_obs), background already subtracted. Without weights
    and with one weight vector for all spectra (PyMca's ``weight`` 0 and 1) this is the
    arithmetic of ``PyMca5.PyMcaMath.linalg.lstsq``, step for step, without the uncertainties
    (and the temporary arrays of the size of the data they need); per-spectrum weights go to
    ``lstsq`` itself. ``key`` names the model (and its columns) to reuse its SVD.
    """
    import numpy as np

    weight, sigma_b = lstsq_kwargs.get("weight"), lstsq_kwargs.get("sigma_b")
    if weight and sigma_b is None:
        from PyMca5.PyMcaMath.linalg import lstsq

        kwargs = {k: v for k, v in lstsq_kwargs.items() if k != "last_svd"}
        return lstsq(derivatives, spectra.T, digested_output=True, **kwargs)["parameters"]
    a = np.asarray(derivatives, dtype=np.float64)
    b = np.asarray(spectra.T, dtype=np.float64)
    m, n = a.shape
    if weight:
        w = np.abs(np.asarray(sigma_b, dtype=np.float64))
        w = (w + np.equal(w, 0)).reshape(-1, 1)
        a = a / w
        b = b / w
        cutoff = n * np.finfo(np.float64).eps
    else:
        cutoff = max(m, n) * np.finfo(np.float64).eps
    u, s, v = _svd(key, a)
    s = s.copy()
    s[s < cutoff] = np.inf
    dummy = np.dot(v.T, np.eye(n) * (1.0 / s))
    return np.dot(dummy, np.dot(u.T, b))


def prepare(raw, model: LinearModel):
    """Fitted channels of raw spectra (n, n_channels) as ``result_dtype``, background removed."""
    import numpy as np

    spectra = np.array(raw[:, model.first : model.stop], dtype=model.result_dtype, copy=True)
    if model.strip:
        subtract_background(spectra, model)
    return spectra


def statistics(net, raw_obs, derivatives, params, n_free):
    """Goodness of fit of each spectrum.

    Parameters
    ----------
    net : ndarray, shape (n, n_obs)
        Counts minus background over the fitted channels.
    raw_obs : ndarray, shape (n, n_obs)
        Raw counts over the fitted channels (their Poisson variance weights the chi-square).
    derivatives : ndarray, shape (n_obs, n_free)
    params : ndarray, shape (n_free, n)
        Final peak areas (zero for parameters left out of a spectrum's model).
    n_free : int or ndarray of shape (n,)
        Free parameters in each spectrum's model.

    Returns
    -------
    ndarray of float64, shape (3, n)
        Reduced chi-square (PyMca's weights: variance = counts, 1 for empty channels), sum of
        residual counts (data - background - peaks) and total counts, over the fitted channels.
    """
    import numpy as np

    # float32 is plenty for statistics and halves the memory traffic; einsum rather than a BLAS
    # product: no BLAS threads spinning beside the parent's thread pool.
    basis = np.ascontiguousarray(derivatives.T, dtype=np.float32)
    residual = np.einsum("jn,jc->nc", params.astype(np.float32), basis)
    np.subtract(net, residual, out=residual, casting="unsafe")
    if raw_obs.dtype.kind in "iu":
        variance = np.maximum(raw_obs, 1, dtype=np.float32)  # counts: |y|, or 1 where 0
    else:
        variance = np.abs(raw_obs, dtype=np.float32)
        variance[variance == 0] = 1
    out = np.empty((3, net.shape[0]), dtype=np.float64)
    out[1] = residual.sum(axis=1, dtype=np.float64)
    np.square(residual, out=residual)
    np.divide(residual, variance, out=residual)
    dof = np.maximum(net.shape[1] - np.asarray(n_free, dtype=np.float64), 1.0)
    out[0] = residual.sum(axis=1, dtype=np.float64) / dof
    out[2] = raw_obs.sum(axis=1, dtype=np.float64)
    return out


def fit_spectra(token: str, blob: bytes, raw, keep: bool):
    """First pass over one chunk: background and solve with the full model.

    Parameters
    ----------
    raw : ndarray, shape (n, n_channels)
        Raw counts of n spectra.
    keep : bool
        Return the background-subtracted spectra (the parent keeps them for the refit and the
        statistics) instead of the statistics.

    Returns
    -------
    params : ndarray of ``result_dtype``, shape (n_free, n)
    extra : ndarray
        ``keep``: the background-subtracted spectra, ``result_dtype`` of shape (n, n_obs);
        else the statistics of the first-pass fit, float64 of shape (3, n).
    """
    model = _model(token, blob)
    net = prepare(raw, model)
    params = solve(net, model.derivatives, model.lstsq_kwargs, key=(token, None)).astype(model.result_dtype)
    if keep:
        return params, net
    return params, statistics(net, raw[:, model.first : model.stop], model.derivatives, params, model.n_free)


def refit_spectra(token: str, blob: bytes, spectra, is_raw: bool, keep_columns):
    """Solve spectra again with a reduced model (the columns in ``keep_columns``).

    ``spectra`` has shape (n, n_channels) raw (background still to subtract) when ``is_raw``,
    else (n, n_obs) already background-subtracted. Returns float64 (len(keep_columns), n).
    """
    model = _model(token, blob)
    net = prepare(spectra, model) if is_raw else spectra
    key = (token, tuple(keep_columns))
    return solve(net, model.derivatives[:, keep_columns], model.lstsq_kwargs, key=key)


def spectra_statistics(token: str, blob: bytes, raw, params, n_free):
    """:func:`statistics` of raw spectra (n, n_channels) after their final parameters."""
    model = _model(token, blob)
    net = prepare(raw, model)
    return statistics(net, raw[:, model.first : model.stop], model.derivatives, params, n_free)


def block_sum(block):
    """Sum spectrum of a block of rows (n_rows, columns, channels) as float64 (channels,): the
    pieces of the cube's sum spectrum for ``weight=1``, added up in row order by the parent."""
    import numpy as np

    return block.sum(axis=(0, 1), dtype=np.float64)
