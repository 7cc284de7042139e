"""``python -m services.scoring``: run the scoring service until SIGTERM."""

from __future__ import annotations

import logging
import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.runtime.logging import configure_logging
from diffqc.runtime.service import run_service
from diffqc.scoring import Scorer, make_sink
from diffqc.settings import SettingsError, load_settings
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.v1 import scoring_pb2_grpc
from services.scoring.service import ScoringServicer, VerdictPublisher, stream_worker

NAME = "scoring"
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
    except DependencyUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    # InfluxDB is not awaited: a point that cannot be written holds its message until the store is back.
    sink = make_sink(settings)
    scorer = Scorer(settings.scoring, engine, FileBlobStore(settings.blob_root), sink)
    servicer = ScoringServicer(scorer, VerdictPublisher(settings.kafka))
    try:
        return run_service(
            NAME, settings,
            lambda server: scoring_pb2_grpc.add_ScoringServiceServicer_to_server(servicer, server),
            ["diffqc.v1.ScoringService"],
            loops=[stream_worker(scorer, settings.kafka) for _ in range(settings.service.stream_workers)],
        )
    finally:
        sink.close()


if __name__ == "__main__":
    sys.exit(main())
