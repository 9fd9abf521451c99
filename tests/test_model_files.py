"""Model directories: weights + metadata, safe_mode, cached loading, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("keras")

from _model_data import ENERGY, PIGMENTS, TINY_ARCH, make_set, tiny_trained  # noqa: E402

from napari_xrf_pigments.errors import OutputExistsError  # noqa: E402
from napari_xrf_pigments.model import files  # noqa: E402
from napari_xrf_pigments.model.architecture import build_model  # noqa: E402
from napari_xrf_pigments.model.files import (  # noqa: E402
    ModelFileError,
    PigmentMismatchError,
    load_model,
    read_metadata,
    save_model,
)
from napari_xrf_pigments.preprocess import Preprocessing  # noqa: E402


@pytest.fixture()
def model_dir(tmp_path):
    _, path = tiny_trained()
    copy = tmp_path / "model"
    shutil.copytree(path, copy)
    return copy


def test_round_trip_keeps_weights_and_metadata(model_dir):
    result, _ = tiny_trained()
    model = load_model(model_dir)
    meta = model.metadata
    assert meta["format"] == "napari-xrf-pigments/model"
    assert meta["pigments"][0] == {"abbreviation": "AA", "name": "Alpha"}
    assert meta["outputs"] == ["present", "top"]
    assert meta["preprocessing"]["version"] == 1
    assert meta["training"]["data"]["provenance"]["generator"] == "tests/_model_data.py"
    assert meta["training"]["seed"] == 1
    assert "present" in meta["metrics"] and meta["metrics"]["split"] == "test"
    assert model.abbreviations == ["AA", "BB", "CC", "DD"]
    np.testing.assert_allclose(model.preprocessing.grid, ENERGY[ENERGY >= 2.8 - 1e-9], atol=1e-9)
    x = model.preprocessing(make_set(8, seed=5)[0], ENERGY)[..., None]
    want = result.model.keras_model(x, training=False)
    got = model.keras_model(x, training=False)
    for k in ("present", "top"):
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(want[k]), atol=1e-6)
    # The weights file holds no optimizer state.
    assert (model_dir / "model.keras").stat().st_size < 200_000


def test_loading_is_cached_per_path_and_reloads_changed_files(model_dir):
    a = load_model(model_dir)
    assert load_model(model_dir / "metadata.json") is a
    a.save(model_dir, force=True)
    assert load_model(model_dir) is not a


def test_requested_pigment_list_must_match(model_dir):
    load_model(model_dir, pigments=PIGMENTS)
    with pytest.raises(PigmentMismatchError, match="not in the model: VM"):
        load_model(model_dir, pigments=["AA", "BB", "CC", "VM"])
    with pytest.raises(PigmentMismatchError, match="another order"):
        load_model(model_dir, pigments=["BB", "AA", "CC", "DD"])


def test_missing_metadata_is_refused(model_dir):
    (model_dir / "metadata.json").unlink()
    with pytest.raises(ModelFileError, match="no metadata.json"):
        load_model(model_dir)


def test_metadata_that_contradicts_the_network_is_refused(model_dir):
    meta = json.loads((model_dir / "metadata.json").read_text())
    meta["pigments"] = meta["pigments"][:3]
    (model_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="4 columns for 3 pigments"):
        load_model(model_dir)
    meta = json.loads((model_dir / "metadata.json").read_text())
    del meta["preprocessing"]
    (model_dir / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="preprocessing"):
        read_metadata(model_dir)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelFileError, match="not a model directory"):
        load_model(tmp_path / "file.txt")


def test_safe_mode_refuses_code_in_model_files(model_dir):
    import keras

    inp = keras.Input((280, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    x = keras.layers.Flatten()(x)
    outputs = {
        "present": keras.layers.Dense(4, activation="sigmoid", name="present")(x),
        "top": keras.layers.Dense(4, activation="sigmoid", name="top")(x),
    }
    evil = keras.Model(inp, outputs)
    (model_dir / "model.keras").unlink()
    evil.save(model_dir / "model.keras")
    with pytest.raises(ModelFileError, match="(?i)lambda|unsafe|safe_mode"):
        load_model(model_dir)


def test_save_refuses_overwrite_and_mismatch(tmp_path):
    net = build_model(280, 4, **TINY_ARCH)
    pre = Preprocessing.from_energies(ENERGY)
    path = save_model(tmp_path / "m", net, pigments=PIGMENTS, preprocessing=pre)
    with pytest.raises(OutputExistsError):
        save_model(path, net, pigments=PIGMENTS, preprocessing=pre)
    with pytest.raises(ModelFileError, match="3 pigments"):
        save_model(tmp_path / "m2", net, pigments=PIGMENTS[:3], preprocessing=pre)
    with pytest.raises(ModelFileError, match="energy grid"):
        save_model(tmp_path / "m3", net, pigments=PIGMENTS, preprocessing=Preprocessing.paper())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_no_default_model_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "DEFAULT_MODEL_DIR", tmp_path / "default")
    with pytest.raises(ModelFileError, match="no default pigment model is installed"):
        load_model()
