"""`xrf-pigments train / evaluate / predict` end to end on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from _model_data import ENERGY, make_set, nexus_cube, tiny_trained, write_set  # noqa: E402

from napari_xrf_pigments.cli import main  # noqa: E402
from napari_xrf_pigments.io.maps import read_maps  # noqa: E402
from napari_xrf_pigments.model import files  # noqa: E402


@pytest.mark.slow  # trains a model
def test_cli_train_writes_a_model(tmp_path, capsys):
    data = write_set(tmp_path / "train.h5", n=100)
    out = tmp_path / "model"
    rc = main(["train", "--data", str(data), "--out", str(out), "--folds", "2", "--epochs", "1",
               "--seed", "4", "--batch-size", "32", "--lr-schedule", "cosine"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "Present (any layer)" in printed.out and f"model written to {out}" in printed.out
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training"]["folds"] == 2 and meta["training"]["seed"] == 4
    assert meta["training"]["lr_schedule"] == "cosine"
    assert meta["training"]["command"].startswith("xrf-pigments")
    assert meta["n_parameters"] > 0 and (out / "model.keras").is_file()
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err


@pytest.mark.slow  # trains a model
def test_cli_train_on_detectable_labels(tmp_path, capsys):
    plain = write_set(tmp_path / "plain.h5", n=100)
    out = tmp_path / "model"
    assert main(["train", "--data", str(plain), "--out", str(out), "--targets", "detectable"]) == 2
    assert "no detectable labels" in capsys.readouterr().err and not out.exists()
    spectra, present, top = make_set(100)
    seen = present & (np.arange(100) % 3 > 0)[:, None]  # a third of the pigments hidden
    data = write_set(tmp_path / "seen.h5", n=100, detectable=seen)
    assert main(["train", "--data", str(data), "--out", str(out), "--folds", "1", "--epochs", "1",
                 "--targets", "detectable", "--batch-size", "32"]) == 0
    assert "Detectable" in capsys.readouterr().out
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["training"]["targets"] == "detectable"
    assert "detectable_f1_mean" in meta["metrics"]["summary"]


@pytest.mark.slow  # ~3 s
def test_cli_evaluate_prints_table_and_json(tmp_path, capsys):
    _, model_dir = tiny_trained()
    data = write_set(tmp_path / "test.h5", n=100, seed=21)
    assert main(["evaluate", "--model", str(model_dir), "--data", str(data), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "Present (any layer)" in "\n".join(lines) and "Alpha (AA)" in "\n".join(lines)
    result = json.loads(lines[-1])
    assert result["n_spectra"] == 100 and result["present"]["AA"]["f1"] > 0.8
    assert "top_assignment_accuracy" in result["summary"]


@pytest.mark.slow  # ~3 s
def test_cli_predict_writes_maps(tmp_path, capsys):
    _, model_dir = tiny_trained()
    spectra, _, _ = make_set(12, seed=8)
    cube = nexus_cube(tmp_path / "cube.h5", spectra.reshape(3, 4, -1), ENERGY)
    out = tmp_path / "maps.h5"
    argv = ["predict", str(cube), "--out", str(out), "--model", str(model_dir), "--batch-size", "8"]
    assert main(argv) == 0
    maps, root = read_maps(out)
    assert maps["AA"][0].shape == (3, 4) and maps["AA"][1]["kind"] == "pigment"
    assert root["input_file"] == str(cube) and root["model"] == str(model_dir)
    assert main(argv) == 2 and "--force" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0


@pytest.mark.slow  # ~4 s
def test_cli_predict_many_cubes_into_a_folder_resumes_and_matches_one_by_one(tmp_path, capsys):
    """#17: several cubes (a glob), one maps file per cube, existing ones skipped; a failing cube
    is one line and the others are written; the maps equal those of a single-cube run."""
    _, model_dir = tiny_trained()
    for i, name in enumerate(("north", "south")):
        spectra, _, _ = make_set(12, seed=8 + i)
        nexus_cube(tmp_path / f"{name}.h5", spectra.reshape(3, 4, -1), ENERGY)
    (tmp_path / "zz-damaged.h5").write_bytes(b"not a cube")
    out_dir = tmp_path / "maps"
    argv = ["predict", str(tmp_path / "*.h5"), "--out-dir", str(out_dir), "--model", str(model_dir)]
    assert main(argv) == 2  # the damaged cube failed; the others are written
    err = capsys.readouterr().err
    assert "3 cubes: 2 written, 0 skipped (maps exist), 1 failed" in err
    assert f"error: cannot read {tmp_path / 'zz-damaged.h5'}" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["north.h5", "south.h5"]
    before = (out_dir / "north.h5").stat().st_mtime_ns
    (tmp_path / "zz-damaged.h5").unlink()
    assert main(argv) == 0  # resumed: nothing left to do
    assert "2 cubes: 0 written, 2 skipped (maps exist), 0 failed" in capsys.readouterr().err
    assert (out_dir / "north.h5").stat().st_mtime_ns == before
    single = tmp_path / "north-alone.h5"
    assert main(["predict", str(tmp_path / "north.h5"), "--out", str(single), "--model", str(model_dir)]) == 0
    campaign, _ = read_maps(out_dir / "north.h5")
    alone, _ = read_maps(single)
    for name, (values, _) in alone.items():
        np.testing.assert_allclose(campaign[name][0], values, atol=1e-6)
    assert main(["predict", str(tmp_path / "north.h5"), str(tmp_path / "south.h5"), "--out",
                 str(tmp_path / "x.h5")]) == 2
    assert "2 cubes need --out-dir DIR" in capsys.readouterr().err


def test_cli_predict_without_a_default_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_MODEL_DIR", tmp_path / "default")
    # The cube is checked first (before TensorFlow loads), then the model.
    assert main(["predict", str(tmp_path / "cube.h5"), "--out", str(tmp_path / "m.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cube.h5: no such file" in err
    spectra, _, _ = make_set(4, seed=8)
    cube = nexus_cube(tmp_path / "cube.h5", spectra.reshape(2, 2, -1), ENERGY)
    assert main(["predict", str(cube), "--out", str(tmp_path / "m.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no default pigment model is installed" in err
    assert not (tmp_path / "m.h5").exists()


def test_cli_training_data_without_labels(tmp_path, capsys):
    import h5py

    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["spectra"] = np.ones((30, 300), np.float32)
        f["energy"] = ENERGY
        f.attrs["pigments"] = "[]"
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "m")]) == 2
    assert "no labels" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag, wanted", [
    (["simulate", "--out", "t.h5", "--n", "0"], "--n", "an integer >= 1"),
    (["simulate", "--out", "t.h5", "--seed", "-1"], "--seed", "an integer >= 0"),
    (["fit", "c.h5", "--out", "m.h5", "--workers", "-1"], "--workers", "an integer >= 0"),
    (["predict", "c.h5", "--out", "m.h5", "--batch-size", "0"], "--batch-size", "an integer >= 1"),
    (["train", "--data", "t.h5", "--out", "m", "--learning-rate", "nan"], "--learning-rate",
     "a number > 0"),
    (["train", "--data", "t.h5", "--out", "m", "--epochs", "2.5"], "--epochs", "an integer >= 1"),
    (["evaluate", "--data", "t.h5", "--threshold", "1"], "--threshold", "a number > 0 and < 1"),
    (["finetune", "--cube", "c.h5", "--labels", "l.json", "--out", "m", "--fraction", "0"],
     "--fraction", "a number > 0 and < 1"),
    (["mockup", "--out", "c.h5", "--live-time", "-1"], "--live-time", "a number > 0"),
])
def test_numeric_arguments_are_checked_before_anything_runs(argv, flag, wanted, tmp_path,
                                                            monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag}: must be {wanted}" in err
    assert list(tmp_path.iterdir()) == []  # nothing written
