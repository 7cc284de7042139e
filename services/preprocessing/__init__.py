"""The preprocessing service: frames normalized and tiled for the detector, to qc.frames.prepared.v1."""
