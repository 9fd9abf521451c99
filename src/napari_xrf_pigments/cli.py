"""The ``xrf-pigments`` command line: headless and batch work on the core.

Each subcommand is a ``_cmd_<name>(args)`` function registered in :func:`build_parser`. Errors
the package raises on purpose are printed as one line and exit with code 2; tracebacks are for
bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from . import __version__
from ._quiet import native_stderr_silenced
from .atomic import WRITE_ERRORS, check_output_path
from .demo import FILES, run_demo
from .errors import CalibrationError, InvalidDataError, OutputExistsError, XRFPigmentsError
from .io import open_cube, write_cube
from .model.defaults import ADAPT_DEFAULTS as A
from .model.defaults import AUGMENT_COUNTS, AUGMENT_SHIFT_KEV, LR_SCHEDULES, THRESHOLD
from .model.defaults import FINETUNE_DEFAULTS as F
from .model.defaults import TRAIN_DEFAULTS as D

EXIT_USAGE_OR_INPUT = 2
EXIT_TERMINATED = 128 + 15  # SIGTERM, as a shell reports a command killed by it
_DEBUG = False  # --debug: set by main()


def _cmd_info(args) -> int:
    cube = open_cube(args.file)
    summary = {
        "format": cube.format,
        "shape": list(cube.shape),
        "energy_keV": list(cube.energy.range_keV) if cube.calibrated else None,
        "calibrated": cube.calibrated,
        "dtype": str(cube.dtype),
    }
    # Present only for files that state them: calibrations fitted to (channel, energy) pairs
    # (Amptek, two-column text, cubes assembled from them) and masked pixels (assemble).
    if cube.calibrated and "calibration_residual_keV" in cube.metadata:
        summary["calibration_fit"] = str(cube.metadata.get("calibration_fit", ""))
        summary["calibration_residual_keV"] = float(cube.metadata["calibration_residual_keV"])
    if "mask" in cube.metadata:
        summary["masked_pixels"] = int(cube.metadata["masked_pixels"])
    if args.json:
        print(json.dumps(summary))
    else:
        rows, cols, chans = cube.shape
        print(f"file:        {args.file}")
        print(f"format:      {summary['format']}")
        print(f"shape:       {rows} rows x {cols} columns x {chans} channels ({summary['dtype']})")
        if cube.calibrated:
            first, last = summary["energy_keV"]
            print(f"energy:      {first:.4f} .. {last:.4f} keV")
        else:
            print("energy:      NOT CALIBRATED (set zero/gain before fitting or prediction)")
        if "calibration_fit" in summary:
            print(f"calibration: {summary['calibration_fit']}")
        if "masked_pixels" in summary:
            print(f"masked:      {summary['masked_pixels']} of {rows * cols} pixels have no measured "
                  "spectrum (counts 0)")
    return 0


def _pixel_size(text):
    """--pixel-size: "MM" (square) or "ROW_MM,COLUMN_MM"."""
    parts = text.split(",")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"must be MM or ROW_MM,COLUMN_MM, got {text!r}")
    values = tuple(_POSITIVE(p.strip()) for p in parts)
    return values if len(values) == 2 else (values[0], values[0])


def _cmd_assemble(args) -> int:
    # lazy: loads numpy; the command starts (and --help answers) without it
    from .io.pointgrid import assemble_job
    from .progress import run_with_tqdm

    job = assemble_job(
        args.inputs, args.out, rows=args.rows, columns=args.columns, order=args.order,
        positions=args.positions, pixel_size=args.pixel_size, first_number=args.first_number,
        mask_unreadable=args.mask_unreadable, force=args.force,
    )
    result = run_with_tqdm(job, desc="assemble (points)")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rows, cols, chans = result.shape
    print(f"cube written to {result.out}: {rows} rows x {cols} columns x {chans} channels "
          f"from {result.point_format} point files"
          + (f", {result.masked} masked" if result.masked else ""))
    return 0


# -- energy calibration: calibrate --------------------------------------------------------------


def _guess(text):
    """--guess: "ZERO,GAIN" in keV and keV/channel (a rough calibration to start from)."""
    try:
        zero, gain = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be ZERO,GAIN in keV and keV/channel (e.g. 0,0.01), got {text!r}") from None
    if not (abs(zero) < 10 and 0 < gain < 1):
        raise argparse.ArgumentTypeError(
            f"must be ZERO,GAIN in keV and keV/channel (zero within +-10 keV, gain between 0 and "
            f"1 keV/ch, e.g. 0,0.01), got {text!r}")
    return zero, gain


def _cmd_calibrate(args) -> int:
    from .calibration import calibrate_cube

    if args.out is not None:
        if Path(args.out).resolve() == Path(args.cube).resolve():
            raise OutputExistsError(f"{args.out} is the input cube: the input is never changed; "
                                    "write the recalibrated cube to another file")
        check_output_path(args.out, force=args.force)  # fail now, not after the search
    cube = open_cube(args.cube)
    found = calibrate_cube(cube, guess=args.guess)
    written = None
    if args.out is not None:
        written = str(write_cube(args.out, found.apply(cube), force=args.force))
    if args.json:
        print(json.dumps({**found.to_dict(), "cube": args.cube, "written": written},
                         allow_nan=False))
        return 0
    for line in found.report():
        print(line)
    if written is not None:
        print(f"recalibrated cube written to {written}")
    return 0


# -- simulation: simulate / mockup ---------------------------------------------------------------


def _load_instrument(path):
    from .physics import Instrument

    return Instrument() if path is None else Instrument.load(path)


def _cmd_instrument(args) -> int:
    from .physics.instrument import Instrument, instrument_from_cube, write_instrument

    base = _load_instrument(args.base)
    if str(args.source).lower().endswith(".cfg"):
        instrument = Instrument.from_pymca_cfg(args.source)
        notes = [f"excitation, detector, geometry, calibration and peak shape from the PyMca "
                 f"configuration {args.source}"]
    else:
        instrument, notes = instrument_from_cube(open_cube(args.source), base=base)
    if args.name:
        instrument = instrument.replace(name=args.name)
    write_instrument(instrument, args.out, force=args.force)
    for note in notes:
        print(f"  {note}")
    print(f"instrument written to {args.out}: simulate with it by "
          f"`xrf-pigments simulate --instrument {args.out}` (or mockup --instrument)")
    return 0


def _names(text):
    """Comma-separated names (``--tops``/``--bottoms``) as a tuple; None when not given."""
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def _cmd_simulate(args) -> int:
    from .datasets.training import TrainingRecipe, generate_training_set
    from .datasets.trainset import write_training_set
    from .progress import run_with_tqdm

    check_output_path(args.out, force=args.force)  # fail now, not after the simulation
    instrument = _load_instrument(args.instrument)
    # --scheduler: the batches' physics on the cluster, every random draw here (the same set).
    with _cluster_pool(args) as pool:
        background = None
        if args.background is not None:
            from .physics import estimate_background

            background = estimate_background(open_cube(args.background), instrument.readout)
        data = run_with_tqdm(
            generate_training_set(args.n, seed=args.seed, instrument=instrument, background_cps=background,
                                  recipe=TrainingRecipe(p_distractor=args.distractors),
                                  noise=not args.noise_free, pool=pool),
            desc="simulate (spectra)",
        )
    data.provenance["command"] = "xrf-pigments " + " ".join(sys.argv[1:])
    write_training_set(
        args.out,
        data.spectra,
        data.energy,
        data.present,
        data.top,
        data.pigments,
        data.provenance,
        params=data.params,
        detectable=data.detectable,
        force=args.force,
    )
    print(f"{args.n} simulated spectra written to {args.out}")
    return 0


def _cmd_mockup(args) -> int:
    from .datasets.mockup import FIG7_BOTTOMS, FIG7_TOPS, crossed_strips, simulate_mockup, write_truth
    from .pigments import load_pigment_library
    from .progress import run_with_tqdm

    check_output_path(args.out, force=args.force)
    if args.truth is not None:
        check_output_path(args.truth, force=args.force)
    library = load_pigment_library(extra=args.library) if args.library else None
    layout = crossed_strips(
        _names(args.tops) or FIG7_TOPS, _names(args.bottoms) or FIG7_BOTTOMS
    )
    cube, truth = run_with_tqdm(
        simulate_mockup(
            layout, seed=args.seed, instrument=_load_instrument(args.instrument),
            live_time_s=args.live_time, library=library,
        ),
        desc="mockup (rows)",
    )
    write_cube(args.out, cube, force=args.force)
    if args.truth is not None:
        write_truth(args.truth, truth, library, force=args.force)
    rows, cols, chans = cube.shape
    print(f"mock-up cube {rows} x {cols} x {chans} written to {args.out}"
          + (f", ground truth to {args.truth}" if args.truth else ""))
    return 0


# -- element maps: fit ---------------------------------------------------------------------------


# -- many cubes: fit / predict CUBE... --out-dir DIR --------------------------------------------


def _cube_outputs(args) -> list[tuple[str, str]]:
    """(cube, maps file) pairs of ``fit``/``predict``: ``--out`` for one cube, or
    ``--out-dir DIR`` for any number (``DIR/<cube stem>.h5``). Globs the shell left unexpanded
    are expanded here (sorted)."""

    cubes = []
    for text in args.cube:
        if any(c in text for c in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise InvalidDataError(f"no file matches {text}")
            cubes += matches
        else:
            cubes.append(text)
    if (args.out is None) == (args.out_dir is None):
        raise InvalidDataError("give --out MAPS.h5 (one cube) or --out-dir DIR (any number of cubes)")
    if args.out is not None:
        if len(cubes) != 1:
            raise InvalidDataError(f"{len(cubes)} cubes need --out-dir DIR (one maps file per cube), "
                                   "not --out")
        return [(cubes[0], args.out)]
    outputs = {}
    for cube in cubes:
        out = str(Path(args.out_dir) / f"{Path(cube).stem}.h5")
        if out in outputs:
            raise InvalidDataError(f"{outputs[out]} and {cube} would both be written to {out}: "
                                   "give cubes of different names, or run them apart")
        outputs[out] = cube
    return [(cube, out) for out, cube in outputs.items()]


def _each_cube(args, run_one) -> int:
    """Run ``run_one(args)`` with ``args.cube``/``args.out`` set to each cube and its maps file.

    With ``--out-dir``, a cube whose maps file exists is skipped unless ``--force`` (a campaign
    resumes where it stopped), a cube that fails is one error line and the next one runs; exit
    code 2 if any failed. Ctrl-C and SIGTERM stop the campaign (the current output is removed).
    """
    pairs = _cube_outputs(args)
    if args.out_dir is None:
        args.cube, args.out = pairs[0]
        return run_one(args)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    written = skipped = failed = 0
    for i, (cube, out) in enumerate(pairs, 1):
        if Path(out).exists() and not args.force:
            print(f"[{i}/{len(pairs)}] {cube}: skipped, {out} exists (--force to redo it)",
                  file=sys.stderr)
            skipped += 1
            continue
        print(f"[{i}/{len(pairs)}] {cube} -> {out}", file=sys.stderr)
        # The cube that runs after this one (a cluster run prepares its start meanwhile).
        following = next((c for c, o in pairs[i:] if args.force or not Path(o).exists()), None)
        one = argparse.Namespace(**{**vars(args), "cube": cube, "out": out,
                                    "next_cube": following})
        if _reported(one, run_one) == 0:
            written += 1
        else:
            failed += 1
    print(f"{len(pairs)} cubes: {written} written, {skipped} skipped (maps exist), {failed} failed",
          file=sys.stderr)
    return EXIT_USAGE_OR_INPUT if failed else 0


def _cmd_fit(args) -> int:
    with _cluster_pool(args):
        return _each_cube(args, _fit_one)


@contextlib.contextmanager
def _cluster_pool(args):
    """``--scheduler``: a dask.distributed client for the whole command (``args.pool``), its
    scheduler and dashboard printed; nothing without it."""
    args.pool = None
    if getattr(args, "scheduler", None) is None:
        yield None
        return
    from . import cluster

    with cluster.connect(args.scheduler) as client:
        print(cluster.describe(client), file=sys.stderr)
        args.pool = cluster.ClusterPool(client)
        try:
            yield args.pool
        finally:
            args.pool = None


def _fit_one(args) -> int:
    from .fitting import fit_to_file_job, suggest_elements
    from .progress import run_with_tqdm

    if args.config is not None and (args.tube or args.kv or args.excitation):
        raise InvalidDataError(
            "--tube, --kv and --excitation go with --elements; a .cfg sets its own excitation"
        )
    if getattr(args, "pool", None) is not None and args.workers is not None:
        raise InvalidDataError("--workers are processes of this machine; with --scheduler the "
                               "cluster's workers fit: give one or the other")
    check_output_path(args.out, force=args.force)  # fail now, not after the fit
    cube = open_cube(args.cube)
    elements = args.elements
    if args.config is None and elements is None:
        found = suggest_elements(
            cube.energy.energies(), cube.sum_spectrum(),
            tube=args.tube, kv=args.kv, excitation_keV=args.excitation,
        )
        if not found:
            raise InvalidDataError(
                "no element peaks found in the sum spectrum; give --elements or --config"
            )
        elements = [s.group for s in found]
        print(f"fitting the elements found in the sum spectrum: {', '.join(elements)}", file=sys.stderr)
    job = fit_to_file_job(
        cube,
        args.out,
        args.config,
        elements=elements,
        tube=args.tube,
        kv=args.kv,
        excitation_keV=args.excitation,
        weight=args.weight,
        refit=not args.no_refit,
        workers=args.workers,
        calibration=args.calibration,
        force=args.force,
        pool=getattr(args, "pool", None),  # --scheduler: the chunks run on the cluster, the maps are the same
    )
    result = run_with_tqdm(job, desc="fit (spectra)")
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"element maps written to {args.out}: {', '.join(result.groups)}")
    return 0


# -- pigment model: train / evaluate / predict ------------------------------------------------


def _quiet_tensorflow():
    """Hide TensorFlow's C++ info/warning log lines (XLA, oneDNN notices) in CLI output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _tensorflow_startup_quiet():
    """TensorFlow's C++ start-up lines (absl, oneDNN, CUDA probing) go nowhere; ``--debug`` shows them.

    They ignore ``TF_CPP_MIN_LOG_LEVEL`` when printed before absl is initialised, and would come
    before (and make multi-line) any error. Only file descriptor 2 is redirected, only while the
    model loads; Python-level messages after it are untouched.
    """
    if _DEBUG:
        yield
        return
    with native_stderr_silenced():
        yield


