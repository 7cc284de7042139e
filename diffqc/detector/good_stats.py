"""Statistics of good images that are evidence by themselves, fused into the anomaly map.

On aligned parts a per-pixel Gaussian of good images is a strong detector; on textures, the
distribution of local patch statistics is (band energies, gradient directions and local means,
modelled by a Gaussian mixture because a texture such as brick has several kinds of place).
The diffusion residual has to add to these, so the detector measures them too and the fusion
uses both; the benchmark reports each part alone.
"""

from __future__ import annotations

import numpy as np
import torch

from diffqc.detector.features import MemoryBank, PositionGaussian, as_batch, locally_aware_patches, upsample
from diffqc.detector.filters import gaussian_blur, sobel

PIXEL, PATCH = "pixel", "patch"
POOL = 4.0  # window (Gaussian sigma) over which local energies are measured
# Textures are multi-modal (mortar and brick face): a mixture of Gaussians, not one.
MIXTURE_COMPONENTS = 8
FEW_IMAGES = 20


def patch_features(x: torch.Tensor) -> torch.Tensor:
    """(N, 7C, H, W) local statistics per channel: log energy in three frequency bands (detail,
    fine, coarse: blur and contrast changes move these), log horizontal and vertical gradient
    energy (direction: scratches, creases), and the local mean at two scales (stains, holes)."""
    feats = []
    prev = x
    for s in (1.0, 2.0, 4.0):
        low = gaussian_blur(x, s)
        band = prev - low
        prev = low
        feats.append(torch.log(gaussian_blur(band * band, POOL) + 1e-5))
    gx, gy = sobel(x)
    feats += [torch.log(gaussian_blur(gx * gx, POOL) + 1e-5), torch.log(gaussian_blur(gy * gy, POOL) + 1e-5)]
    feats += [gaussian_blur(x, 2.0), prev]
    return torch.cat(feats, dim=1)


class GoodStatistics:
    """Either a per-pixel Gaussian (aligned) or a Gaussian of local patch features (textures)."""

    def __init__(self, kind: str, tensors: dict[str, torch.Tensor]):
        if kind not in (PIXEL, PATCH):
            raise ValueError(f"unknown statistics kind {kind!r}")
        self.kind = kind
        self.tensors = tensors

    def to(self, device: torch.device) -> GoodStatistics:
        return GoodStatistics(self.kind, {name: t.to(device) for name, t in self.tensors.items()})

    @classmethod
    def fit(cls, images: list[np.ndarray], kind: str, std_smooth: float = 2.0, seed: int = 0) -> GoodStatistics:
        if kind == PIXEL:
            stack = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).astype(np.float32))
            mu = stack.mean(0, keepdim=True)
            var = stack.var(0, keepdim=True, unbiased=True) if len(images) > 1 else torch.zeros_like(mu)
            # Few images: smooth the variance spatially, or flat regions explode. With enough images
            # the raw per-pixel variance is better (smoothing lowers it on thin high-variance edges).
            if len(images) < FEW_IMAGES:
                var = gaussian_blur(var, std_smooth)
            floor = max(float(var.median()) * 0.25, 1e-5)
            return cls(PIXEL, {"mu": mu[0], "sigma": var.clamp_min(floor).sqrt()[0]})
        rng = np.random.default_rng(seed)
        samples = []
        per_image = max(300, 60_000 // max(1, len(images)))
        for im in images:
            f = patch_features(torch.from_numpy(im.transpose(2, 0, 1)[None].copy()))[0]
            f = f[:, 8:-8, 8:-8].reshape(f.shape[0], -1)  # borders are padding artefacts
            idx = rng.choice(f.shape[1], size=min(per_image, f.shape[1]), replace=False)
            samples.append(f[:, idx].T)
        data = torch.cat(samples).double().numpy()
        loc, scale = data.mean(0), data.std(0) + 1e-6
        from sklearn.mixture import GaussianMixture

        k = min(MIXTURE_COMPONENTS, max(1, len(data) // 1000))
        gmm = GaussianMixture(k, covariance_type="full", reg_covar=1e-3, random_state=seed, max_iter=100)
        gmm.fit((data - loc) / scale)
        chol = torch.from_numpy(gmm.precisions_cholesky_)  # precision = L @ L.T per component
        logw = torch.from_numpy(np.log(gmm.weights_)) + torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
        return cls(
            PATCH,
            {
                "loc": torch.from_numpy(loc).float(),
                "scale": torch.from_numpy(scale).float(),
                "means": torch.from_numpy(gmm.means_).float(),
                "prec_chol": chol.float(),
                "log_norm": logw.float(),
            },
        )

    def add_memory(self, images: list[np.ndarray], fraction: float, max_patches: int, seed: int = 0) -> None:
        """Keep the good images' patches in the pretrained feature space: for aligned parts (per-pixel
        statistics) a per-position Gaussian (PaDiM), else a PatchCore memory, a greedy coreset of
        ``fraction`` of at most ``max_patches`` patches drawn at random."""
        with torch.inference_mode():
            feats = [locally_aware_patches(as_batch(im)) for im in images]
        if self.kind == PIXEL:
            gaussian = PositionGaussian.fit(feats)
            self.tensors["position_mean"], self.tensors["position_precision"] = gaussian.mean, gaussian.precision
        else:
            self.tensors["memory_bank"] = MemoryBank.fit(feats, fraction, max_patches, seed).bank

    def memory_map(self, x: torch.Tensor, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """(N, 1, h, w) distance of each patch of ``x`` to good patches (at its position, for aligned
        parts; the nearest one otherwise), at pixel resolution."""
        t = self.tensors
        if "position_mean" in t:
            nearest = PositionGaussian(t["position_mean"], t["position_precision"]).distance(
                locally_aware_patches(x), window
            )
        elif "memory_bank" in t:
            nearest = MemoryBank(t["memory_bank"]).distance(locally_aware_patches(x))
        else:
            raise ValueError("this model keeps no memory of good patches (map.features was off when it was trained)")
        return upsample(nearest, (x.shape[-2], x.shape[-1]))

    def raw_map(self, x: torch.Tensor, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """(N, 1, h, w) deviation of ``x`` from good images; ``window`` = (y0, x0, h, w) in the full image."""
        if self.kind == PIXEL:
            mu, sigma = self.tensors["mu"], self.tensors["sigma"]
            if window is not None:
                y0, x0, h, w = window
                mu, sigma = mu[:, y0 : y0 + h, x0 : x0 + w], sigma[:, y0 : y0 + h, x0 : x0 + w]
            z = (x - mu) / sigma
            return (z * z).mean(dim=1, keepdim=True).sqrt()
        t = self.tensors
        f = (patch_features(x) - t["loc"].view(1, -1, 1, 1)) / t["scale"].view(1, -1, 1, 1)
        # Negative log-likelihood under the mixture (constant dropped), one component at a time
        # so memory stays at one feature map.
        logp = []
        for mean, chol, log_norm in zip(t["means"], t["prec_chol"], t["log_norm"], strict=True):
            y = torch.einsum("nfhw,fg->nghw", f - mean.view(1, -1, 1, 1), chol)
            logp.append(log_norm - 0.5 * (y * y).sum(1))
        return -torch.logsumexp(torch.stack(logp), dim=0).unsqueeze(1)
