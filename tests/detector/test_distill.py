"""Consistency distillation: the one-step student is an ordinary artifact that keeps the teacher's verdicts."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector import Detector, DetectorError, TrainingDataError, distill_detector
from diffqc.detector.config import ModelConfig
from diffqc.detector.distill import distill_denoiser
from diffqc.detector.fit import load_training_sets, training_sampler
from diffqc.detector.unet import alphas_cumprod, build_denoiser, clean_estimate
from tests.helpers.models import with_square


def test_the_consistency_function_is_the_identity_at_t0_and_the_clean_estimate_above():
    cfg = ModelConfig(channels=1, block_out_channels=(16, 32), consistency=True)
    model = build_denoiser(cfg).eval()
    plain = build_denoiser(ModelConfig(channels=1, block_out_channels=(16, 32)))
    plain.load_state_dict(model.state_dict())  # same weights: the scaling is not a parameter
    acp = alphas_cumprod(cfg).float()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.inference_mode():
        at0 = clean_estimate(model(x, torch.zeros(2, dtype=torch.long)), x, torch.zeros(2, dtype=torch.long), acp)
        t = torch.full((2,), 150)
        student, teacher = (clean_estimate(m(x, t), x, t, acp) for m in (model, plain))
    assert torch.allclose(at0, x, atol=1e-4)
    # At t* the skip term has vanished: the student starts as the teacher's one-step estimate.
    assert torch.allclose(student, teacher, atol=1e-4)


def test_distillation_makes_the_student_consistent_along_the_teachers_trajectories(metal_model, metal_data):
    teacher = Detector.load(metal_model)
    cfg = copy.deepcopy(teacher.cfg)
    cfg.model.consistency = True
    sets = load_training_sets({teacher.product_names[0]: metal_data}, cfg.train)
    sampler = training_sampler(cfg, sets.train_images())
    result = distill_denoiser(teacher.model, cfg, sampler, steps=60, progress=False)
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert result.steps == 60 and result.model.cfg.consistency
    assert last < 0.8 * first, (first, last)


def test_student_artifact_detects_defects_and_loads_as_its_own_kind(metal_model, metal_data, tmp_path):
    teacher = Detector.load(metal_model)
    student = distill_detector(teacher, steps=30, progress=False, log=lambda _m: None)
    path = student.save(tmp_path / "student")
    loaded = Detector.load(path)
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["kind"] == loaded.kind == "consistency" and loaded.cfg.recon.steps == 1
    assert meta["distillation"]["teacher_steps"] == teacher.cfg.recon.steps
    assert loaded.threshold() != teacher.threshold()  # calibrated afresh on the held-out images
    good = [read_image(s.path) for s in list_samples(metal_data, "test") if s.label == 0]
    batch = np.stack([im.transpose(2, 0, 1) for im in good + [with_square(good[0])]])
    score = loaded.predict(batch).score
    assert score[-1] > loaded.threshold() and score[-1] > score[:-1].max() + 1.0


def test_distill_refuses_a_student_and_missing_training_data(metal_model, metal_data, tmp_path):
    teacher = Detector.load(metal_model)
    student = distill_detector(teacher, steps=2, progress=False, log=lambda _m: None)
    with pytest.raises(DetectorError, match="already a one-step consistency student"):
        distill_detector(student, steps=2, progress=False)
    teacher.metadata["training_data"][teacher.product_names[0]]["folder"] = str(tmp_path / "gone")
    with pytest.raises(TrainingDataError, match="is not available; pass --data FOLDER --product"):
        distill_detector(teacher, steps=2, progress=False)
    with pytest.raises(TrainingDataError, match="the teacher has products"):
        distill_detector(teacher, {"bolts": metal_data}, steps=2, progress=False)


def test_distill_command_writes_a_student_that_evaluate_reports_latency_for(metal_model, metal_data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "student"
    result = runner.invoke(
        app,
        [
            "distill",
            "--model",
            str(metal_model),
            "--out",
            str(out),
            "--steps",
            "5",
            "--data",
            str(metal_data),
            "--product",
            Detector.load(metal_model).product_names[0],
        ],
    )
    assert result.exit_code == 0, result.output
    report = tmp_path / "m.json"
    result = runner.invoke(app, ["evaluate", "--data", str(metal_data), "--model", str(out), "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["latency_ms_p50"] > 0
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["model"]["consistency"] = False
    (broken / "config.json").write_text(json.dumps(cfg))
    result = runner.invoke(app, ["evaluate", "--data", str(metal_data), "--model", str(broken)])
    assert result.exit_code == 2 and "says kind 'consistency'" in result.output
