"""The training loop: DDPM noise prediction on random crops, EMA weights, a time or step budget."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffqc.detector.augment import CropSampler
from diffqc.detector.config import DetectorConfig
from diffqc.detector.unet import Denoiser, alphas_cumprod, build_denoiser


@dataclass
class TrainResult:
    model: Denoiser  # the EMA weights, in eval mode
    steps: int
    seconds: float
    loss: float  # mean loss over the last 10% of steps
    losses: list[float] = field(default_factory=list)


def train_t_max(cfg: DetectorConfig) -> int:
    t_max = cfg.train.t_max or 2 * cfg.recon.t_star
    return int(min(max(t_max, cfg.recon.t_star + 1), cfg.model.num_train_timesteps))


def train_denoiser(
    cfg: DetectorConfig,
    sampler: CropSampler,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train until ``steps`` or ``minutes`` runs out (whichever first); returns the EMA model."""
    if steps is None and minutes is None:
        raise ValueError("give a training budget: steps or minutes")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_denoiser(cfg.model).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    acp = alphas_cumprod(cfg.model).float()
    t_max = train_t_max(cfg)
    budget_s = minutes * 60 if minutes is not None else math.inf
    gen = torch.Generator().manual_seed(tc.seed)

    by_time = steps is None
    bar = tqdm(total=round(budget_s) if by_time else steps, disable=not progress, desc="train", leave=False,
               unit="s" if by_time else "step",
               bar_format="{l_bar}{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]" if by_time else None)
    losses: list[float] = []
    start = last = time.monotonic()
    step = 0
    while True:
        elapsed = time.monotonic() - start
        done = max(step / steps if steps else 0.0, elapsed / budget_s)
        if done >= 1.0:
            break
        # Warmup, then cosine decay over the budget (by steps or by time, whichever is further).
        lr = tc.lr * min(1.0, (step + 1) / tc.warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
        for group in opt.param_groups:
            group["lr"] = lr
        x0, coords, labels = sampler.sample(tc.batch_size)
        x0 = x0 * 2 - 1
        t = torch.randint(0, t_max, (x0.shape[0],), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = F.mse_loss(model(x_t, t, coords, labels), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # EMA with warmup: early on the average follows the model closely (short CPU budgets).
        decay = min(tc.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        losses.append(loss.item())
        step += 1
        now = time.monotonic()
        bar.update(1 if steps is not None else round(now - start) - bar.n)
        if now - last > 1.0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", step=step)
            last = now
    bar.close()
    tail = losses[-max(1, len(losses) // 10):]
    return TrainResult(ema, step, time.monotonic() - start, float(np.mean(tail)) if tail else math.nan, losses)
