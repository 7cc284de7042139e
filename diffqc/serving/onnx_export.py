"""Export the detector's denoiser to ONNX, for GPU deployments in NVIDIA's Triton container
(onnxruntime or TensorRT backends). The python-backend model stays the reference; this file is
the network alone, checked against torch in onnxruntime before it is written.

Inputs: ``x_t`` (N, C, S, S) float32 in model space [-1, 1], ``t`` (N,) int64 timesteps, and when
the model has them ``coords`` (N, 2, S, S) and ``class_labels`` (N,) int64. Output: ``eps``, the
predicted noise (N, C, S, S). S is the tile size: the detector feeds the network whole tiles, so
the spatial size is fixed and only the batch is dynamic.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import numpy as np
import torch

from diffqc.core.errors import DetectorError
from diffqc.detector.detector import Detector

PARITY_TOLERANCE = 1e-4


class OnnxExport(NamedTuple):
    path: Path  # denoiser.onnx
    max_abs_diff: float  # to torch, measured in onnxruntime


class _Traceable(torch.nn.Module):
    """The denoiser with explicit positional inputs (the ONNX tracer needs no optional arguments)."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.model, self.cfg = detector.model, detector.cfg.model

    def forward(self, x_t, t, *extra):
        coords = extra[0] if self.cfg.coord_channels else None
        labels = extra[-1] if self.cfg.class_embedding else None
        return self.model(x_t, t, coords=coords, class_labels=labels)


def _example(detector: Detector, n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cfg = detector.cfg.model
    inputs = {
        "x_t": torch.rand(n, cfg.channels, size, size, generator=g) * 2 - 1,
        "t": torch.randint(1, cfg.num_train_timesteps, (n,), generator=g),
    }
    if cfg.coord_channels:
        inputs["coords"] = torch.rand(n, 2, size, size, generator=g) * 2 - 1
    if cfg.class_embedding:
        inputs["class_labels"] = torch.randint(0, len(cfg.products), (n,), generator=g)
    return inputs


def _onnxruntime() -> ModuleType:
    """onnxruntime, after checking the onnx extra is installed (torch's exporter uses onnx too)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as exc:
        raise DetectorError(
            f"diffqc export --format onnx needs the onnx extra ({exc.name} is missing): pip install 'diffqc[onnx]'"
        ) from None
    return onnxruntime


def export_denoiser(detector: Detector, out_dir: Path, size: int | None = None) -> OnnxExport:
    """Write ``denoiser.onnx`` and ``denoiser.json`` to ``out_dir``; return the path and the max abs
    difference to torch measured in onnxruntime (raises when above PARITY_TOLERANCE)."""
    onnxruntime = _onnxruntime()

    size = size or min(detector.cfg.tile.size, 256)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "denoiser.onnx"
    module = _Traceable(detector).eval()
    example = _example(detector, 2, size, seed=0)
    names = list(example)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example.values()),
            str(path),
            input_names=names,
            output_names=["eps"],
            dynamic_axes={n: {0: "batch"} for n in [*names, "eps"]},
            opset_version=17,
            dynamo=False,
        )
    check = _example(detector, 3, size, seed=1)  # another batch size than the traced one
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_eps = session.run(None, {k: v.numpy() for k, v in check.items()})[0]
    with torch.no_grad():
        torch_eps = module(*check.values()).numpy()
    diff = float(np.abs(onnx_eps - torch_eps).max())
    if diff > PARITY_TOLERANCE:
        path.unlink()
        raise RuntimeError(f"ONNX export differs from torch by {diff:.2e} (> {PARITY_TOLERANCE:g}); not written")
    (out_dir / "denoiser.json").write_text(
        json.dumps(
            {
                "inputs": {k: list(v.shape[1:]) for k, v in example.items()},
                "output": "eps",
                "tile_size": size,
                "opset": 17,
                "parity_max_abs_diff": diff,
                "products": detector.product_names,
            },
            indent=2,
        )
        + "\n"
    )
    return OnnxExport(path, diff)
