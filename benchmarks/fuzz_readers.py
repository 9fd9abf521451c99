"""Mutation fuzzing of every reader: damaged files must give one clean line, never a crash.

Copies of each reader's sample files (the real instrument files in ``../shared/data/real`` when
present, and small files written here: NeXus through ``io.write_cube``, a MAPS HDF5, EDF, a
ripple pair, an Amptek PMCA ``.mca`` and a two-column CSV) are damaged with one mutation each:

``flip``      1-8 bytes XOR-ed with a random byte (half of them in the first 4 KB: the headers)
``truncate``  the file cut at a random length
``zero``      a block of 16 B - 16 KB zeroed
``number``    a number of a header replaced by a huge, negative or odd one (the digits of text
              headers; 4 or 8 bytes of binary headers set to 2^31, 2^32-1, 2^63...)

and each damaged file goes through three stages, each in its own process with a timeout and an
address-space limit (``RLIMIT_AS``):

1. ``xrf-pigments info FILE`` (a fresh interpreter: the command as users run it);
2. for files ``info`` accepts, the napari reader as napari runs it without a viewer: the npe2
   ``get_reader`` -> reader function -> LayerDataTuples, then the first energy channel image
   and the total-counts image are read (what napari draws first). This stage forks the harness,
   which has imported the reader once, so a case costs milliseconds, not an interpreter start;
3. ``xrf-pigments fit`` (``--elements Ca,Fe --workers 0``) and ``xrf-pigments predict`` on the
   first few accepted files of each format.

Outcomes:

``ok``          exit 0 (stage 2: layers built and drawn)
``error``       a clean error: exit 2, one line, naming the file (stage 2: the reader raised an
                ``XRFPigmentsError`` whose one-line message names the file)
``unnamed``     a one-line error that does not name the file
``multiline``   an error message (or warnings before it) on more than one line
``traceback``   a Python traceback (stage 2: any exception that is not the package's own)
``crash``       killed by a signal (SIGSEGV, SIGBUS, SIGABRT...) or an unexplained exit code
``hang``        still running at the timeout (killed)
``memory``      MemoryError, "not enough memory", or a failed allocation under the limit

Usage::

    python benchmarks/fuzz_readers.py --cases 5000            # the long run (about 1 s a case)
    python benchmarks/fuzz_readers.py --cases 40 --json out.json --keep failures/

Prints a table of outcome counts per sample format and stage, and the failing cases (with the
mutation, so they can be reproduced with ``--seed``/``--only``). Exit status 1 when any case
crashed, hung, blew up memory, printed a traceback, a multi-line or an unnamed error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("XRF_PIGMENTS_REAL_DATA", PROJECT.parent / "shared" / "data" / "real"))
OUTCOMES = ("ok", "error", "unnamed", "multiline", "traceback", "crash", "hang", "memory")
FAILURES = ("unnamed", "multiline", "traceback", "crash", "hang", "memory")
MUTATIONS = ("flip", "truncate", "zero", "number")


# -- samples -----------------------------------------------------------------------------------


@dataclass
class Sample:
    label: str  # row of the table
    files: list  # every file of the sample (a ripple pair has two)
    main: str  # the file given to the commands


def _real_samples(real: Path) -> list[Sample]:
    out = []
    groups = {
        "bruker-bcf": sorted((real / "rosettasciio_bruker").glob("*.bcf")),
        "bruker-spx": sorted((real / "rosettasciio_bruker").glob("*.spx")),
        "nexus (real)": sorted((real / "derived").glob("*.h5")),
        "aps-raw-h5": sorted((real / "xrfmaps_aps_2ide").glob("*.h5")),
        "mda": sorted((real / "xrfmaps_aps_2ide").glob("*.mda")),
        "gse-mca": sorted((real / "xraylarch").glob("*.*")),
        "pymca-text": [real / "pymca5" / "Steel.spe", real / "pymca5" / "XRFSpectrum.mca"],
    }
    for label, paths in groups.items():
        out += [Sample(label, [str(p)], str(p)) for p in paths if p.is_file()]
    rpl = real / "derived" / "axo_std_det0_m6style.rpl"
    if rpl.is_file():
        out.append(Sample("ripple (real)", [str(rpl), str(rpl.with_suffix(".raw"))], str(rpl)))
    return out


def _generated_samples(folder: Path) -> list[Sample]:
    """Small files of every writable format, made the way tests/test_io_*.py make them."""
    import h5py

    from napari_xrf_pigments.cube import XRFCube
    from napari_xrf_pigments.io import write_cube

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels = np.arange(256)
    peaks = 50 * np.exp(-0.5 * ((channels - 80) / 3) ** 2) + 20 * np.exp(-0.5 * ((channels - 150) / 3) ** 2)
    counts = rng.poisson(peaks + 2, size=(8, 6, 256)).astype(np.uint16)
    out = []

    cube = XRFCube.from_array(counts, zero=0.0, gain=0.04)
    write_cube(folder / "gen_nexus_gzip.h5", cube)
    out.append(Sample("nexus (written)", [str(folder / "gen_nexus_gzip.h5")], str(folder / "gen_nexus_gzip.h5")))
    cube32 = XRFCube.from_array(counts.astype(np.float32), zero=-0.01, gain=0.04)
    write_cube(folder / "gen_nexus_plain.h5", cube32, compression=None)
    out.append(Sample("nexus (written)", [str(folder / "gen_nexus_plain.h5")], str(folder / "gen_nexus_plain.h5")))

    maps = folder / "gen_maps.h5"
    with h5py.File(maps, "w") as h5:
        h5.create_dataset("/MAPS/Spectra/mca_arr", data=np.moveaxis(counts, 2, 0).astype(np.float32),
                          chunks=(256, 2, 6))
        h5.create_dataset("/MAPS/Spectra/Energy_Calibration", data=[0.0, 0.04, 0.0])
    out.append(Sample("maps-hdf5 (written)", [str(maps)], str(maps)))

    from PyMca5.PyMcaIO import EdfFile

    edf_path = folder / "gen_cube.edf"
    edf = EdfFile.EdfFile(str(edf_path), "wb")
    edf.WriteImage({"MCA a": -0.05, "MCA b": 0.04, "MCA c": 0.0}, counts.astype(np.uint32))
    del edf
    out.append(Sample("edf (written)", [str(edf_path)], str(edf_path)))

    rows, cols, depth = counts.shape
    rpl, raw = folder / "gen_pair.rpl", folder / "gen_pair.raw"
    rpl.write_text(
        f"key\tvalue\nwidth\t{cols}\nheight\t{rows}\ndepth\t{depth}\noffset\t0\ndata-Length\t2\n"
        "data-type\tunsigned\nbyte-order\tlittle-endian\nrecord-by\tvector\nev-per-chan\t40\n"
    )
    counts.astype("<u2").tofile(raw)
    out.append(Sample("ripple (written)", [str(rpl), str(raw)], str(rpl)))

    from napari_xrf_pigments.io.amptek import write_pmca

    mca = folder / "gen_point_7.mca"
    write_pmca(mca, counts[0, 0], calibration=[(50, 2.0), (150, 6.0), (200, 8.0)], live_time=9.8,
               real_time=10.0, start_time="12/04/2026 10:11:12", configuration={"GAIN": "60.0"},
               status={"Device Type": "DP5", "Serial Number": "12345"})
    out.append(Sample("amptek-mca (written)", [str(mca)], str(mca)))
    csv = folder / "gen_export.csv"
    csv.write_text("Energy (keV),Counts\n" + "".join(f"{0.04 * i:.4f},{c}\n" for i, c in enumerate(counts[0, 1])))
    out.append(Sample("two-column (written)", [str(csv)], str(csv)))
    return out


def samples(work: Path, real: Path | None) -> list[Sample]:
    out = _generated_samples(work / "samples")
    if real is not None and (real / "README.txt").is_file():
        out += _real_samples(real)
    return out


# -- mutations ---------------------------------------------------------------------------------

_HUGE_TEXT = (b"0", b"-1", b"2147483648", b"4294967296", b"99999999999999999999", b"1e308", b"nan",
              b"1000000000000")
_HUGE_BINARY = [v.to_bytes(n, order) for v, n in ((2**31, 4), (2**32 - 1, 4), (2**31 - 1, 4),
                                                  (2**63, 8), (2**40, 8), (2**64 - 1, 8))
                for order in ("little", "big")]


def mutate(data: bytes, kind: str, rng) -> tuple[bytes, str]:
    """``data`` damaged by one mutation of ``kind``; also a short description of what changed."""
    buf = bytearray(data)
    n = len(buf)
    if n == 0:
        return b"\x00", "empty -> one zero byte"
    if kind == "flip":
        k = int(rng.integers(1, 9))
        head = rng.random() < 0.5
        where = rng.integers(0, min(n, 4096) if head else n, size=k)
        for i in where:
            buf[i] ^= int(rng.integers(1, 256))
        return bytes(buf), f"flip {k} bytes at {sorted(int(i) for i in where)[:4]}..."
    if kind == "truncate":
        keep = int(rng.integers(0, n))
        return bytes(buf[:keep]), f"truncate to {keep} of {n} bytes"
    if kind == "zero":
        size = int(2 ** rng.integers(4, 15))
        start = int(rng.integers(0, n))
        buf[start:start + size] = bytes(len(buf[start:start + size]))
        return bytes(buf), f"zero {size} bytes at {start}"
    if kind == "number":
        head = bytes(buf[:8192])
        numbers = [m for m in re.finditer(rb"-?\d+(\.\d+)?", head)]
        text_like = head.count(b"\x00") < len(head) // 20
        if numbers and (text_like or rng.random() < 0.3):
            m = numbers[int(rng.integers(0, len(numbers)))]
            new = _HUGE_TEXT[int(rng.integers(0, len(_HUGE_TEXT)))]
            return (bytes(buf[:m.start()]) + new + bytes(buf[m.end():]),
                    f"number {m.group().decode(errors='replace')!r} at {m.start()} -> {new.decode()}")
        value = _HUGE_BINARY[int(rng.integers(0, len(_HUGE_BINARY)))]
        start = int(rng.integers(0, max(1, min(n, 4096) - len(value))))
        buf[start:start + len(value)] = value
        return bytes(buf[:n]), f"binary number {value.hex()} at {start}"
    raise ValueError(kind)


@dataclass
class Case:
    index: int
    label: str
    sample: str
    mutation: str
    detail: str
    path: str
    stages: dict = field(default_factory=dict)  # stage -> {"outcome", "message", "seconds"}


def make_case(index: int, sample: Sample, rng, folder: Path) -> Case:
    folder.mkdir(parents=True, exist_ok=True)
    for f in sample.files:
        shutil.copyfile(f, folder / Path(f).name)
        os.chmod(folder / Path(f).name, 0o644)
    target = Path(sample.files[int(rng.integers(0, len(sample.files)))])
    kind = MUTATIONS[int(rng.integers(0, len(MUTATIONS)))]
    damaged, detail = mutate(target.read_bytes(), kind, rng)
    (folder / target.name).write_bytes(damaged)
    return Case(index, sample.label, Path(sample.main).name, kind, f"{target.name}: {detail}",
                str(folder / Path(sample.main).name))


# -- running and classifying -------------------------------------------------------------------


def _limit(mem_mb: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb * 2**20, mem_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return preexec


_MEMORY = re.compile(r"MemoryError|not enough memory|Cannot allocate memory|bad_alloc|"
                     r"Unable to allocate|out of memory", re.IGNORECASE)


# The command's own deliberate lines before an error: its "warning: ..." / "note: ..." lines
# (preflight checks of predict, notes of fit) and tqdm progress bars. Anything else before the
# error (a library's warning, a Python warning, TensorFlow's log) makes it multi-line.
_OWN_LINES = re.compile(r"^(warning|note): |\[\d\d:\d\d[<,]")


def classify_cli(rc, stderr: str, timed_out: bool, path: str) -> tuple[str, str]:
    """(outcome, message) of a command run on ``path``."""
    lines = [ln for part in stderr.splitlines() for ln in part.split("\r")
             if ln.strip() and not _OWN_LINES.search(ln)]
    message = lines[-1] if lines else ""
    if timed_out:
        return "hang", "timeout"
    if _MEMORY.search(stderr):
        return "memory", message
    if "Traceback (most recent call last)" in stderr:
        return "traceback", message
    if rc is not None and rc < 0:
        return "crash", f"signal {signal.Signals(-rc).name}"
    if rc == 0:
        return "ok", ""
    if rc != 2:
        return "crash", f"exit code {rc}: {message}"
    if len(lines) > 1:
        return "multiline", " | ".join(lines[:4])
    if path not in message and Path(path).name not in message:
        return "unnamed", message
    return "error", message


def run_command(args: list, path: str, *, timeout: float, mem_mb: int, cwd=None) -> dict:
    started = time.perf_counter()
    env = dict(os.environ, PYTHONFAULTHANDLER="", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    try:
        proc = subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              preexec_fn=_limit(mem_mb), env=env, errors="replace")
        outcome, message = classify_cli(proc.returncode, proc.stderr, False, path)
    except subprocess.TimeoutExpired:
        outcome, message = "hang", f"no answer in {timeout:g} s"
    return {"outcome": outcome, "message": message[:300], "seconds": round(time.perf_counter() - started, 2)}


def _reader_child(path: str, result_file: str) -> None:
    """In the forked child: what napari does with a dropped file, minus the viewer."""
    from napari_xrf_pigments._napari._reader import get_reader
    from napari_xrf_pigments.errors import XRFPigmentsError

    result = {"outcome": "ok", "message": ""}
    try:
        reader = get_reader(path)
        if reader is None:
            result = {"outcome": "error", "message": "not claimed by get_reader"}
        else:
            layers = reader(path)
            cube_data, total = layers[0][0], layers[1][0]
            np.asarray(cube_data[0])  # the first energy channel, drawn first
            np.asarray(cube_data[cube_data.shape[0] // 2])
            np.asarray(total)  # the total-counts image (lazy for big cubes)
    except XRFPigmentsError as exc:
        text = str(exc)
        if "\n" in text.strip():
            result = {"outcome": "multiline", "message": text.replace("\n", " | ")}
        elif path not in text and Path(path).name not in text:
            result = {"outcome": "unnamed", "message": text}
        else:
            result = {"outcome": "error", "message": text}
    except MemoryError as exc:
        result = {"outcome": "memory", "message": f"MemoryError: {exc}"}
    except BaseException as exc:  # noqa: BLE001 - what napari would print as a traceback
        result = {"outcome": "traceback",
                  "message": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                             f"at {traceback.extract_tb(exc.__traceback__)[-1].name}"}
    with open(result_file, "w") as fh:
        json.dump(result, fh)


def run_reader_forked(path: str, *, timeout: float, mem_mb: int, folder: Path) -> dict:
    """The napari reader stage in a forked child (limits as for the commands)."""
    result_file = folder / "_reader_result.json"
    log_file = folder / "_reader_stderr.txt"
    started = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            _limit(mem_mb)()
            fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            _reader_child(path, str(result_file))
        except BaseException:  # noqa: BLE001
            code = 70
        finally:
            os._exit(code)
    deadline = started + timeout
    status = None
    while time.perf_counter() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"outcome": "hang", "message": f"no answer in {timeout:g} s", "seconds": timeout}
    seconds = round(time.perf_counter() - started, 2)
    log = log_file.read_text(errors="replace") if log_file.exists() else ""
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        outcome = "memory" if _MEMORY.search(log) else "crash"
        return {"outcome": outcome, "message": f"signal {name}", "seconds": seconds}
    if not result_file.exists():
        outcome = "memory" if _MEMORY.search(log) else "crash"
        return {"outcome": outcome, "message": f"exit code {os.WEXITSTATUS(status)} without a result: "
                f"{log.strip().splitlines()[-1] if log.strip() else ''}", "seconds": seconds}
    result = json.loads(result_file.read_text())
    result_file.unlink()
    if result["outcome"] == "error" and result["message"] == "not claimed by get_reader":
        result["outcome"] = "unnamed"  # info accepted what napari's reader check refuses
    result["seconds"] = seconds
    return result


# -- the campaign ------------------------------------------------------------------------------


def campaign(n_cases: int, *, seed: int = 0, work: Path, real: Path | None, fit_per_label: int = 2,
             predict_per_label: int = 0, timeout: float = 60.0, mem_mb: int = 4096,
             only: str | None = None, keep: Path | None = None, progress=True,
             checkpoint: Path | None = None) -> list[Case]:
    import napari_xrf_pigments._napari._reader  # noqa: F401 - imported once, before the forks

    all_samples = samples(work, real)
    if only:
        all_samples = [s for s in all_samples if only in s.label or only in Path(s.main).name]
    if not all_samples:
        raise SystemExit("no samples")
    rng = np.random.default_rng(seed)
    script = Path(sys.executable).parent / "xrf-pigments"  # the installed command, as users run it
    cli = [str(script)] if script.is_file() else [sys.executable, "-m", "napari_xrf_pigments.cli"]
    fits, predicts = Counter(), Counter()
    cases = []
    t0 = time.perf_counter()
    for i in range(n_cases):
        sample = all_samples[i % len(all_samples)]
        folder = work / "cases" / f"{i:05d}"
        case = make_case(i, sample, rng, folder)
        info = run_command([*cli, "info", case.path], case.path, timeout=timeout, mem_mb=mem_mb)
        case.stages["info"] = info
        if info["outcome"] == "ok":
            case.stages["napari"] = run_reader_forked(case.path, timeout=timeout, mem_mb=mem_mb, folder=folder)
            if case.stages["napari"]["outcome"] == "ok" and fits[case.label] < fit_per_label:
                fits[case.label] += 1
                case.stages["fit"] = run_command(
                    [*cli, "fit", case.path, "--out", str(folder / "maps.h5"), "--elements", "Ca,Fe",
                     "--workers", "0"], case.path, timeout=4 * timeout, mem_mb=mem_mb)
            if case.stages["napari"]["outcome"] == "ok" and predicts[case.label] < predict_per_label:
                predicts[case.label] += 1
                case.stages["predict"] = run_command(
                    [*cli, "predict", case.path, "--out", str(folder / "pigments.h5")], case.path,
                    timeout=10 * timeout, mem_mb=max(mem_mb, 32768))
        bad = [s for s, r in case.stages.items() if r["outcome"] in FAILURES]
        if bad and keep is not None:
            dest = keep / f"{i:05d}_{case.label.split()[0]}_{case.stages[bad[0]]['outcome']}"
            shutil.copytree(folder, dest, dirs_exist_ok=True)
            (dest / "case.json").write_text(json.dumps(asdict(case), indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        cases.append(case)
        if progress and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{n_cases} cases, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if checkpoint is not None and (i + 1) % 100 == 0:  # a long run can be read before its end
            checkpoint.write_text(json.dumps({"seed": seed, "seconds": time.perf_counter() - t0,
                                              "partial": True, "cases": [asdict(c) for c in cases]}))
    return cases


def table(cases: list[Case]) -> str:
    """Counts per (format, stage) and outcome, Markdown."""
    counts = defaultdict(Counter)
    for case in cases:
        for stage, result in case.stages.items():
            counts[(case.label, stage)][result["outcome"]] += 1
    stages = ("info", "napari", "fit", "predict")
    rows = sorted(counts, key=lambda k: (k[0], stages.index(k[1])))
    head = "| format | stage | " + " | ".join(OUTCOMES) + " |"
    lines = [head, "|" + "---|" * (2 + len(OUTCOMES))]
    totals = defaultdict(Counter)
    for key in rows:
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(str(counts[key][o]) for o in OUTCOMES) + " |")
        totals[key[1]].update(counts[key])
    for stage in stages:
        if stage in totals:
            lines.append(f"| **all** | {stage} | " + " | ".join(str(totals[stage][o]) for o in OUTCOMES) + " |")
    return "\n".join(lines)


def failures(cases: list[Case]) -> list[tuple[Case, str]]:
    return [(c, s) for c in cases for s, r in c.stages.items() if r["outcome"] in FAILURES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="damaged files to try (default 5000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real", default=str(REAL_DATA), help="folder of real sample files ('' for none)")
    parser.add_argument("--only", default=None, help="only samples whose label or name contains this")
    parser.add_argument("--fit", type=int, default=3, help="fits per format on accepted files (default 3)")
    parser.add_argument("--predict", type=int, default=1, help="predictions per format (default 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per stage (fit x4, predict x10)")
    parser.add_argument("--mem-mb", type=int, default=4096, help="address-space limit per process")
    parser.add_argument("--json", default=None, help="write every case here (also every 100 cases)")
    parser.add_argument("--table", default=None, metavar="JSON",
                        help="only print the table and failures of a (partial) --json file")
    parser.add_argument("--keep", default=None, help="copy failing cases into this folder")
    args = parser.parse_args(argv)
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        cases = [Case(**c) for c in saved["cases"]]
        print(f"{len(cases)} damaged files (seed {saved['seed']}), {saved['seconds']:.0f} s"
              + (" (partial)" if saved.get("partial") else ""))
        print(table(cases))
        for case, stage in failures(cases)[:60]:
            r = case.stages[stage]
            print(f"{r['outcome']:9s} {stage:7s} #{case.index} {case.sample} [{case.detail}]: {r['message']}")
        return 1 if failures(cases) else 0
    real = Path(args.real) if args.real else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xrf-fuzz-") as tmp:
        cases = campaign(args.cases, seed=args.seed, work=Path(tmp), real=real, fit_per_label=args.fit,
                         predict_per_label=args.predict, timeout=args.timeout, mem_mb=args.mem_mb,
                         only=args.only, keep=Path(args.keep) if args.keep else None,
                         checkpoint=Path(args.json) if args.json else None)
    elapsed = time.perf_counter() - started
    print(f"{len(cases)} damaged files (seed {args.seed}), {elapsed:.0f} s")
    print(table(cases))
    bad = failures(cases)
    for case, stage in bad[:60]:
        r = case.stages[stage]
        print(f"{r['outcome']:9s} {stage:7s} #{case.index} {case.sample} [{case.detail}]: {r['message']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "seconds": elapsed,
                                               "cases": [asdict(c) for c in cases]}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
