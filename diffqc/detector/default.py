"""The small default artifacts shipped in the package, for the demo and for trying diffqc out.

One detector per procedural product type in ``DEFAULT_PRODUCT_TYPES`` (256x256, trained on
``generate_product(product, ..., seed=0)``), with a smaller UNet than the benchmark's so that each
artifact stays a few MB. Rebuild one with

    .venv/bin/python -m diffqc.detector.default --product pcb --minutes 8 --threads 2

(deterministic data; the number of training steps in the budget varies with the machine's load).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from diffqc.detector.errors import ArtifactError

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent / "default_models"
# The products whose shipped models separate good from defective parts well (docs/detector.md).
DEFAULT_PRODUCT_TYPES = ("pcb", "brushed_metal", "moulded_plastic")
# A quarter of the benchmark model's parameters: ~3 MB of weights instead of ~12 MB.
SMALL = {"model": {"block_out_channels": [16, 32, 32, 64]}}


def default_model_path(product: str = "pcb") -> Path:
    """Where the shipped default artifact of ``product`` lives (raises when it has not been built)."""
    path = DEFAULT_MODELS_DIR / product
    if not (path / "metadata.json").is_file():
        raise ArtifactError(
            f"the default model of {product!r} is missing at {path}; build it with "
            f"`python -m diffqc.detector.default --product {product}`"
        )
    return path


def build_default_model(product: str, minutes: float, threads: int, out: Path | None = None,
                        seed: int = 0) -> dict:
    import torch

    from diffqc.data.synth import generate_product
    from diffqc.detector.artifact import save_detector
    from diffqc.detector.config import DetectorConfig
    from diffqc.detector.evaluation import evaluate_detector
    from diffqc.detector.fit import train_detector

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="diffqc-default-") as tmp:
        data = generate_product(product, tmp, n_train=200, n_test_good=40, n_test_defect=60,
                                size=(256, 256), seed=0)
        det = train_detector(data, DetectorConfig().with_overrides(SMALL), minutes=minutes, seed=seed)
        ev = evaluate_detector(det, data)
        det.metadata["metrics"] = dict(ev.report())
        det.metadata["metrics_data"] = f"{product}, generate_product seed 0, test split: 40 good, 60 defective"
        det.metadata["rebuild"] = (f"python -m diffqc.detector.default --product {product} "
                                   f"--minutes {minutes:g} --threads {threads}")
        save_detector(det, out or DEFAULT_MODELS_DIR / product)
    return det.metadata["metrics"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild a shipped default detector artifact.")
    p.add_argument("--product", choices=DEFAULT_PRODUCT_TYPES, default="pcb")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="default: the package's default_models/<product>")
    args = p.parse_args(argv)
    metrics = build_default_model(args.product, args.minutes, args.threads, args.out)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
