"""The bridge's Kafka worker (quality.alert -> outbox row) and its gRPC API.

The worker decodes each alert with the registry's AvroDeserializer and inserts its outbox row
(idempotent on the alert id); the consume loop commits the offset only after that row committed,
so an alert is never acknowledged to Kafka before it is durable. Delivery to the MES is the
``DeliveryLoop``'s job (``diffqc.alerts.delivery``).
"""

from __future__ import annotations

import grpc
from confluent_kafka import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.alerts import alert_json
from diffqc.bus.consumer import ConsumeLoop, PoisonMessage
from diffqc.contracts.avro import AvroTopic, UndecodableValue
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import BridgeSettings, KafkaSettings
from diffqc.store.alerts import BadPageToken, record_alert, undelivered_alerts
from diffqc.store.inspections import database_unavailable, utc
from diffqc.store.models import Alert
from diffqc.v1 import bridge_pb2, bridge_pb2_grpc

GROUP = "bridge"
SERVICE_NAME = "diffqc.v1.BridgeService"
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


def alert_worker(engine: Engine, kafka: KafkaSettings, bridge: BridgeSettings, alerts: AvroTopic) -> ConsumeLoop:
    """``alerts.topic`` (quality.alert) -> outbox row, committed after the row; undecodable messages go to the
    topic's dead-letter topic (quality.alert.dlq) with the reason."""
    stopping = set(bridge.line_stop_severities) if bridge.line_stop_url else set()

    def handle(value: bytes | None, _msg: Message) -> None:
        try:
            record = alerts.decode(value)
        except UndecodableValue as exc:
            raise PoisonMessage(f"undecodable alert: {exc}") from exc
        with database_unavailable(), Session(engine) as session, session.begin():
            record_alert(session, alert_json(record), line_stop=record["severity"] in stopping)

    # Values are decoded in the handler: a registry outage is then retried, not mistaken for a bad message.
    return ConsumeLoop(kafka, alerts.topic, GROUP, lambda value: value, handle)


def _timestamp(value) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(utc(value))
    return ts


def pending_alert(row: Alert) -> bridge_pb2.PendingAlert:
    return bridge_pb2.PendingAlert(
        alert_id=row.id, kind=bridge_pb2.ALERT_KIND_DEFECT, line_id=row.line_id, inspection_id=row.inspection_id or "",
        created_at=_timestamp(row.created_at), attempts=row.attempts, last_error=row.last_error or "",
        next_attempt_at=_timestamp(row.next_attempt_at or row.created_at),
    )


class BridgeServicer(bridge_pb2_grpc.BridgeServiceServicer):
    def __init__(self, engine: Engine):
        self.engine = engine

    def ListPendingAlerts(self, request: bridge_pb2.ListPendingAlertsRequest, context: grpc.ServicerContext):
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        try:
            with database_unavailable(), Session(self.engine) as session:
                rows, token = undelivered_alerts(session, request.line_id, size, request.page_token)
                return bridge_pb2.ListPendingAlertsResponse(alerts=[pending_alert(r) for r in rows],
                                                            next_page_token=token)
        except BadPageToken as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DependencyUnavailable as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