def _require_calibrated(cube, path):
    """The pigment model reads energies: refuse an uncalibrated cube before TensorFlow loads."""
    if not cube.calibrated:
        raise CalibrationError(
            f"{path}: the energy axis is not calibrated, so the pigment model cannot read it: set "
            "it with the Energy calibration widget in napari (type zero/gain, or pick two peaks "
            "and name their lines), or in scripts with cube.with_calibration(zero_keV, gain_keV)"
        )


def _parse_grid(text):
    """``--grid``: "data" (None), "paper", or "START:STEP:N" in keV."""
    from .preprocess import Preprocessing, make_grid

    if text in (None, "data"):
        return None
    if text == "paper":
        return Preprocessing.paper()
    try:
        start, step, n = text.split(":")
        return Preprocessing(make_grid(float(start), float(step), int(n)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--grid must be 'data', 'paper' or START:STEP:N in keV, got {text!r}"
        ) from None


def _cmd_train(args) -> int:
    _quiet_tensorflow()

    from .model.metrics import format_table
    from .model.training import train
    from .progress import run_with_tqdm

    check_output_path(args.out, force=args.force)  # fail now, not after the training
    started = time.time()
    job = train(
        args.data,
        folds=args.folds,
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule,
        patience=args.patience,
        preprocessing=args.grid,
        top_head=False if args.no_top else None,
        augment_counts=AUGMENT_COUNTS if args.augment else None,
        augment_shift_keV=AUGMENT_SHIFT_KEV if args.augment else 0.0,
        name=args.name,
        targets=args.targets,
    )
    result = run_with_tqdm(job, desc="train (epochs)")
    result.model.metadata["training"]["command"] = "xrf-pigments " + " ".join(sys.argv[1:])
    path = result.save(args.out, force=args.force)
    print(format_table(result.metrics, title=f"Test split ({result.metrics['n_spectra']} spectra), "
                       f"best fold {result.best_fold}"))
    print(f"model written to {path} ({time.time() - started:.0f} s)")
    return 0


def _cmd_evaluate(args) -> int:
    _quiet_tensorflow()
    from .model.metrics import evaluate_maps, format_table
    from .progress import run_with_tqdm

    if args.data is not None:
        if args.truth is not None:
            raise InvalidDataError("--truth goes with --cube or --maps; --data holds its own labels")
        from .model.training import evaluate

        metrics = run_with_tqdm(
            evaluate(args.model, args.data, threshold=args.threshold, batch_size=args.batch_size),
            desc="evaluate",
            disable=args.json,
        )
        title = f"{metrics['model']} on {metrics['data']}"
    else:
        if args.truth is None:
            raise InvalidDataError("--cube and --maps are scored against a ground truth: give --truth")
        maps = args.maps
        if args.cube is not None:
            from .model.files import load_model
            from .model.predict import predict_cube

            cube = open_cube(args.cube)
            _require_calibrated(cube, args.cube)
            with _tensorflow_startup_quiet():
                model = load_model(args.model)
            prediction = run_with_tqdm(
                predict_cube(cube, model, batch_size=args.batch_size),
                desc="predict (rows)",
                disable=args.json,
            )
            maps = prediction.to_maps()
        elif args.model is not None:
            raise InvalidDataError("--model goes with --data or --cube; --maps were predicted already")
        metrics = evaluate_maps(maps, args.truth, threshold=args.threshold)
        metrics["truth"] = args.truth
        if args.cube is not None:
            metrics["model"], metrics["cube"] = str(model.path or model.name), args.cube
            title = f"{metrics['model']} on {args.cube}, scored against {args.truth}"
        else:
            metrics["maps"] = args.maps
            title = f"{args.maps} scored against {args.truth}"
    print(format_table(metrics, title=title))
    if args.json:
        print(json.dumps(metrics, allow_nan=False))
    return 0


def _cmd_predict(args) -> int:
    _quiet_tensorflow()  # before a LocalCluster starts: its workers inherit the setting
    with _cluster_pool(args):
        return _each_cube(args, _predict_one)


def _predict_one(args) -> int:
    _quiet_tensorflow()
    from .io.maps import read_warnings
    from .model.files import load_model
    from .model.predict import predict_to_file
    from .model.preflight import preflight_warnings
    from .progress import run_with_tqdm

    # Inputs are checked before TensorFlow loads (seconds), not after.
    check_output_path(args.out, force=args.force)
    cube = open_cube(args.cube)
    _require_calibrated(cube, args.cube)
    if getattr(args, "pool", None) is not None:
        args.pool.preload_model(args.model)  # the workers load it alongside this process
    with _tensorflow_startup_quiet():
        model = load_model(args.model)  # no --model: the shipped model, or a one-line error
    before = [str(w) for w in preflight_warnings(cube, model)]
    for line in before:
        print(f"warning: {line}", file=sys.stderr)
    options = dict(batch_size=args.batch_size, force=args.force, input_file=args.cube,
                   evidence=not args.no_evidence, warnings=before)
    if getattr(args, "pool", None) is not None:
        from .cluster import predict_to_file_on

        path = run_with_tqdm(predict_to_file_on(args.pool, cube, args.out, model,
                                                next_cube=getattr(args, "next_cube", None),
                                                **options),
                             desc="predict (blocks)")
    else:
        path = run_with_tqdm(predict_to_file(cube, args.out, model, **options), desc="predict (rows)")
    for line in read_warnings(path)[len(before):]:
        print(f"warning: {line}", file=sys.stderr)
    print(f"pigment maps written to {path}")
    return 0


def _cmd_finetune(args) -> int:
    _quiet_tensorflow()
    from .model.files import load_model
    from .model.finetuning import check_finetune_output, finetune_to_dir
    from .progress import run_with_tqdm

    with _tensorflow_startup_quiet():
        base = load_model(args.model)  # no --model: the shipped model, or a one-line error
    check_finetune_output(args.out, base.path, force=args.force)  # fail now, not after training
    epochs = {} if args.epochs is None else {"epochs": args.epochs, "head_epochs": args.epochs}
    job = finetune_to_dir(
        args.out, base, args.cube, args.labels, force=args.force,
        command="xrf-pigments " + " ".join(sys.argv[1:]),
        fraction=args.fraction, seed=args.seed, name=args.name, **epochs,
    )
    result, path = run_with_tqdm(job, desc="finetune (epochs)")
    for note in result.model.metadata["training"]["labels"].get("notes") or []:
        print(f"note: {note}", file=sys.stderr)
    split = result.split
    print(result.table(
        title=f"{base.name} before and after finetuning on {split['n_finetune']} of "
              f"{split['n_labelled']} labelled pixels (seed {split['seed']}); test: the other "
              f"{split['n_test']}"
    ))
    print(f"finetuned model written to {path}")
    return 0


def _cmd_adapt(args) -> int:
    _quiet_tensorflow()
    from .model.adapt import adapt_job
    from .model.files import load_model
    from .model.finetuning import check_finetune_output
    from .physics.instrument import Instrument, instrument_from_cube
    from .progress import run_with_tqdm

    # Inputs and output are checked before TensorFlow loads and before the simulation.
    if str(args.instrument).lower().endswith((".json", ".toml", ".cfg")):
        instrument = Instrument.load(args.instrument)
    else:
        instrument, _ = instrument_from_cube(open_cube(args.instrument))
    background = None
    if args.background is not None:
        from .physics import estimate_background

        background = estimate_background(open_cube(args.background), instrument.readout)
    with _tensorflow_startup_quiet():
        base = load_model(args.model)  # no --model: the shipped model, or a one-line error
    check_finetune_output(args.out, base.path, force=args.force)
    epochs = {} if args.epochs is None else {"epochs": args.epochs, "head_epochs": args.epochs}
    result, path = run_with_tqdm(
        adapt_job(args.out, instrument, base_model=base, background_cps=background, n=args.n,
                  seed=args.seed, force=args.force, name=args.name,
                  command="xrf-pigments " + " ".join(sys.argv[1:]), **epochs),
        desc="adapt (spectra, then epochs)",
    )
    split = result.split
    print(result.table(
        title=f"{base.name} before and after finetuning on {split['n_finetune']} spectra simulated "
              f"with {instrument.name} (seed {split['seed']}); test: the other {split['n_test']}"
    ))
    print(f"model for {instrument.name} written to {path}")
    return 0


def _cmd_export(args) -> int:
    import numpy as np

    from .io.maps import read_maps
    from .io.tiff import write_maps_tiff

    maps, root = read_maps(args.maps)
    if args.only:
        wanted = _names(args.only)
        missing = [name for name in wanted if name not in maps]
        if missing:
            raise InvalidDataError(f"{args.maps} has no map {', '.join(missing)} "
                                   f"(it has {', '.join(maps)})")
        maps = {name: maps[name] for name in wanted}
    pixel = root.get("pixel_size_mm")
    out = write_maps_tiff(args.out, maps, root_attrs=root, force=args.force,
                          pixel_size_mm=None if pixel is None else tuple(np.ravel(pixel)))
    size = "" if pixel is None else f", pixel {' x '.join(f'{v:g}' for v in np.ravel(pixel))} mm"
    print(f"{len(maps)} maps written to {out} (OME-TIFF{size})")
    return 0


def _display_available() -> bool:
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _cmd_demo(args) -> int:
    _quiet_tensorflow()
    from .progress import run_with_tqdm

    if args.view and not _display_available():
        print("note: no display, so --view will not open napari; the files are written anyway",
              file=sys.stderr)
    result = run_demo(
        args.out, force=args.force, workers=args.workers,
        drive=lambda job, stage: run_with_tqdm(job, desc=stage),
    )
    before, after = result.before["summary"], result.after["summary"]
    print(f"demo written to {result.out}: report {result.out / FILES['report']}")
    print(f"macro F1 against the truth: {before['present_f1_mean']:.3f} with the shipped model, "
          f"{after['present_f1_mean']:.3f} after finetuning")
    if args.view and _display_available():
        # napari runs in a process of its own: TensorFlow, loaded here, and the OpenGL
        # driver's LLVM must not meet in one process.
        return subprocess.call(
            [sys.executable, "-m", "napari_xrf_pigments._napari._demo_view", str(result.out)]
        )
    return 0


def _bounded(kind, *, low=None, high=None, low_open=False, high_open=False):
    """An argparse type: a number of ``kind`` (int or float) inside the given bounds."""
    lo = "" if low is None else ("> " if low_open else ">= ") + f"{low:g}"
    hi = "" if high is None else ("< " if high_open else "<= ") + f"{high:g}"
    wanted = " ".join([("an integer" if kind is int else "a number"),
                       " and ".join(b for b in (lo, hi) if b)]).strip()

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        bad = (value != value or value in (float("inf"), float("-inf"))
               or (low is not None and (value <= low if low_open else value < low))
               or (high is not None and (value >= high if high_open else value > high)))
        if bad:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    return parse


#: Argument types of the commands: counts, seeds, probabilities, positive quantities.
_POSITIVE_INT = _bounded(int, low=1)
_NON_NEGATIVE_INT = _bounded(int, low=0)
_POSITIVE = _bounded(float, low=0, low_open=True)
_PROBABILITY = _bounded(float, low=0, high=1)
_OPEN_FRACTION = _bounded(float, low=0, high=1, low_open=True, high_open=True)


def _cube_arguments(p) -> None:
    """The cube(s) and output of ``fit`` and ``predict``."""
    p.add_argument("cube", nargs="+", help="XRF cube file(s); globs such as 'scans/*.bcf' work")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="maps file to write (.h5), for one cube")
    where.add_argument("--out-dir", default=None,
                       help="folder for one maps file per cube, named <cube stem>.h5; cubes whose "
                            "maps file exists are skipped unless --force (a campaign resumes)")
    _scheduler_argument(p)


