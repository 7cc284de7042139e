"""Tensors across the python backend's border (diffqc.serving.dlpack), on CPU tensors and without
Triton: the two classes below have the methods of ``pb_utils.Tensor`` that the model calls, one with
DLPack (the python backend since 21.08), one with numpy alone. The real backend is exercised by
tests/serving/test_triton_detector.py."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.dlpack import from_dlpack, to_dlpack

from diffqc.serving.dlpack import input_tensor, output_tensor


class NumpyTensor:
    """A backend tensor that crosses as numpy only."""

    def __init__(self, name: str, array: np.ndarray):
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return self.array


class DLPackTensor(NumpyTensor):
    """A backend tensor that also crosses by DLPack, as pb_utils.Tensor does."""

    @classmethod
    def from_dlpack(cls, name: str, capsule) -> DLPackTensor:
        return cls(name, from_dlpack(capsule).numpy())

    def to_dlpack(self):
        return to_dlpack(torch.from_numpy(self.array))


def test_an_input_crosses_by_dlpack_without_a_copy():
    images = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    tensor = input_tensor(DLPackTensor("IMAGE", images))
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == images.shape
    assert tensor.data_ptr() == images.ctypes.data  # a view of the backend's buffer
    np.testing.assert_array_equal(tensor.numpy(), images)


def test_an_output_crosses_by_dlpack_by_reference_and_in_c_order():
    scores = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    out = output_tensor(DLPackTensor, "SCORES", scores)
    assert out.name == "SCORES" and out.array.ctypes.data == scores.data_ptr()
    np.testing.assert_array_equal(out.array, scores.numpy())
    # A strided view (a column of the scores) is made contiguous before it crosses.
    column = output_tensor(DLPackTensor, "SCORE", scores[:, 1:2])
    assert column.array.flags.c_contiguous
    np.testing.assert_array_equal(column.array, [[1.0], [5.0], [9.0]])
    # numpy arrays (what Detector.predict returns) cross the same way.
    np.testing.assert_array_equal(output_tensor(DLPackTensor, "SCORE", np.ones((2, 1), np.float32)).array, 1.0)


def test_a_backend_without_dlpack_gets_the_same_values_through_numpy():
    images = np.random.default_rng(1).random((1, 1, 4, 4), dtype=np.float32)
    np.testing.assert_array_equal(input_tensor(NumpyTensor("IMAGE", images)).numpy(), images)
    out = output_tensor(NumpyTensor, "ANOMALY_MAP", torch.from_numpy(images))
    assert isinstance(out, NumpyTensor) and out.array.dtype == np.float32
    np.testing.assert_array_equal(out.array, images)
