"""The small default artifacts shipped in the package, for the demo and for trying diffqc out.

One detector per procedural product type in ``DEFAULT_PRODUCT_TYPES`` (256x256, trained on
``generate_product(product, ..., seed=0)``), with a smaller UNet than the benchmark's so that each
artifact stays a few MB. Rebuild one with

    .venv/bin/python -m diffqc.detector.default --product pcb --minutes 8 --threads 2

(deterministic data; the number of training steps in the budget varies with the machine's load).
Training holds out 50 of its 200 good parts; the threshold then comes from 25 of them, which is
too few for an FPR target of 3%. So the shipped models are recalibrated on ``CALIBRATION_PARTS``
further good parts that training never saw, with the fitted-tail threshold
(``diffqc.detector.threshold``), and the FPR is measured on ``FRESH_PARTS`` more
(``--recalibrate`` redoes only that step).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from diffqc.core.errors import ArtifactError

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "default_models"
# The products whose shipped models separate good from defective parts well (docs/detector.md).
DEFAULT_PRODUCT_TYPES = ("pcb", "brushed_metal", "moulded_plastic", "woven_fabric")
# A quarter of the benchmark model's parameters: ~3 MB of weights instead of ~12 MB.
SMALL = {"model": {"block_out_channels": [16, 32, 32, 64]}}
# A weave repeats what a missing yarn or a snag breaks: pixel evidence alone ranks it poorly
# (image AUROC 0.77), the pretrained feature evidence with learned fusion does better (docs/detector.md).
PRODUCT_OVERRIDES: dict[str, dict] = {"woven_fabric": {"map": {"features": True, "fusion": "learned"}}}
TRAIN_PARTS = 200
# The seed of the product designs the shipped models learned: the demo's parts vary with its own
# seed, but its boards and mouldings are these (another design is another product type).
DESIGN_SEED = 0
# (map normalization, threshold): parts TRAIN_PARTS.. of the train stream. 400 threshold parts keep
# nine in ten fitted-tail thresholds within 1.5 points of the FPR target (tests/detector/test_threshold.py).
CALIBRATION_PARTS = (100, 400)
FRESH_PARTS = 400  # good parts of a stream no step has seen: the FPR the line will meet


def default_model_path(product: str = "pcb") -> Path:
    """Where the shipped default artifact of ``product`` lives (raises when it has not been built)."""
    path = DEFAULT_MODELS_DIR / product
    if not (path / "metadata.json").is_file():
        raise ArtifactError(
            f"the default model of {product!r} is missing at {path}; build it with "
            f"`python -m diffqc.detector.default --product {product}`"
        )
    return path


def _test_data(product: str, root: str):
    from diffqc.data.synth import generate_product

    return generate_product(
        product, root, n_train=TRAIN_PARTS, n_test_good=40, n_test_defect=60, size=(256, 256), seed=DESIGN_SEED
    )


def _measure(det, product: str, data, rebuild: str) -> dict:
    from diffqc.detector.evaluation import evaluate_detector

    ev = evaluate_detector(det, data)
    det.metadata["metrics"] = dict(ev.report())
    det.metadata["metrics_data"] = f"{product}, generate_product seed {DESIGN_SEED}, test split: 40 good, 60 defective"
    det.metadata["rebuild"] = rebuild
    return det.metadata["metrics"]


def recalibrate(det, product: str) -> None:
    """Map normalization and threshold from good parts the model was not trained on."""
    from diffqc.data.synth import render_sample
    from diffqc.detector.fit import calibrate_product
    from diffqc.progress import progress_bar

    n_norm, n_calib = CALIBRATION_PARTS
    parts = [
        render_sample(product, "train", TRAIN_PARTS + i, size=(256, 256), seed=DESIGN_SEED).image
        for i in range(n_norm + n_calib)
    ]
    with progress_bar(f"recalibrate {product}", len(parts)) as bar:
        cal = calibrate_product(det, product, parts[:n_norm], parts[n_norm:], bar.advance)
    det.metadata["calibration"] = (
        f"{n_norm} + {n_calib} good parts of the train stream after the {TRAIN_PARTS} "
        f"training parts: threshold {cal.threshold:.3f} ({cal.threshold_rule})"
    )
    det.metadata["fresh_good_fpr"] = {
        "target": cal.target_fpr,
        "expected": cal.expected_fpr,
        "measured": fresh_good_fpr(det, product, FRESH_PARTS),
        "parts": FRESH_PARTS,
    }


def fresh_good_fpr(det, product: str, parts: int, batch: int = 8) -> float:
    """The share of ``parts`` good parts that calibration never saw which the model flags."""
    import numpy as np

    from diffqc.data.synth import render_sample
    from diffqc.progress import progress_bar

    flagged = 0
    with progress_bar(f"fresh good parts {product}", parts) as bar:
        for start in range(0, parts, batch):
            images = [
                render_sample(product, "fresh", i, size=(256, 256), seed=DESIGN_SEED).image
                for i in range(start, min(start + batch, parts))
            ]
            scores = det.predict(np.stack(images).transpose(0, 3, 1, 2), product).score
            flagged += int((np.asarray(scores) > det.threshold(product)).sum())
            bar.advance(len(images))
    return flagged / parts


def build_default_model(product: str, minutes: float, threads: int, out: Path | None = None, seed: int = 0) -> dict:
    import torch

    from diffqc.detector.artifact import save_detector
    from diffqc.detector.config import DetectorConfig
    from diffqc.detector.fit import train_detector

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="diffqc-default-") as tmp:
        data = _test_data(product, tmp)
        cfg = DetectorConfig().with_overrides({**SMALL, **PRODUCT_OVERRIDES.get(product, {})})
        det = train_detector(data, cfg, minutes=minutes, seed=seed)
        recalibrate(det, product)
        metrics = _measure(
            det,
            product,
            data,
            f"python -m diffqc.detector.default --product {product} --minutes {minutes:g} --threads {threads}",
        )
        save_detector(det, out or DEFAULT_MODELS_DIR / product)
    return metrics


def recalibrate_default_model(product: str, threads: int) -> dict:
    import torch

    from diffqc.detector import Detector
    from diffqc.detector.artifact import save_detector

    torch.set_num_threads(threads)
    det = Detector.load(default_model_path(product))
    with tempfile.TemporaryDirectory(prefix="diffqc-default-") as tmp:
        recalibrate(det, product)
        metrics = _measure(det, product, _test_data(product, tmp), det.metadata.get("rebuild", ""))
    save_detector(det, default_model_path(product))
    return metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild a shipped default detector artifact.")
    p.add_argument("--product", choices=DEFAULT_PRODUCT_TYPES, default="pcb")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="default: the package's default_models/<product>")
    p.add_argument("--recalibrate", action="store_true", help="only redo the calibration of the shipped model")
    args = p.parse_args(argv)
    if args.recalibrate:
        metrics = recalibrate_default_model(args.product, args.threads)
    else:
        metrics = build_default_model(args.product, args.minutes, args.threads, args.out)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
