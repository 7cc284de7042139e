"""Read and write images and masks as float32 arrays, with errors that name the file.

Every image in diffqc is float32 HxWxC in [0, 1] with C = 1 (grayscale) or 3 (RGB): one
convention for the detector, the metrics and the data builders, whatever the file held.

``load_image`` is the one way an image from outside gets decoded (ingestion's gRPC and REST
uploads, preprocessing, ``diffqc detect``): the format from the magic bytes, one frame, a pixel
mode we read, and a pixel count within ``ImageLimits`` are all checked from the header before a
pixel is decoded, so a decompression bomb (a few KB that decode to gigabytes) costs nothing.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from diffqc.settings import IngestionSettings

# A 4096x3000 line-scan frame is 12.3 Mpx; 64 Mpx leaves room for larger cameras while a
# crafted header (a "decompression bomb") cannot make us allocate gigabytes.
MAX_PIXELS = 64_000_000
FLOAT32_BYTES = 4
# Peak memory of turning one image into float32, in float32 copies of its pixels, as measured
# (peak RSS, benchmarks/hostile_inputs.py prints it): 8-bit ~1.6, 16-bit ~2.0, 32-bit "I"/"F" ~3.2
# (PIL's buffer, the two copies its tobytes() makes, then the float32 array). Preprocessing's
# letterbox (a float32 plane copied into PIL per channel: ~2.1 for grayscale) comes after those
# buffers are gone, so decoding's worst case is also the peak of ingestion, preprocessing and detect.
WORKING_COPIES = 3.25

# The formats accepted from outside (PIL format name -> IANA media type), known by their magic bytes.
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "BMP": "image/bmp", "TIFF": "image/tiff"}
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# Formats recognised only to name them in the refusal.
_OTHER_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II+\x00", "BigTIFF"),
    (b"MM\x00+", "BigTIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"RIFF", "RIFF (WebP?)"),
    (b"8BPS", "Photoshop"),
    (b"%PDF", "PDF"),
    (b"\x93NUMPY", "NumPy array"),
)
# Modes PIL converts to RGB without losing meaning (alpha is dropped: cameras have none).
_TO_RGB = {"P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}
_RGB_MODES = {"RGB", *_TO_RGB}
_GRAY_MODES = {"1", "L", "I", "F", *_SIXTEEN_BIT}
# What PIL raises on damaged files: truncated streams, bad zlib data, bad chunk structure.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


class ImageReadError(ValueError):
    """An image could not be turned into an array; ``str()`` names the source and the problem,
    ``reason`` is the problem alone and ``code`` a short word for it (metrics, rejections)."""

    def __init__(self, path: str | Path, reason: str, code: str = "corrupt"):
        self.path = Path(path)
        self.source = str(path)
        self.reason = reason
        self.code = code
        super().__init__(f"cannot read image {self.source}: {reason}")


@dataclass(frozen=True)
class ImageLimits:
    """How large an image a process may decode: at most ``max_pixels`` and, with a memory budget,
    pixels x channels x 4 bytes x WORKING_COPIES within ``memory_budget_bytes``, so that an image
    inside the limits cannot exhaust the process that decodes it."""

    max_pixels: int = MAX_PIXELS
    memory_budget_bytes: int | None = None

    @classmethod
    def of(cls, ingestion: IngestionSettings) -> ImageLimits:
        """The limits of every process that decodes frames' images: ingestion, preprocessing (which reads
        what ingestion accepted, so the same limits) and ``diffqc detect``."""
        return cls(ingestion.max_pixels, ingestion.memory_budget_bytes)

    def pixel_limit(self, channels: int) -> tuple[int, str]:
        """The most pixels an image of ``channels`` may have, and what sets that limit."""
        if self.memory_budget_bytes is None:
            return self.max_pixels, "the pixel limit"
        derived = int(self.memory_budget_bytes // (channels * FLOAT32_BYTES * WORKING_COPIES))
        if derived >= self.max_pixels:
            return self.max_pixels, "the pixel limit"
        budget = self.memory_budget_bytes
        amount = f"{budget // 2**20} MiB" if budget % 2**20 == 0 else f"{budget} bytes"
        return derived, (
            f"the memory budget of {amount} / ({channels} channel(s) x {FLOAT32_BYTES} bytes x "
            f"{WORKING_COPIES:g} working copies)"
        )


DEFAULT_LIMITS = ImageLimits()


def guard_decompression_bombs(limits: ImageLimits) -> None:
    """Set PIL's own, process-wide bomb guard to the largest image ``limits`` allow (grayscale), so PIL
    refuses on its own whatever bypasses ``load_image``; a process's entry point calls it once."""
    Image.MAX_IMAGE_PIXELS = limits.pixel_limit(1)[0]


@dataclass(frozen=True)
class LoadedImage:
    pixels: np.ndarray  # float32 HxWxC in [0, 1], C = 1 or 3
    format: str  # a key of FORMATS

    @property
    def media_type(self) -> str:
        return FORMATS[self.format]


