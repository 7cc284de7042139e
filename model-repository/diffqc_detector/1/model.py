"""Triton entry point of the diffqc detector: the implementation lives in the diffqc library."""

from diffqc.serving.triton_model import TritonPythonModel  # noqa: F401
