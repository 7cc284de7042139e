"""Adaptive augmentation: valid augmentations whose strength follows the measured overfitting gap."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffqc.detector import train_detector
from diffqc.detector.augment import ADA_SHIFT_PX, Augment, CropSampler
from diffqc.detector.fit import held_out_sets, load_training_sets, resolve_config, training_sampler
from diffqc.detector.train import OverfitProbe, train_denoiser
from diffqc.detector.unet import alphas_cumprod, build_denoiser
from tests.helpers.models import tiny_config

ALIGNED = Augment(crop=32, hflip=False, vflip=False, rot90=False, brightness=0.0, contrast=0.0, coords=True, ada=True)


def _images(n: int = 3, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((size, size, 3), dtype=np.float32) for _ in range(n)]


def test_at_p0_the_sampler_draws_exactly_the_crops_of_training_without_adaptive_augmentation():
    images = {0: _images()}
    plain = CropSampler(images, replace(ALIGNED, ada=False), np.random.default_rng(5)).sample(8)
    adaptive = CropSampler(images, ALIGNED, np.random.default_rng(5)).sample(8)
    for a, b in zip(plain, adaptive, strict=True):
        assert torch.equal(a, b)


def test_aligned_parts_are_only_shifted_within_the_jig_tolerance_never_zoomed():
    image = _images(1)[0]
    sampler = CropSampler({0: [image]}, ALIGNED, np.random.default_rng(1))
    sampler.p = 1.0
    shifts = set()
    for _ in range(40):
        crop = sampler._adaptive_crop(image, 16, 16)
        matches = [
            (dy, dx)
            for dy in range(-ADA_SHIFT_PX, ADA_SHIFT_PX + 1)
            for dx in range(-ADA_SHIFT_PX, ADA_SHIFT_PX + 1)
            if np.array_equal(crop, image[16 + dy : 48 + dy, 16 + dx : 48 + dx])
        ]
        assert matches, "an aligned crop must be a window of the image near its nominal position"
        shifts.add(matches[0])
    assert len(shifts) > 5  # it does move


def test_texture_crops_are_zoomed_and_every_adaptive_crop_stays_a_valid_image():
    image = _images(1, size=96)[0]
    sampler = CropSampler({0: [image]}, replace(ALIGNED, coords=False), np.random.default_rng(2))
    sampler.p = 1.0
    x, coords, _ = sampler.sample(16)
    assert coords is None and x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    windows = np.lib.stride_tricks.sliding_window_view(image, (32, 32, 3)).reshape(-1, 32, 32, 3)
    crops = [sampler._adaptive_crop(image, 20, 20) for _ in range(20)]
    assert all(c.shape == (32, 32, 3) for c in crops)
    rescaled = sum(not (np.abs(windows - c).max(axis=(1, 2, 3)) < 1e-6).any() for c in crops)
    assert rescaled >= 15  # zoomed: no longer a window of the image (unless the drawn scale rounds to 1)
    # The photometric group changes values but keeps them in [0, 1].
    out = sampler._adaptive_photometric(image[:32, :32].copy())
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, image[:32, :32])


def test_the_probe_pairs_its_crops_and_sees_a_model_memorize_its_training_image():
    cfg = tiny_config()
    cfg.model.channels = 1
    rng = np.random.default_rng(0)
    noise_images = [rng.random((64, 64, 1), dtype=np.float32) for _ in range(5)]  # only memory can denoise these
    sampler = CropSampler({0: noise_images[:1]}, replace(ALIGNED, coords=False, ada=False), np.random.default_rng(1))
    holdout = {0: noise_images[1:]}
    probe = OverfitProbe(sampler, holdout, alphas_cumprod(cfg.model).float(), 300, seed=0)
    (train_x, _, train_y), (held_x, _, held_y) = probe.batches
    assert torch.equal(train_y, held_y) and train_x.shape == held_x.shape and not torch.equal(train_x, held_x)
    fresh = probe.gap(build_denoiser(cfg.model).eval())
    trained = train_denoiser(cfg, sampler, holdout=holdout, steps=150, progress=False).gap
    assert trained > fresh + 0.015, (fresh, trained)


def test_p_rises_while_the_gap_exceeds_the_target_and_stays_at_zero_otherwise(metal_data):
    cfg = tiny_config()
    sets = load_training_sets({"metal": metal_data}, cfg.train)
    train_sets = sets.train_images()
    assert list(train_sets) == ["metal"] and len(train_sets["metal"]) == len(sets.splits["metal"].train)
    resolve_config(cfg, train_sets, sets.channels)
    assert cfg.train.ada  # 12 training images: on by default
    courses = {}
    for target in (-1.0, 10.0):  # a gap is always above -1 and never above 10
        cfg.train.ada_target, cfg.train.ada_interval, cfg.train.ada_speed = target, 2, 0.1
        sampler = training_sampler(cfg, train_sets)
        result = train_denoiser(cfg, sampler, holdout=held_out_sets(sets.images, sets.splits), steps=13, progress=False)
        courses[target] = [a.p for a in result.ada]
        assert result.gap is not None
    assert courses[-1.0] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert courses[10.0] == [0.0] * 6


def test_the_artifact_records_the_overfitting_gap_and_the_augmentation_course(metal_data, tmp_path):
    detector = train_detector(
        metal_data,
        tiny_config().with_overrides({"train": {"ada_interval": 4}}),
        steps=20,
        progress=False,
        log=lambda _m: None,
    )
    meta = json.loads((detector.save(tmp_path / "m") / "metadata.json").read_text())
    training = meta["training"]
    assert isinstance(training["overfitting_gap"], float)
    assert [s for s, _, _ in training["ada"]["course"]] == [4, 8, 12, 16]
    assert 0.0 <= training["ada"]["final_p"] <= 1.0
    large = tiny_config().with_overrides({"train": {"ada": False}})
    off = train_detector(metal_data, large, steps=2, progress=False, log=lambda _m: None)
    assert off.cfg.train.ada is False and off.metadata["training"]["ada"] is None
