"""A full camera frame (4096x3000) through ``Detector.predict`` in one call: its tiles go through the
network in batches of ``tile.batch``, and the call's peak memory stays within a few frames' worth.

The detector is built here, untrained (random weights of a narrow 4-level UNet, per-pixel statistics
of the frame's size): what is tested is tiling, batching, stitching and memory, which do not depend
on what the weights learned, and a trained model of this size would cost minutes on 2 cores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from diffqc.core.tiles import tile_windows
from diffqc.detector.anomaly_map import Normalizer
from diffqc.detector.calibration import Calibration
from diffqc.detector.config import DetectorConfig
from diffqc.detector.detector import Detector, ProductState
from diffqc.detector.good_stats import PIXEL, GoodStatistics
from diffqc.detector.unet import build_denoiser

HEIGHT, WIDTH = 3000, 4096
FRAME_BYTES = HEIGHT * WIDTH * 4  # one float32 channel
# What one call may hold at its peak beyond what was resident before it, in frames. Measured 8.2-8.6
# on one thread: the stitched maps and their weight (3), a batch of 8 tiles in flight (~2.5) and the
# first call's allocations inside torch (~3). Keeping every tile's output, or running the whole
# frame through the network at once, would exceed it.
PEAK_FRAMES = 10
STATUS = Path("/proc/self/status")  # Linux: the process's resident memory and its peak


def _frame_detector() -> Detector:
    cfg = DetectorConfig().with_overrides(
        {
            "model": {"channels": 1, "patch_size": 4, "block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4},
            "recon": {"steps": 1},
            "tile": {"size": 512, "overlap": 64, "batch": 8},
        }
    )
    torch.manual_seed(0)
    good = GoodStatistics(
        PIXEL, {"mu": torch.full((1, HEIGHT, WIDTH), 0.5), "sigma": torch.full((1, HEIGHT, WIDTH), 0.1)}
    )
    k = len(cfg.map.components)
    state = ProductState(good, Normalizer(torch.zeros(k, 1, 1), torch.ones(k, 1, 1)), Calibration(region_level=3.0))
    state.image_size = (HEIGHT, WIDTH)
    return Detector(cfg, build_denoiser(cfg.model), {"default": state})


def _memory_mib(field: str) -> float:
    line = next(line for line in STATUS.read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def test_a_4096x3000_frame_goes_through_in_one_call_with_batched_tiles_and_bounded_memory():
    detector = _frame_detector()
    frame = np.random.default_rng(0).normal(0.5, 0.05, (1, 1, HEIGHT, WIDTH)).clip(0, 1).astype(np.float32)
    batches: list[int] = []
    detector.model.register_forward_pre_hook(lambda _module, args: batches.append(args[0].shape[0]))

    Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to what is resident now
    before = _memory_mib("VmRSS")
    result = detector.predict(frame)
    peak = _memory_mib("VmHWM") - before

    assert result.anomaly_map.shape == (1, 1, HEIGHT, WIDTH) and result.score.shape == (1,)
    assert np.isfinite(result.anomaly_map).all() and np.isfinite(result.components).all()
    tiles = len(tile_windows(HEIGHT, WIDTH, 512, 64))
    assert batches == [8] * (tiles // 8) + ([tiles % 8] if tiles % 8 else []), "tiles must go in batches"
    assert math.ceil(tiles / 8) == len(batches) < tiles
    assert peak < PEAK_FRAMES * FRAME_BYTES / 2**20, f"peak {peak:.0f} MiB for a {FRAME_BYTES / 2**20:.0f} MiB frame"
