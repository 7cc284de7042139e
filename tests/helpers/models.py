"""Tiny detectors on tiny procedural data sets: trained in seconds on one core, with the real
structure (patching, coordinates, tiling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffqc.data.synth import generate_product
from diffqc.detector.config import DetectorConfig
from diffqc.detector.fit import train_detector

TINY_PRODUCT = "pcb"
TINY = {
    "model": {"block_out_channels": [16, 32], "norm_num_groups": 8},
    "train": {"crop_size": 32, "batch_size": 8, "warmup_steps": 5},
    "recon": {"steps": 2, "t_star": 150},
}


def tiny_config() -> DetectorConfig:
    return DetectorConfig().with_overrides(TINY)


def train_tiny(product: str, root: Path) -> tuple[Path, Path]:
    """A detector trained for seconds on 64x64 synthetic images of ``product``: (artifact dir, its data set)."""
    data = generate_product(product, root / "data", n_train=14, n_test_good=2, n_test_defect=2, size=(64, 64), seed=1)
    cfg = DetectorConfig()
    cfg.model.block_out_channels = (16, 32)
    cfg.train.crop_size, cfg.train.batch_size = 32, 8
    torch.manual_seed(0)
    detector = train_detector({product: data}, cfg, steps=3, progress=False, log=lambda _m: None)
    return detector.save(root / "model"), data


def with_square(image: np.ndarray, value: float = 0.0, size: int = 14) -> np.ndarray:
    """An obvious defect: a filled square in the middle of the image."""
    out = image.copy()
    h, w = out.shape[:2]
    out[h // 2 - size // 2 : h // 2 + size // 2, w // 2 - size // 2 : w // 2 + size // 2] = value
    return out
