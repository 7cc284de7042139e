"""``python -m services.bridge``: run the MES/SPC bridge until SIGTERM.

Start-up, each step bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: check the MES webhook URL is
set, wait for the broker, the database (migrations applied) and the schema registry (the
quality.spc and quality.drift schemas are registered there, BACKWARD); rebuild the drift trackers
from the stored verdicts. The SPC charts are not rebuilt: each is continued from its stored state
when the bridge meets its first verdict (``services.bridge.spc``); re-bases are polled while it runs.
A missing or malformed setting exits 2 with a message naming the variable; a dependency that stays
down, or a refused schema, exits 1.
"""

from __future__ import annotations

import logging
import sys

from diffqc.alerts.delivery import delivery_loops, require_webhook
from diffqc.alerts.links import AlertLinks
from diffqc.bus.admin import wait_for_broker
from diffqc.contracts.avro import ALERT_SCHEMA, AvroTopic, SchemaRejected, load_schema, registry_client
from diffqc.contracts.topics import QUALITY_ALERT, QUALITY_DRIFT, QUALITY_SPC
from diffqc.drift import DRIFT_SCHEMA, DriftMonitor
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.scoring.sink import make_sink
from diffqc.settings import Settings
from diffqc.spc import SPC_SCHEMA, SpcMonitor
from diffqc.store import db, spc_rebases
from diffqc.store.inspections import drift_history
from diffqc.store.poison import PoisonFence
from diffqc.v1 import bridge_pb2_grpc
from services.bridge.drift import DriftFeed, DriftPublisher, drift_stage
from services.bridge.service import SERVICE_NAME, BridgeServicer, alert_worker
from services.bridge.spc import RebaseWatcher, SignalPublisher, SpcFeed, spc_stage

NAME = "bridge"


def start(settings: Settings) -> int:
    try:
        require_webhook(settings.bridge)
    except ValueError as exc:
        logging.getLogger(NAME).critical("cannot start: %s", exc)
        return 2
    timeout = settings.service.startup_timeout_s
    wait_for_broker(settings.kafka, timeout)
    engine = migrated_database(settings)
    client = registry_client(settings.registry)
    alerts = AvroTopic(client, QUALITY_ALERT, load_schema(ALERT_SCHEMA))
    signals = AvroTopic(client, QUALITY_SPC, load_schema(SPC_SCHEMA))
    drift_events = AvroTopic(client, QUALITY_DRIFT, load_schema(DRIFT_SCHEMA))
    try:
        signals.register_at_start(timeout)
        drift_events.register_at_start(timeout)
    except SchemaRejected as exc:  # e.g. an incompatible SPC schema: no retry can fix it
        logging.getLogger(NAME).critical("cannot start: %s", exc)
        return 1
    # InfluxDB is not awaited (like scoring): a signal that cannot be written holds its verdict until it is back.
    sink = make_sink(settings)
    spc = SpcFeed(SpcMonitor(settings.spc), engine)
    with db.session(engine) as session:  # a chart loaded later reads the re-bases stored until then itself
        seen = max((row.id for row in spc_rebases.rebases_since(session, 0)), default=0)
    drift = DriftFeed(DriftMonitor(settings.drift))
    with db.session(engine) as session:  # the references, and any drift under way, carry on too
        drift.rebuild(drift_history(session))
    rebases = RebaseWatcher(engine, spc, settings.spc.rebase_delay_s / 2, last_id=seen)
    servicer = BridgeServicer(engine, spc)
    fence = PoisonFence(engine)
    try:
        api = GrpcApi(SERVICE_NAME, bridge_pb2_grpc.add_BridgeServiceServicer_to_server, servicer)
        return run_service(
            NAME,
            settings,
            api,
            loops=[
                alert_worker(
                    engine, settings.kafka, settings.bridge, alerts, AlertLinks.from_settings(settings.gateway), fence
                ),
                *delivery_loops(engine, settings.bridge),
                rebases,
                spc_stage(spc, SignalPublisher(spc, settings.kafka, sink, signals)).worker(settings.kafka, fence),
                drift_stage(drift, DriftPublisher(drift, settings.kafka, sink, drift_events)).worker(
                    settings.kafka, fence
                ),
            ],
        )
    finally:
        sink.close()
        engine.dispose()


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
