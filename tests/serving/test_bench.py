"""``diffqc bench triton``'s frames: --size is WIDTHxHEIGHT as cameras name frames, and a frame larger
than a render repeats one (rendering a 4096x3000 part takes a minute)."""

from __future__ import annotations

import numpy as np
import pytest
import typer

from diffqc.serving.bench import RENDER_SIDE, bench_frames, parse_size


def test_size_is_width_by_height():
    assert parse_size("4096x3000") == (3000, 4096)
    for bad in ("4096", "4096x", "0x10", "ax3"):
        with pytest.raises(typer.BadParameter, match="WIDTHxHEIGHT"):
            parse_size(bad)


def test_frames_have_the_size_asked_for_and_larger_ones_repeat_a_render():
    small = bench_frames("brushed_metal", (64, 80), 3)
    assert [f.shape for f in small] == [(1, 1, 64, 80)] * 3 and small[0].dtype == np.float32
    assert not np.array_equal(small[0], small[1])  # different parts
    (large,) = bench_frames("brushed_metal", (RENDER_SIDE + 40, 80), 1)
    assert large.shape == (1, 1, RENDER_SIDE + 40, 80)
    np.testing.assert_array_equal(large[..., RENDER_SIDE:, :], large[..., :40, :])
