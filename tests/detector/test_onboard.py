"""Few-shot onboarding: a new product type from a handful of good images and a multi-product base."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.data.synth import generate_product
from diffqc.detector import Detector, DetectorError, TrainingDataError, distill_detector, train_detector
from diffqc.detector.onboard import EMBEDDING, initial_weights, onboard_detector, onboarding_config
from diffqc.serving.repository import MODEL_NAME
from diffqc.store.engine import make_engine
from diffqc.store.inspections import active_model_version
from diffqc.store.products import find_product_type
from tests.helpers.models import tiny_config, with_square


@pytest.fixture(scope="module")
def fabric_data(tmp_path_factory):
    """The new product type: 10 good RGB woven-fabric images, 64x64."""
    return generate_product("woven_fabric", tmp_path_factory.mktemp("new"), 10, 4, 4, size=(64, 64), seed=2)


@pytest.fixture(scope="module")
def base_model(pcb_data, tmp_path_factory):
    """A two-product RGB base (PCB and moulded plastic share one network through the class embedding)."""
    plastic = generate_product("moulded_plastic", tmp_path_factory.mktemp("plastic"), 16, 2, 2, size=(64, 64), seed=1)
    torch.set_num_threads(1)
    base = train_detector(
        {"pcb": pcb_data, "moulded_plastic": plastic}, tiny_config(), steps=40, progress=False, log=lambda _m: None
    )
    return base.save(tmp_path_factory.mktemp("base") / "base")


def test_the_new_product_starts_from_the_base_weights_with_the_mean_product_embedding(base_model):
    base = Detector.load(base_model)
    cfg = onboarding_config(base.cfg, "woven_fabric", 5e-4)
    assert cfg.model.products == ["woven_fabric"] and cfg.model.block_out_channels == base.cfg.model.block_out_channels
    assert cfg.train.aligned is None and cfg.map.normalization == "auto"  # measured again on the new images
    model = initial_weights(base, cfg)
    rows = base.model.state_dict()[EMBEDDING]
    assert rows.shape[0] == 2
    assert torch.allclose(model.state_dict()[EMBEDDING], rows.mean(0, keepdim=True))
    name = "unet.conv_in.weight"
    assert torch.equal(model.state_dict()[name], base.model.state_dict()[name])


def test_onboarded_model_is_a_calibrated_artifact_for_the_new_product_that_finds_a_defect(
    base_model, fabric_data, tmp_path
):
    base = Detector.load(base_model)
    detector = onboard_detector(base, fabric_data, steps=30, progress=False, log=lambda _m: None)
    loaded = Detector.load(detector.save(tmp_path / "fabric"))
    assert loaded.product_names == ["woven_fabric"] and loaded.kind == "ddim"
    meta = loaded.metadata
    assert meta["onboarding"]["base_products"] == ["pcb", "moulded_plastic"]
    assert meta["training_data"]["woven_fabric"]["images"] == 10 and meta["training"]["steps"] == 30
    assert loaded.cfg.train.lr == pytest.approx(5e-4)
    good = [read_image(s.path) for s in list_samples(fabric_data, "test") if s.label == 0]
    batch = np.stack([im.transpose(2, 0, 1) for im in good + [with_square(good[0])]])
    score = loaded.predict(batch).score
    assert score[-1] > loaded.threshold() and score[-1] > score[:-1].max() + 1.0


def test_onboarding_refuses_a_known_product_a_student_base_and_other_channels(
    base_model, pcb_data, metal_data, fabric_data
):
    base = Detector.load(base_model)
    with pytest.raises(TrainingDataError, match="already serves product 'pcb'"):
        onboard_detector(base, pcb_data, steps=1, progress=False)
    with pytest.raises(TrainingDataError, match=r"have 1 channel\(s\); the model to fine-tune was trained on 3"):
        onboard_detector(base, metal_data, steps=1, progress=False)  # grayscale metal onto an RGB base
    single = train_detector(fabric_data, tiny_config(), steps=2, progress=False, log=lambda _m: None)
    student = distill_detector(single, steps=1, progress=False, log=lambda _m: None)
    with pytest.raises(DetectorError, match="one-step consistency student"):
        onboard_detector(student, pcb_data, product="new", steps=1, progress=False)


def test_onboard_command_registers_a_new_model_version_for_the_platform(
    base_model, fabric_data, tmp_path, postgres_url
):
    repo = tmp_path / "repo"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "onboard",
            "--base",
            str(base_model),
            "--data",
            str(fabric_data),
            "--out",
            str(tmp_path / "fabric"),
            "--steps",
            "3",
            "--repo",
            str(repo),
            "--database-url",
            postgres_url,
        ],
    )
    assert result.exit_code == 0, result.output
    version = repo / MODEL_NAME / "1"
    served = json.loads((version / "artifacts" / "woven_fabric" / "metadata.json").read_text())
    assert served["products"] == ["woven_fabric"]
    engine = make_engine(postgres_url)
    with Session(engine) as session:
        row = active_model_version(session, "woven_fabric")
        assert row is not None and row.version == "1"
        assert row.threshold == pytest.approx(Detector.load(tmp_path / "fabric").threshold())
        assert find_product_type(session, "woven_fabric").preprocessing["channels"] == 3
    engine.dispose()
    refused = runner.invoke(
        app,
        [
            "onboard",
            "--base",
            str(base_model),
            "--data",
            str(fabric_data),
            "--out",
            str(tmp_path / "again"),
            "--database-url",
            postgres_url,
        ],
    )
    assert refused.exit_code == 2 and "give --repo too" in refused.output


def test_onboard_with_a_dead_database_keeps_the_artifact_and_says_what_failed(base_model, fabric_data, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "onboard",
            "--base",
            str(base_model),
            "--data",
            str(fabric_data),
            "--out",
            str(tmp_path / "fabric"),
            "--steps",
            "2",
            "--repo",
            str(tmp_path / "repo"),
            "--database-url",
            "postgresql+psycopg://diffqc@127.0.0.1:1/diffqc",
        ],
    )
    assert result.exit_code == 1
    assert "publishing it failed: database unavailable" in result.output
    assert Detector.load(tmp_path / "fabric").product_names == ["woven_fabric"]
