"""``python -m services.scoring``: run the scoring service until SIGTERM."""

from __future__ import annotations

import logging
import sys

from diffqc.alerts import AlertLinks, AlertPublisher
from diffqc.bus.admin import wait_for_broker
from diffqc.contracts.avro import SchemaRejected
from diffqc.runtime.service import GrpcApi, Loop, run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.scoring import Scorer, make_sink
from diffqc.settings import Settings
from diffqc.store.blobs import make_blob_store
from diffqc.store.poison import PoisonFence
from diffqc.v1 import scoring_pb2_grpc
from services.scoring.service import (
    ScoringServicer,
    VerdictPublisher,
    fail_closed_stage,
    points_stage,
    stream_stage,
)

NAME = "scoring"


def start(settings: Settings) -> int:
    wait_for_broker(settings.kafka, settings.service.startup_timeout_s)
    engine = migrated_database(settings)
    alerts = AlertPublisher(settings.kafka, settings.registry, AlertLinks.from_settings(settings.gateway))
    try:
        alerts.register(settings.service.startup_timeout_s)
    except SchemaRejected as exc:  # e.g. an incompatible alert schema: no retry can fix it
        logging.getLogger(NAME).critical("cannot start: %s", exc)
        return 1
    # InfluxDB is not awaited: a point that cannot be written waits in qc.inspections.v1 until the store is back.
    sink = make_sink(settings)
    scorer = Scorer(settings.scoring, engine, make_blob_store(settings))
    publisher = VerdictPublisher(settings.kafka, alerts)
    servicer = ScoringServicer(scorer, publisher)
    try:
        api = GrpcApi("diffqc.v1.ScoringService", scoring_pb2_grpc.add_ScoringServiceServicer_to_server, servicer)
        loops: list[Loop] = [
            *stream_stage(scorer, publisher).workers(settings, PoisonFence(engine)),
            *points_stage(sink).workers(settings),
            *fail_closed_stage(engine, settings.kafka, publisher),
        ]
        return run_service(NAME, settings, api, loops=loops)
    finally:
        sink.close()
        alerts.close()


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
