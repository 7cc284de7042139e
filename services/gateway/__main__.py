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
from diffqc.store import api_keys, db
from diffqc.store.blobs import make_blob_store
from services.gateway.app import create_app
from services.gateway.ingest import IngestionClient

NAME = "gateway"
log = logging.getLogger(NAME)


def start(settings: Settings) -> int:
    cfg = settings.gateway
    engine = migrated_database(settings)
    with db.session(engine) as session:
        keys = api_keys.active_count(session) + len(cfg.api_keys)
    if not keys:
        log.warning(
            "no API keys: every request but /health and the login page will be refused; create one with "
            "`diffqc keys create --name NAME --role admin` or provision one in DIFFQC_GATEWAY_API_KEYS "
            "(`diffqc keys hash --role admin --name NAME`)"
        )
    if cfg.session_secret is None:
        log.warning("no DIFFQC_GATEWAY_SESSION_SECRET: dashboard sessions are this process's own and end when it stops")
    app = create_app(
        settings,
        engine,
        make_blob_store(settings),
        IngestionClient(cfg.ingestion_url, cfg.ingest_timeout_s, settings.grpc),
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
