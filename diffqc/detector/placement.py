"""Where the detector computes: a torch device, and the autocast dtype of its denoiser there.

The CPU path is the reference the artifact was calibrated on. On CUDA, float32 means IEEE float32:
torch would otherwise run convolutions in TF32 (10-bit mantissa), which moves maps and scores off
that calibration; a GPU deployment that wants speed asks for fp16 or bf16 autocast explicitly.
"""

from __future__ import annotations

import torch

from diffqc.core.precision import Precision, parse_precision

AUTOCAST_DTYPES: dict[Precision, torch.dtype] = {Precision.fp16: torch.float16, Precision.bf16: torch.bfloat16}


def resolve_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device with an index on CUDA; a clear error where CUDA is missing."""
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {resolved}: CUDA is not available to torch {torch.__version__} "
                "(a CPU build, or no NVIDIA driver/GPU visible); install the CUDA build of torch or use device cpu"
            )
        resolved = torch.device("cuda", torch.cuda.current_device() if resolved.index is None else resolved.index)
    elif resolved.type != "cpu":
        raise ValueError(f"device {resolved}: the detector runs on cpu or cuda")
    return resolved


def check_precision(device: torch.device, precision: str) -> Precision:
    """``precision`` if ``device`` can run it: fp16 and bf16 are autocast on CUDA only."""
    checked = parse_precision(precision, "detector")
    if checked != Precision.fp32 and device.type != "cuda":
        raise ValueError(
            f"precision {precision} is autocast on CUDA; on {device} the detector computes in float32 "
            "(or bf16 where the artifact's recon.bf16 asks for it)"
        )
    return checked


def autocast_dtype(precision: Precision, artifact_bf16: bool) -> torch.dtype | None:
    """The dtype the denoiser runs under autocast, None for float32: the deployment's reduced
    precision, else bf16 where the artifact was calibrated with it (``recon.bf16``)."""
    if precision != Precision.fp32:
        return AUTOCAST_DTYPES[precision]
    return torch.bfloat16 if artifact_bf16 else None


def use_ieee_float32() -> None:
    """Float32 convolutions and matrix products in IEEE float32 on CUDA (not TF32), process-wide."""
    torch.backends.cudnn.conv.fp32_precision = "ieee"  # type: ignore[attr-defined]  # missing from torch's stubs
    torch.backends.cuda.matmul.fp32_precision = "ieee"
