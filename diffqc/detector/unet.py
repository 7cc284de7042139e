"""The denoiser: a diffusers ``UNet2DModel`` trained from scratch, wrapped for CPU speed.

The wrapper pixel-unshuffles the image (the UNet runs at half resolution with 4x channels: every
pixel value still enters the network, at about a quarter of the cost), pads any size to what the
UNet's downsampling needs, and optionally appends absolute coordinate channels so that the model
can learn position-dependent content on aligned parts. It is fully convolutional: trained on crops,
run on whole images or tiles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from diffqc.detector.config import ModelConfig


class Denoiser(nn.Module):
    def __init__(self, cfg: ModelConfig):
        from diffusers import UNet2DModel  # lazy: importing diffusers costs seconds (CLI start-up)

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
            class_labels = torch.zeros(n, dtype=torch.long)
        out = self.unet(inp, t, class_labels=class_labels).sample
        if cfg.patch_size > 1:
            out = F.pixel_shuffle(out, cfg.patch_size)
        return out[:, :, :h, :w].contiguous()


def coordinate_grid(y0: int, x0: int, h: int, w: int, full_h: int, full_w: int) -> torch.Tensor:
    """(2, h, w) absolute coordinates in [-1, 1] of a window at (y0, x0) in a full_h x full_w image."""
    ys = (torch.arange(y0, y0 + h, dtype=torch.float32) + 0.5) / full_h * 2 - 1
    xs = (torch.arange(x0, x0 + w, dtype=torch.float32) + 0.5) / full_w * 2 - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"))


def build_denoiser(cfg: ModelConfig) -> Denoiser:
    model = Denoiser(cfg)
    return model.to(memory_format=torch.channels_last)


def alphas_cumprod(cfg: ModelConfig) -> torch.Tensor:
    """The DDPM noise schedule's cumulative alphas (float64 for exact DDIM arithmetic)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
    )
    return sched.alphas_cumprod.to(torch.float64)
