"""``python -m services.ingestion``: run the ingestion service until SIGTERM.

Start-up, each step bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: wait for the broker, wait for
the database and bring its schema to the newest migration, create ``qc.frames.v1`` if it does not
exist, check the blob store root is writable. A failure exits 1 with one message naming the
dependency; bad settings exit 2.
"""

from __future__ import annotations

import logging
import sys
import tempfile

from confluent_kafka import KafkaException

from diffqc.bus.admin import ensure_topics, wait_for_broker
from diffqc.contracts.topics import FRAMES
from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.runtime.logging import configure_logging
from diffqc.runtime.service import run_service
from diffqc.settings import SettingsError, load_settings
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.v1 import ingestion_pb2_grpc
from services.ingestion.service import SERVICE_NAME, Ingestion, IngestionServicer, grpc_options

NAME = "ingestion"
log = logging.getLogger(NAME)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, NAME)
    engine = make_engine(settings.database.url)
    timeout = settings.service.startup_timeout_s
    try:
        wait_for_broker(settings.kafka, timeout)
        # Migrating is a no-op when current; retried, so replicas starting together cannot fail on the race.
        wait_for("database", engine.url.render_as_string(hide_password=True), lambda: upgrade(engine), timeout)
        wait_for(f"Kafka topic {FRAMES}", settings.kafka.bootstrap_servers,
                 lambda: ensure_topics(settings.kafka, [FRAMES], settings.ingestion.topic_partitions), timeout)
        settings.blob_root.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=settings.blob_root).close()
    except DependencyUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    except (OSError, KafkaException) as exc:
        log.critical("cannot start: %s: %s", exc.__class__.__name__, exc)
        return 1
    ingestion = Ingestion(settings, engine, FileBlobStore(settings.blob_root))
    servicer = IngestionServicer(ingestion)
    try:
        return run_service(
            NAME, settings,
            lambda server: ingestion_pb2_grpc.add_IngestionServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            grpc_options=grpc_options(settings),
        )
    finally:
        ingestion.close()
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
