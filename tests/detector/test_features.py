"""Evidence in the pretrained feature space: PatchCore's memory bank and the perceptual distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.data.synth import generate_product
from diffqc.detector.baselines import PatchCore
from diffqc.detector.features import MemoryBank, PositionGaussian, greedy_coreset, perceptual_distance
from tests.helpers.models import with_square


def test_the_coreset_covers_the_points_it_thins():
    points = torch.cat([torch.randn(200, 16) + 10 * k for k in range(5)])  # five far-apart clusters
    chosen = greedy_coreset(points, 0.02)
    assert len(chosen) == 20 and len(set(chosen.tolist())) == 20
    assert {int(i) // 200 for i in chosen} == {0, 1, 2, 3, 4}  # every cluster keeps a representative
    bank = MemoryBank(points[chosen])
    assert float(bank.distance(points.T.reshape(1, 16, 1000, 1)).max()) < float(torch.cdist(points, points).max())


def test_an_image_is_perceptually_identical_to_itself_and_not_to_a_damaged_copy():
    x = torch.rand(1, 3, 64, 64)
    damaged = x.clone()
    damaged[:, :, 24:40, 24:40] = 0
    assert float(perceptual_distance(x, x).abs().max()) < 1e-6
    d = perceptual_distance(x, damaged)[0, 0]
    assert d.shape == (64, 64) and float(d[32, 32]) > 3 * float(d[2, 2])


def test_patchcore_scores_an_obvious_defect_far_above_good_parts(tmp_path):
    root = generate_product("brushed_metal", tmp_path, 12, 4, 0, size=(64, 64), seed=3)
    good_train = [read_image(p) for p in sorted((root / "train" / "good").glob("*.png"))]
    good_test = [read_image(s.path) for s in list_samples(root, "test") if s.label == 0]
    model = PatchCore().fit(good_train)
    good = [float(model.map(im).max()) for im in good_test]
    bad = [float(model.map(with_square(im)).max()) for im in good_test]
    assert min(bad) > 1.5 * max(good), (good, bad)
    assert np.isfinite(good).all()


def test_a_detector_with_feature_evidence_finds_a_square_and_records_its_backbone(metal_data, tmp_path):
    from diffqc.detector.backbone import installed_identity
    from diffqc.detector.detector import Detector
    from diffqc.detector.fit import train_detector
    from tests.helpers.models import tiny_config

    cfg = tiny_config().with_overrides({"map": {"features": True, "memory_max_patches": 2000}})
    detector = train_detector(metal_data, cfg, steps=20, progress=False, log=lambda _m: None)
    assert detector.products[detector.product_names[0]].good.tensors["memory_bank"].shape[1] == 152
    path = detector.save(tmp_path / "model")
    loaded = Detector.load(path)
    assert loaded.metadata["backbone"]["sha256"] == installed_identity().sha256
    assert loaded.metadata["map_components"][-2:] == ["perceptual", "memory"]
    goods = [read_image(s.path) for s in list_samples(metal_data, "test") if s.label == 0]
    batch = np.stack([g.transpose(2, 0, 1) for g in goods])
    damaged = np.stack([with_square(g, 1.0).transpose(2, 0, 1) for g in goods])
    good_scores, bad_scores = loaded.predict(batch).score, loaded.predict(damaged).score
    assert bad_scores.min() > good_scores.max(), (good_scores, bad_scores)


def test_a_model_calibrated_in_another_feature_space_is_refused(metal_data, tmp_path):
    import json

    from diffqc.core.errors import ArtifactError
    from diffqc.detector.detector import Detector
    from diffqc.detector.fit import train_detector
    from tests.helpers.models import tiny_config

    cfg = tiny_config().with_overrides({"map": {"features": True, "memory_max_patches": 500}})
    path = train_detector(metal_data, cfg, steps=2, progress=False, log=lambda _m: None).save(tmp_path / "m")
    meta = json.loads((path / "metadata.json").read_text())
    meta["backbone"]["sha256"] = "0" * 64
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="calibrated on backbone efficientnet_lite0"):
        Detector.load(path)


def test_learned_fusion_picks_weights_on_synthetic_anomalies_and_keeps_them(metal_data, tmp_path):
    from diffqc.detector.detector import Detector
    from diffqc.detector.fit import train_detector
    from tests.helpers.models import tiny_config

    overrides = {"map": {"features": True, "fusion": "learned", "memory_max_patches": 2000}}
    detector = train_detector(
        metal_data, tiny_config().with_overrides(overrides), steps=20, progress=False, log=lambda _m: None
    )
    cal = detector.products[detector.product_names[0]].calibration
    assert cal.map_weights is not None and set(cal.map_weights) == set(detector.cfg.map.components)
    assert cal.synthetic_auroc is not None and cal.synthetic_auroc > 0.5
    loaded = Detector.load(detector.save(tmp_path / "m"))
    assert loaded.products[loaded.product_names[0]].calibration.map_weights == cal.map_weights


def test_synthetic_anomalies_change_a_small_connected_part_of_each_image():
    from diffqc.detector.synthetic import synthetic_anomalies

    goods = [np.random.default_rng(i).random((64, 64, 3)).astype(np.float32) * 0.2 + 0.4 for i in range(8)]
    anomalies = synthetic_anomalies(goods)
    assert len(anomalies) == 2 * len(goods)  # an obvious and a subtle one per image
    for good, bad in zip(goods + goods, anomalies, strict=True):
        changed = np.abs(bad - good).max(axis=2) > 0.05
        assert bad.shape == good.shape and bad.dtype == good.dtype and 0 < changed.mean() < 0.2
    subtle = [np.abs(b - g).max(axis=2) > 0.05 for g, b in zip(goods, anomalies[len(goods) :], strict=True)]
    assert np.mean([m.mean() for m in subtle]) < np.mean(
        [(np.abs(b - g).max(axis=2) > 0.05).mean() for g, b in zip(goods, anomalies[: len(goods)], strict=True)]
    )


def test_learned_fusion_keeps_the_configured_weights_unless_a_candidate_is_clearly_better():
    from diffqc.detector.anomaly_map import Normalizer, learn_weights
    from diffqc.detector.config import MapConfig

    cfg = MapConfig(features=True)
    k = len(cfg.components)
    mean, std = torch.zeros(k, 1, 1), torch.ones(k, 1, 1)
    normalizer = Normalizer(mean, std)
    rng = torch.Generator().manual_seed(0)
    good = [torch.rand(30, k, 16, 16, generator=rng)]
    # Every component sees the anomalies equally: no candidate can be clearly better than the configured mix.
    same = good[0].clone()
    same[:, :, 8, 8] += 2.0
    weights, _ = learn_weights(good, [same], normalizer, cfg)
    assert weights == dict(cfg.weights)
    # Only the memory component sees them: the candidate that looks at it alone wins.
    only_memory = good[0].clone()
    only_memory[:, cfg.components.index("memory"), 6:8, 6:8] += 2.0
    weights, auroc = learn_weights(good, [only_memory], normalizer, cfg)
    assert weights == {n: float(n == "memory") for n in cfg.components} and auroc > 0.95


def test_the_position_gaussian_flags_a_patch_that_is_good_elsewhere_but_not_at_its_place():
    # Aligned parts: a solder pad's features are normal on a pad and anomalous on bare board.
    rng = torch.Generator().manual_seed(0)
    layout = torch.randn(8, 6, 6, generator=rng) * 3  # each position has its own good feature
    goods = [layout + 0.1 * torch.randn(20, 8, 6, 6, generator=rng)]
    gaussian = PositionGaussian.fit(goods)
    part = layout + 0.1 * torch.randn(1, 8, 6, 6, generator=rng)
    moved = part.clone()
    moved[0, :, 2, 3] = layout[:, 4, 1]  # a good feature, at the wrong place
    good_map, moved_map = gaussian.distance(part)[0, 0], gaussian.distance(moved)[0, 0]
    assert float(moved_map[2, 3]) > 10 * float(good_map.max())
    # PatchCore's memory of every good patch would not see it: the moved patch is one of them.
    assert float(MemoryBank(goods[0].permute(0, 2, 3, 1).reshape(-1, 8)).distance(moved)[0, 0, 2, 3]) < 0.5


def test_the_position_gaussian_follows_a_tile_and_refuses_another_size():
    gaussian = PositionGaussian(torch.arange(4 * 4, dtype=torch.float32).view(1, 4, 4), torch.eye(1))
    tile = torch.arange(4 * 4, dtype=torch.float32).view(1, 1, 4, 4)[:, :, 2:4, 1:3]
    assert float(gaussian.distance(tile, window=(16, 8, 16, 16)).abs().max()) == 0.0  # pixels -> patches of 8
    with pytest.raises(ValueError, match="aligned parts must come at the size they were trained at"):
        gaussian.distance(torch.zeros(1, 1, 5, 4))


def test_an_aligned_part_keeps_a_position_gaussian_and_finds_a_square(tmp_path):
    from diffqc.detector.detector import Detector
    from diffqc.detector.fit import train_detector
    from tests.helpers.models import tiny_config

    root = generate_product("pcb", tmp_path / "data", 24, 4, 0, size=(64, 64), seed=1)
    cfg = tiny_config().with_overrides({"map": {"features": True, "normalization": "pixel"}})
    detector = train_detector(root, cfg, steps=20, progress=False, log=lambda _m: None)
    good = detector.products[detector.product_names[0]].good
    assert good.tensors["position_mean"].shape == (152, 8, 8) and "memory_bank" not in good.tensors
    loaded = Detector.load(detector.save(tmp_path / "model"))
    goods = [read_image(s.path) for s in list_samples(root, "test") if s.label == 0]
    batch = np.stack([g.transpose(2, 0, 1) for g in goods])
    damaged = np.stack([with_square(g, 1.0).transpose(2, 0, 1) for g in goods])
    assert loaded.predict(damaged).score.min() > loaded.predict(batch).score.max()
