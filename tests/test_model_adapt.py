"""`xrf-pigments adapt`: the shipped model finetuned on spectra simulated with an instrument."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from napari_xrf_pigments.cli import main  # noqa: E402
from napari_xrf_pigments.datasets.trainset import TrainingSet  # noqa: E402
from napari_xrf_pigments.model.adapt import learned_labels  # noqa: E402
from napari_xrf_pigments.physics import Instrument  # noqa: E402


def test_a_detectable_model_learns_detectable_labels():
    present = np.array([[True, True], [True, False]])
    detectable = np.array([[True, False], [False, False]])
    top = np.array([[False, True], [True, False]])
    data = TrainingSet(np.ones((2, 8), np.float32), np.arange(8.0), present, top,
                       [("AA", "Alpha"), ("BB", "Beta")], detectable=detectable)
    learned = learned_labels(data, "detectable")
    assert (learned.present == detectable).all()
    assert (learned.top == (top & detectable)).all()  # on top only where it is also seen
    assert learned_labels(data, "present") is data


@pytest.mark.slow
def test_adapt_command_writes_a_finetuned_model_for_the_instrument(tmp_path, capsys):
    instrument = tmp_path / "mo.json"
    Instrument().replace(name="Mo test scanner", tube=Instrument().tube.__class__(
        anode="Mo", voltage_kV=30.0)).save(instrument)
    out = tmp_path / "adapted"
    argv = ["adapt", "--instrument", str(instrument), "--out", str(out), "--n", "80",
            "--epochs", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "before and after finetuning on 64 spectra simulated with Mo test scanner" in printed
    meta = json.loads((out / "metadata.json").read_text())
    training = meta["training"]
    assert training["kind"] == "finetune" and training["labels"]["kind"] == "spectra"
    assert training["labels"]["provenance"]["instrument"]["tube"]["anode"] == "Mo"
    assert meta["name"].endswith("Mo test scanner")
    assert main(argv) == 2 and "--force" in capsys.readouterr().err  # exists
    # A missing instrument file: one line, before any simulation or TensorFlow.
    assert main(["adapt", "--instrument", str(tmp_path / "none.json"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "none.json" in capsys.readouterr().err and not (tmp_path / "x").exists()
