"""Where one Triton instance of the detector computes, decided from what Triton tells the model.

Triton hands ``initialize`` the instance's kind (``CPU`` or ``GPU``) and device id; the model
configuration's parameters add ``precision`` (fp32 | fp16 | bf16: autocast of the denoiser on
CUDA) and ``allow_cpu_fallback``. A GPU instance whose torch sees no CUDA fails its load with what
to fix, rather than serving at a fraction of the planned throughput unnoticed; a deployment that
prefers a slow answer to none sets ``allow_cpu_fallback: "true"`` and gets a warning instead.

A pure function of its inputs (torch-free), so every case is tested without Triton or a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from diffqc.core.precision import Precision, parse_precision

PRECISION = "precision"
ALLOW_CPU_FALLBACK = "allow_cpu_fallback"
FLAGS = {"true": True, "false": False}


class PlacementError(RuntimeError):
    """A model configuration this instance cannot run as configured; the message says what to change."""


@dataclass(frozen=True)
class Placement:
    """The torch device and precision of an instance, and the warning to log when it fell back."""

    device: str  # "cpu" or "cuda:<id>"
    precision: Precision
    warning: str | None = None


def _flag(parameters: Mapping[str, str], name: str) -> bool:
    value = parameters.get(name, "false").strip().lower()
    if value not in FLAGS:
        raise PlacementError(f'diffqc_detector config: parameter {name} must be "true" or "false"; got {value!r}')
    return FLAGS[value]


def place_instance(kind: str, device_id: str, parameters: Mapping[str, str], cuda_available: bool) -> Placement:
    """The placement of an instance of ``kind`` (Triton's ``model_instance_kind``: CPU, GPU; a
    ``KIND_`` prefix is accepted) on GPU ``device_id``, with the config's string ``parameters``."""
    try:
        precision = parse_precision(
            parameters.get(PRECISION, Precision.fp32), f"diffqc_detector config parameter {PRECISION}"
        )
    except ValueError as exc:
        raise PlacementError(str(exc)) from None
    fallback = _flag(parameters, ALLOW_CPU_FALLBACK)
    kind = kind.removeprefix("KIND_")
    if kind == "CPU":
        if precision != Precision.fp32:
            raise PlacementError(
                f"diffqc_detector: parameter {PRECISION} {precision} is for KIND_GPU instances (CUDA autocast); "
                f"this KIND_CPU instance computes in float32: remove the parameter or deploy the GPU config "
                "(diffqc export --device gpu)"
            )
        return Placement("cpu", Precision.fp32)
    if kind != "GPU":
        raise PlacementError(f"diffqc_detector runs in KIND_CPU or KIND_GPU instances; this instance is KIND_{kind}")
    if cuda_available:
        return Placement(f"cuda:{int(device_id)}", precision)
    problem = (
        f"diffqc_detector: this KIND_GPU instance (GPU {device_id}) has no CUDA: torch sees no CUDA device "
        "(a CPU build of torch, or a container started without GPUs)"
    )
    if not fallback:
        raise PlacementError(
            f"{problem}. Fix: install the CUDA build of torch (PyPI's torch, not the CPU wheel index) and give "
            "the container its GPUs (docker --gpus, the nvidia.com/gpu resource); or serve the KIND_CPU config "
            f'(diffqc export --device cpu); or, to compute on the CPU anyway, set parameter {ALLOW_CPU_FALLBACK} "true"'
        )
    dropped = f"; precision {precision} does not apply there (float32)" if precision != Precision.fp32 else ""
    return Placement(
        "cpu", Precision.fp32, f"{problem}; {ALLOW_CPU_FALLBACK} is set, so it computes on the CPU{dropped}"
    )
