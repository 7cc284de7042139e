"""The ingestion service: camera frames validated, stored (blob + frame row) and published to qc.frames.v1."""
