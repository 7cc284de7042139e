"""The small default artifact shipped in the package, for the demo and for trying diffqc out.

It is a PCB detector (the procedural ``pcb`` product, 256x256 RGB, aligned), with a smaller
UNet than the benchmark's so that the artifact stays a few MB. Rebuild it with

    .venv/bin/python -m diffqc.detector.default --minutes 8 --threads 2

(deterministic data: ``generate_product("pcb", ..., seed=0)``; training time varies with load).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from diffqc.detector.errors import ArtifactError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
DEFAULT_PRODUCT_TYPE = "pcb"
# A quarter of the benchmark model's parameters: ~3 MB of weights instead of ~12 MB.
SMALL = {"model": {"block_out_channels": [16, 32, 32, 64]}}


def default_model_path() -> Path:
    """Where the shipped default artifact lives (raises when it has not been built)."""
    if not (DEFAULT_MODEL_DIR / "metadata.json").is_file():
        raise ArtifactError(
            f"the default model is missing at {DEFAULT_MODEL_DIR}; build it with "
            "`python -m diffqc.detector.default`"
        )
    return DEFAULT_MODEL_DIR


def build_default_model(minutes: float, threads: int, out: Path = DEFAULT_MODEL_DIR, seed: int = 0) -> dict:
    import torch

    from diffqc.data.synth import generate_product
    from diffqc.detector.artifact import save_detector
    from diffqc.detector.config import DetectorConfig
    from diffqc.detector.evaluation import evaluate_detector
    from diffqc.detector.fit import train_detector

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="diffqc-default-") as tmp:
        data = generate_product(DEFAULT_PRODUCT_TYPE, tmp, n_train=200, n_test_good=40, n_test_defect=60,
                                size=(256, 256), seed=0)
        det = train_detector(data, DetectorConfig().with_overrides(SMALL), minutes=minutes, seed=seed)
        ev = evaluate_detector(det, data)
        det.metadata["metrics"] = dict(ev.report())
        det.metadata["metrics_data"] = "pcb, generate_product seed 0, test split: 40 good, 60 defective"
        det.metadata["rebuild"] = f"python -m diffqc.detector.default --minutes {minutes:g} --threads {threads}"
        save_detector(det, out)
    return det.metadata["metrics"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Rebuild the default PCB detector artifact.")
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    args = p.parse_args(argv)
    metrics = build_default_model(args.minutes, args.threads, args.out)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
