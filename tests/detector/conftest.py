"""Tiny detectors on tiny procedural data sets: every test here runs in seconds on one core."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffqc.data.synth import generate_product
from diffqc.detector.config import DetectorConfig

# Small enough to train in a few seconds; the structure (patching, coords, tiling) is the real one.
TINY = {
    "model": {"block_out_channels": [16, 32], "norm_num_groups": 8},
    "train": {"crop_size": 32, "batch_size": 8, "warmup_steps": 5},
    "recon": {"steps": 2, "t_star": 150},
}


def tiny_config() -> DetectorConfig:
    return DetectorConfig().with_overrides(TINY)


@pytest.fixture(autouse=True)
def _one_thread():
    # Other work shares the machine's two cores; tiny models gain nothing from more threads.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def metal_data(tmp_path_factory):
    """Grayscale brushed metal (a texture: not aligned), 64x64."""
    return generate_product("brushed_metal", tmp_path_factory.mktemp("data"), 16, 4, 4, size=(64, 64), seed=1)


@pytest.fixture(scope="session")
def pcb_data(tmp_path_factory):
    """RGB PCB in a jig (aligned), 64x64."""
    return generate_product("pcb", tmp_path_factory.mktemp("data"), 16, 4, 4, size=(64, 64), seed=1)


@pytest.fixture(scope="session")
def metal_model(metal_data, tmp_path_factory):
    from diffqc.detector.fit import train_detector

    torch.set_num_threads(1)
    detector = train_detector(metal_data, tiny_config(), steps=40, progress=False, log=lambda _m: None)
    return detector.save(tmp_path_factory.mktemp("models") / "metal")


def with_square(image: np.ndarray, value: float = 0.0, size: int = 14) -> np.ndarray:
    """An obvious defect: a filled square in the middle of the image."""
    out = image.copy()
    h, w = out.shape[:2]
    out[h // 2 - size // 2 : h // 2 + size // 2, w // 2 - size // 2 : w // 2 + size // 2] = value
    return out
