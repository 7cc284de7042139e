"""The region rule, the heatmap colours and the tile geometry the platform shares with the detector."""

from __future__ import annotations

import numpy as np
import pytest

from diffqc.core.regions import MIN_AREA_PX, _inferno, find_regions, overlay
from diffqc.core.tiles import stitch, tile_windows, window_weight


def test_heatmap_colours_are_matplotlibs_inferno():
    colormaps = pytest.importorskip("matplotlib").colormaps  # a dev dependency; scoring ships the table
    t = np.linspace(0, 1, 1001)
    expected = colormaps["inferno"](t)[:, :3]
    table = _inferno()
    assert np.array_equal(table[np.minimum((t * len(table)).astype(int), len(table) - 1)], expected)


def test_specks_are_not_regions_unless_they_are_strong():
    amap = np.zeros((40, 40), np.float32)
    amap[5:15, 5:15] = 2.0  # a region
    amap[30, 30] = 1.5  # a weak speck: dropped
    amap[35, 35] = 3.0  # a strong speck: kept
    regions = find_regions(amap, 1.0)
    assert [r["area_px"] for r in regions] == [1, 100] and MIN_AREA_PX > 1
    assert regions[1]["bbox"] == [5, 5, 15, 15]
    rgb = overlay(np.zeros((40, 40, 1), np.float32), amap, 1.0, regions, defect=True)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.uint8 and tuple(rgb[5, 5]) == (255, 40, 40)


def test_stitching_tiles_of_an_image_gives_the_image_back_without_seams():
    h, w, tile, overlap = 300, 420, 128, 32
    windows = tile_windows(h, w, tile, overlap)
    assert all(window_weight(win, (h, w), overlap).min() > 0 for win in windows)
    image = np.random.default_rng(0).random((3, h, w), dtype=np.float32)
    tiles = [image[:, y0 : y0 + th, x0 : x0 + tw] for y0, x0, th, tw in windows]
    np.testing.assert_allclose(stitch(windows, tiles, (h, w), overlap), image, rtol=1e-5)
    constant = [np.full((1, th, tw), 7.0, np.float32) for _, _, th, tw in windows]
    np.testing.assert_allclose(stitch(windows, constant, (h, w), overlap), 7.0, rtol=1e-6)
