"""`xrf-pigments demo` on the built-in sample, and `evaluate` of maps against a ground truth."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("keras")

from napari_xrf_pigments.cli import main  # noqa: E402
from napari_xrf_pigments.datasets.mockup import read_truth  # noqa: E402
from napari_xrf_pigments.demo import FILES  # noqa: E402


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("XRF_PIGMENTS_CACHE", str(root / "cache"))
    try:
        assert main(["demo", "--out", str(root / "out"), "--workers", "0"]) == 0
    finally:
        mp.undo()
    return root / "out"


@pytest.mark.slow
def test_demo_writes_maps_model_figures_and_report(demo_dir):
    for name in FILES.values():
        assert (demo_dir / name).exists(), name
    figures = sorted(p.name for p in (demo_dir / FILES["figures"]).glob("*.png"))
    # One per pigment or group the sample holds (Fig. 7: the paper's pigments but carmine...).
    truth = read_truth(demo_dir / FILES["truth"])["present"]
    held = {abbr for abbr, where in truth.items() if where.any()}
    assert "VM.png" in figures and "LW+RL.png" in figures and "TiW.png" not in figures
    assert {name[:-4] for name in figures} <= held and len(figures) >= 10
    report = (demo_dir / FILES["report"]).read_text()
    assert "| Vermilion (VM) |" in report and "Finetuning, scored on pixels it never saw" in report
    # Nothing half-built is left beside the output.
    assert [p.name for p in demo_dir.parent.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_demo_refuses_to_replace_a_folder_without_force(demo_dir, capsys):
    before = sorted(p.name for p in demo_dir.iterdir())
    assert main(["demo", "--out", str(demo_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    assert sorted(p.name for p in demo_dir.iterdir()) == before


@pytest.mark.slow
def test_finetuning_in_the_demo_improves_the_maps_against_the_truth(demo_dir, capsys):
    scores = {}
    for key in ("pigment_maps", "pigment_maps_finetuned"):
        assert main(["evaluate", "--maps", str(demo_dir / FILES[key]),
                     "--truth", str(demo_dir / FILES["truth"]), "--json"]) == 0
        scores[key] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    before = scores["pigment_maps"]["summary"]["present_f1_mean"]
    after = scores["pigment_maps_finetuned"]["summary"]["present_f1_mean"]
    assert 0.5 < before < after
    assert scores["pigment_maps"]["n_spectra"] == 39 * 57


@pytest.mark.slow
def test_evaluate_explains_wrong_inputs(demo_dir, capsys):
    truth = str(demo_dir / FILES["truth"])
    assert main(["evaluate", "--maps", str(demo_dir / FILES["element_maps"]), "--truth", truth]) == 2
    assert "no pigment maps" in capsys.readouterr().err
    assert main(["evaluate", "--maps", str(demo_dir / FILES["pigment_maps"])]) == 2
    assert "--truth" in capsys.readouterr().err
    assert main(["evaluate", "--maps", str(demo_dir / FILES["pigment_maps"]),
                 "--truth", str(demo_dir / FILES["cube"])]) == 2
    assert "not a ground-truth file" in capsys.readouterr().err
