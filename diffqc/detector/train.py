"""The training loop: DDPM noise prediction on random crops, EMA weights, a time or step budget."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from diffqc.detector.augment import CropSampler
from diffqc.detector.config import DetectorConfig
from diffqc.detector.unet import Denoiser, alphas_cumprod, build_denoiser, coordinate_grid
from diffqc.progress import progress_bar


class TrainingStep(NamedTuple):
    """One optimizer step done, as an ``on_step`` callback sees it (a training job's progress)."""

    step: int  # steps done so far
    done: float  # share of the budget used, 0..1
    loss: float


class AdaStep(NamedTuple):
    """One adjustment of adaptive augmentation."""

    step: int
    p: float  # the augmentation probability after the adjustment
    gap: float  # the overfitting gap that steered it


@dataclass
class TrainResult:
    model: Denoiser  # the EMA weights, in eval mode
    steps: int
    seconds: float
    loss: float  # mean loss over the last 10% of steps
    losses: list[float] = field(default_factory=list)
    # Adaptive augmentation: (step, p, overfitting gap) at every adjustment; the EMA model's final gap.
    ada: list[AdaStep] = field(default_factory=list)
    gap: float | None = None


def train_t_max(cfg: DetectorConfig) -> int:
    t_max = cfg.train.t_max or 2 * cfg.recon.t_star
    return int(min(max(t_max, cfg.recon.t_star + 1), cfg.model.num_train_timesteps))


def check_budget(steps: int | None, minutes: float | None) -> None:
    if steps is None and minutes is None:
        raise ValueError("give a training budget: steps or minutes")
    if steps is not None and steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")


def run_budget(
    step_fn: Callable[[int, float], float],
    *,
    steps: int | None,
    minutes: float | None,
    progress: bool,
    desc: str,
    on_step: Callable[[TrainingStep], None] | None = None,
) -> tuple[int, float, list[float]]:
    """Call ``step_fn(step, done)`` (``done``: share of the budget used, 0..1; returns the loss) until
    ``steps`` or ``minutes`` runs out, whichever first, with a progress bar, and ``on_step`` after each step
    (an exception it raises ends training there). Returns (steps, seconds, losses)."""
    check_budget(steps, minutes)
    budget_s = minutes * 60 if minutes is not None else math.inf
    by_time = steps is None
    losses: list[float] = []
    with progress_bar(
        desc, round(budget_s) if by_time else steps, unit="s" if by_time else "steps", enabled=progress, transient=True
    ) as bar:
        start = last = time.monotonic()
        step = 0
        while True:
            done = max(step / steps if steps else 0.0, (time.monotonic() - start) / budget_s)
            if done >= 1.0:
                break
            losses.append(step_fn(step, done))
            step += 1
            now = time.monotonic()
            if on_step is not None:
                on_step(TrainingStep(step, max(step / steps if steps else 0.0, (now - start) / budget_s), losses[-1]))
            bar.advance(1 if steps is not None else round(now - start) - bar.completed)
            if now - last > 1.0:
                bar.note(f"loss {np.mean(losses[-50:]):.4f}, step {step}")
                last = now
    return step, time.monotonic() - start, losses


def cosine_lr(base: float, step: int, done: float, warmup_steps: int) -> float:
    """Warmup, then cosine decay to 10% over the budget (by steps or by time, whichever is further)."""
    return base * min(1.0, (step + 1) / warmup_steps) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


def warmup_decay(target: float, step: int) -> float:
    """EMA decay with warmup: early on the average follows the model closely (short CPU budgets)."""
    return min(target, (1 + step) / (10 + step))


def tail_loss(losses: list[float]) -> float:
    tail = losses[-max(1, len(losses) // 10) :]
    return float(np.mean(tail)) if tail else math.nan


class OverfitProbe:
    """Denoising loss on fixed crops of training and of held-out images: the overfitting signal.

    The crops are paired (same product, position, timestep and noise for the training crop and
    the held-out crop), so the relative gap (held-out - training) / training measures what the
    model knows of its training images beyond their kind: ~0 while it generalizes, growing as it
    memorizes. It steers adaptive augmentation and is reported at the end of training.
    """

    def __init__(
        self,
        sampler: CropSampler,
        holdout: dict[int, list[np.ndarray]],
        acp: torch.Tensor,
        t_max: int,
        seed: int,
        n: int = 32,
    ):
        rng = np.random.default_rng(seed + 2)  # its own stream: probing does not change the training crops
        c, coords = sampler.aug.crop, sampler.aug.coords
        # (training, held-out) crops and their coordinates
        xs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        grids: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        labels = []
        for _ in range(n):
            label = sampler.labels[rng.integers(len(sampler.labels))]
            train = sampler.images[label][rng.integers(len(sampler.images[label]))]
            held = holdout[label][rng.integers(len(holdout[label]))]
            h, w = min(train.shape[0], held.shape[0]), min(train.shape[1], held.shape[1])
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            labels.append(label)
            for i, img in enumerate((train, held)):
                xs[i].append(img[y0 : y0 + c, x0 : x0 + c].transpose(2, 0, 1))
                grids[i].append(coordinate_grid(y0, x0, c, c, *img.shape[:2]))
        y = torch.tensor(labels, dtype=torch.long)
        self.batches = [
            (torch.from_numpy(np.stack(x).astype(np.float32)), torch.stack(g) if coords else None, y)
            for x, g in zip(xs, grids, strict=True)
        ]
        gen = torch.Generator().manual_seed(seed + 2)
        self.t = torch.randint(0, t_max, (n,), generator=gen)
        self.noise = torch.randn(self.batches[0][0].shape, generator=gen)
        self.acp = acp

    @torch.no_grad()
    def _loss(self, model: Denoiser, batch) -> float:
        x0, coords, labels = batch
        a = self.acp[self.t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * (x0 * 2 - 1) + (1 - a).sqrt() * self.noise
        return F.mse_loss(model(x_t, self.t, coords, labels), self.noise).item()

    def gap(self, model: Denoiser) -> float:
        train, held = (self._loss(model, b) for b in self.batches)
        return (held - train) / max(train, 1e-8)


def train_denoiser(
    cfg: DetectorConfig,
    sampler: CropSampler,
    *,
    holdout: dict[int, list[np.ndarray]] | None = None,
    init: Denoiser | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    progress: bool = True,
    on_step: Callable[[TrainingStep], None] | None = None,
) -> TrainResult:
    """Train until ``steps`` or ``minutes`` runs out (whichever first); returns the EMA model.

    ``holdout``: held-out good images per label; they are never trained on, only probed for the
    overfitting gap that steers adaptive augmentation (``cfg.train.ada``) and is reported at the end.
    ``init``: start from these weights (fine-tuning) instead of a fresh network. ``on_step``: called after
    every step (``run_budget``).
    """
    check_budget(steps, minutes)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    model = build_denoiser(cfg.model)
    if init is not None:
        model.load_state_dict(init.state_dict())
    model.train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(0.9, 0.99), weight_decay=0.0)
    acp = alphas_cumprod(cfg.model).float()
    t_max = train_t_max(cfg)
    gen = torch.Generator().manual_seed(tc.seed)
    probe = OverfitProbe(sampler, holdout, acp, t_max, tc.seed) if holdout else None
    adaptive = bool(tc.ada) and probe is not None and sampler.aug.ada
    history: list[AdaStep] = []

    def step_fn(step: int, done: float) -> float:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(tc.lr, step, done, tc.warmup_steps)
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
        ema_update(ema, model, warmup_decay(tc.ema_decay, step))
        if probe is not None and adaptive and step and step % tc.ada_interval == 0:
            gap = probe.gap(model)
            sampler.p = float(np.clip(sampler.p + tc.ada_speed * np.sign(gap - tc.ada_target), 0.0, 1.0))
            history.append(AdaStep(step, sampler.p, gap))
        return loss.item()

    n, seconds, losses = run_budget(
        step_fn, steps=steps, minutes=minutes, progress=progress, desc="train", on_step=on_step
    )
    return TrainResult(ema, n, seconds, tail_loss(losses), losses, history, probe.gap(ema) if probe else None)
