"""The scoring service: inference results to verdicts, inspection rows, score points and qc.inspections.v1."""
