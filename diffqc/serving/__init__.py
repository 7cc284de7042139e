"""Serving the detector in NVIDIA Triton: the python-backend model and the model repository."""