def _scheduler_argument(p) -> None:
    """``--scheduler`` (docs/cluster.md): the work on a dask.distributed cluster."""
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a dask.distributed cluster: a scheduler address (tcp://host:8786), "
                        "a scheduler file, or local:N for N worker processes on this machine; "
                        "the files must be readable by every worker under the same paths, the "
                        "results are those of a run here (needs the [cluster] extra; see "
                        "docs/cluster.md)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xrf-pigments",
        description="Pigment maps from macro X-ray fluorescence scans (napari-xrf-pigments).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the traceback and the underlying library's "
                             "own message (before the one-line error)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="what the reader sees in an XRF file")
    p.add_argument("file", help="XRF cube or spectrum file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "assemble",
        help="build a cube from a scan's point files (one spectrum per file, e.g. Amptek .mca)",
        description="Assemble numbered point files (NAME_1.mca ... NAME_7200.mca, ordered by their "
                    "number) into a NeXus cube of --rows x --columns pixels. A point number missing "
                    "from the series becomes a masked pixel (counts 0) with a warning; files that "
                    "do not fit the raster, differ in channels or calibration, or are damaged are "
                    "refused (see docs/formats.md).",
    )
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_GLOB_OR_FOLDER",
                   help="point files, a folder of them, or a quoted glob such as 'scan/pt_*.mca'")
    p.add_argument("--rows", type=_POSITIVE_INT, required=True, help="raster rows")
    p.add_argument("--columns", type=_POSITIVE_INT, required=True, help="raster columns (points per row)")
    p.add_argument("--order", choices=("row-major", "serpentine"), default="row-major",
                   help="scan order: row-major (every row from the first column, default) or "
                        "serpentine (odd rows from the last column back)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--positions", default=None, metavar="FILE",
                      help="stage positions: one 'x,y' line in mm per point, in point-number order")
    size.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="MM",
                      help="step in mm: MM (square pixels) or ROW_MM,COLUMN_MM")
    p.add_argument("--first-number", type=_NON_NEGATIVE_INT, default=None, metavar="N",
                   help="number of the raster's first point (default 0 if a file is numbered 0, else 1)")
    p.add_argument("--mask-unreadable", action="store_true",
                   help="mask damaged point files (with a warning) instead of refusing them")
    p.add_argument("-o", "--out", required=True, help="NeXus cube file to write (.h5)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_assemble)

    p = sub.add_parser(
        "calibrate",
        help="find the energy calibration from the peaks of the sum spectrum",
        description="Name the peaks of the cube's sum spectrum by lines that are always or often "
                    "there (Ar of the air, Ca, Fe, Cu, Zn, Sr K, Hg and Pb L, the tube's "
                    "scattered lines...), fit zero and gain (and a quadratic term when the lines "
                    "ask for one) and print the lines used, the residual and how far the stated "
                    "calibration was off. With -o, write a copy of the cube with the found "
                    "calibration (the input is never changed).",
    )
    p.add_argument("cube", help="XRF cube file")
    p.add_argument("-o", "--out", default=None, help="NeXus cube file to write, recalibrated (.h5)")
    p.add_argument("--guess", type=_guess, default=None, metavar="ZERO,GAIN",
                   help="rough calibration to start from, keV and keV/channel (e.g. 0,0.01): "
                        "needed for an uncalibrated cube, searched +-1.5 keV and +-10%% gain "
                        "around it (the stated calibration: +-0.3 keV and +-2%%)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("simulate", help="simulate a labelled training set of layered-paint spectra")
    p.add_argument("--out", required=True, help="training-set file to write (.h5)")
    p.add_argument("--n", type=_POSITIVE_INT, default=20000, help="number of spectra (default 20000)")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0, help="random seed (default 0)")
    p.add_argument("--instrument", default=None, help="instrument file (.json/.toml) or PyMca .cfg")
    p.add_argument("--background", default=None,
                   help="measured cube whose SNIP background is added to the simulated spectra")
    p.add_argument("--distractors", type=_PROBABILITY, default=0.0, metavar="P",
                   help="probability in [0, 1] that a paint layer holds out-of-library "
                        "'distractor' pigments (train split of the library; pure, or mixed "
                        "with class pigments), labelled as none of the classes (default 0: "
                        "the same spectra as before distractors existed)")
    p.add_argument("--noise-free", action="store_true",
                   help="write the expected counts without Poisson noise (to measure what the "
                        "physics allows; train on them without --augment)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="simulate the batches on a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786), a scheduler file, or local:N for N worker processes "
                        "on this machine; the training set is the same, to the bit, as without "
                        "it (needs the [cluster] extra; see docs/cluster.md)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("instrument", help="the instrument a scan's file (or a PyMca .cfg) "
                                          "describes, as the simulator's instrument file")
    p.add_argument("source", help="an XRF file (its tube, detector, calibration, live time) or a "
                                  "PyMca fit configuration (.cfg)")
    p.add_argument("--out", required=True, help="instrument file to write (.json)")
    p.add_argument("--base", default=None,
                   help="instrument file for what the source does not say (default: the "
                        "ELIO-like scanner of the paper)")
    p.add_argument("--name", default=None, help="name stored in the instrument file")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_instrument)

    p = sub.add_parser("mockup", help="simulate a scanned mock-up painting with ground truth")
    p.add_argument("--out", required=True, help="NeXus cube file to write (.h5)")
    p.add_argument("--truth", default=None, help="ground-truth file to write (.h5)")
    p.add_argument("--instrument", default=None, help="instrument file (.json/.toml) or PyMca .cfg")
    p.add_argument("--live-time", type=_POSITIVE, default=None, help="dwell per pixel in s (default 10)")
    p.add_argument("--tops", default=None,
                   help="top strips, comma-separated: mixture names of the library (\"Top 2\", "
                        '"Smalt + lead white"), material abbreviations (TiW) or mass %% mixtures '
                        '(LTY:50+Azu:50) (default "Top 2,Top 1,Top 3,Top 4")')
    p.add_argument("--bottoms", default=None,
                   help="bottom strips, the same way (default: the paper's Fig. 7)")
    p.add_argument("--library", action="append", default=None, metavar="FILE",
                   help="pigment library file (.json/.toml) adding your own pigments and "
                        "mixtures to the built-in ones; repeatable")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0, help="random seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.set_defaults(func=_cmd_mockup)

    p = sub.add_parser("fit", help="element maps: PyMca fast linear fit of every spectrum of a cube")
    _cube_arguments(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument("--config", default=None, help="PyMca fit configuration (.cfg)")
    what.add_argument("--elements", default=None,
                      help="elements to fit, e.g. Ca,Cr,Fe,Pb or 'Pb L,Pb M' (lines K/L/M chosen "
                           "from the energy range); default: those found in the sum spectrum")
    p.add_argument("--tube", default=None, help="X-ray tube anode, e.g. Rh (its lines are fitted as scatter)")
    p.add_argument("--kv", type=_POSITIVE, default=None,
                   help="tube voltage in kV (edges above it are not excited)")
    p.add_argument("--excitation", type=_POSITIVE, default=None,
                   help="monochromatic beam energy in keV (adds Rayleigh/Compton peaks)")
    p.add_argument("--weight", type=int, choices=(0, 1, 2), default=0,
                   help="least-squares weights: 0 none (default, as PyMca's batch), 1 from the sum "
                        "spectrum, 2 per spectrum (slow)")
    p.add_argument("--no-refit", action="store_true", help="keep negative peak areas (no refit)")
    p.add_argument("--calibration", choices=("cube", "config"), default="cube",
                   help="energy calibration to use with --config: the cube's (default) or the .cfg's")
    p.add_argument("--workers", type=_NON_NEGATIVE_INT, default=None,
                   help="worker processes (default: one per CPU; 0: fit in this process)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_fit)


    p = sub.add_parser("train", help="train a pigment model on a labelled training set")
    p.add_argument("--data", required=True, help="training set (.h5, see docs/model.md)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--folds", type=_POSITIVE_INT, default=D["folds"],
                   help=f"cross-validation folds (default {D['folds']}; 1: one 80/20 split)")
    p.add_argument("--epochs", type=_POSITIVE_INT, default=D["epochs"],
                   help=f"most epochs per fold (default {D['epochs']})")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=D["seed"],
                   help=f"random seed (default {D['seed']})")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=D["batch_size"],
                   help=f"default {D['batch_size']}")
    p.add_argument("--learning-rate", type=_POSITIVE, default=D["learning_rate"],
                   help=f"Adam, default {D['learning_rate']:g}")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=D["lr_schedule"],
                   help="learning rate over the epochs: constant (paper, default) or a cosine "
                        "decay to 1%% of it at the last epoch")
    p.add_argument("--patience", type=_POSITIVE_INT, default=D["patience"],
                   help=f"early-stopping patience in epochs (default {D['patience']})")
    p.add_argument("--grid", default="data", type=_parse_grid,
                   help="model energy grid: 'data' (the data's channels from 2.80 keV, default), "
                        "'paper' (3815 x 10 eV) or START:STEP:N in keV")
    p.add_argument("--no-top", action="store_true", help="no top-layer head (paper network)")
    p.add_argument("--augment", action="store_true",
                   help="Poisson count-level (1e3-1e6 counts) and +-20 eV shift (in whole model "
                        "channels) augmentation")
    p.add_argument("--targets", choices=("present", "detectable"), default="present",
                   help="what the network learns: 'present' (the paper's labels: pigment anywhere "
                        "in the paint stack) or 'detectable' (only where its own lines reach the "
                        "detector; needs a training set from this version's simulate)")
    p.add_argument("--name", default=None, help="model name stored in its metadata")
    p.add_argument("--force", action="store_true", help="replace an existing model directory")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="per-pigment accuracy, sensitivity, precision, F1 (paper Table 3)",
        description="Score a model on labelled spectra (--data), or pigment maps against a "
                    "mock-up's ground truth, pixel by pixel: maps predicted now from --cube, or "
                    "read from a maps file (--maps).",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", default=None, help="labelled spectra (.h5 training-set layout)")
    what.add_argument("--cube", default=None, help="XRF cube of a mock-up (with --truth)")
    what.add_argument("--maps", default=None,
                      help="pigment maps file from `xrf-pigments predict` (with --truth)")
    p.add_argument("--truth", default=None,
                   help="ground-truth file (.h5, from `xrf-pigments mockup --truth`)")
    p.add_argument("--model", default=None,
                   help="model directory (default: the shipped model); not with --maps")
    p.add_argument("--json", action="store_true", help="also print one JSON object (last line)")
    p.add_argument("--threshold", type=_OPEN_FRACTION, default=THRESHOLD,
                   help="probability threshold")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=None)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="pigment probability maps of an XRF cube")
    _cube_arguments(p)
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--batch-size", type=_POSITIVE_INT, default=None, help="spectra per inference call")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--no-evidence", action="store_true",
                   help="write the network's probabilities unchecked: no element evidence, no "
                        "unexplained maps (checked maps are the default; raw ones go to /raw)")
    p.set_defaults(func=_cmd_predict)


    p = sub.add_parser("adapt", help="a model for your instrument: the shipped model finetuned "
                                     "on spectra simulated with it")
    p.add_argument("--instrument", required=True,
                   help="instrument file (.json/.toml, `xrf-pigments instrument`), a PyMca .cfg, "
                        "or a scan of the instrument (its file's tube, detector, calibration)")
    p.add_argument("--out", required=True, help="model directory to write (never the base model)")
    p.add_argument("--background", default=None,
                   help="a scan of the instrument whose measured background the spectra get")
    p.add_argument("--model", default=None, help="base model directory (default: the shipped model)")
    p.add_argument("--n", type=_POSITIVE_INT, default=A["n"],
                   help=f"spectra to simulate (default {A['n']}: a few minutes on 2 CPU cores); "
                        f"{round(100 * A['fraction'])}%% are finetuned on, the rest score the "
                        "model before and after")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=0, help="random seed (default 0)")
    p.add_argument("--epochs", type=_POSITIVE_INT, default=None,
                   help="most epochs of each finetuning stage (default: finetune's; early "
                        "stopping ends sooner)")
    p.add_argument("--name", default=None, help="model name (default: <base>-<instrument>)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("export", help="maps file (.h5) to one OME-TIFF for image software")
    p.add_argument("maps", help="maps file written by fit, predict or napari (.h5)")
    p.add_argument("--out", required=True, help="OME-TIFF to write (.ome.tif)")
    p.add_argument("--maps", dest="only", default=None,
                   help="comma-separated map names to export, in this order (default: all)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("finetune", help="finetune a pigment model on labelled pixels of a mock-up")
    p.add_argument("--cube", required=True, help="XRF cube of the labelled mock-up")
    p.add_argument("--labels", required=True,
                   help="labels file (.json, shapes drawn in napari) or ground-truth file (.h5, "
                        "from `xrf-pigments mockup --truth`)")
    p.add_argument("--out", required=True, help="model directory to write (never the base model)")
    p.add_argument("--model", default=None, help="base model directory (default: the shipped model)")
    p.add_argument("--fraction", type=_OPEN_FRACTION, default=F["fraction"],
                   help=f"share of labelled pixels to finetune on; the rest is the test set "
                        f"(default {F['fraction']})")
    p.add_argument("--seed", type=_NON_NEGATIVE_INT, default=F["seed"],
                   help=f"random seed (default {F['seed']})")
    p.add_argument("--epochs", type=_POSITIVE_INT, default=None,
                   help=f"most epochs of each stage (default {F['head_epochs']} for the dense head, "
                        f"{F['epochs']} for all layers; early stopping ends sooner)")
    p.add_argument("--name", default=None, help="model name stored in its metadata")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser(
        "demo",
        help="the whole method on the built-in sample mock-up, with figures and a report",
        description="Simulate (or take from the cache) the sample mock-up painting, fit its "
                    "element maps with PyMca, predict pigment maps with the shipped model, "
                    "finetune it on rectangles drawn from the ground truth, predict again, and "
                    "write figures and a Markdown report scored against the truth into --out.",
    )
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--view", action="store_true", help="then open everything in napari")
    p.add_argument("--workers", type=_NON_NEGATIVE_INT, default=None,
                   help="PyMca fitting processes (default: one per CPU)")
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.set_defaults(func=_cmd_demo)

    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: it unwinds like Ctrl-C, so every clean-up runs."""


def _on_sigterm(signum, frame):
    # Only the first: a second SIGTERM must not cut the clean-up of the first short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds():
    """Handle SIGTERM like SIGINT while the block runs (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _os_error_message(exc: OSError) -> str:
    """One line for an error of the system: a full, read-only or failing disk in plain words."""
    if exc.errno in WRITE_ERRORS:
        return f"cannot write {exc.filename or 'the output'}: {WRITE_ERRORS[exc.errno]}"
    return " ".join(str(exc).split())  # HDF5's messages span lines


def _inputs(args) -> list[str]:
    """The input files of the command (the ones an error is most likely about)."""
    return [str(v) for k in ("file", "cube") if isinstance(v := getattr(args, k, None), str)]


def _one_line(message: str, args) -> str:
    """The error on one line, naming the input file when the message names no file."""
    message = " ".join(str(message).split())
    inputs = _inputs(args)
    outputs = [str(getattr(args, k)) for k in ("out", "truth", "model", "data", "labels", "maps", "config")
               if getattr(args, k, None)]
    if inputs and not any(p in message for p in inputs + outputs):
        message = f"{inputs[0]}: {message}"
    return message


def _debug_report(exc: BaseException) -> None:
    """--debug: the traceback with the chained library exceptions (their own words)."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of ``xrf-pigments``; returns the exit code (143 after SIGTERM, 130 after
    Ctrl-C, with the partial outputs removed)."""
    global _DEBUG
    parser = build_parser()
    args = parser.parse_args(argv)
    _DEBUG = args.debug
    with _debug_logging(args.debug):
        return _run(args)


@contextlib.contextmanager
def _debug_logging(enabled: bool):
    """--debug: the package's debug log (libraries' own words on damaged files) to stderr."""
    if not enabled:
        yield
        return

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
    logger = logging.getLogger("napari_xrf_pigments")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _run(args) -> int:
    try:
        with _sigterm_unwinds():
            return _reported(args, args.func)
    except _Terminated:
        print(f"xrf-pigments {args.command}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"xrf-pigments {args.command}: interrupted", file=sys.stderr)
        return 130


def _reported(args, func) -> int:
    """``func(args)``; an error of ours, of the system or of memory becomes one line on stderr
    and exit code 2 (Ctrl-C and SIGTERM pass through)."""
    try:
        return int(func(args) or 0)
    except XRFPigmentsError as exc:
        if args.debug:
            _debug_report(exc)
        print(f"xrf-pigments {args.command}: error: {_one_line(exc, args)}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except OSError as exc:
        if args.debug:
            _debug_report(exc)
        print(f"xrf-pigments {args.command}: error: {_one_line(_os_error_message(exc), args)}",
              file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except MemoryError as exc:
        if args.debug:
            _debug_report(exc)
        inputs = _inputs(args)
        print(f"xrf-pigments {args.command}: error: not enough memory"
              + (f" for {inputs[0]}" if inputs else ""), file=sys.stderr)
        return EXIT_USAGE_OR_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
