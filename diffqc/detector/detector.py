"""The ``Detector``: a trained denoiser plus, per product type, the statistics that turn its
reconstruction residual into an anomaly map, component scores, a score and a verdict.

``Detector.predict`` is the entry point that Triton's ``model.py`` and the services call:

    detector = Detector.load("model/")
    result = detector.predict(batch, product="default")   # a ``Prediction``
    # batch: (N, C, H, W) float32 in [0, 1]
    # result.anomaly_map (N, 1, H, W), result.components (N, 4) in COMPONENTS order, result.score (N,);
    # all float32. predict(..., return_reconstruction=True) also fills result.reconstruction (N, C, H, W).

    detector.to("cuda:0", precision="fp16")   # compute on a GPU (inputs and outputs stay numpy)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffqc.core.components import COMPONENTS, ImageEvidence, fuse_components, measure_components
from diffqc.core.errors import InputError, ProductError
from diffqc.core.precision import Precision
from diffqc.detector.anomaly_map import Normalizer, fuse, raw_components
from diffqc.detector.calibration import Calibration
from diffqc.detector.config import DetectorConfig
from diffqc.detector.good_stats import GoodStatistics
from diffqc.detector.outputs import ImageScores, Prediction
from diffqc.detector.placement import autocast_dtype, check_precision, resolve_device, use_ieee_float32
from diffqc.detector.reconstruct import reconstruct, window_noise
from diffqc.detector.tiling import Window, run_tiled
from diffqc.detector.unet import Denoiser, alphas_cumprod, coordinate_grid

DEFAULT_PRODUCT = "default"
RAW, FINAL = "raw", "final"
# Whole images are pushed through the network this many at a time (bounded activation memory).
IMAGE_BATCH = 8


@dataclass
class ProductState:
    """What the detector knows about one product type."""

    good: GoodStatistics
    normalizer: Normalizer | None = None  # None until calibrated
    calibration: Calibration = field(default_factory=Calibration)
    image_size: tuple[int, int] | None = None  # set when statistics are per pixel position


class Detector:
    """A diffusion-reconstruction anomaly detector for one or more product types."""

    def __init__(
        self,
        cfg: DetectorConfig,
        model: Denoiser,
        products: dict[str, ProductState],
        metadata: dict[str, Any] | None = None,
    ):
        self.cfg = cfg
        self.model = model.eval()
        self.products = products
        self.metadata = metadata or {}
        self.acp = alphas_cumprod(cfg.model)  # stays on the CPU: read as Python floats per step
        self.device = torch.device("cpu")
        self.precision: Precision = Precision.fp32

    def to(self, device: torch.device | str, precision: Precision | str = Precision.fp32) -> Detector:
        """Compute on ``device`` (``cpu``, ``cuda``, ``cuda:1``) from now on; returns self.

        ``precision`` fp16 or bf16 runs the denoiser under CUDA autocast (maps and scores stay
        float32); fp32 is IEEE float32 on CUDA too. ``predict`` still takes and returns numpy:
        a batch crosses to the device once and its maps come back once.
        """
        target = resolve_device(device)
        self.precision = check_precision(target, precision)
        if target.type == "cuda":
            use_ieee_float32()
        self.model.to(target)
        for state in self.products.values():
            state.good = state.good.to(target)
            if state.normalizer is not None:
                state.normalizer = state.normalizer.to(target)
        self.device = target
        return self

    @property
    def kind(self) -> str:
        """``ddim``: a multi-step denoiser; ``consistency``: a one-step student (``diffqc distill``)."""
        return "consistency" if self.cfg.model.consistency else "ddim"

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Load an artifact directory (checks format version and compatibility)."""
        from diffqc.detector.artifact import load_detector

        return load_detector(path)

    def save(self, path: str | Path) -> Path:
        from diffqc.detector.artifact import save_detector

        return save_detector(self, path)

    # -- products and input checks -------------------------------------------------------------
    @property
    def product_names(self) -> list[str]:
        return list(self.cfg.model.products)

    def resolve_product(self, product: str | None) -> str:
        """The product name to use; ``default``/None means the only product of a one-product model."""
        names = self.product_names
        if product in names:
            return product
        if product in (None, DEFAULT_PRODUCT) and len(names) == 1:
            return names[0]
        raise ProductError(
            f"this model was trained for product type(s) {names}; got product {product!r}"
            + ("" if product not in (None, DEFAULT_PRODUCT) else " (name one of them)")
        )

    def threshold(self, product: str | None = None) -> float:
        return self.products[self.resolve_product(product)].calibration.threshold

    def min_size(self) -> int:
        return max(self.cfg.train.crop_size, self.cfg.model.multiple)

    def check_batch(
        self, batch: np.ndarray | torch.Tensor, product: str, names: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Validate (N, C, H, W) input in [0, 1]; errors name the image (``names``) and parameter."""
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
        label = (lambda i: f"image {names[i]}") if names else (lambda i: f"batch item {i}")
        if x.ndim != 4:
            raise InputError(f"expected a batch (N, C, H, W); got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"expected float32 values in [0, 1]; got dtype {x.dtype}")
        # The one crossing to the device (no copy of float32 on the CPU); the checks below run there.
        x = x.to(self.device, torch.float32)
        n, c, h, w = x.shape
        want = self.cfg.model.channels
        if c != want:
            raise InputError(
                f"{label(0)} has {c} channel(s); the model was trained on {want} (model.channels)"
                + (" — convert it to grayscale" if want == 1 else " — convert it to RGB")
            )
        m = self.min_size()
        if h < m or w < m:
            raise InputError(f"{label(0)} is {w}x{h} px, smaller than the model's tile of {m}x{m} px (train.crop_size)")
        size = self.products[product].image_size
        if size is not None and (h, w) != tuple(size):
            raise InputError(
                f"{label(0)} is {w}x{h} px; this model normalizes per pixel position for aligned "
                f"{product!r} images of {size[1]}x{size[0]} px (map.normalization=pixel)"
            )
        clamp = False
        for i in range(n):
            xi = x[i]
            if not torch.isfinite(xi).all():
                raise InputError(f"{label(i)}: values must be finite and in [0, 1]")
            lo, hi = float(xi.min()), float(xi.max())
            if lo < -1e-3 or hi > 1 + 1e-3:
                raise InputError(f"{label(i)}: values must be in [0, 1]; got [{lo:.4g}, {hi:.4g}]")
            clamp = clamp or lo < 0 or hi > 1
        return x.clamp(0, 1) if clamp else x  # no copy of a large frame unless rounding needs it

    # -- maps ----------------------------------------------------------------------------------
    def _window_fn(
        self, product: str, stage: str, full: tuple[int, int], steps: int | None, reconstruction: bool = False
    ):
        cfg, state = self.cfg, self.products[product]
        label = self.product_names.index(product)

        def fn(tiles: torch.Tensor, windows: list[Window]) -> torch.Tensor:
            b, c = tiles.shape[:2]
            device = tiles.device
            # Drawn on the CPU whatever the device, so every device reconstructs from the same noise.
            noise = window_noise(c, windows, cfg.recon.noise_seed, cfg.recon.noise_cell).to(device)
            coords = None
            if cfg.model.coord_channels:
                coords = torch.stack([coordinate_grid(y0, x0, h, w, *full, device=device) for y0, x0, h, w in windows])
            labels = torch.full((b,), label, dtype=torch.long, device=device)
            dtype = autocast_dtype(self.precision, cfg.recon.bf16)
            with torch.inference_mode():
                recon = reconstruct(
                    self.model,
                    tiles,
                    self.acp,
                    cfg.recon,
                    noise,
                    steps=steps,
                    coords=coords,
                    class_labels=labels,
                    autocast=dtype,
                )
                raws = torch.cat(
                    [
                        raw_components(tiles[i : i + 1], recon[i : i + 1], state.good, cfg.map, win)
                        for i, win in enumerate(windows)
                    ]
                )
                if stage == RAW:
                    out = raws
                else:
                    out = torch.cat([self.finalize(raws[i : i + 1], product, win) for i, win in enumerate(windows)])
                return torch.cat([out, recon.float()], dim=1) if reconstruction else out

        return fn

    def finalize(self, raws: torch.Tensor, product: str, window: Window | None = None) -> torch.Tensor:
        """Raw evidence (N, 4, h, w) -> (N, 2, h, w): the anomaly map and the structural map.

        ``window`` locates the raws in the full image (per-pixel normalization); None = whole image.
        """
        state = self.products[product]
        if state.normalizer is None:
            raise RuntimeError(f"product {product!r} is not calibrated yet")
        weights = state.calibration.map_weights or self.cfg.map.weights
        amap, structural = fuse(state.normalizer(raws, window), self.cfg.map, weights)
        return torch.cat([amap, structural], dim=1)

    def maps(
        self, x: torch.Tensor, product: str, stage: str = FINAL, steps: int | None = None, reconstruction: bool = False
    ) -> torch.Tensor:
        """(N, K, H, W) maps of a checked batch: K = 4 raw components (``raw``) or the anomaly map
        and the structural map (``final``), on the detector's device. Large images are tiled, small
        ones run whole.

        ``reconstruction``: the C channels of the reconstruction follow the K maps (tiles stitched
        with the maps' weights)."""
        x = x.to(self.device)  # a no-op for predict's batch, which check_batch moved
        n, _, h, w = x.shape
        fn = self._window_fn(product, stage, (h, w), steps, reconstruction)
        tile = self.cfg.tile
        if h <= tile.size and w <= tile.size:
            outs = [
                fn(x[i : i + IMAGE_BATCH], [(0, 0, h, w)] * len(x[i : i + IMAGE_BATCH]))
                for i in range(0, n, IMAGE_BATCH)
            ]
            return torch.cat(outs)
        stitched = [run_tiled(x[i], fn, tile.size, tile.overlap, tile.batch) for i in range(n)]
        return stitched[0][None] if n == 1 else torch.stack(stitched)  # one frame: no copy of its maps

    # -- scores --------------------------------------------------------------------------------
    def predict(
        self,
        batch: np.ndarray | torch.Tensor,
        product: str | None = DEFAULT_PRODUCT,
        steps: int | None = None,
        names: Sequence[str] | None = None,
        *,
        return_reconstruction: bool = False,
    ) -> Prediction:
        """A ``Prediction``: anomaly map (N, 1, H, W), component scores (N, 4) in ``COMPONENTS``
        order, score (N,) and, with ``return_reconstruction``, the reconstruction (N, C, H, W).

        All float32; the process component is 0 (``diffqc.core.components``). ``steps`` overrides k;
        ``names`` name the images in input errors.
        """
        product = self.resolve_product(product)
        x = self.check_batch(batch, product, names)
        out = self.maps(x, product, FINAL, steps, reconstruction=return_reconstruction).cpu()
        amap, structural = out[:, :1], out[:, 1:2]
        scores = self.score_maps(amap, structural, product)
        recon = out[:, 2:].numpy() if return_reconstruction else None
        return Prediction(amap.numpy(), scores.components, scores.score, recon)

    def score_maps(self, amap: torch.Tensor, structural: torch.Tensor, product: str) -> ImageScores:
        """Components (N, K) and score (N,), float32, of the final maps (N, 1, H, W) of ``product``."""
        cal = self.products[product].calibration
        raw = image_components(amap, structural, cal.region_level)
        z, score = fuse_components(raw, np.array(cal.comp_mean), np.array(cal.comp_std), self.cfg.score.weights)
        return ImageScores(z.astype(np.float32), score.astype(np.float32))

    def verdicts(self, scores: np.ndarray, product: str | None = None) -> list[str]:
        t = self.threshold(product)
        return ["defect" if s > t else "good" for s in np.asarray(scores)]

    @property
    def component_names(self) -> tuple[str, ...]:
        return COMPONENTS


def image_components(amap: torch.Tensor, structural: torch.Tensor, region_level: float) -> np.ndarray:
    """(N, K) raw score components of maps (N, 1, H, W), in ``COMPONENTS`` order."""
    return measure_components(
        [ImageEvidence(a[0].numpy(), s[0].numpy(), region_level) for a, s in zip(amap, structural, strict=True)]
    )


def image_batches(images: Sequence[np.ndarray], size: int = IMAGE_BATCH) -> Iterator[tuple[int, torch.Tensor]]:
    """(start index, (B, C, H, W) tensor) for runs of consecutive HxWxC images of the same shape."""
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < size and images[j].shape == images[i].shape:
            j += 1
        yield i, torch.from_numpy(np.stack(images[i:j]).transpose(0, 3, 1, 2).copy())
        i = j
