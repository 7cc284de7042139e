"""``python -m services.bridge``: run the MES/SPC bridge until SIGTERM.

Start-up, each step bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: check the MES webhook URL is
set, wait for the broker, the database (migrations applied) and the schema registry. A missing or
malformed setting exits 2 with a message naming the variable; a dependency that stays down exits 1.
"""

from __future__ import annotations

import logging
import sys

from diffqc.alerts.delivery import DeliveryLoop, require_webhook
from diffqc.bus.admin import wait_for_broker
from diffqc.contracts.avro import ALERT_SCHEMA, AvroTopic, load_schema, registry_client
from diffqc.contracts.topics import QUALITY_ALERT
from diffqc.runtime.dependencies import wait_for
from diffqc.runtime.service import run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.v1 import bridge_pb2_grpc
from services.bridge.service import SERVICE_NAME, BridgeServicer, alert_worker

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
    wait_for("schema registry", settings.registry.url, client.get_subjects, timeout)
    alerts = AvroTopic(client, QUALITY_ALERT, load_schema(ALERT_SCHEMA))
    servicer = BridgeServicer(engine)
    try:
        return run_service(
            NAME, settings,
            lambda server: bridge_pb2_grpc.add_BridgeServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
            loops=[alert_worker(engine, settings.kafka, settings.bridge, alerts),
                   DeliveryLoop(engine, settings.bridge)],
        )
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
