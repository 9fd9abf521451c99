"""A CI-sized run of the reader fuzz harness (benchmarks/fuzz_readers.py; the long run is there).

Damaged copies of every reader's sample files go through ``xrf-pigments info``, then the napari
reader (layers built, first channel and total counts read), then ``fit`` on some of the
accepted ones, each in its own process with a timeout and a memory limit. None may crash, hang,
blow up memory, print a traceback, a multi-line error or an error that does not name the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT

HARNESS = PROJECT_ROOT / "benchmarks" / "fuzz_readers.py"


def _run(tmp_path, *args):
    out = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--json", str(out), "--keep", str(tmp_path / "failures"), *args],
        check=False, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    assert out.is_file(), proc.stdout + proc.stderr
    cases = json.loads(out.read_text())["cases"]
    bad = [(c["sample"], c["detail"], stage, r["outcome"], r["message"])
           for c in cases for stage, r in c["stages"].items()
           if r["outcome"] not in ("ok", "error")]
    return cases, bad, proc.stdout


@pytest.mark.slow
def test_fuzz_written_files(tmp_path):
    """Files the project writes itself: NeXus (gzip and plain), MAPS HDF5, EDF, ripple."""
    cases, bad, table = _run(tmp_path, "--cases", "30", "--real", "", "--fit", "1", "--predict", "0",
                             "--seed", "14", "--timeout", "60")
    assert len(cases) == 30
    assert not bad, table
    stages = {stage for c in cases for stage in c["stages"]}
    assert {"info", "napari", "fit"} <= stages  # some damaged files are accepted and used


@pytest.mark.slow
@pytest.mark.realdata
def test_fuzz_real_files(tmp_path, real_data):
    """The real instrument files (Bruker .bcf/.spx, APS HDF5 and MDA, GSE, PyMca, ripple)."""
    cases, bad, table = _run(tmp_path, "--cases", "40", "--real", str(real_data), "--fit", "1",
                             "--predict", "0", "--seed", "1414", "--timeout", "60")
    assert len(cases) == 40
    assert not bad, table
    assert any(c["label"] == "bruker-bcf" and "napari" in c["stages"] for c in cases)


@pytest.mark.slow
@pytest.mark.realdata
def test_damaged_bcf_that_crashed_the_decoder_is_one_clean_line(tmp_path, real_data):
    """P45_the_default_job.bcf cut at 510,962 bytes made rsciio's compiled decoder segfault
    (the process, i.e. napari, died); now `info` names the file and the damage."""
    data = (real_data / "rosettasciio_bruker" / "P45_the_default_job.bcf").read_bytes()
    path = tmp_path / "cut.bcf"
    path.write_bytes(data[:510962])
    proc = subprocess.run([sys.executable, "-m", "napari_xrf_pigments.cli", "info", str(path)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "damaged data" in lines[0], proc.stderr
