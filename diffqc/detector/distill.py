"""Consistency distillation: a one-step student from a multi-step DDIM teacher.

Consistency models (Song et al. 2023) learn f(x_t, t) = x_0, the origin of the probability-flow ODE
trajectory through x_t, so one network pass replaces the k DDIM steps. Distillation trains f on the
teacher's own solver, only on the noise levels the detector uses (0..t*): for a training crop x0
and a pair t_n < t_{n+1} of a grid of N intervals over [0, t*],

    x_{t_{n+1}} = sqrt(a) x0 + sqrt(1 - a) z
    x̂_{t_n}     = one teacher DDIM step from x_{t_{n+1}}
    loss        = pseudo-Huber(f_θ(x_{t_{n+1}}), f_θ⁻(x̂_{t_n}))        θ⁻: EMA target network

f(x, 0) = x by the skip/out scaling (``unet.Denoiser``), which anchors the chain at the data. The
student starts from the teacher's weights (at t* it is then the teacher's one-step estimate) and is
an ordinary detector artifact of kind ``consistency``: DDAD's guidance acts on each reconstruction
step, so it applies to the student's single step exactly as to the teacher's. The student is
calibrated afresh on the held-out good images of the teacher's own split.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from diffqc.core.errors import DetectorError, TrainingDataError
from diffqc.detector.augment import CropSampler
from diffqc.detector.config import DetectorConfig
from diffqc.detector.detector import Detector, ProductState
from diffqc.detector.fit import (
    calibrate_products,
    fingerprint,
    load_training_sets,
    training_record,
    training_sampler,
)
from diffqc.detector.train import (
    TrainResult,
    check_budget,
    cosine_lr,
    ema_update,
    run_budget,
    tail_loss,
    warmup_decay,
)
from diffqc.detector.unet import Denoiser, alphas_cumprod, build_denoiser, clean_estimate

DEFAULT_INTERVALS = 5  # the k = 5 teacher's own grid over [0, t*]
TARGET_DECAY = 0.95  # θ⁻ (consistency distillation paper)
LR = 2e-4  # fine-tuning from the teacher: 10x below the training rate


def pseudo_huber(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(|a - b|² + c²) - c per sample, c = 0.00054·sqrt(dim) (improved consistency training)."""
    d = (a - b).flatten(1)
    c = 0.00054 * math.sqrt(d.shape[1])
    return ((d.square().sum(1) + c * c).sqrt() - c).mean()


