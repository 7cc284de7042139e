"""The denoiser: a diffusers ``UNet2DModel`` trained from scratch, wrapped for CPU speed.

The wrapper pixel-unshuffles the image (the UNet runs at half resolution with 4x channels: every
pixel value still enters the network, at about a quarter of the cost), pads any size to what the
UNet's downsampling needs, and optionally appends absolute coordinate channels so that the model
can learn position-dependent content on aligned parts. It is fully convolutional: trained on crops,
run on whole images or tiles.

A consistency student (``cfg.consistency``) keeps the architecture and the interface: its forward
returns the noise implied by its consistency function f(x_t, t) = c_skip(t)·x_t + c_out(t)·x̂0,
with the skip/out scaling of latent consistency models (Luo et al. 2023) that makes f(x, 0) = x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffqc.detector.config import ModelConfig

# Skip/out scaling of the consistency function (LCM): sigma_data and the timestep scale.
SIGMA_DATA = 0.5
CONSISTENCY_TIME_SCALE = 10.0


class Denoiser(nn.Module):
    acp: torch.Tensor  # buffer registered when ``cfg.consistency``: cumulative alphas (float32)

    def __init__(self, cfg: ModelConfig):
        # Lazy: importing diffusers costs seconds (CLI start-up). Imported from its defining module:
        # ``diffusers/__init__`` shows type checkers the torch-less dummy class, not this one.
        from diffusers.models.unets.unet_2d import UNet2DModel

        super().__init__()
        self.cfg = cfg
        p = cfg.patch_size
        cin = (cfg.channels + (2 if cfg.coord_channels else 0)) * p * p
        levels = len(cfg.block_out_channels)
        self.unet = UNet2DModel(
            sample_size=64,
            in_channels=cin,
            out_channels=cfg.channels * p * p,
            block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block,
            down_block_types=("DownBlock2D",) * levels,  # no attention: it doubles CPU cost
            up_block_types=("UpBlock2D",) * levels,
            norm_num_groups=cfg.norm_num_groups,
            num_class_embeds=len(cfg.products) if cfg.class_embedding else None,
        )
        if cfg.consistency:
            self.register_buffer("acp", alphas_cumprod(cfg).float(), persistent=False)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        coords: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise in ``x_t`` (N, C, H, W, model space [-1, 1]) at timesteps ``t`` (N,)."""
        cfg = self.cfg
        n, _, h, w = x_t.shape
        inp = x_t
        if cfg.coord_channels:
            if coords is None:
                raise ValueError("this denoiser needs coordinate channels (coords=...)")
            inp = torch.cat([inp, coords.to(inp.dtype)], dim=1)
        m = cfg.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            # Reflection keeps the padded border statistically like the image (zeros would not).
            mode = "reflect" if ph < h and pw < w else "replicate"
            inp = F.pad(inp, (0, pw, 0, ph), mode=mode)
        if cfg.patch_size > 1:
            inp = F.pixel_unshuffle(inp, cfg.patch_size)
        inp = inp.contiguous(memory_format=torch.channels_last)
        if not cfg.class_embedding:
            class_labels = None
        elif class_labels is None:
            class_labels = torch.zeros(n, dtype=torch.long, device=x_t.device)
        out = self.unet(inp, t, class_labels=class_labels).sample
        if cfg.patch_size > 1:
            out = F.pixel_shuffle(out, cfg.patch_size)
        out = out[:, :, :h, :w].contiguous()
        return self._consistency_noise(x_t, t, out) if cfg.consistency else out

    def _consistency_noise(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        x0 = clean_estimate(out, x_t, t, self.acp)
        s = CONSISTENCY_TIME_SCALE * t.view(-1, 1, 1, 1).to(x_t.dtype)
        c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
        c_out = s / (s**2 + SIGMA_DATA**2).sqrt()
        f = c_skip * x_t + c_out * x0
        a = self.acp[t].view(-1, 1, 1, 1).to(x_t.dtype)
        return (x_t - a.sqrt() * f) / (1 - a).sqrt()


def clean_estimate(eps: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, acp: torch.Tensor) -> torch.Tensor:
    """x̂0 implied by predicted noise ``eps`` at timesteps ``t`` (N,): (x_t - sqrt(1-a)·eps) / sqrt(a)."""
    a = acp[t].view(-1, 1, 1, 1).to(x_t.dtype)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def coordinate_grid(
    y0: int, x0: int, h: int, w: int, full_h: int, full_w: int, *, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(2, h, w) absolute coordinates in [-1, 1] of a window at (y0, x0) in a full_h x full_w image."""
    ys = (torch.arange(y0, y0 + h, dtype=torch.float32, device=device) + 0.5) / full_h * 2 - 1
    xs = (torch.arange(x0, x0 + w, dtype=torch.float32, device=device) + 0.5) / full_w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def build_denoiser(cfg: ModelConfig) -> Denoiser:
    model = Denoiser(cfg)
    # torch's stub for Module.to lacks the memory_format keyword that it accepts at run time.
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def alphas_cumprod(cfg: ModelConfig) -> torch.Tensor:
    """The DDPM noise schedule's cumulative alphas (float64 for exact DDIM arithmetic)."""
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler  # see Denoiser.__init__

    sched = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )
    return sched.alphas_cumprod.to(torch.float64)
