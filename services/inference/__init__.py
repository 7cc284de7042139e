"""The inference service: prepared frames to the detector in Triton, results to qc.inference.v1."""
