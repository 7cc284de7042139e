"""Procedural products: deterministic by seed, exact masks, realistic variation, MVTec output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffqc.data.images import read_image, read_mask
from diffqc.data.mvtec import has_masks, list_samples
from diffqc.data.synth import PRODUCTS, generate_product, render_sample

SIZE = 96


def test_five_products_with_two_to_four_defect_types():
    assert len(PRODUCTS) == 5
    for product in PRODUCTS.values():
        assert 2 <= len(product.defects) <= 4
        assert product.channels in (1, 3)


@pytest.mark.parametrize("name", list(PRODUCTS))
def test_masks_are_exact_and_defects_visible(name):
    product = PRODUCTS[name]
    for defect in product.defects:
        for i in range(3):
            r = render_sample(name, "test_defect", i, defect, SIZE, seed=3)
            assert r.image.shape == (SIZE, SIZE, product.channels) and r.image.dtype == np.float32
            assert r.image.min() >= 0 and r.image.max() <= 1
            diff = np.abs(r.image - r.clean).max(axis=2)
            # Outside the mask the defective part is pixel-identical to the same part without it...
            assert np.array_equal(diff[~r.mask], np.zeros((~r.mask).sum())), f"{name}/{defect} leaks"
            # ...and inside, the defect is really there.
            assert r.mask.any() and diff[r.mask].mean() > 0.01, f"{name}/{defect} invisible"
            # Defects are local: none covers a large part of the image.
            assert r.mask.mean() < 0.15, f"{name}/{defect} too large"


def test_same_seed_same_pixels_other_seed_other_pixels():
    for name in PRODUCTS:
        a = render_sample(name, "train", 4, None, SIZE, seed=7).image
        assert np.array_equal(a, render_sample(name, "train", 4, None, SIZE, seed=7).image)
        assert not np.array_equal(a, render_sample(name, "train", 4, None, SIZE, seed=8).image)
        d1 = render_sample(name, "test_defect", 1, next(iter(PRODUCTS[name].defects)), SIZE, seed=7)
        d2 = render_sample(name, "test_defect", 1, next(iter(PRODUCTS[name].defects)), SIZE, seed=7)
        assert np.array_equal(d1.image, d2.image) and np.array_equal(d1.mask, d2.mask)


def test_good_parts_vary_but_aligned_parts_stay_aligned():
    for name, product in PRODUCTS.items():
        imgs = [render_sample(name, "train", i, None, SIZE).image for i in range(4)]
        pairs = [(imgs[i], imgs[j]) for i in range(4) for j in range(i + 1, 4)]
        assert all(np.abs(a - b).mean() > 0.005 for a, b in pairs), f"{name}: good parts are copies"
        corr = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in pairs)
        if product.aligned:  # the same pixel shows the same feature on every part
            assert corr > 0.6, f"{name} is not aligned (correlation {corr:.2f})"
        else:  # a texture: another patch of it in every frame
            assert corr < 0.6, f"{name} repeats itself (correlation {corr:.2f})"


def test_splits_use_different_parts():
    a = render_sample("pcb", "train", 0, None, SIZE).image
    assert not np.array_equal(a, render_sample("pcb", "test_good", 0, None, SIZE).image)


def test_generate_product_writes_the_mvtec_layout(tmp_path):
    path = generate_product("battery_electrode", tmp_path, n_train=3, n_test_good=2, n_test_defect=5, size=64, seed=1)
    assert path == tmp_path / "battery_electrode"
    train, test = list_samples(path, "train"), list_samples(path, "test")
    assert len(train) == 3 and len(test) == 7
    defect_types = list(PRODUCTS["battery_electrode"].defects)
    # five defects cycle through the four types: the first type gets two
    assert sorted(s.defect_type for s in test if s.label) == sorted(defect_types + defect_types[:1])
    assert has_masks(test)
    for s in test:
        img = read_image(s.path)
        assert img.shape == (64, 64, 1)
        if s.label:
            assert read_mask(s.mask_path).shape == (64, 64) and read_mask(s.mask_path).any()
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["product"] == "battery_electrode" and manifest["seed"] == 1 and manifest["aligned"]


def test_written_images_are_the_rendered_ones_and_independent_of_counts(tmp_path):
    small = generate_product("pcb", tmp_path / "a", 2, 0, 0, size=64)
    large = generate_product("pcb", tmp_path / "b", 4, 0, 0, size=64)
    first_small = read_image(list_samples(small, "train")[1].path)
    assert np.array_equal(first_small, read_image(list_samples(large, "train")[1].path))
    expected = render_sample("pcb", "train", 1, None, 64).image
    assert np.abs(first_small - expected).max() <= 0.5 / 255 + 1e-6


def test_bad_arguments_are_explained(tmp_path):
    with pytest.raises(ValueError, match="unknown product 'wood'"):
        generate_product("wood", tmp_path, 1, 1, 1)
    with pytest.raises(ValueError, match="n_train"):
        generate_product("pcb", tmp_path, 0, 1, 1)
    with pytest.raises(ValueError, match="at least 64x64"):
        generate_product("pcb", tmp_path, 1, 1, 1, size=8)
    with pytest.raises(ValueError, match="has no defect 'dent'"):
        render_sample("pcb", "test_defect", 0, "dent")
