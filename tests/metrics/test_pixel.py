"""Pixel AUROC and PRO: against scikit-learn, a hand-computed PRO, and a brute-force PRO."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from diffqc.metrics import pixel_auroc, pro_curve, pro_score

MASK = np.array(
    [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=bool
)  # region A: 2 pixels, region B: 1 pixel; 13 good pixels
MAP = np.array([[0.9, 0.5, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.8], [0.1, 0.1, 0.1, 0.6]])


def test_pro_by_hand():
    # thresholds 0.9: A half found (PRO 0.25); 0.8: B found (0.75); 0.6: one false positive (FPR 1/13);
    # 0.5: A complete (PRO 1); 0.1: everything (FPR 1).
    fpr, pro = pro_curve([MAP], [MASK])
    assert np.allclose(fpr, [0, 0, 0, 1 / 13, 1 / 13, 1])
    assert np.allclose(pro, [0, 0.25, 0.75, 0.75, 1, 1])
    # area up to FPR 0.3: 0.75 on [0, 1/13], then 1 on [1/13, 0.3]; normalised by 0.3
    assert pro_score([MAP], [MASK]) == pytest.approx((0.75 / 13 + (0.3 - 1 / 13)) / 0.3)
    assert pro_score([MAP], [MASK], max_fpr=0.05) == pytest.approx(0.75)  # cut inside the first step


def test_regions_weigh_equally_whatever_their_size():
    mask = np.zeros((20, 20), bool)
    mask[0:10, 0:10] = True  # a large region, found
    mask[15, 15] = True  # a one-pixel region, missed: scored below every good pixel
    amap = mask.astype(float)
    amap[15, 15] = -1.0
    assert pro_score([amap], [mask]) == pytest.approx(0.5, abs=0.01)  # pixel AUROC would say ~0.99
    assert pixel_auroc([amap], [mask]) > 0.99


def test_diagonal_pixels_form_one_region():
    mask = np.eye(3, dtype=bool)
    amap = np.zeros((3, 3))
    amap[0, 0] = 1.0
    fpr, pro = pro_curve([amap], [mask])
    assert pro[1] == pytest.approx(1 / 3)  # one region of 3 pixels, not three regions


def _brute_force_pro(maps, masks, max_fpr):
    scores = np.concatenate([m.ravel() for m in maps])
    good = np.concatenate([~k.ravel() for k in masks])
    regions = []
    offset = 0
    for amap, mask in zip(maps, masks, strict=True):
        lab, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [offset + np.flatnonzero(lab.ravel() == i) for i in range(1, n + 1)]
        offset += amap.size
    xs, ys = [0.0], [0.0]
    for t in np.unique(scores)[::-1]:
        xs.append((scores[good] >= t).mean())
        ys.append(np.mean([(scores[r] >= t).mean() for r in regions]))
    xs, ys = np.array(xs), np.array(ys)
    fine = np.linspace(0, max_fpr, 20001)
    # the curve is piecewise linear in FPR; where it jumps at one FPR take the last (highest) value
    keep = np.r_[np.diff(xs) > 0, True]
    return np.trapz(np.interp(fine, xs[keep], ys[keep]), fine) / max_fpr


@pytest.mark.parametrize("max_fpr", [0.3, 0.05, 1.0])
def test_pro_matches_brute_force_with_ties(max_fpr):
    rng = np.random.default_rng(3)
    masks = [ndimage.binary_dilation(rng.random((24, 24)) > 0.985, iterations=1) for _ in range(4)]
    maps = [np.round(m * rng.uniform(0.2, 0.6) + rng.random(m.shape) * 0.7, 2) for m in masks]
    assert pro_score(maps, masks, max_fpr) == pytest.approx(_brute_force_pro(maps, masks, max_fpr), abs=2e-4)


def test_pro_perfect_and_random():
    rng = np.random.default_rng(4)
    masks = [rng.random((64, 64)) > 0.97 for _ in range(10)]
    assert pro_score([m.astype(float) for m in masks], masks) == pytest.approx(1.0)
    # uninformative maps: PRO follows FPR, area 0.3^2 / 2 over 0.3 = 0.15
    assert pro_score([rng.random((64, 64)) for _ in masks], masks) == pytest.approx(0.15, abs=0.02)


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(5)
    masks = [rng.random((32, 40)) > 0.9 for _ in range(5)]
    maps = [np.round(m * 0.3 + rng.random(m.shape), 2) for m in masks]
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(np.stack(maps), np.stack(masks)) == pytest.approx(expected, abs=1e-12)


def test_maps_of_different_sizes_and_trailing_channel():
    masks = [np.zeros((4, 4), bool), np.zeros((6, 3), bool)]
    masks[1][2, 1] = True
    maps = [np.zeros((4, 4, 1)), masks[1][:, :, None].astype(float)]
    assert pixel_auroc(maps, masks) == 1.0 and pro_score(maps, masks) == pytest.approx(1.0)


def test_hundred_maps_of_256_are_fast_enough():
    rng = np.random.default_rng(6)
    masks = np.zeros((100, 256, 256), bool)
    masks[::2, 100:140, 60:90] = True
    maps = rng.random(masks.shape, dtype=np.float32) + masks
    start = time.perf_counter()
    assert pro_score(maps, masks) == pytest.approx(1.0)
    assert time.perf_counter() - start < 20  # about 3 s on 2 shared cores


@pytest.mark.parametrize(
    ("maps", "masks", "message"),
    [
        ([np.zeros((4, 4))], [np.zeros((4, 4), bool)], "defect region"),
        ([np.zeros((4, 4))], [np.ones((4, 4), bool)], "good pixels"),
        ([np.zeros((4, 4))], [np.zeros((4, 5), bool)], "does not match"),
        ([np.zeros((4, 4))], [], "1 anomaly maps but 0 masks"),
        ([np.full((2, 2), np.nan)], [np.eye(2, dtype=bool)], "NaN"),
        ([], [], "no anomaly maps"),
    ],
)
def test_bad_input_is_explained(maps, masks, message):
    with pytest.raises(ValueError, match=message):
        pro_score(maps, masks)
    if message not in ("defect region", "good pixels"):
        with pytest.raises(ValueError, match=message):
            pixel_auroc(maps, masks)
