"""Hostile images, built in memory: decompression bombs (PNG, JPEG, TIFF), truncated and damaged
files, formats and pixel modes diffqc does not read. Shared by tests/security/test_hostile_inputs.py
and benchmarks/hostile_inputs.py (which measures what they cost the services)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RNG = np.random.default_rng(7)


def encode(fmt: str, array: np.ndarray | None = None, **save) -> bytes:
    """``array`` (default: 48x64 random RGB) saved by PIL as ``fmt``."""
    if array is None:
        array = RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **save)
    return buffer.getvalue()


def good_png() -> bytes:
    return encode("PNG")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _zeros_deflated(total: int, row: int) -> bytes:
    """zlib data of ``total`` zero bytes, streamed a row at a time (never held whole)."""
    deflate, out, zero_row = zlib.compressobj(9), [], bytes(row)
    for _ in range(total // row):
        out.append(deflate.compress(zero_row))
    out.append(deflate.flush())
    return b"".join(out)


def png_bomb(width: int, height: int, channels: int = 3) -> bytes:
    """A valid all-zero 8-bit PNG: ~0.1% of its decoded size (8000x8000 RGB: ~190 KB -> 1.5 GiB as float32)."""
    row = 1 + width * channels  # filter byte + samples
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2 if channels == 3 else 0, 0, 0, 0)
    idat = _zeros_deflated(row * height, row)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(64))) + _chunk(b"IEND", b"")
    )


def png_text_bomb() -> bytes:
    """A tiny valid PNG with a zTXt chunk that inflates to 64 MB of text before the pixels."""
    png = good_png()
    text = b"Comment\x00\x00" + _zeros_deflated(64 * 2**20, 2**20)
    return png[:33] + _chunk(b"zTXt", text) + png[33:]  # after the signature and IHDR


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small baseline JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    data = bytearray(encode("JPEG", RNG.integers(0, 255, (16, 16), dtype=np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff(
    width: int, height: int, samples: int, strip: bytes, compression: int = 1, bits: int = 8, sample_format: int = 1
) -> bytes:
    """A little-endian one-strip TIFF; the header's size is whatever the caller claims (sample_format 3: float)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, bits),  # BitsPerSample (one value stands for every sample here)
        (259, 3, 1, compression),  # 1 none, 8 deflate
        (262, 3, 1, 2 if samples == 3 else 1),  # Photometric: RGB or BlackIsZero
        (273, 4, 1, 0),  # StripOffsets, patched below
        (277, 3, 1, samples),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(strip)),  # StripByteCounts
        (339, 3, 1, sample_format),  # SampleFormat: 1 unsigned integer, 3 IEEE float
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    data_offset = 8 + ifd_size
    entries[5] = (273, 4, 1, data_offset)
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + strip


def tiff_bomb(width: int, height: int, samples: int = 3) -> bytes:
    """A valid all-zero deflate TIFF (8000x8000 RGB: ~190 KB)."""
    return tiff(width, height, samples, _zeros_deflated(width * height * samples, width * samples), compression=8)


def float_tiff_bomb(width: int, height: int) -> bytes:
    """A valid all-zero deflate 32-bit float grayscale TIFF: the costliest mode to decode (~3.2 float32 copies)."""
    row = width * 4
    return tiff(width, height, 1, _zeros_deflated(row * height, row), compression=8, bits=32, sample_format=3)


def multi_frame_tiff() -> bytes:
    frames = [Image.fromarray(RNG.integers(0, 255, (32, 32), dtype=np.uint8)) for _ in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def animated_png() -> bytes:
    frames = [Image.fromarray(RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def gif() -> bytes:
    return encode("GIF", RNG.integers(0, 255, (16, 16), dtype=np.uint8))


def gray_alpha_png() -> bytes:
    gray = RNG.integers(0, 255, (16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.merge("LA", (Image.fromarray(gray), Image.fromarray(gray))).save(buffer, "PNG")
    return buffer.getvalue()


def float_tiff_out_of_range() -> bytes:
    return encode("TIFF", np.full((16, 16), 1000.0, np.float32))


def int32_tiff_out_of_range() -> bytes:
    return encode("TIFF", np.full((16, 16), 1 << 20, np.int32))
