"""Prediction: fast engine = Keras model, chunked cubes (numpy/h5py/dask), errors, cancel."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

pytest.importorskip("keras")

from _model_data import ENERGY, PIGMENTS, make_set, tiny_trained  # noqa: E402

from napari_xrf_pigments.cube import XRFCube  # noqa: E402
from napari_xrf_pigments.errors import (  # noqa: E402
    CalibrationError,
    InvalidDataError,
    OutputExistsError,
)
from napari_xrf_pigments.io.maps import read_maps  # noqa: E402
from napari_xrf_pigments.model.architecture import build_model  # noqa: E402
from napari_xrf_pigments.model.files import PigmentModel, load_model  # noqa: E402
from napari_xrf_pigments.model.predict import predict_cube, predict_to_file  # noqa: E402
from napari_xrf_pigments.model.predictor import Predictor  # noqa: E402
from napari_xrf_pigments.preprocess import Preprocessing, transform, transform_ops  # noqa: E402
from napari_xrf_pigments.progress import run  # noqa: E402


def cube_counts(rows=6, cols=5, seed=2):
    spectra, present, _ = make_set(rows * cols, seed=seed)
    return spectra.reshape(rows, cols, -1), present.reshape(rows, cols, -1)


@pytest.fixture(scope="module")
def model():
    _, path = tiny_trained()
    return load_model(path)


def random_model(n_channels, *, padding="same", kernels=(5, 3, 3, 3, 3)):
    """An untrained network with random batch-norm statistics (negative scales included)."""
    rng = np.random.default_rng(0)
    net = build_model(n_channels, 3, filters=(8, 8, 8, 8, 16), kernel_sizes=kernels,
                      post_filters=16, padding=padding)
    for layer in net.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = (np.asarray(w) for w in layer.get_weights())
            layer.set_weights([rng.uniform(-2, 2, g.shape), rng.normal(size=b.shape),
                               rng.normal(size=m.shape) * 0.1, rng.uniform(0.5, 2, v.shape)])
    grid = 2.8 + 0.02 * np.arange(n_channels)
    return PigmentModel(net, (("A", "a"), ("B", "b"), ("C", "c")), Preprocessing(grid))


def test_graph_transform_matches_the_numpy_transform():
    # The compiled engines preprocess with transform_ops, training with transform: one input.
    import keras

    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.uniform(0, 30, (64, 300))).astype(np.float32)
    counts[0] = 0  # no counts: stays zero
    counts[1] *= 1e5  # ~1e8 counts
    counts[2] = 0
    counts[2, 7] = 1  # a single count
    for ref in (1e5, 2.5e3):
        want = transform(counts, reference_counts=ref)
        got = keras.ops.convert_to_numpy(transform_ops(counts, reference_counts=ref))
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert not got[0].any() and got[2, 7] == 1.0 and np.all(got[1:].max(axis=1) == 1.0)


@pytest.mark.slow  # ~5 s per network: both engines built and run
@pytest.mark.parametrize(
    "n_channels, padding, kernels",
    [(3815, "same", (5, 3, 3, 3, 3)), (203, "same", (5, 3, 3, 3, 3)),
     (203, "valid", (5, 3, 3, 3, 3)), (150, "same", (4, 5, 3, 3, 2))],
)
def test_fast_engine_matches_the_keras_model(n_channels, padding, kernels):
    pm = random_model(n_channels, padding=padding, kernels=kernels)
    rng = np.random.default_rng(1)
    counts = rng.poisson(rng.uniform(0, 30, (37, n_channels))).astype(np.float32)
    pred = Predictor(pm, engine="fast", batch_size=16)
    got = pred.predict_counts(counts)
    assert pred.engine == "fast"
    want = pm.keras_model(pm.preprocessing.transform(counts)[..., None], training=False)
    np.testing.assert_allclose(got["present"], np.asarray(want["present"]), atol=2e-5)
    np.testing.assert_allclose(got["top"], np.asarray(want["top"]), atol=2e-5)
    keras_path = Predictor(pm, engine="keras", batch_size=16).predict_counts(counts)
    np.testing.assert_allclose(keras_path["present"], got["present"], atol=2e-5)


@pytest.mark.slow  # ~4 s
def test_numpy_h5py_and_dask_cubes_give_identical_maps(model, tmp_path):
    import dask.array as da

    counts, _ = cube_counts()
    path = tmp_path / "cube.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("counts", data=counts, chunks=(1, 5, 300))
    results = []
    with h5py.File(path, "r") as f:
        for data in (counts, f["counts"], da.from_array(counts, chunks=(2, 5, 300))):
            cube = XRFCube(data, XRFCube.from_array(counts, energy=ENERGY).energy)
            pred = model.predictor(batch_size=8).predict_cube(cube, rows_per_block=2)
            results.append(run(pred))
    for other in results[1:]:
        for k in ("present", "top"):
            np.testing.assert_array_equal(other.maps[k], results[0].maps[k])
    assert results[0].maps["present"].shape == (6, 5, 4)


@pytest.mark.slow  # ~4 s
def test_maps_find_the_pigments(model):
    counts, present = cube_counts(8, 8, seed=9)
    cube = XRFCube.from_array(counts, energy=ENERGY)
    result = run(predict_cube(cube, model))
    acc = np.mean((result.maps["present"] >= 0.5) == present)
    assert acc > 0.9


def test_cube_on_another_grid_is_resampled(model):
    # Same paint measured on a 20 eV grid with an offset: resampled, not refused.
    energy = 1.0 + 0.02 * np.arange(700)
    from _model_data import spectrum_shape

    expected = 2.0 + 400 * spectrum_shape(energy, 2, sigma=0.09)
    counts = np.random.default_rng(0).poisson(np.tile(expected, (3, 3, 1))).astype(np.uint16)
    result = run(predict_cube(XRFCube.from_array(counts, energy=energy), model))
    assert np.all(result.maps["present"][..., 2] > 0.5)
    assert np.all(result.maps["top"][..., 2] > 0.5)


def test_empty_pixels_get_nan_and_an_empty_cube_is_refused(model):
    counts, _ = cube_counts(2, 3)
    counts[0, 0] = 0
    result = run(predict_cube(XRFCube.from_array(counts, energy=ENERGY), model))
    assert np.all(np.isnan(result.maps["present"][0, 0]))
    assert not np.any(np.isnan(result.maps["present"][1]))
    with pytest.raises(InvalidDataError, match="no counts"):
        run(predict_cube(XRFCube.from_array(np.zeros((2, 2, 300)), energy=ENERGY), model))


def test_bad_cubes_are_refused(model):
    nan = np.full((2, 2, 300), np.nan)
    with pytest.raises(InvalidDataError, match="NaN"):
        run(predict_cube(XRFCube.from_array(nan, energy=ENERGY), model))
    with pytest.raises(CalibrationError, match="not calibrated"):
        run(predict_cube(XRFCube.from_array(np.ones((2, 2, 300))), model))
    with pytest.raises(CalibrationError, match="does not overlap"):
        run(predict_cube(XRFCube.from_array(np.ones((2, 2, 300)), zero=20.0, gain=0.01), model))
    with pytest.raises(InvalidDataError, match="zero-sized"):
        XRFCube.from_array(np.ones((0, 2, 300)), energy=ENERGY)


def test_predict_to_file_layout(model, tmp_path):
    counts, _ = cube_counts(3, 4)
    cube = XRFCube.from_array(counts, energy=ENERGY, source="/data/scan.h5")
    out = run(predict_to_file(cube, tmp_path / "maps.h5", model))
    maps, root = read_maps(out)
    assert list(maps) == ["AA", "BB", "CC", "DD", "AA_top", "BB_top", "CC_top", "DD_top"]
    array, attrs = maps["BB_top"]
    assert array.shape == (3, 4) and array.dtype == np.float32
    assert attrs == {"kind": "pigment", "abbreviation": "BB", "pigment": "Beta", "layer": "top",
                     "unit": "probability", "evidence": "unavailable"}
    assert maps["AA"][1]["layer"] == "any"
    assert root["input_file"] == "/data/scan.h5" and root["model"] == str(model.path)
    assert root["version"] and root["format"] == "napari-xrf-pigments/maps"
    # Its pigments are in no library and it lists no evidence elements: the maps say so.
    assert root["evidence"] == "unavailable" and "evidence is unavailable" in root["warnings"]
    assert read_maps(out, group="raw")[0] == {}
    with pytest.raises(OutputExistsError):
        run(predict_to_file(cube, out, model))


@pytest.mark.slow  # ~4 s
def test_group_columns_write_their_members(tmp_path):
    """A model column standing for a group of pigments gets a map with ``members`` (names)."""
    net = build_model(150, 3, filters=(8, 8, 8, 8, 16), kernel_sizes=(4, 5, 3, 3, 2),
                      post_filters=16)
    group = {"abbreviation": "A+B", "name": "Alpha / beta", "members": ["A", "B"]}
    pm = PigmentModel(net, (("A", "Alpha"), ("B", "Beta"), ("A+B", "Alpha / beta")),
                      Preprocessing(2.8 + 0.02 * np.arange(150)), {"groups": [group]})
    assert pm.groups == {"A+B": ("A", "B")}
    saved = load_model(pm.save(tmp_path / "model"), cache=False)
    assert saved.groups == {"A+B": ("A", "B")}
    cube = XRFCube.from_array(np.ones((2, 3, 300), np.float32), energy=ENERGY)
    maps, _ = read_maps(run(predict_to_file(cube, tmp_path / "maps.h5", saved, evidence=False)))
    assert maps["A+B"][1]["members"] == ["Alpha", "Beta"]
    assert maps["A+B"][1]["pigment"] == "Alpha / beta"
    assert "members" not in maps["A"][1]


@pytest.mark.slow  # ~4 s
def test_cancel_leaves_no_file(model, tmp_path):
    counts, _ = cube_counts(6, 5)
    cube = XRFCube.from_array(counts, energy=ENERGY)
    out = tmp_path / "maps.h5"
    job = predict_to_file(cube, out, model, batch_size=4)
    next(job)
    next(job)
    job.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # ~4 s
def test_requested_batch_size_and_single_spectrum(model):
    spectra, _, _ = make_set(3, seed=1)
    res = model.predictor(batch_size=2).predict_spectra(spectra[0], ENERGY)
    assert res["present"].shape == (1, len(PIGMENTS))
    with pytest.raises(InvalidDataError):
        model.predictor(batch_size=2).predict_counts(np.ones((2, 5)))


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_winograd_matrices_compute_the_correlation(tile):
    from napari_xrf_pigments.model.engine import winograd_matrices

    at, g_mat, bt = winograd_matrices(tile)
    rng = np.random.default_rng(tile)
    d, g = rng.normal(size=tile + 2), rng.normal(size=3)
    want = [d[i : i + 3] @ g for i in range(tile)]
    np.testing.assert_allclose(at @ ((g_mat @ g) * (bt @ d)), want, atol=1e-12)
