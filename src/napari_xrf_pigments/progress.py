"""One progress and cancel protocol for the core, the CLI and the napari widgets.

Long jobs are generator functions: they ``yield Progress(...)`` between chunks and ``return``
their result. Whoever drives the generator decides how to show progress:

- scripts call :func:`run` (no output) and get the result;
- the CLI calls :func:`run_with_tqdm`;
- widgets hand the generator to napari's ``thread_worker`` (see ``_napari``).

Cancelling means no longer iterating and calling ``generator.close()``: the job sees
``GeneratorExit`` at its current ``yield`` and its ``finally`` blocks remove partial output.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from .errors import Cancelled

ProgressJob = Generator["Progress", None, Any]


@dataclass(frozen=True)
class Progress:
    """A step of a long job.

    Attributes
    ----------
    done, total : int
        Units of work finished and to do (e.g. rows, spectra, epochs).
    message : str
        What is being done, for status bars.
    info : dict or None
        Extra figures for live displays (e.g. ``{"loss": 0.31}`` after an epoch).
    """

    done: int
    total: int
    message: str = ""
    info: dict[str, Any] | None = None


def run(job: ProgressJob, callback: Callable[[Progress], Any] | None = None):
    """Drive a job to completion and return its result.

    Parameters
    ----------
    job : generator yielding Progress
    callback : callable, optional
        Called with each Progress; if it returns True the job is cancelled
        (closed) and :class:`~napari_xrf_pigments.errors.Cancelled` is raised.
    """
    try:
        while True:
            step = next(job)
            if callback is not None and callback(step) is True:
                job.close()
                raise Cancelled("cancelled by the user")
    except StopIteration as stop:
        return stop.value
    except BaseException:
        # Interrupted outside the job (in the callback, by a signal): it cleans up now.
        job.close()
        raise


def run_with_tqdm(job: ProgressJob, desc: str = "", disable: bool = False):
    """Drive a job with a tqdm progress bar on stderr and return its result.

    The bar is shown on non-terminals too (tqdm's ``disable=None`` would hide it), so batch
    logs keep the progress; pass ``disable=True`` to silence it.
    """
    # lazy: tqdm is for the CLI only
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, disable=disable, unit="", dynamic_ncols=True)
    try:

        def show(step: Progress):
            if bar.total != step.total:
                bar.total = step.total
            bar.n = step.done
            if step.message:
                bar.set_postfix_str(step.message, refresh=False)
            bar.refresh()

        return run(job, show)
    finally:
        bar.close()
