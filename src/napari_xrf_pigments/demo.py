"""The one-command demo (``xrf-pigments demo``): the whole method on the built-in sample.

On the sample mock-up (:mod:`~napari_xrf_pigments.datasets.sample`) it fits element maps with
PyMca, predicts pigment maps with the shipped model, finetunes the model on rectangles drawn
from the ground truth, predicts again, and writes figures after the paper's Fig. 5 and a report
with Table-3 metrics against the truth. Everything is built in a hidden folder beside the output
and renamed into place at the end, so an interrupted demo leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import naming_write_errors, normal_permissions
from .datasets.sample import sample_mockup
from .errors import OutputExistsError
from .io import open_cube
from .progress import Progress, run

#: What the demo writes, relative to its folder.
FILES = {
    "cube": "mockup.h5",
    "truth": "mockup-truth.h5",
    "shapes": "truth-shapes.json",
    "element_maps": "element-maps.h5",
    "pigment_maps": "pigment-maps.h5",
    "finetuned_model": "finetuned-model",
    "pigment_maps_finetuned": "pigment-maps-finetuned.h5",
    "figures": "figures",
    "report": "report.md",
}
#: Stages in order, as shown in progress bars.
STAGES = (
    "sample mock-up",
    "element maps (PyMca)",
    "pigment maps (shipped model)",
    "finetune on the truth shapes",
    "pigment maps (finetuned)",
    "figures",
)
#: Pixels left out along every edge of a truth rectangle, as a careful labeller would.
SHAPE_INSET_PX = 1
#: The sample's ground is chalk; its map shows where paint is thin.
GROUND_ELEMENTS = ("Ca",)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    out : Path
        The demo folder (paths in :data:`FILES` are relative to it).
    before, after : dict
        :func:`~napari_xrf_pigments.model.metrics.evaluate_maps` of the shipped and the finetuned
        model's maps against the truth, over all pixels.
    finetune : dict
        ``before``/``after`` metrics on the pixels finetuning held out, and its ``split``.
    seconds : dict
        Stage name -> wall time in s.
    """

    out: Path
    before: dict[str, Any]
    after: dict[str, Any]
    finetune: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def fit_elements(pigments) -> list[str]:
    """Element symbols to fit for these pigments: their tracers plus the ground's."""
    # lazy: loads numpy
    from .compare import default_pairing

    symbols = {g.split()[0] for groups in default_pairing(pigments).values() for g in groups}
    return sorted(symbols | set(GROUND_ELEMENTS))


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; choose another folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out} is a file, not a folder; choose another name")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the folder {out.parent} does not exist")


