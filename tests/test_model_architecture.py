"""The paper's network: one builder, 281k parameters at 3815 channels and 11 pigments."""

from __future__ import annotations

from pathlib import Path

import pytest

keras = pytest.importorskip("keras")

from napari_xrf_pigments.model.architecture import (  # noqa: E402
    PAPER_CONFIG,
    PAPER_PARAMETERS,
    build_model,
    build_paper_model,
    compile_model,
)


def test_paper_configuration_has_281k_parameters():
    model = build_paper_model()
    assert model.count_params() == PAPER_PARAMETERS == 281_035
    assert model.input_shape == (None, 3815, 1)
    assert model.output_names == ["present"]
    assert model.get_layer("flatten").output.shape[-1] == 119 * 128
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv1D") == 6 and kinds.count("MaxPooling1D") == 5
    assert [model.get_layer(f"conv{i}").kernel_size[0] for i in range(1, 6)] == [5, 3, 3, 3, 3]
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 6)] == [64, 64, 64, 64, 128]
    assert model.get_layer("lrelu1").negative_slope == pytest.approx(0.01)
    assert model.get_layer("dropout").rate == 0.25


def test_valid_padding_would_not_match_the_paper():
    assert build_paper_model(padding="valid").count_params() == 275_403


def test_top_layer_head_is_a_second_sigmoid_output():
    model = build_model(**{**PAPER_CONFIG, "top_head": True})
    assert model.output_names == ["present", "top"]
    assert model.count_params() == PAPER_PARAMETERS + 15232 * 11 + 11
    assert model.get_layer("top").activation.__name__ == "sigmoid"


def test_compile_uses_adam_and_binary_crossentropy():
    model = compile_model(build_model(64, 3, filters=(4, 4), kernel_sizes=(5, 3), post_filters=4))
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.loss == {"present": "binary_crossentropy", "top": "binary_crossentropy"}


def test_too_short_input_is_refused():
    with pytest.raises(ValueError, match="at least 32"):
        build_model(16, 3)


def test_architecture_is_backend_neutral():
    source = (Path(__file__).parents[1] / "src/napari_xrf_pigments/model/architecture.py").read_text()
    assert "tensorflow" not in source and "tf." not in source
