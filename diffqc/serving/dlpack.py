"""Tensors across the python backend's border without copies: DLPack where the backend has it.

``pb_utils.Tensor.to_dlpack()`` hands the model a request's tensor as a view of Triton's buffer,
and ``pb_utils.Tensor.from_dlpack(name, ...)`` takes a response tensor by reference (python
backend 21.08+; Triton 2.51 has both). A backend without them gets the numpy crossing
(``as_numpy`` / ``Tensor(name, array)``), which copies. BYTES tensors (PRODUCT) have no DLPack
form and always cross as numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.dlpack import from_dlpack, to_dlpack


def input_tensor(tensor: Any) -> torch.Tensor:
    """A request's ``pb_utils.Tensor`` as a torch tensor over the same memory (numpy's where no DLPack)."""
    if hasattr(tensor, "to_dlpack"):
        return from_dlpack(tensor.to_dlpack())
    return torch.from_numpy(np.asarray(tensor.as_numpy()))


def output_tensor(tensor_type: Any, name: str, value: torch.Tensor | np.ndarray) -> Any:
    """A ``pb_utils.Tensor`` named ``name`` holding ``value`` (C-contiguous, by reference where DLPack is there)."""
    data = torch.as_tensor(value, device="cpu").contiguous()
    if hasattr(tensor_type, "from_dlpack"):
        return tensor_type.from_dlpack(name, to_dlpack(data))
    return tensor_type(name, data.numpy())
