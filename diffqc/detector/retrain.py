"""Retraining: a product's production detector fine-tuned on the product's recent good parts.

The production network already knows the product; what changed is the parts (a new supplier, a
worn fixture, light) and which good parts it wrongly flags. So retraining is the onboarding
fine-tune applied to the same product: the production weights (its product's class-embedding row,
when the artifact serves several products) at the onboarding learning rate, the data-dependent
choices measured afresh on the new images, calibrated on held-out ones. The result is an ordinary
one-product artifact whose metadata names what it was fine-tuned from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffqc.core.errors import DetectorError, TrainingDataError
from diffqc.detector.config import ModelConfig
from diffqc.detector.detector import Detector
from diffqc.detector.fit import train_detector
from diffqc.detector.onboard import EMBEDDING, ONBOARD_LR, onboarding_config
from diffqc.detector.train import TrainingStep
from diffqc.detector.unet import Denoiser, build_denoiser


def product_weights(base: Detector, product: str, cfg: ModelConfig) -> Denoiser:
    """The base's denoiser for ``product`` alone: its class-embedding row is the product's own."""
    model = build_denoiser(cfg)
    state = dict(base.model.state_dict())
    if EMBEDDING in state:
        row = base.product_names.index(product)
        state[EMBEDDING] = state[EMBEDDING][row : row + 1]
    model.load_state_dict(state)
    return model


def retrain_detector(
    base: Detector,
    data: str | Path,
    product: str,
    *,
    steps: int,
    seed: int = 0,
    lr: float = ONBOARD_LR,
    log: Callable[[str], None] = print,
    on_step: Callable[[TrainingStep], None] | None = None,
) -> Detector:
    """Fine-tune ``base`` (a multi-step detector serving ``product``) on the good images of ``data`` (MVTec
    layout) for ``steps`` steps into a calibrated one-product detector. ``on_step`` follows each step (an
    exception it raises stops training)."""
    if base.kind != "ddim":
        raise DetectorError(
            f"the model to retrain is a one-step {base.kind} student; retrain its multi-step teacher, then distill"
        )
    if product not in base.product_names:
        raise TrainingDataError(f"the model to retrain serves {base.product_names}, not product {product!r}")
    cfg = onboarding_config(base.cfg, product, lr)
    log(f"fine-tuning the {product!r} model on {Path(data)} for {steps} steps")
    detector = train_detector(
        {product: Path(data)},
        cfg,
        steps=steps,
        seed=seed,
        init=product_weights(base, product, cfg.model),
        progress=False,
        log=log,
        on_step=on_step,
    )
    detector.metadata["retraining"] = {
        "base_products": base.product_names,
        "lr": lr,
        "base_training": base.metadata.get("training", {}),
        "base_saved_at": base.metadata.get("saved_at"),
    }
    return detector


def evaluation(detector: Detector, product: str) -> dict[str, Any]:
    """What the admin judges a retrained model by before its shadow trial: its threshold and the share of
    held-out good images it flags, the synthetic-anomaly AUROC (learned map fusion only), how training went."""
    cal = detector.products[product].calibration
    training = detector.metadata.get("training", {})
    data = detector.metadata.get("training_data", {}).get(product, {})
    figures = {
        "threshold": cal.threshold,
        "threshold_rule": cal.threshold_rule,
        "target_fpr": cal.target_fpr,
        "held_out_fpr": cal.calibration_fpr,
        "expected_fpr": cal.expected_fpr,
        "held_out_images": cal.n_normalization + cal.n_calibration,
        "synthetic_auroc": cal.synthetic_auroc,
        "steps": training.get("steps"),
        "final_loss": training.get("final_loss"),
        "overfitting_gap": training.get("overfitting_gap"),
        "train_images": data.get("train_images"),
        "data_fingerprint": data.get("fingerprint"),
    }
    # JSON has no NaN or infinity (a diverged loss): such a figure is unknown.
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in figures.items()}
