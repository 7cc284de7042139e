"""``python -m services.ingestion``: run the ingestion service until SIGTERM.

Start-up, each step bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: wait for the broker, wait for
the database and bring its schema to the newest migration, create ``qc.frames.v1`` if it does not
exist, check the blob store (the file store's root is writable; an S3 bucket answers, and is created
when missing). A failure exits 1 with one message naming the dependency; bad settings exit 2.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from diffqc.bus.admin import ensure_topics, require_topics, wait_for_broker
from diffqc.contracts.topics import FRAMES
from diffqc.data.images import ImageLimits, guard_decompression_bombs
from diffqc.runtime.dependencies import wait_for
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.store.blobs import make_blob_store
from diffqc.v1 import ingestion_pb2_grpc
from services.ingestion.service import SERVICE_NAME, Ingestion, IngestionServicer, grpc_options

NAME = "ingestion"


def start(settings: Settings) -> int:
    timeout = settings.service.startup_timeout_s
    wait_for_broker(settings.kafka, timeout)
    engine = migrated_database(settings)
    wait_for(
        f"Kafka topic {FRAMES}",
        settings.kafka.bootstrap_servers,
        (lambda: ensure_topics(settings.kafka, [FRAMES], settings.ingestion.topic_partitions))
        if settings.ingestion.create_topic
        else (lambda: require_topics(settings.kafka, [FRAMES])),
        timeout,
    )
    if settings.blobs.backend == "file":  # an S3 store's bucket is awaited by make_blob_store
        wait_for("blob store", str(settings.blob_root), lambda: _check_writable(settings.blob_root), timeout)
    guard_decompression_bombs(ImageLimits.of(settings.ingestion))  # process-wide: PIL refuses bombs itself too
    ingestion = Ingestion(settings, engine, make_blob_store(settings))
    servicer = IngestionServicer(ingestion)
    try:
        api = GrpcApi(SERVICE_NAME, ingestion_pb2_grpc.add_IngestionServiceServicer_to_server, servicer)
        return run_service(
            NAME, settings, api, grpc_options=grpc_options(settings), stream_threads=settings.ingestion.max_streams
        )
    finally:
        ingestion.close()
        engine.dispose()


def _check_writable(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=root).close()


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