def read_image(path: str | Path, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read an image file as float32 HxWxC in [0, 1], C = 1 (grayscale) or 3 (RGB).

    Palette and RGBA images become RGB, 16-bit images keep their precision, and anything
    else (2-channel grayscale+alpha, unreadable, truncated or oversized files) raises
    :class:`ImageReadError`.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found", "not_found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file", "not_found")
    return load_image(path, path, limits).pixels


def load_image(source: Path | bytes, name: str | Path, limits: ImageLimits = DEFAULT_LIMITS) -> LoadedImage:
    """Decode a PNG, JPEG, BMP or TIFF file (``source`` a path) or its bytes; errors name ``name``.

    Before any pixel is decoded: the format by its magic bytes, a single frame, a supported pixel
    mode and the pixel count within ``limits`` for its channel count. Then the whole image is
    decoded once, so corrupt and truncated data fail here. Raises :class:`ImageReadError`.
    """
    if isinstance(source, Path):
        try:
            with source.open("rb") as file:
                head = file.read(16)
        except OSError as exc:
            raise ImageReadError(name, f"cannot open the file ({exc.strerror})", "not_found") from None
    else:
        head = source[:16]
    fmt = _sniff(head, name)
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=[fmt]) as im:
            _check_header(im, fmt, name, limits)
            im.load()  # decodes everything: a truncated or corrupt stream fails here
            samples, full_scale = _samples(name, fmt, im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        limit, why = limits.pixel_limit(1)
        raise ImageReadError(
            name,
            f"{fmt} image refused as a decompression bomb ({exc}); the limit is {limit} pixels ({why})",
            "too_many_pixels",
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(name, f"corrupt {fmt} image: its header cannot be read") from None
    except _DECODE_ERRORS as exc:
        raise ImageReadError(name, f"corrupt or truncated {fmt} image data ({exc})") from None
    # Converted once PIL's image (and a palette or RGBA image's RGB conversion) is closed.
    pixels = samples.astype(np.float32)
    if full_scale != 1:
        pixels /= full_scale
    return LoadedImage(pixels if pixels.ndim == 3 else pixels[:, :, None], fmt)


def _sniff(head: bytes, name: str | Path) -> str:
    fmt = next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)
    if fmt is not None:
        return fmt
    other = next((other for magic, other in _OTHER_MAGIC if head.startswith(magic)), None)
    if not head:
        what = "there is no data (0 bytes)"
    elif other:
        what = f"{other} images are not supported"
    else:
        what = "the data is not a recognised image format (corrupt?)"
    raise ImageReadError(
        name, f"unsupported image format: {what}; expected PNG, JPEG, BMP or TIFF", "unsupported_format"
    )


def _check_header(im: Image.Image, fmt: str, name: str | Path, limits: ImageLimits) -> None:
    """What the header alone tells: frames, pixel mode, size. Nothing is decoded yet."""
    frames = getattr(im, "n_frames", 1)
    if frames != 1:
        raise ImageReadError(name, f"{fmt} image has {frames} frames; one image per frame is expected", "multi_frame")
    if im.mode in _RGB_MODES:
        channels = 3
    elif im.mode in _GRAY_MODES:
        channels = 1
    elif im.mode in {"LA", "La"}:
        raise ImageReadError(
            name,
            f"{fmt} image has unsupported pixel mode {im.mode!r}: channel count 2 (grayscale + alpha); "
            "expected 1 (grayscale), 3 (RGB) or RGBA",
            "unsupported_mode",
        )
    else:
        raise ImageReadError(
            name,
            f"{fmt} image has unsupported pixel mode {im.mode!r} ({len(im.getbands())} channels); "
            "expected grayscale, RGB or RGBA",
            "unsupported_mode",
        )
    width, height = im.size
    if width == 0 or height == 0:
        raise ImageReadError(name, f"{fmt} image has no pixels ({width}x{height})")
    limit, why = limits.pixel_limit(channels)
    if width * height > limit:
        raise ImageReadError(
            name,
            f"{fmt} image is {width}x{height} = {width * height} pixels, which exceeds the limit of {limit} "
            f"pixels ({why}; decompression-bomb guard)",
            "too_many_pixels",
        )


def _samples(name: str | Path, fmt: str, im: Image.Image) -> tuple[np.ndarray, float]:
    """The decoded samples as numpy reads them from PIL (HxW or HxWx3) and their full-scale value."""
    if im.mode in _TO_RGB:
        im = im.convert("RGB")
    if im.mode in {"L", "RGB"}:
        return np.asarray(im), 255.0
    if im.mode == "1":
        return np.asarray(im), 1.0
    if im.mode in _SIXTEEN_BIT:
        return np.asarray(im), 65535.0
    samples = np.asarray(im)
    # NaN propagates through min/max, so the range checks below refuse it too.
    low, high = samples.min(), samples.max()
    if im.mode == "I":
        # Older PIL opens 16-bit PNGs as 32-bit "I"; real 32-bit data beyond 16 bits is refused.
        if not (low >= 0 and high <= 65535):
            raise ImageReadError(
                name, f"{fmt} image has 32-bit integer values outside the 16-bit range", "unsupported_mode"
            )
        return samples, 65535.0
    # "F": the only mode _check_header lets through besides those above
    if not (low >= 0 and high <= 1):
        raise ImageReadError(name, f"{fmt} image has floating-point values outside [0, 1]", "unsupported_mode")
    return samples, 1.0


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