def _replace_dir(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out``, removing an old ``out`` only afterwards."""
    if not out.exists():
        os.replace(new, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    os.replace(new, out)
    shutil.rmtree(old, ignore_errors=True)


def _default_drive(job, stage):
    return run(job)


def run_demo(out, *, force: bool = False, drive=None, workers: int | None = None) -> DemoResult:
    """Run the demo into the folder ``out``.

    Parameters
    ----------
    out : str or Path
        Folder to create (its parent must exist); with ``force`` an existing one is replaced,
        only once the new one is complete.
    force : bool
    drive : callable, optional
        ``drive(job, stage) -> result`` runs each stage's progress job (the CLI shows a progress
        bar per stage); default :func:`~napari_xrf_pigments.progress.run`.
    workers : int, optional
        PyMca fitting processes (default one per CPU).

    Returns
    -------
    DemoResult
    """
    out = Path(out).absolute()
    _check_out(out, force)
    drive = drive or _default_drive
    with naming_write_errors(out):  # a full or read-only disk: one line naming the folder
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
        try:
            result = _run_stages(work, out, drive, workers)
            normal_permissions(work)
            _replace_dir(work, out)
            return result
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)


def _run_stages(work: Path, out: Path, drive, workers) -> DemoResult:
    """The stages, writing into ``work``; paths recorded in the outputs name ``out``."""
    from .fitting import fit_to_file_job
    from .labels import strip_shapes, write_labels
    from .model.files import load_model
    from .model.finetuning import finetune_to_dir
    from .model.metrics import evaluate_maps
    from .model.predict import predict_to_file
    from .physics import Instrument

    seconds = {}

    def stage(name, job):
        started = time.perf_counter()
        value = drive(job, name)
        seconds[name] = round(time.perf_counter() - started, 1)
        return value

    cached_cube, cached_truth = stage(STAGES[0], sample_mockup())
    shutil.copyfile(cached_cube, work / FILES["cube"])
    shutil.copyfile(cached_truth, work / FILES["truth"])
    # The outputs record the demo folder's copy as their input (the same bytes as the cache's).
    cube = open_cube(work / FILES["cube"])
    cube_name = str(out / FILES["cube"])
    shapes = strip_shapes(work / FILES["truth"], inset=SHAPE_INSET_PX)
    write_labels(work / FILES["shapes"], shapes)

    shipped = load_model(None)
    tube = Instrument().tube  # the sample's instrument: its tube lines are fitted as scatter
    stage(STAGES[1], fit_to_file_job(
        cube, work / FILES["element_maps"], elements=fit_elements(shipped.abbreviations),
        tube=tube.anode, kv=tube.voltage_kV, workers=workers,
    ))
    stage(STAGES[2], predict_to_file(cube, work / FILES["pigment_maps"], shipped, input_file=cube_name))
    tuned, _ = stage(STAGES[3], finetune_to_dir(
        work / FILES["finetuned_model"], shipped, cube, shapes,
        command="xrf-pigments demo", labels_path=str(out / FILES["shapes"]),
    ))
    # Recorded as the model of the maps below: where the folder will be, not where it is built.
    tuned.model.path = out / FILES["finetuned_model"]
    stage(STAGES[4], predict_to_file(
        cube, work / FILES["pigment_maps_finetuned"], tuned.model, input_file=cube_name
    ))
    truth = work / FILES["truth"]
    result = DemoResult(
        out,
        evaluate_maps(work / FILES["pigment_maps"], truth),
        evaluate_maps(work / FILES["pigment_maps_finetuned"], truth),
        {"before": tuned.before, "after": tuned.after, "split": tuned.split},
        seconds,
    )
    figures = stage(STAGES[5], write_figures(work))
    write_report(work / FILES["report"], result, figures, cube_shape=cube.shape,
                 models=(shipped.name, tuned.model.name))
    return result


def write_figures(folder: Path):
    """One PNG per pigment (or group) of the sample in ``folder/figures``: the paper's Fig. 5
    row for the shipped and for the finetuned model's map, against the pigment's element maps
    (a progress job). Pigments the sample does not hold, or without an element map, get none.

    Returns
    -------
    dict of abbreviation -> path relative to ``folder``
    """
    from .compare import comparison_rows_figure, default_elements
    from .datasets.mockup import read_truth
    from .io.maps import read_maps
    from .model.metrics import pigment_maps_arrays

    elements, _ = read_maps(folder / FILES["element_maps"])
    element_maps = {name: array for name, (array, attrs) in elements.items() if attrs.get("kind") == "element"}
    pigments, before, _ = pigment_maps_arrays(folder / FILES["pigment_maps"])
    _, after, _ = pigment_maps_arrays(folder / FILES["pigment_maps_finetuned"])
    present = read_truth(folder / FILES["truth"])["present"]
    (folder / FILES["figures"]).mkdir()
    written = {}
    for i, (abbr, name) in enumerate(pigments):
        yield Progress(i, len(pigments), f"figure of {name}")
        groups = default_elements(abbr, available=list(element_maps))
        if not groups or abbr not in present or not present[abbr].any():
            continue
        fig = comparison_rows_figure(
            {"shipped model": before[..., i], "finetuned": after[..., i]},
            [element_maps[g] for g in groups],
            pigment_name=abbr,
            element_names=groups,
        )
        fig.suptitle(f"{name} ({abbr})", fontsize=11)
        relative = f"{FILES['figures']}/{abbr}.png"
        fig.savefig(folder / relative)
        written[abbr] = relative
    yield Progress(len(pigments), len(pigments), "figures written")
    return written


def _f1_rows(result: DemoResult) -> list[str]:
    """Markdown rows: pigment, pixels with it, F1 present/top before and after."""

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    rows = []
    for p in result.after["pigments"]:
        a = p["abbreviation"]
        b, t = result.before, result.after
        cells = [f"{p['name']} ({a})", str(t["present"][a]["support"]),
                 f(b["present"][a]["f1"]), f(t["present"][a]["f1"])]
        if "top" in t and "top" in b:
            cells += [f(b["top"][a]["f1"]), f(t["top"][a]["f1"])]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def write_report(path: Path, result: DemoResult, figures: dict, *, cube_shape, models) -> Path:
    """The demo's Markdown report: what was run, Table-3 metrics against the truth, figures."""
    from .model.metrics import format_comparison, format_table

    rows, cols, chans = cube_shape
    split = result.finetune["split"]
    s_before, s_after = result.before["summary"], result.after["summary"]
    has_top = "top" in result.after and "top" in result.before

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        "# napari-xrf-pigments demo",
        "",
        f"napari-xrf-pigments {__version__}, {time.strftime('%Y-%m-%d %H:%M')}. "
        f"Sample: a simulated mock-up painting of {rows} x {cols} pixels x {chans} channels "
        "(the paper's Fig. 7 layout: four top-layer strips of Table 2 mixtures across six "
        "bottom-layer strips, 25 wt% binder, 10 s per pixel), with its ground truth.",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {name} | {sec:g} |" for name, sec in result.seconds.items()],
        "",
        "## Pigment maps against the ground truth",
        "",
        f"Every pixel ({result.after['n_spectra']}), probability threshold "
        f"{result.after['threshold']:g}. Shipped model `{models[0]}`, finetuned model "
        f"`{models[1]}`. The finetuned model saw {split['n_finetune']} of these pixels "
        "(see the next section for pixels it never saw).",
        "",
        "| pigment | pixels with it | F1 shipped | F1 finetuned |"
        + (" top-layer F1 shipped | top-layer F1 finetuned |" if has_top else ""),
        "|---|---|---|---|" + ("---|---|" if has_top else ""),
        *_f1_rows(result),
        "",
        f"Macro F1 (mean over pigments present in the mock-up): "
        f"{f(s_before['present_f1_mean'])} shipped, {f(s_after['present_f1_mean'])} finetuned. "
        + (f"Top-layer assignment accuracy: {f(s_before.get('top_assignment_accuracy'))} shipped, "
           f"{f(s_after.get('top_assignment_accuracy'))} finetuned." if has_top else ""),
        "",
        "<details><summary>Full tables (paper Table 3 layout)</summary>",
        "",
        "```text",
        format_table(result.before, title=f"shipped model {models[0]}"),
        "",
        format_table(result.after, title=f"finetuned model {models[1]}"),
        "```",
        "</details>",
        "",
        "## Finetuning, scored on pixels it never saw",
        "",
        f"The truth rectangles ({FILES['shapes']}, {SHAPE_INSET_PX} pixel in from every edge) "
        f"label {split['n_labelled']} pixels; {split['n_finetune']} were used for finetuning "
        f"(seed {split['seed']}), the other {split['n_test']} test it.",
        "",
        "```text",
        format_comparison(result.finetune["before"], result.finetune["after"]),
        "```",
        "",
        "## Figures",
        "",
        "Per pigment, after the paper's Fig. 5: the probability map (red), its element map(s) "
        "(green, blue), their overlay (yellow or white where they agree) and probability against "
        "element signal, for the shipped model (top row) and the finetuned one (bottom row).",
        "",
    ]
    for abbr, relative in figures.items():
        lines += [f"![{abbr}]({relative})", ""]
    lines += [
        "## Files",
        "",
        *[f"- `{name}`" for name in FILES.values() if name != FILES["report"]],
        "",
        "Open them in napari with `xrf-pigments demo --out DIR --view`, or `napari "
        f"{FILES['cube']}` and the widgets of Plugins > XRF Pigments.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
