"""Unit checks of the pieces: schedule, noise field, reconstruction, normalization, scores, threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffqc.core.components import fuse_components
from diffqc.core.regions import largest_region_mass
from diffqc.detector.augment import alignment_ratio, anisotropy
from diffqc.detector.calibration import split_holdout
from diffqc.detector.config import DetectorConfig, ModelConfig, ReconConfig
from diffqc.detector.reconstruct import noise_field, reconstruct, timesteps
from diffqc.detector.unet import alphas_cumprod, build_denoiser


def test_ddim_steps_run_from_t_star_to_clean():
    assert timesteps(200, 1) == [(200, -1)]
    assert timesteps(200, 4) == [(200, 150), (150, 100), (100, 50), (50, -1)]


def test_noise_is_a_function_of_absolute_position():
    whole = noise_field(3, 0, 0, 200, 300, seed=5)
    part = noise_field(3, 70, 130, 64, 100, seed=5)
    assert torch.equal(whole[:, 70:134, 130:230], part)
    assert not torch.equal(whole, noise_field(3, 0, 0, 200, 300, seed=6))


def test_full_guidance_reproduces_the_input():
    """With w * (1 - a) = 1 the guided noise equals the true noise: x0 is the input itself."""
    cfg = ModelConfig(channels=1, block_out_channels=(16, 32))
    model = build_denoiser(cfg).eval()
    acp = alphas_cumprod(cfg)
    t = 100
    x = torch.rand(1, 1, 32, 32)
    recon = ReconConfig(t_star=t, steps=1, guidance=1 / (1 - float(acp[t])))
    out = reconstruct(model, x, acp, recon, torch.randn(1, 1, 32, 32))
    assert torch.allclose(out, x, atol=1e-4)


def test_denoiser_accepts_any_size_and_keeps_it():
    cfg = ModelConfig(channels=3, block_out_channels=(16, 32), coord_channels=True)
    model = build_denoiser(cfg).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 37, 50), torch.tensor([5, 9]), torch.zeros(2, 2, 37, 50))
    assert out.shape == (2, 3, 37, 50)


def test_holdout_needs_enough_images():
    rng = np.random.default_rng(0)
    train, held = split_holdout(20, 0.25, 4, rng)
    assert len(held) == 5 and len(train) == 15 and not set(train) & set(held)
    with pytest.raises(ValueError, match="at least 5"):
        split_holdout(4, 0.25, 4, rng)


def test_score_fusion_is_the_weighted_mean_of_the_image_components():
    raw = np.array([[3.0, 2.0, 1.0, 9.0]])
    weights = DetectorConfig().score.weights
    z, score = fuse_components(raw, np.zeros(4), np.ones(4), weights)
    assert z[0, 3] == 0  # process: measured by the platform, not by the detector
    assert score[0] == pytest.approx((0.4 * 3 + 0.3 * 2 + 0.2 * 1) / 0.9)


def test_concentration_picks_the_largest_region():
    amap = np.zeros((50, 50))
    amap[5:8, 5:8] = 2.0  # 9 px * 1.0 excess
    amap[20:30, 20:30] = 1.5  # 100 px * 0.5 excess
    assert largest_region_mass(amap, 1.0) == pytest.approx(50.0)
    assert largest_region_mass(amap, 5.0) == 0.0


def test_alignment_and_isotropy_measures():
    rng = np.random.default_rng(0)
    aligned = [
        np.clip(np.tile(np.linspace(0, 1, 64), (64, 1))[:, :, None] + rng.normal(0, 0.02, (64, 64, 1)), 0, 1)
        for _ in range(8)
    ]
    texture = [rng.random((64, 64, 1)) for _ in range(8)]
    assert alignment_ratio(aligned) > 1 and alignment_ratio(texture) < 0.3
    stripes = [np.tile((np.arange(64) % 4 < 2).astype(float)[:, None], (1, 64))[:, :, None]] * 2
    assert anisotropy(stripes) > 0.9 and anisotropy(texture) < 0.1
