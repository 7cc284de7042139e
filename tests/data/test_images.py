"""Image and mask I/O: round trips of every supported kind, and a clear error for every bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diffqc.data.images import (
    ImageLimits,
    ImageReadError,
    guard_decompression_bombs,
    load_image,
    read_image,
    read_mask,
    write_image,
    write_mask,
)

rng = np.random.default_rng(0)


def test_gray_and_rgb_round_trip_within_8_bit_rounding(tmp_path):
    gray = rng.random((20, 30, 1)).astype(np.float32)
    rgb = rng.random((20, 30, 3)).astype(np.float32)
    for name, arr in (("g.png", gray), ("c.png", rgb)):
        back = read_image(write_image(tmp_path / name, arr))
        assert back.dtype == np.float32 and back.shape == arr.shape
        assert np.abs(back - arr).max() <= 0.5 / 255 + 1e-6


def test_hxw_array_is_written_as_one_channel(tmp_path):
    assert read_image(write_image(tmp_path / "g.png", np.zeros((5, 7)))).shape == (5, 7, 1)


def test_sixteen_bit_keeps_precision(tmp_path):
    arr = rng.random((16, 16, 1)).astype(np.float32)
    back = read_image(write_image(tmp_path / "g16.png", arr, bit_depth=16))
    assert np.abs(back - arr).max() < 1e-4  # far finer than 8-bit steps


def test_sixteen_bit_png_written_by_pil_is_scaled_to_unit_range(tmp_path):
    Image.fromarray(np.array([[0, 65535], [32768, 1000]], dtype=np.uint16)).save(tmp_path / "i16.png")
    back = read_image(tmp_path / "i16.png")[:, :, 0]
    assert back[0, 0] == 0 and back[0, 1] == 1 and abs(back[1, 0] - 32768 / 65535) < 1e-6


def test_rgba_and_palette_become_rgb(tmp_path):
    Image.new("RGBA", (4, 3), (255, 0, 0, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (4, 3), (0, 255, 0)).convert("P").save(tmp_path / "p.png")
    a, p = read_image(tmp_path / "a.png"), read_image(tmp_path / "p.png")
    assert a.shape == p.shape == (3, 4, 3)
    assert np.allclose(a[0, 0], (1, 0, 0)) and np.allclose(p[0, 0], (0, 1, 0))


def test_bilevel_and_jpeg_cmyk_read(tmp_path):
    Image.new("1", (3, 3), 1).save(tmp_path / "b.png")
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "k.jpg")
    assert read_image(tmp_path / "b.png").max() == 1.0
    assert read_image(tmp_path / "k.jpg").shape == (8, 8, 3)


def test_mask_round_trip_is_exact_and_stored_as_0_255(tmp_path):
    mask = rng.random((12, 9)) > 0.5
    path = write_mask(tmp_path / "m_mask.png", mask)
    assert np.array_equal(read_mask(path), mask)
    assert set(np.unique(np.asarray(Image.open(path)))) <= {0, 255}


# --- bad files: every error is an ImageReadError (a ValueError) naming the file -----------------


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _expect(path, *words):
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(path) in str(err.value), "the message must name the file"
    for word in words:
        assert word in str(err.value)
    assert isinstance(err.value, ValueError)
    return err.value


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.png", "not found")


def test_directory_instead_of_file(tmp_path):
    _expect(tmp_path, "not a regular file")


def test_bytes_that_are_not_an_image(tmp_path):
    (tmp_path / "x.png").write_bytes(b"this is not a png")
    _expect(tmp_path / "x.png", "not a recognised image")


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    _expect(tmp_path / "e.png", "unsupported image format: there is no data (0 bytes)")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_png_bytes())
    data[200:260] = b"x" * 60  # inside the compressed pixel stream
    (tmp_path / "c.png").write_bytes(bytes(data))
    _expect(tmp_path / "c.png", "corrupt")


def test_truncated_png(tmp_path):
    data = _png_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "t.png", "truncated")


def test_two_channel_image_is_refused(tmp_path):
    Image.new("LA", (4, 4)).save(tmp_path / "la.png")
    _expect(tmp_path / "la.png", "channel count 2")


def test_pixel_limit_is_a_parameter(tmp_path):
    write_image(tmp_path / "big.png", np.zeros((40, 50)))
    with pytest.raises(ImageReadError, match="2000 pixels, which exceeds the limit of 1999 pixels") as err:
        read_image(tmp_path / "big.png", ImageLimits(max_pixels=1999))
    assert err.value.path == tmp_path / "big.png" and err.value.code == "too_many_pixels"
    assert read_image(tmp_path / "big.png", ImageLimits(max_pixels=2000)).shape == (40, 50, 1)


def _claiming(tmp_path, side: int):
    """A valid tiny PNG whose header claims side x side pixels."""
    import struct
    import zlib

    data = bytearray(_png_bytes())
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", side, side)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path = tmp_path / f"bomb{side}.png"
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    # 81 Mpx: over our limit, under PIL's own; 900 Mpx (~2.7 GB decoded): PIL refuses on open.
    _expect(_claiming(tmp_path, 9000), "9000x9000", "exceeds the limit")
    _expect(_claiming(tmp_path, 30000), "decompression bomb")


def test_read_mask_reports_bad_file(tmp_path):
    (tmp_path / "m.png").write_bytes(b"junk")
    with pytest.raises(ImageReadError, match="m.png"):
        read_mask(tmp_path / "m.png")


@pytest.mark.parametrize("channels", [2, 4, 5])
def test_writing_odd_channel_counts_is_refused(tmp_path, channels):
    with pytest.raises(ValueError, match=rf"HxWx3; got shape \(4, 4, {channels}\)"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, channels)))


def test_writing_out_of_range_or_nan_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        write_image(tmp_path / "x.png", np.full((4, 4), 255.0))
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "x.png", np.full((4, 4), np.nan))


def test_the_memory_budget_derives_the_pixel_limit_from_the_channel_count(tmp_path):
    limits = ImageLimits(memory_budget_bytes=39 * 1999)  # RGB: 39 bytes a pixel at 3.25 working copies
    why = "the memory budget of 77961 bytes / (3 channel(s) x 4 bytes x 3.25 working copies)"
    assert limits.pixel_limit(3) == (1999, why)
    assert limits.pixel_limit(1)[0] == 5997
    assert ImageLimits(max_pixels=100, memory_budget_bytes=10**9).pixel_limit(3) == (100, "the pixel limit")
    write_image(tmp_path / "rgb.png", np.zeros((40, 50, 3)))
    write_image(tmp_path / "gray.png", np.zeros((40, 50)))
    with pytest.raises(ImageReadError, match="2000 pixels, which exceeds the limit of 1999 pixels"):
        read_image(tmp_path / "rgb.png", limits)
    assert read_image(tmp_path / "gray.png", limits).shape == (40, 50, 1)


def test_pils_own_guard_is_set_to_the_largest_image_the_limits_allow(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    guard_decompression_bombs(ImageLimits(max_pixels=10**9, memory_budget_bytes=13 * 10**6))
    assert Image.MAX_IMAGE_PIXELS == 10**6  # grayscale: 13 bytes a pixel


def test_formats_frames_and_modes_outside_the_contract_are_named(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "g.gif")
    frames = [Image.new("L", (8, 8), v) for v in (0, 80, 160)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((4, 4), 2.0, np.float32)).save(tmp_path / "f.tif")
    err = _expect(tmp_path / "g.gif", "GIF images are not supported; expected PNG, JPEG, BMP or TIFF")
    assert err.code == "unsupported_format"
    assert _expect(tmp_path / "pages.tif", "TIFF image has 3 frames").code == "multi_frame"
    assert _expect(tmp_path / "f.tif", "TIFF image has floating-point values outside [0, 1]").code == "unsupported_mode"


def test_bytes_decode_like_the_file_and_carry_their_format(tmp_path):
    arr = rng.random((6, 7, 3)).astype(np.float32)
    path = write_image(tmp_path / "c.png", arr)
    loaded = load_image(path.read_bytes(), "blob://c")
    assert (loaded.format, loaded.media_type) == ("PNG", "image/png")
    assert np.array_equal(loaded.pixels, read_image(path)) and loaded.pixels.flags.writeable
