"""Read and write images and masks as float32 arrays, with errors that name the file.

Every image in diffqc is float32 HxWxC in [0, 1] with C = 1 (grayscale) or 3 (RGB): one
convention for the detector, the metrics and the data builders, whatever the file held.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# A 4096x3000 line-scan frame is 12.3 Mpx; 64 Mpx leaves room for larger cameras while a
# crafted header (a "decompression bomb") cannot make us allocate gigabytes.
MAX_PIXELS = 64_000_000

# Modes PIL converts to RGB without losing meaning (alpha is dropped: cameras have none).
_TO_RGB = {"P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
# What PIL raises on damaged files: truncated streams, bad zlib data, bad chunk structure.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class ImageReadError(ValueError):
    """An image file could not be turned into an array; ``str()`` names the file and the problem."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def read_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image as float32 HxWxC in [0, 1], C = 1 (grayscale) or 3 (RGB).

    Palette and RGBA images become RGB, 16-bit images keep their precision, and anything
    else (2-channel grayscale+alpha, unreadable, truncated or oversized files) raises
    :class:`ImageReadError`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    try:
        with Image.open(path) as im:
            # The size comes from the header, so a bomb is refused before any pixel is decoded.
            width, height = im.size
            if width * height > max_pixels:
                raise ImageReadError(
                    path, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
                )
            im.load()
            return _to_array(path, im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"decompression bomb refused ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(path, "not a recognised image format (corrupt or not an image)") from exc
    except _DECODE_ERRORS as exc:
        raise ImageReadError(path, f"corrupt or truncated image data ({exc})") from exc


def _to_array(path: Path, im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _TO_RGB:
        mode, im = "RGB", im.convert("RGB")
    if mode in {"L", "RGB"}:
        arr = np.asarray(im, dtype=np.float32) / 255.0
    elif mode == "1":
        arr = np.asarray(im, dtype=np.float32)
    elif mode in _SIXTEEN_BIT:
        arr = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        # Older PIL opens 16-bit PNGs as 32-bit "I"; real 32-bit data beyond 16 bits is refused.
        raw = np.asarray(im)
        if raw.min() < 0 or raw.max() > 65535:
            raise ImageReadError(path, "32-bit integer image with values outside the 16-bit range")
        arr = raw.astype(np.float32) / 65535.0
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise ImageReadError(path, "floating-point image with values outside [0, 1]")
    elif mode in {"LA", "La"}:
        raise ImageReadError(
            path, "unsupported channel count 2 (grayscale + alpha); expected 1 (grayscale), 3 (RGB) or RGBA"
        )
    else:
        raise ImageReadError(path, f"unsupported image mode {mode!r} ({len(im.getbands())} channels)")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_channels(array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise ValueError(f"{what} must be HxW, HxWx1 or HxWx3; got shape {array.shape}")
    return array


def write_image(path: str | Path, array: np.ndarray, bit_depth: int = 8) -> Path:
    """Write a float image in [0, 1] (HxW, HxWx1 or HxWx3) or a uint8 image; parents are created.

    ``bit_depth=16`` keeps grayscale precision (PNG/TIFF); RGB is always 8-bit (PIL's limit).
    """
    path = Path(path)
    array = _check_channels(np.asarray(array), f"image for {path}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if array.dtype == np.uint8:
        values = array.astype(np.float32) / 255.0
    elif array.dtype == bool:
        values = array.astype(np.float32)
    else:
        values = array.astype(np.float32)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"image for {path} contains NaN or infinite values")
        # Tolerate rounding noise from arithmetic, but a wrong scale (0-255 floats) is a bug.
        if values.min() < -1e-3 or values.max() > 1 + 1e-3:
            raise ValueError(f"image for {path} must be in [0, 1]; got range [{values.min():.4g}, {values.max():.4g}]")
        values = np.clip(values, 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    if values.shape[2] == 1 and bit_depth == 16:
        im = Image.fromarray(np.round(values[:, :, 0] * 65535).astype(np.uint16))
    elif values.shape[2] == 1:
        im = Image.fromarray(np.round(values[:, :, 0] * 255).astype(np.uint8))
    else:
        im = Image.fromarray(np.round(values * 255).astype(np.uint8))
    im.save(path)
    return path


def read_mask(path: str | Path) -> np.ndarray:
    """Read a defect mask as bool HxW: a pixel is defective where any channel is above half scale."""
    arr = read_image(path)
    return arr.max(axis=2) > 0.5


def write_mask(path: str | Path, mask: np.ndarray) -> Path:
    """Write a bool HxW mask as an 8-bit PNG with 0 / 255, as MVTec AD does."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise ValueError(f"mask for {path} must be HxW; got shape {mask.shape}")
    return write_image(path, (mask > 0).astype(np.uint8) * 255)
