"""The detector on a chosen device (``Detector.to``), checked on the CPU: every tensor it creates
follows its input's device (what a GPU run relies on), moving it to the CPU changes nothing, and a
placement it cannot run is refused by name. Results on CUDA are tests/gpu/test_gpu.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffqc.data.synth import render_sample
from diffqc.detector.detector import Detector
from diffqc.detector.placement import autocast_dtype, resolve_device

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "diffqc" / "detector" / "default_models"


def _predict(detector: Detector, product: str, size: tuple[int, int]) -> np.ndarray:
    image = render_sample(product, "device", 0, size=size).image.transpose(2, 0, 1)[None].astype(np.float32)
    result = detector.predict(image, product, return_reconstruction=True)
    assert result.reconstruction is not None
    return np.concatenate([result.anomaly_map.ravel(), result.components.ravel(), result.reconstruction.ravel()])


@pytest.mark.parametrize(
    ("product", "size", "tile"),
    [
        ("pcb", (256, 256), 192),  # aligned: coordinate channels, per-pixel statistics, 4 tiles
        ("woven_fabric", (96, 80), None),  # pretrained-feature evidence (perceptual, memory bank)
    ],
)
def test_every_tensor_the_detector_creates_follows_its_input_device(product, size, tile):
    """With torch's default device set to ``meta``, a tensor created without naming its device would
    not be on the CPU, and the run would fail or differ: on a GPU it would be a CPU tensor."""
    detector = Detector.load(DEFAULT_MODELS / product)
    if tile:
        detector.cfg.tile.size, detector.cfg.tile.overlap = tile, 64
    reference = _predict(detector, product, size)  # also builds what is cached per process (backbone)
    torch.set_default_device("meta")
    try:
        placed = _predict(detector, product, size)
    finally:
        torch.set_default_device(None)
    np.testing.assert_array_equal(placed, reference)


def test_moving_to_the_cpu_changes_nothing():
    detector = Detector.load(DEFAULT_MODELS / "brushed_metal")
    before = _predict(detector, "brushed_metal", (64, 96))
    assert detector.to("cpu") is detector and detector.device == torch.device("cpu")
    np.testing.assert_array_equal(_predict(detector, "brushed_metal", (64, 96)), before)


def test_a_placement_the_detector_cannot_run_is_refused_by_name(monkeypatch):
    detector = Detector.load(DEFAULT_MODELS / "brushed_metal")
    with pytest.raises(ValueError, match="precision fp16 is autocast on CUDA"):
        detector.to("cpu", "fp16")
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16; got 'fp64'"):
        detector.to("cpu", "fp64")
    with pytest.raises(ValueError, match="runs on cpu or cuda"):
        detector.to("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        RuntimeError, match="CUDA is not available .* install the CUDA build of torch or use device cpu"
    ):
        resolve_device("cuda:0")
    assert detector.device == torch.device("cpu")  # a refused move leaves it where it was


def test_the_denoiser_precision_is_the_deployments_else_the_artifacts():
    assert autocast_dtype("fp32", artifact_bf16=False) is None
    assert autocast_dtype("fp32", artifact_bf16=True) is torch.bfloat16  # calibrated with bf16: keeps it
    assert autocast_dtype("fp16", artifact_bf16=True) is torch.float16
    assert autocast_dtype("bf16", artifact_bf16=False) is torch.bfloat16
