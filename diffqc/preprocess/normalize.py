"""The image steps of preprocessing: decode, colour, letterbox resize/pad, optional alignment.

Images are float32 HxWxC in [0, 1] throughout, as ``diffqc.data.images`` reads them, so a frame
whose size and channels already match the spec reaches the detector bit for bit as the detector
would read the file itself.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from diffqc.data.images import DEFAULT_LIMITS, ImageLimits, ImageReadError, load_image
from diffqc.preprocess.geometry import Letterbox
from diffqc.preprocess.spec import AlignSpec, PreprocessSpec, SpecError

log = logging.getLogger(__name__)

# ITU-R BT.601 luma, the weights PIL's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
NPY_MAGIC = b"\x93NUMPY"


class FrameImageError(ValueError):
    """The frame's image cannot be used (not an image, truncated, oversized, wrong shape)."""


def decode_image(data: bytes, name: str, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode image bytes to float32 HxWxC in [0, 1], C = 1 or 3, exactly as ``read_image`` reads a file
    (``diffqc.data.images.load_image``: the header checked against ``limits`` before decoding).

    Raises FrameImageError naming ``name`` (the blob URI) and the problem.
    """
    try:
        return load_image(data, name, limits).pixels
    except ImageReadError as exc:
        raise FrameImageError(str(exc)) from None


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """HxWxC -> HxWx``channels``: RGB to grayscale by BT.601 luma, grayscale to RGB by repetition."""
    have = image.shape[2]
    if have == channels:
        return image
    if have == 3 and channels == 1:
        return np.ascontiguousarray((image @ LUMA)[:, :, None], dtype=np.float32)
    if have == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    raise ValueError(f"cannot convert {have} channel(s) to {channels}")


def letterbox(image: np.ndarray, box: Letterbox) -> np.ndarray:
    """Resize HxWxC into ``box`` (bilinear, antialiased when shrinking) and pad the rest by edge replication.

    Edge replication rather than black bars: the detector never saw black bars on good parts, so
    they would light up the anomaly map along the content border.
    """
    if box.identity:
        return image
    if (box.new_h, box.new_w) != image.shape[:2]:
        # PIL resamples float32 ("F") planes with a support scaled by the factor: no aliasing when
        # shrinking a 4096x3000 frame, no overshoot outside [0, 1] (the triangle filter is positive).
        planes = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize(
                    (box.new_w, box.new_h), Image.Resampling.BILINEAR
                ),
                dtype=np.float32,
            )
            for c in range(image.shape[2])
        ]
        image = np.clip(np.stack(planes, axis=2), 0.0, 1.0)
    pads = (
        (box.pad_top, box.dst_h - box.new_h - box.pad_top),
        (box.pad_left, box.dst_w - box.new_w - box.pad_left),
        (0, 0),
    )
    if any(p for pair in pads for p in pair):
        image = np.pad(image, pads, mode="edge")
    return np.ascontiguousarray(image, dtype=np.float32)


@dataclass(frozen=True)
class Alignment:
    shift: tuple[float, float]  # (dy, dx) applied to the frame, in normalized pixels
    applied: bool
    error: float  # phase-correlation registration error (0 = perfect match)


def load_reference(data: bytes, uri: str, shape: tuple[int, int]) -> np.ndarray:
    """A reference image (.npy or an image file) as a float32 HxW grayscale plane of ``shape``."""
    try:
        if data.startswith(NPY_MAGIC):
            ref = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        else:
            ref = decode_image(data, uri)
    except (ValueError, OSError) as exc:
        raise SpecError(f"alignment reference {uri} is unreadable: {exc}") from None
    if ref.ndim == 3:
        ref = ref.mean(axis=2) if ref.shape[2] in (1, 3) else ref
    if ref.ndim != 2 or ref.shape != tuple(shape):
        raise SpecError(f"alignment reference {uri} has shape {ref.shape}; the normalized frame is {tuple(shape)}")
    return ref


def align(image: np.ndarray, reference: np.ndarray, spec: AlignSpec) -> tuple[np.ndarray, Alignment]:
    """Translate ``image`` (HxWxC) onto ``reference`` (HxW) by phase correlation (sub-pixel).

    A shift beyond ``spec.max_shift`` (default: 10% of the shorter side) is not applied: on a
    fixtured part that means a wrong match (or a wrong part), and the frame is better scored as is.
    """
    gray = image.mean(axis=2)
    shift, error, _ = phase_cross_correlation(reference, gray, upsample_factor=spec.upsample)
    dy, dx = (float(s) for s in shift)
    limit = spec.max_shift if spec.max_shift is not None else 0.1 * min(gray.shape)
    if max(abs(dy), abs(dx)) > limit:
        log.warning("alignment shift (%.1f, %.1f) px exceeds %.1f px; frame left unaligned", dy, dx, limit)
        return image, Alignment((dy, dx), False, float(error))
    if max(abs(dy), abs(dx)) >= 1.0 / spec.upsample:
        image = np.clip(ndimage.shift(image, (dy, dx, 0.0), order=1, mode="nearest"), 0.0, 1.0).astype(np.float32)
    return image, Alignment((dy, dx), True, float(error))


def normalize(
    image: np.ndarray, spec: PreprocessSpec, reference: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox, Alignment | None]:
    """Colour, letterbox and (when the spec asks and a reference is given) align one HxWxC image."""
    box = Letterbox.fit(image.shape[0], image.shape[1], spec.height, spec.width)
    # Colour conversion on the smaller side of the resize: fewer planes to resample.
    if spec.channels < image.shape[2]:
        out = letterbox(to_channels(image, spec.channels), box)
    else:
        out = to_channels(letterbox(image, box), spec.channels)
    alignment = None
    if spec.align is not None and reference is not None:
        out, alignment = align(out, reference, spec.align)
    return out, box, alignment
