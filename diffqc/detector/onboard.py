"""Few-shot onboarding: a detector for a new product type from 5-10 good images.

A base model trained on several product types (``diffqc train`` with repeated ``--data``; they
share one network through a product-type class embedding) has already learned what parts,
edges, pads and textures look like. A new product type then needs a short fine-tune, not a
network from scratch: the base's weights are copied, the new product's embedding row starts as
the mean of the base's rows (the "average product"), and the whole network is fine-tuned on the
new images at a lower learning rate, with the new product's own data-dependent choices
(alignment, flips, adaptive augmentation) measured as in training. The architecture stays the
base's, so a base without coordinate channels cannot learn positions of an aligned product.

The result is an ordinary one-product artifact (the platform serves one artifact per product
type), calibrated on held-out images of the new product, with the base's lineage in its metadata.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from diffqc.core.errors import DetectorError, TrainingDataError
from diffqc.detector.config import DetectorConfig
from diffqc.detector.detector import Detector
from diffqc.detector.fit import product_name, train_detector
from diffqc.detector.unet import Denoiser, build_denoiser

ONBOARD_LR = 5e-4  # a quarter of the training rate: adapt the base, do not overwrite it
DEFAULT_MINUTES = 3.0
EMBEDDING = "unet.class_embedding.weight"


def onboarding_config(base: DetectorConfig, product: str, lr: float) -> DetectorConfig:
    """The base's config for ``product`` alone: its architecture kept, every data-dependent choice reopened."""
    cfg = copy.deepcopy(base)
    cfg.model.products = [product]
    tc = cfg.train
    tc.aligned = tc.hflip = tc.vflip = tc.rot90 = tc.ada = None
    tc.lr = lr
    cfg.map.normalization = "auto"
    return cfg


def initial_weights(base: Detector, cfg: DetectorConfig) -> Denoiser:
    """The base's denoiser with one class-embedding row, the mean of the base's product rows."""
    model = build_denoiser(cfg.model)
    state = dict(base.model.state_dict())
    if EMBEDDING in state:
        state[EMBEDDING] = state[EMBEDDING].mean(0, keepdim=True)
    model.load_state_dict(state)
    return model


def onboard_detector(
    base: Detector,
    data: str | Path,
    *,
    product: str | None = None,
    steps: int | None = None,
    minutes: float | None = None,
    lr: float = ONBOARD_LR,
    seed: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Detector:
    """Fine-tune ``base`` on the good images of ``data`` (MVTec layout) into a calibrated detector for
    the new product type ``product`` (default: the data set's product name)."""
    if base.kind != "ddim":
        raise DetectorError(f"the base is a one-step {base.kind} student; onboard from a multi-step base model")
    data = Path(data)
    product = product or product_name(data)
    if product in base.product_names:
        raise TrainingDataError(
            f"the base model already serves product {product!r} (products "
            f"{base.product_names}); onboarding adds a new product type"
        )
    if steps is None and minutes is None:
        minutes = DEFAULT_MINUTES
    cfg = onboarding_config(base.cfg, product, lr)
    log(f"onboarding {product!r} on a base trained for {base.product_names}")
    detector = train_detector(
        {product: data},
        cfg,
        steps=steps,
        minutes=minutes,
        seed=seed,
        init=initial_weights(base, cfg),
        progress=progress,
        log=log,
    )
    detector.metadata["onboarding"] = {
        "base_products": base.product_names,
        "lr": lr,
        "base_training": base.metadata.get("training", {}),
        "base_saved_at": base.metadata.get("saved_at"),
    }
    return detector
