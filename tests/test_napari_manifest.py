"""The npe2 manifest: valid, found by napari, and every command importable."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from npe2 import PluginManifest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "src" / "napari_xrf_pigments" / "napari.yaml"
PLUGIN = "napari-xrf-pigments"


@pytest.fixture(scope="module")
def manifest():
    return PluginManifest.from_file(MANIFEST)


def test_manifest_is_a_real_file_in_the_package():
    # A link would not survive every packaging tool (the hub reads the wheel's copy).
    assert MANIFEST.is_file() and not MANIFEST.is_symlink()
    assert not (ROOT / "napari.yaml").exists()


def test_every_command_imports(manifest):
    assert manifest.contributions.commands
    for command in manifest.contributions.commands:
        module_name, _, attribute = command.python_name.partition(":")
        # Convention: the manifest points into the napari adapters, never the package root.
        assert module_name.startswith("napari_xrf_pigments._napari."), command.python_name
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), command.python_name


def test_contributions_reference_commands(manifest):
    ids = {command.id for command in manifest.contributions.commands}
    contributions = manifest.contributions
    assert {reader.command for reader in contributions.readers} <= ids
    assert {widget.command for widget in contributions.widgets} <= ids
    assert {sample.command for sample in contributions.sample_data} <= ids
    patterns = set(contributions.readers[0].filename_patterns)
    for ext in ("h5", "hdf5", "nxs", "bcf", "spx", "rpl", "edf", "mca", "spe", "xrf"):
        assert f"*.{ext}" in patterns


def test_sample_data_is_the_mockup(manifest):
    from napari_xrf_pigments.datasets.sample import SAMPLE_NAME, SAMPLE_TITLE

    (sample,) = manifest.contributions.sample_data
    assert (sample.key, sample.display_name) == (SAMPLE_NAME, SAMPLE_TITLE)
    assert sample.command == f"{PLUGIN}.sample_mockup"


@pytest.mark.slow  # npe2 imports every command in a subprocess
def test_npe2_validate():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "--imports", PLUGIN],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
