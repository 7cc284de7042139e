"""The bridge's Kafka workers and its gRPC API.

- Alerts: each quality.alert message is decoded with the registry's AvroDeserializer, checked
  against its stored inspection (``diffqc.alerts.verify``: the line stop follows the severity
  recomputed from that row, never the message's) and its outbox row inserted (idempotent on the
  alert id); the consume loop commits the offset only after that row committed, so an alert is
  never acknowledged to Kafka before it is durable. An alert the store does not bear out is
  neither delivered nor stops a line: it goes to the dead-letter topic with the reason, is logged
  and counted (``diffqc_alerts_refused_total{reason}``). Delivery to the MES is the
  ``DeliveryLoop``'s job (``diffqc.alerts.delivery``).
- SPC: ``services.bridge.spc`` (the charts, kept in ``spc_charts``); ``GetSpcState`` answers from the
  stored charts, whichever replica moves them on.
"""

from __future__ import annotations

import logging

import grpc
from confluent_kafka import Message
from prometheus_client import Counter
from sqlalchemy import Engine

from diffqc.alerts import alert_json
from diffqc.alerts.links import AlertLinks
from diffqc.alerts.verify import AlertRefused, AlertSuperseded, verified_severity
from diffqc.bus.consumer import ConsumeLoop, Fence, PoisonMessage
from diffqc.contracts.avro import AvroTopic, UndecodableValue
from diffqc.core import clock
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, grpc_errors
from diffqc.settings import BridgeSettings, KafkaSettings
from diffqc.store import db
from diffqc.store.alerts import BadPageToken, failed_alerts, record_alert, undelivered_alerts
from diffqc.store.models import Alert
from diffqc.v1 import bridge_pb2, bridge_pb2_grpc
from services.bridge.spc import SpcFeed

log = logging.getLogger(__name__)
ALERTS_REFUSED = Counter(
    "diffqc_alerts_refused",
    "Alerts on quality.alert that the stored inspection does not bear out (dead-lettered: no delivery, no line "
    "stop), by reason (unknown_inspection|not_defect|mismatch)",
    ["reason"],
)
GROUP = "bridge"
SERVICE_NAME = "diffqc.v1.BridgeService"
GRPC_ERRORS: ErrorTable = {
    BadPageToken: grpc.StatusCode.INVALID_ARGUMENT,
    DependencyUnavailable: grpc.StatusCode.UNAVAILABLE,
}
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 100, 1000


def alert_worker(
    engine: Engine,
    kafka: KafkaSettings,
    bridge: BridgeSettings,
    alerts: AvroTopic,
    links: AlertLinks,
    fence: Fence | None = None,
) -> ConsumeLoop[bytes]:
    """``alerts.topic`` (quality.alert) -> outbox row, committed after the row; undecodable messages and alerts
    their stored inspection does not bear out (``links``: the gateway links a genuine alert carries) go to the
    topic's dead-letter topic (quality.alert.dlq) with the reason."""
    stopping = set(bridge.line_stop_severities) if bridge.line_stop_url else set()

    def handle(value: bytes | None, _msg: Message) -> None:
        try:
            record = alerts.decode(value)
        except UndecodableValue as exc:
            raise PoisonMessage(f"undecodable alert: {exc}") from exc
        # Scoring stores the inspection before it alerts, so a missing one is a forgery, not a race.
        with db.session(engine, write=True) as session:
            try:
                level = verified_severity(session, record, links)
            except AlertSuperseded as exc:
                log.info("alert %s not delivered: %s", record["alert_id"], exc)
                return
            except AlertRefused as exc:
                ALERTS_REFUSED.labels(reason=exc.reason).inc()
                log.warning("alert %s refused, neither delivered nor stopping a line: %s", record["alert_id"], exc)
                raise PoisonMessage(f"alert {record['alert_id']} refused: {exc}") from exc
            record_alert(session, alert_json(record), line_stop=level in stopping)

    # Values are decoded in the handler: a registry outage is then retried, not mistaken for a bad message.
    return ConsumeLoop(kafka, alerts.topic, GROUP, lambda value: value, handle, fence)


def pending_alert(row: Alert) -> bridge_pb2.PendingAlert:
    payload = row.payload or {}
    not_inspected = payload.get("status") == "NOT_INSPECTED"
    return bridge_pb2.PendingAlert(
        alert_id=row.id,
        kind=bridge_pb2.ALERT_KIND_NOT_INSPECTED if not_inspected else bridge_pb2.ALERT_KIND_DEFECT,
        line_id=row.line_id,
        # A NOT_INSPECTED alert's row may be gone (its frame was inspected since): its payload still names it.
        inspection_id=row.inspection_id or payload.get("inspection_id") or "",
        created_at=clock.to_timestamp(row.created_at),
        attempts=row.attempts,
        last_error=row.last_error or "",
        next_attempt_at=clock.to_timestamp(row.next_attempt_at or row.created_at),
    )


class BridgeServicer(bridge_pb2_grpc.BridgeServiceServicer):
    def __init__(self, engine: Engine, spc: SpcFeed):
        self.engine, self.spc = engine, spc

    def GetSpcState(
        self, request: bridge_pb2.GetSpcStateRequest, context: grpc.ServicerContext
    ) -> bridge_pb2.GetSpcStateResponse:
        if not request.line_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "line_id is required")
        return bridge_pb2.GetSpcStateResponse(states=self.spc.state(request.line_id, request.product_type))

    @grpc_errors(GRPC_ERRORS)
    def ListPendingAlerts(
        self, request: bridge_pb2.ListPendingAlertsRequest, context: grpc.ServicerContext
    ) -> bridge_pb2.ListPendingAlertsResponse:
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        with db.session(self.engine) as session:
            rows, token = undelivered_alerts(session, request.line_id, size, request.page_token)
            return bridge_pb2.ListPendingAlertsResponse(alerts=[pending_alert(r) for r in rows], next_page_token=token)

    @grpc_errors(GRPC_ERRORS)
    def ListFailedAlerts(
        self, request: bridge_pb2.ListFailedAlertsRequest, context: grpc.ServicerContext
    ) -> bridge_pb2.ListFailedAlertsResponse:
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        with db.session(self.engine) as session:
            rows, token = failed_alerts(session, request.line_id, size, request.page_token)
            return bridge_pb2.ListFailedAlertsResponse(alerts=[pending_alert(r) for r in rows], next_page_token=token)
