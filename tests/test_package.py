"""Package hygiene: light imports, console script, manifest shipped in the wheel, README commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

MANIFEST = PROJECT_ROOT / "src" / "napari_xrf_pigments" / "napari.yaml"

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
    assert manifest == MANIFEST.read_text()
    assert "napari_xrf_pigments/cli.py" in names
    assert "napari_xrf_pigments/py.typed" in names  # PEP 561: type checkers read our hints
    # Package data: the pigment library and the shipped model.
    assert "napari_xrf_pigments/pigments/library.json" in names
    assert {"napari_xrf_pigments/model/default/model.keras",
            "napari_xrf_pigments/model/default/metadata.json"} <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(entry_points).decode()
    assert "napari_xrf_pigments:napari.yaml" in text and "xrf-pigments" in text


# -- the wheel of a clean checkout, installed alone ----------------------------------------------

# Run by the fresh interpreter: where the package, its metadata and npe2's view of it come from.
_FRESH_CHECK = r"""
import importlib.resources, importlib.util, json, sys
from importlib import metadata

import napari_xrf_pigments
from npe2 import PluginManager, PluginManifest

NAME = "napari-xrf-pigments"

def same(name):
    return (name or "").lower().replace("_", "-") == NAME

dists = [str(d.locate_file("")) for d in metadata.distributions() if same(d.metadata["Name"])]
found = [r for r in PluginManifest.discover() if r.distribution and same(r.distribution.metadata["Name"])]
pm = PluginManager.instance()
pm.discover()
mf = pm.get_manifest(NAME)
c = mf.contributions
commands = {cmd.id: cmd.python_name for cmd in c.commands or ()}
origins = {}
for python_name in sorted(set(commands.values())):
    spec = importlib.util.find_spec(python_name.split(":")[0])  # imports the parents only
    origins[python_name] = spec.origin if spec else None
resources = importlib.resources.files("napari_xrf_pigments")
print(json.dumps({
    "prefix": sys.prefix,
    "sys_path": sys.path,
    "file": napari_xrf_pigments.__file__,
    "version": napari_xrf_pigments.__version__,
    "dist_version": metadata.version(NAME),
    "dists": dists,
    "discover_errors": [repr(r.error) for r in found if r.error is not None],
    "manifest_yaml": (resources / "napari.yaml").read_text(),
    "display_name": mf.display_name,
    "readers": [{"command": r.command, "patterns": list(r.filename_patterns)} for r in c.readers or ()],
    "h5_readers": [r.command for r in pm.iter_compatible_readers(["scan.h5"])],
    "widgets": [{"command": w.command, "display_name": w.display_name} for w in c.widgets or ()],
    "sample_data": [{"key": s.key, "display_name": s.display_name,
                     "command": getattr(s, "command", None)} for s in c.sample_data or ()],
    "commands": commands,
    "origins": origins,
}))
"""


def _copy_checkout(dest: Path) -> None:
    """Copy what a clean checkout of the working tree holds: tracked files plus new, not ignored ones."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True,
        ).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"needs git and a git checkout of the project: {exc}")
    for rel in filter(None, listed):
        src, dst = PROJECT_ROOT / rel, dest / rel
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the working tree, or a submodule
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def _dependencies_without_this_project(dest: Path) -> Path:
    """A folder of links to this venv's installed packages, less any trace of this project.

    The fresh venv puts it on its path with a .pth file, so the heavy dependencies need not be
    installed again. Linking entry by entry leaves out this project's editable .pth and its
    dist-info: with them napari would find two plugins of the same name (and the source tree).
    """
    dest.mkdir()
    for site in dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])):
        for entry in Path(site).iterdir():
            name = entry.name.lower().replace("-", "_")
            if "napari_xrf_pigments" in name or name.endswith(".pth") or (dest / entry.name).exists():
                continue
            os.symlink(entry, dest / entry.name)
    return dest


@pytest.mark.slow
def test_clean_checkout_wheel_installs_alone_and_napari_lists_the_plugin(tmp_path):
    """Hub readiness: the wheel of a clean checkout installs in a fresh venv, napari finds it."""
    from napari_xrf_pigments import __version__

    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(checkout)],
        check=True, capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("napari_xrf_pigments-*.whl")

    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    python = fresh / "bin" / "python"
    if not python.exists():  # Windows layout
        python = fresh / "Scripts" / "python.exe"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--quiet", str(wheel)],
        check=True, capture_output=True,
    )
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    deps = _dependencies_without_this_project(tmp_path / "deps")
    (Path(fresh_site) / "test-venv-dependencies.pth").write_text(f"{deps}\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["XRF_PIGMENTS_CACHE"] = str(tmp_path / "cache")
    out = subprocess.run(
        [str(python), "-c", _FRESH_CHECK], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])

    # The package, its metadata and its manifest come from the wheel in the fresh venv, once.
    installed = Path(fresh_site) / "napari_xrf_pigments"
    src = (PROJECT_ROOT / "src").resolve()
    assert Path(seen["file"]).resolve() == (installed / "__init__.py").resolve()
    assert not any(Path(p).resolve() == src for p in seen["sys_path"] if p)
    assert [Path(d).resolve() for d in seen["dists"]] == [Path(fresh_site).resolve()]
    assert seen["version"] == seen["dist_version"] == __version__
    assert seen["discover_errors"] == []
    assert seen["manifest_yaml"] == MANIFEST.read_text()
    assert not (installed / "napari.yaml").is_symlink()
    for python_name, origin in seen["origins"].items():
        assert origin is not None, f"{python_name} is not in the wheel"
        assert Path(origin).resolve().is_relative_to(installed.resolve()), (python_name, origin)

    # What napari lists: the reader, the eight widgets and the sample.
    assert seen["display_name"] == "XRF Pigments"
    (reader,) = seen["readers"]
    assert reader["command"] == "napari-xrf-pigments.get_reader"
    assert {"*.h5", "*.nxs", "*.bcf", "*.rpl", "*.edf", "*.mca", "*.spe"} <= set(reader["patterns"])
    assert "napari-xrf-pigments.get_reader" in seen["h5_readers"]
    assert sorted(w["display_name"] for w in seen["widgets"]) == sorted([
        "Spectrum viewer", "Energy calibration", "Element maps", "Pigment maps",
        "Compare pigment and elements", "Finetune on labelled shapes", "Model for your instrument",
        "Assemble point grid",
    ])
    assert all(w["command"] in seen["commands"] for w in seen["widgets"])
    samples = {s["key"]: s for s in seen["sample_data"]}
    assert "mockup" in samples, f"no sample_data 'mockup' in {seen['sample_data']}"
    assert samples["mockup"]["command"] in seen["commands"]

    # The console script of the fresh venv runs the installed package.
    script = python.with_name("xrf-pigments")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, check=True)
    assert version.stdout.strip() == f"xrf-pigments {__version__}"
    assert Path(script.read_text().splitlines()[0][2:]).resolve() == python.resolve()
