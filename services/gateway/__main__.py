"""``python -m services.gateway``: serve the REST API and the dashboard with uvicorn until SIGTERM.

Start-up, bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: wait for the database and bring its
schema to the newest migration (a no-op when current). Ingestion is not awaited: an upload while
it is down answers 503 naming it, and /health reports it. Bad settings exit 2, a database that
stays down exits 1.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.store.blobs import FileBlobStore
from services.gateway.app import create_app
from services.gateway.ingest import IngestionClient

NAME = "gateway"
log = logging.getLogger(NAME)


def start(settings: Settings) -> int:
    cfg = settings.gateway
    engine = migrated_database(settings)
    if not cfg.api_keys:
        log.warning("no API keys configured (DIFFQC_GATEWAY_API_KEYS): every upload will be refused")
    app = create_app(
        settings, engine, FileBlobStore(settings.blob_root), IngestionClient(cfg.ingestion_url, cfg.ingest_timeout_s)
    )
    # log_config=None keeps diffqc's JSON logging; uvicorn drains in-flight requests on SIGTERM.
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=cfg.http_host,
            port=cfg.http_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.service.shutdown_grace_s),
        )
    )
    try:
        server.run()
    finally:
        engine.dispose()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
