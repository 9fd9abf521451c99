"""Package hygiene: light imports, console script, manifest shipped in the wheel, README commands."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

HEAVY_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "tensorflow", "keras", "PyMca5")


def test_import_loads_no_gui_or_heavy_libraries():
    code = (
        "import sys, json\n"
        "import napari_xrf_pigments, napari_xrf_pigments.cube, napari_xrf_pigments.io\n"
        "import napari_xrf_pigments.progress, napari_xrf_pigments.cli, napari_xrf_pigments.errors\n"
        "import napari_xrf_pigments.lines, napari_xrf_pigments.regions\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_console_script_reports_version():
    from napari_xrf_pigments import __version__

    exe = Path(sys.executable).with_name("xrf-pigments")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"xrf-pigments {__version__}"


def test_readme_has_exactly_the_two_commands():
    sys.path.insert(0, str(PROJECT_ROOT / ".ci"))
    try:
        from readme_command import readme_commands
    finally:
        sys.path.pop(0)
    commands = readme_commands((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))
    assert sorted(commands) == ["main", "test"]
    assert ".ci/system-packages.sh" in commands["test"]
    # Every test runs: the non-GUI and the GUI halves.
    assert '-m pytest -m "not gui"' in commands["test"] and "-m pytest -m gui" in commands["test"]


@pytest.mark.slow
def test_wheel_ships_manifest_and_package_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(PROJECT_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("napari_xrf_pigments-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        manifest = zf.read("napari_xrf_pigments/napari.yaml").decode()
    assert manifest == (PROJECT_ROOT / "napari.yaml").read_text()
    assert "napari_xrf_pigments/cli.py" in names
    # Package data: the pigment library and the shipped model.
    assert "napari_xrf_pigments/pigments/library.json" in names
    assert {"napari_xrf_pigments/model/default/model.keras",
            "napari_xrf_pigments/model/default/metadata.json"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(entry_points).decode()
    assert "napari_xrf_pigments:napari.yaml" in text and "xrf-pigments" in text
