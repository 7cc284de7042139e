"""Every bad input gives a clear error naming the file or the parameter."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.images import read_image, write_image
from diffqc.data.mvtec import DatasetError, list_samples
from diffqc.detector import Detector, InputError, ProductError, TrainingDataError, train_detector
from tests.helpers.models import tiny_config

runner = CliRunner()


def _good(data):
    return read_image(next(s.path for s in list_samples(data, "test") if s.label == 0))


def test_unreadable_image_is_named(metal_model, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = runner.invoke(app, ["detect", "--model", str(metal_model), "--out", str(tmp_path / "o"), str(broken)])
    assert res.exit_code == 2
    assert "broken.png" in res.output and "cannot read image" in res.output


def test_wrong_channel_count_is_named(metal_model, metal_data, tmp_path):
    rgb = write_image(tmp_path / "colour.png", np.repeat(_good(metal_data), 3, axis=2))
    res = runner.invoke(app, ["detect", "--model", str(metal_model), "--out", str(tmp_path / "o"), str(rgb)])
    assert res.exit_code == 2
    assert "colour.png" in res.output and "3 channel(s)" in res.output and "model.channels" in res.output
    with pytest.raises(InputError, match="trained on 1"):
        Detector.load(metal_model).predict(np.zeros((1, 3, 64, 64), np.float32))


def test_image_smaller_than_a_tile(metal_model, tmp_path):
    small = write_image(tmp_path / "small.png", np.full((20, 40, 1), 0.5, np.float32))
    res = runner.invoke(app, ["detect", "--model", str(metal_model), "--out", str(tmp_path / "o"), str(small)])
    assert res.exit_code == 2
    assert "small.png" in res.output and "40x20" in res.output and "train.crop_size" in res.output


def test_values_outside_the_unit_range(metal_model):
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        Detector.load(metal_model).predict(np.full((1, 1, 64, 64), 255.0, np.float32))


def test_empty_training_folder(tmp_path):
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    res = runner.invoke(app, ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "m"), "--steps", "1"])
    assert res.exit_code == 2
    assert "no images" in res.output and "train/good" in res.output.replace("\n", "")
    with pytest.raises(DatasetError, match="missing"):
        train_detector(tmp_path / "nothing", tiny_config(), steps=1, progress=False, log=lambda _m: None)


def test_too_few_training_images(tmp_path):
    from diffqc.data.mvtec import write_sample
    from diffqc.detector import TrainingDataError

    for i in range(3):
        write_sample(tmp_path / "few", "train", "good", f"{i}", np.full((64, 64, 1), 0.5, np.float32))
    with pytest.raises(TrainingDataError, match="need at least 5 good images"):
        train_detector(tmp_path / "few", tiny_config(), steps=1, progress=False, log=lambda _m: None)


def test_model_trained_for_another_product(metal_model, pcb_data, tmp_path):
    res = runner.invoke(app, ["evaluate", "--data", str(pcb_data), "--model", str(metal_model)])
    assert res.exit_code == 2
    assert "'pcb'" in res.output and "brushed_metal" in res.output
    res = runner.invoke(
        app,
        [
            "detect",
            "--model",
            str(metal_model),
            "--out",
            str(tmp_path / "o"),
            "--product",
            "pcb",
            str(tmp_path / "x.png"),
        ],
    )
    assert res.exit_code == 2 and "trained for product type(s) ['brushed_metal']" in res.output
    with pytest.raises(ProductError):
        Detector.load(metal_model).predict(np.zeros((1, 1, 64, 64), np.float32), "pcb")


def test_products_with_different_channel_counts_name_an_image_of_each(metal_data, pcb_data):
    with pytest.raises(TrainingDataError) as info:
        train_detector({"metal": metal_data, "pcb": pcb_data}, tiny_config(), steps=1, progress=False)
    message = str(info.value)
    assert "has 3 channel(s) but" in message and "has 1: one model needs one channel count" in message
    assert str(pcb_data) in message and str(metal_data) in message
