"""Real-texture benchmarks: disjoint train/test regions, exact masks, MVTec output."""

from __future__ import annotations

import numpy as np
import pytest

from diffqc.data.images import read_image, read_mask
from diffqc.data.mvtec import has_masks, list_samples
from diffqc.data.textures import DEFECTS, TEXTURES, VISIBLE, build_texture_benchmark, inject, load_photo, regions


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_train_and_test_regions_are_disjoint_and_cover_the_photo():
    parts = regions((512, 512))
    assert not any(_overlap(a, b) for a in parts["train"] for b in parts["test"])
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for rs in parts.values() for r in rs)
    assert area == 512 * 512


def test_photos_ship_offline_as_unit_range_grayscale():
    for name in TEXTURES:
        photo = load_photo(name)
        assert photo.shape == (512, 512) and photo.dtype == np.float32 and 0 <= photo.min() < photo.max() <= 1


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_defect_is_visible_and_only_inside_its_mask(defect):
    rng = np.random.default_rng(0)
    brick = load_photo("brick")  # flat brick faces are where a blur could go unseen
    for i in range(6):
        img = brick[64 * i : 64 * i + 64, 100:164].copy()
        final, mask = inject(defect, img, rng, load_photo("gravel")[:64, :64])
        assert mask.any() and mask.mean() < 0.25
        assert np.array_equal(final[~mask], img[~mask])
        assert np.abs(final - img)[mask].mean() >= VISIBLE, f"{defect} invisible"


def test_builder_writes_layout_deterministically(tmp_path):
    a = build_texture_benchmark("brick", tmp_path / "a", n_train=4, n_test_good=2, n_test_defect=5, crop=64)
    b = build_texture_benchmark("brick", tmp_path / "b", n_train=4, n_test_good=2, n_test_defect=5, crop=64)
    c = build_texture_benchmark("brick", tmp_path / "c", n_train=4, n_test_good=2, n_test_defect=5, crop=64, seed=1)
    train, test = list_samples(a, "train"), list_samples(a, "test")
    assert len(train) == 4 and len(test) == 7 and has_masks(test)
    assert sorted({s.defect_type for s in test if s.label}) == sorted(DEFECTS)
    for s in test:
        assert read_image(s.path).shape == (64, 64, 1)
        if s.label:
            assert read_mask(s.mask_path).any()
    for sa, sb in zip(list_samples(a, "test"), list_samples(b, "test"), strict=True):
        assert np.array_equal(read_image(sa.path), read_image(sb.path))
    assert any(
        not np.array_equal(read_image(sa.path), read_image(sc.path))
        for sa, sc in zip(train, list_samples(c, "train"), strict=True)
    )


def test_train_crops_come_from_train_regions_only(tmp_path):
    # Every training crop (up to flips) must be found inside a training quadrant, never a test one.
    path = build_texture_benchmark("gravel", tmp_path, n_train=3, n_test_good=3, n_test_defect=0, crop=32)
    photo = np.round(load_photo("gravel") * 255).astype(np.uint8)
    parts = regions(photo.shape)

    def where(sample):
        crop = np.round(read_image(sample.path)[:, :, 0] * 255).astype(np.uint8)
        for variant in (crop, crop[:, ::-1], crop[::-1], crop[::-1, ::-1]):
            # Candidates share the top-left pixel; then compare the whole window.
            for y, x in np.argwhere(photo[: 512 - 31, : 512 - 31] == variant[0, 0]):
                if np.array_equal(photo[y : y + 32, x : x + 32], variant):
                    return y, x
        raise AssertionError(f"{sample.path} not found in the photo")

    def region_of(yx, split):
        y, x = yx
        return any(r[0] <= y and y + 32 <= r[2] and r[1] <= x and x + 32 <= r[3] for r in parts[split])

    assert all(region_of(where(s), "train") for s in list_samples(path, "train"))
    assert all(region_of(where(s), "test") for s in list_samples(path, "test"))


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown texture 'wood'"):
        build_texture_benchmark("wood", tmp_path)
    with pytest.raises(ValueError, match="crop must be between 32 and 256"):
        build_texture_benchmark("grass", tmp_path, crop=300)
