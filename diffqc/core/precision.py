"""The numeric precision a deployment asks of the detector's denoiser on a GPU.

``fp32`` runs the network in IEEE float32 (what calibration measured, unless the artifact itself
opted into ``recon.bf16``); ``fp16`` and ``bf16`` run it under CUDA autocast, faster on tensor
cores, with maps and scores still computed in float32. Named here, torch-free, because the Triton
model configuration (``diffqc export --precision``), the Triton model and the detector all read it.
"""

from __future__ import annotations

from enum import StrEnum


class Precision(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


def parse_precision(value: str, where: str) -> Precision:
    """``value`` as a Precision; a ValueError naming ``where`` and the accepted values otherwise."""
    try:
        return Precision(value)
    except ValueError:
        raise ValueError(f"{where}: precision must be one of {', '.join(Precision)}; got {value!r}") from None
