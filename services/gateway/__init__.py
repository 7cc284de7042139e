"""The gateway: a thin REST API (FastAPI) over ingestion and the store, and the live web dashboard.

Uploads are forwarded to ingestion's gRPC ``IngestOne`` (its validation is the single source of
truth); reads come from the metadata database, the blob store and ``diffqc.spc``.
"""
