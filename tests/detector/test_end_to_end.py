"""Train, evaluate and detect from the command line; an obvious defect scores far above good parts."""

from __future__ import annotations

import json

import numpy as np
import yaml
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.data.images import read_image, write_image
from diffqc.data.mvtec import list_samples
from diffqc.detector import Detector, Prediction
from tests.helpers.models import TINY, with_square

runner = CliRunner()


def test_train_evaluate_detect(pcb_data, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    model = tmp_path / "model"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(pcb_data),
            "--out",
            str(model),
            "--steps",
            "40",
            "--seed",
            "3",
            "--config",
            str(config),
            "--threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    det = Detector.load(model)
    assert det.product_names == ["pcb"] and det.cfg.train.aligned and det.cfg.model.coord_channels

    report = tmp_path / "eval.json"
    res = runner.invoke(app, ["evaluate", "--data", str(pcb_data), "--model", str(model), "--json", str(report)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(report.read_text())
    assert {
        "image_auroc",
        "pixel_auroc",
        "pro",
        "f1_max",
        "recall_at_fpr_3pct",
        "fpr_at_recall_98pct",
        "latency_ms_p50",
    } <= set(metrics)
    assert metrics["latency_ms_p50"] > 0

    goods = [s.path for s in list_samples(pcb_data, "test") if s.label == 0]
    defect = write_image(tmp_path / "in" / "square.png", with_square(read_image(goods[0]), value=0.0))
    out = tmp_path / "out"
    res = runner.invoke(app, ["detect", "--model", str(model), "--out", str(out), str(defect), *map(str, goods)])
    assert res.exit_code == 0, res.output
    results = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(results) == 1 + len(goods)
    for r in results.values():
        assert {"image", "score", "threshold", "verdict", "regions", "components"} <= set(r)
        assert (out / f"{r['image'].rsplit('/', 1)[-1].rsplit('.', 1)[0]}_heatmap.png").is_file()
    square = results["square"]
    good_scores = [results[p.stem]["score"] for p in goods]
    assert square["verdict"] == "defect"
    assert square["score"] > max(good_scores) + 3 * (np.std(good_scores) + 1.0)
    # The strongest region is where the square is.
    x0, y0, x1, y1 = square["regions"][0]["bbox"]
    assert x0 <= 32 <= x1 and y0 <= 32 <= y1


def test_predict_contract(metal_model, metal_data):
    """What Triton's model.py relies on: shapes, dtypes and the component order."""
    det = Detector.load(metal_model)
    x = np.stack([read_image(s.path).transpose(2, 0, 1) for s in list_samples(metal_data, "test")[:2]])
    result = det.predict(x, "default")
    assert isinstance(result, Prediction) and len(result) == 2
    amap, comps, score = result.anomaly_map, result.components, result.score
    assert amap.shape == (2, 1, 64, 64) and amap.dtype == np.float32
    assert comps.shape == (2, 4) and comps.dtype == np.float32
    assert score.shape == (2,) and score.dtype == np.float32
    assert result.reconstruction is None  # only when asked for
    assert det.component_names == ("pixel", "structural", "concentration", "process")
    assert np.all(comps[:, 3] == 0)  # no process parameters given: component reported as 0
    assert result.component_dict(1) == dict(zip(det.component_names, comps[1].tolist(), strict=True))
    again = det.predict(x, "brushed_metal")
    np.testing.assert_array_equal(score, again.score)  # deterministic


def test_predict_returns_the_reconstruction_when_asked_without_changing_the_rest(metal_model, metal_data):
    det = Detector.load(metal_model)
    x = np.stack([read_image(s.path).transpose(2, 0, 1) for s in list_samples(metal_data, "test")[:2]])
    plain = det.predict(x)
    result = det.predict(x, return_reconstruction=True)
    recon = result.reconstruction
    assert recon is not None and recon.shape == x.shape == (2, 1, 64, 64) and recon.dtype == np.float32
    assert recon.min() >= 0 and recon.max() <= 1
    assert np.abs(recon - x).mean() < 0.2  # a good-looking version of the input, not noise
    for name in ("anomaly_map", "components", "score"):
        np.testing.assert_array_equal(getattr(result, name), getattr(plain, name))


def test_obvious_defect_on_a_texture_scores_far_above_good_parts(metal_model, metal_data):
    det = Detector.load(metal_model)
    goods = [read_image(s.path) for s in list_samples(metal_data, "test") if s.label == 0]
    x = np.stack([with_square(goods[0], 1.0), *goods]).transpose(0, 3, 1, 2)
    result = det.predict(x)
    amap, score = result.anomaly_map, result.score
    assert score[0] > det.threshold() and score[0] > score[1:].max() + 3
    assert amap[0, 0, 32, 32] > amap[0, 0, 5, 5]


def test_evaluate_without_masks_reports_image_metrics(metal_model, metal_data, tmp_path):
    import shutil

    data = tmp_path / "brushed_metal"
    shutil.copytree(metal_data, data)
    shutil.rmtree(data / "ground_truth")
    report = tmp_path / "eval.json"
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--model", str(metal_model), "--json", str(report)])
    assert res.exit_code == 0, res.output
    metrics = json.loads(report.read_text())
    assert metrics["image_auroc"] is not None and metrics["pixel_auroc"] is None and metrics["pro"] is None
    assert "no defect masks" in res.output


def test_f1_calibration_is_stored_in_the_artifact(metal_model, metal_data, tmp_path):
    import shutil

    model = shutil.copytree(metal_model, tmp_path / "m")
    res = runner.invoke(app, ["evaluate", "--data", str(metal_data), "--model", str(model), "--calibrate-f1"])
    assert res.exit_code == 0, res.output
    thresholds = json.loads((model / "thresholds.json").read_text())
    assert thresholds["brushed_metal"]["method"] == "f1_max"
    assert Detector.load(model).threshold() == thresholds["brushed_metal"]["threshold"]


def test_bf16_reconstruction_keeps_float32_outputs_and_nearly_the_same_scores(metal_model, metal_data):
    detector = Detector.load(metal_model)
    images = [read_image(s.path) for s in list_samples(metal_data, "test")]
    batch = np.stack([im.transpose(2, 0, 1) for im in images])
    score32 = detector.predict(batch).score
    detector.cfg.recon.bf16 = True
    result16 = detector.predict(batch)
    amap16, score16 = result16.anomaly_map, result16.score
    assert amap16.dtype == score16.dtype == np.float32
    assert not np.array_equal(score16, score32)  # it did run in the other precision
    tolerance = 0.25
    np.testing.assert_allclose(score16, score32, atol=tolerance)
    # A part whose score is within the precision's error of the threshold may fall either side; no other may.
    clear = np.abs(score32 - detector.threshold()) > tolerance
    assert clear.sum() >= len(score32) // 2
    assert detector.verdicts(score16[clear]) == detector.verdicts(score32[clear])
