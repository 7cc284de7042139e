"""Tiles are stitched without seams, and memory stays bounded by the tile size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffqc.core.tiles import tile_starts, tile_windows, window_weight
from diffqc.detector.tiling import run_tiled


def test_tiles_cover_the_image_with_at_least_the_overlap():
    for length in (100, 256, 257, 1000, 3000):
        starts = tile_starts(length, 256, 64)
        assert starts[0] == 0 and starts[-1] + 256 == max(length, 256)
        assert all(b - a <= 256 - 64 for a, b in zip(starts, starts[1:], strict=False))


def test_a_constant_image_gives_a_constant_map():
    image = torch.full((3, 300, 517), 0.37)
    # A per-tile function whose value depends on the tile (its mean): any seam would show.
    out = run_tiled(image, lambda t, _w: t.mean(dim=1, keepdim=True), tile=128, overlap=32)
    assert out.shape == (1, 300, 517)
    assert float(out.max() - out.min()) < 1e-6
    assert float(out.mean()) == pytest.approx(0.37, abs=1e-6)


def test_stitching_an_identity_reproduces_the_image_exactly():
    image = torch.rand(1, 200, 333, generator=torch.Generator().manual_seed(0))
    out = run_tiled(image, lambda t, _w: t, tile=96, overlap=24, batch=3)
    assert torch.allclose(out, image, atol=1e-6)


def test_tile_borders_are_faded_out_where_another_tile_takes_over():
    w = window_weight((0, 100, 128, 128), (300, 400), overlap=32)
    assert w[64, 0] < 0.01 and w[64, -1] < 0.01  # inner left/right borders
    assert w[0, 64] == 1.0  # the image's own top edge keeps full weight
    assert float(w.min()) > 0


def test_windows_have_one_shape_so_they_batch():
    wins = tile_windows(3000, 4096, 512, 64)
    assert len({(h, w) for _, _, h, w in wins}) == 1


def test_detector_tiles_large_images_with_bounded_peak_memory(metal_model):
    """A frame larger than tile.size runs tile by tile; the map has the frame's shape, no seams."""
    import resource

    from diffqc.detector.detector import Detector

    det = Detector.load(metal_model)
    det.cfg.tile.size, det.cfg.tile.overlap = 96, 24
    image = np.full((1, 1, 200, 260), 0.5, dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = det.predict(image)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    amap = result.anomaly_map
    assert amap.shape == (1, 1, 200, 260) and np.isfinite(amap).all()
    assert result.components.shape == (1, 4) and result.score.shape == (1,)
    assert grown_mb < 200


def test_tiled_reconstruction_is_stitched_to_the_frame(metal_model):
    from diffqc.detector.detector import Detector

    det = Detector.load(metal_model)
    det.cfg.tile.size, det.cfg.tile.overlap = 96, 24
    image = np.full((1, 1, 200, 260), 0.5, dtype=np.float32)
    plain = det.predict(image)
    result = det.predict(image, return_reconstruction=True)
    recon = result.reconstruction
    assert recon is not None and recon.shape == image.shape and recon.dtype == np.float32
    assert np.isfinite(recon).all() and recon.min() >= 0 and recon.max() <= 1
    np.testing.assert_array_equal(result.anomaly_map, plain.anomaly_map)
    np.testing.assert_array_equal(result.score, plain.score)