def distill_denoiser(
    teacher: Denoiser,
    cfg: DetectorConfig,
    sampler: CropSampler,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    intervals: int = DEFAULT_INTERVALS,
    lr: float = LR,
    progress: bool = True,
) -> TrainResult:
    """Train a consistency student (``cfg.model.consistency``) on ``teacher``'s DDIM steps; returns its EMA."""
    check_budget(steps, minutes)
    if intervals < 1:
        raise ValueError(f"--intervals must be >= 1, got {intervals}")
    tc = cfg.train
    torch.manual_seed(tc.seed)
    teacher = teacher.eval().requires_grad_(False)
    student = build_denoiser(cfg.model)
    student.load_state_dict(teacher.state_dict())
    student.train()
    target = copy.deepcopy(student).eval().requires_grad_(False)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    acp = alphas_cumprod(cfg.model).float()
    grid = torch.from_numpy(np.round(np.linspace(0, cfg.recon.t_star, intervals + 1)).astype(np.int64))
    gen = torch.Generator().manual_seed(tc.seed)

    def step_fn(step: int, done: float) -> float:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(lr, step, done, tc.warmup_steps)
        x0, coords, labels = sampler.sample(tc.batch_size)
        x0 = x0 * 2 - 1
        n = torch.randint(0, intervals, (x0.shape[0],), generator=gen)
        t_lo, t_hi = grid[n], grid[n + 1]
        a_hi, a_lo = acp[t_hi].view(-1, 1, 1, 1), acp[t_lo].view(-1, 1, 1, 1)
        x_hi = a_hi.sqrt() * x0 + (1 - a_hi).sqrt() * torch.randn(x0.shape, generator=gen)
        with torch.no_grad():
            eps = teacher(x_hi, t_hi, coords, labels)
            x0_teacher = clean_estimate(eps, x_hi, t_hi, acp).clamp(-1, 1)  # as reconstruct's DDIM step
            x_lo = a_lo.sqrt() * x0_teacher + (1 - a_lo).sqrt() * eps
            want = clean_estimate(target(x_lo, t_lo, coords, labels), x_lo, t_lo, acp)
        got = clean_estimate(student(x_hi, t_hi, coords, labels), x_hi, t_hi, acp)
        loss = pseudo_huber(got, want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        ema_update(target, student, TARGET_DECAY)
        ema_update(ema, student, warmup_decay(tc.ema_decay, step))
        return loss.item()

    done, seconds, losses = run_budget(step_fn, steps=steps, minutes=minutes, progress=progress, desc="distill")
    return TrainResult(ema, done, seconds, tail_loss(losses), losses)


def teacher_data(teacher: Detector, data: Mapping[str, Path] | None) -> dict[str, Path]:
    """The teacher's training folders (from its metadata) unless ``data`` names them."""
    unknown = set(data or {}) - set(teacher.product_names)
    if unknown:
        raise TrainingDataError(f"--product {sorted(unknown)}: the teacher has products {teacher.product_names}")
    recorded = teacher.metadata.get("training_data", {})
    out = {}
    for p in teacher.product_names:
        if data and p in data:
            out[p] = Path(data[p])
            continue
        folder = recorded.get(p, {}).get("folder")
        if not folder or not Path(folder).is_dir():
            raise TrainingDataError(
                f"the teacher's training data for product {p!r} ({folder or 'not recorded'}) is not available; "
                f"pass --data FOLDER --product {p}"
            )
        out[p] = Path(folder)
    return out


def distill_detector(
    teacher: Detector,
    data: Mapping[str, Path] | None = None,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    intervals: int = DEFAULT_INTERVALS,
    lr: float = LR,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Detector:
    """Distill ``teacher`` into a calibrated one-step student on the teacher's training images."""
    if teacher.kind != "ddim":
        raise DetectorError(f"this model is already a one-step {teacher.kind} student; distill its teacher")
    if steps is None and minutes is None:
        minutes = 5.0
    folders = teacher_data(teacher, data)
    cfg = copy.deepcopy(teacher.cfg)
    cfg.model.consistency = True
    cfg.recon.steps = 1
    sets = load_training_sets(folders, cfg.train)
    for p in folders:
        recorded = teacher.metadata.get("training_data", {}).get(p, {}).get("fingerprint")
        if recorded and recorded != fingerprint(sets.paths[p]):
            warnings.warn(
                f"{folders[p]} is not the data the teacher was trained on: its held-out images may "
                f"have been training images, and the student's threshold would then be too low",
                stacklevel=2,
            )
    result = distill_denoiser(
        teacher.model,
        cfg,
        training_sampler(cfg, sets.train_images()),
        steps=steps,
        minutes=minutes,
        intervals=intervals,
        lr=lr,
        progress=progress,
    )
    log(f"distilled {result.steps} steps in {result.seconds:.0f} s (final consistency loss {result.loss:.4f})")
    states = {p: ProductState(s.good, image_size=s.image_size) for p, s in teacher.products.items()}
    student = Detector(cfg, result.model, states)
    started = time.monotonic()
    calibrate_products(student, sets.images, sets.splits, progress, log)
    student.metadata = {
        **{k: v for k, v in teacher.metadata.items() if k in ("products", "training_data", "decisions")},
        "training": training_record(result, started, steps, minutes, cfg.train.seed),
        "distillation": {
            "teacher_steps": teacher.cfg.recon.steps,
            "intervals": intervals,
            "lr": lr,
            "target_decay": TARGET_DECAY,
            "teacher_training": teacher.metadata.get("training", {}),
            "teacher_saved_at": teacher.metadata.get("saved_at"),
        },
        "metrics": {},
    }
    return student
