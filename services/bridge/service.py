"""The bridge's Kafka workers and its gRPC API.

- Alerts: each quality.alert message is decoded with the registry's AvroDeserializer, checked
  against its stored inspection (``diffqc.alerts.verify``: the line stop follows the severity
  recomputed from that row, never the message's) and its outbox row inserted (idempotent on the
  alert id); the consume loop commits the offset only after that row committed, so an alert is
  never acknowledged to Kafka before it is durable. An alert the store does not bear out is
  neither delivered nor stops a line: it goes to the dead-letter topic with the reason, is logged
  and counted (``diffqc_alerts_refused_total{reason}``). Delivery to the MES is the
  ``DeliveryLoop``'s job (``diffqc.alerts.delivery``).
- SPC: every verdict of qc.inspections.v1 feeds the ``SpcMonitor`` (``diffqc.spc``); each signal
  is written to InfluxDB (measurement ``spc_signal``) and published Avro on quality.spc (key =
  line) before the offset is committed. ``GetSpcState`` answers from the same monitor.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc
from confluent_kafka import Message
from prometheus_client import Counter
from sqlalchemy import Engine

from diffqc.alerts import alert_json
from diffqc.alerts.links import AlertLinks
from diffqc.alerts.verify import AlertRefused, verified_severity
from diffqc.bus.consumer import ConsumeLoop, Fence, PoisonMessage
from diffqc.bus.producer import Publisher
from diffqc.contracts.avro import AvroTopic, UndecodableValue
from diffqc.contracts.topics import INSPECTIONS
from diffqc.core import clock
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, StreamStage, grpc_errors
from diffqc.scoring.sink import ScoreSink
from diffqc.settings import BridgeSettings, KafkaSettings
from diffqc.spc import (
    IndividualsChart,
    Observation,
    Rebase,
    SpcMonitor,
    SpcSignal,
    signal_record,
    spc_limits_point,
    spc_signal_point,
)
from diffqc.store import db, spc_rebases
from diffqc.store.alerts import BadPageToken, record_alert, undelivered_alerts
from diffqc.store.models import Alert
from diffqc.v1 import bridge_pb2, bridge_pb2_grpc
from diffqc.v1.scoring_pb2 import InspectionVerdict

log = logging.getLogger(__name__)
ALERTS_REFUSED = Counter(
    "diffqc_alerts_refused",
    "Alerts on quality.alert that the stored inspection does not bear out (dead-lettered: no delivery, no line "
    "stop), by reason (unknown_inspection|not_defect|mismatch)",
    ["reason"],
)
GROUP = "bridge"
SPC_GROUP = "bridge-spc"
SERVICE_NAME = "diffqc.v1.BridgeService"
# A verdict without a verdict or capture time cannot be placed on a chart (ValueError): poison.
SPC_ERRORS: ErrorTable = {ValueError: grpc.StatusCode.INVALID_ARGUMENT}
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
            except AlertRefused as exc:
                ALERTS_REFUSED.labels(reason=exc.reason).inc()
                log.warning("alert %s refused, neither delivered nor stopping a line: %s", record["alert_id"], exc)
                raise PoisonMessage(f"alert {record['alert_id']} refused: {exc}") from exc
            record_alert(session, alert_json(record), line_stop=level in stopping)

    # Values are decoded in the handler: a registry outage is then retried, not mistaken for a bad message.
    return ConsumeLoop(kafka, alerts.topic, GROUP, lambda value: value, handle, fence)


@dataclass(frozen=True)
class Observed:
    """A verdict placed on its line's charts, the signals it fired and the limits it was judged against."""

    verdict: InspectionVerdict
    signals: list[SpcSignal]
    limits: IndividualsChart | None = None  # None while the chart's baseline is being collected
    model_version: str | None = None


class SpcFeed:
    """The monitor behind a lock (the SPC worker feeds it, gRPC threads read it).

    A verdict seen again (same inspection id) must not count twice on a chart; but when the signals it
    fired could not be written or published, its redelivery must fire them again. So each verdict's
    signals are kept until ``delivered`` is called for it.
    """

    def __init__(self, monitor: SpcMonitor, remember: int = 100_000):
        self.monitor, self.remember = monitor, remember
        self.lock = threading.Lock()
        self._seen: OrderedDict[str, list[SpcSignal]] = OrderedDict()  # inspection id -> undelivered signals

    def _remember(self, inspection_id: str, signals: list[SpcSignal]) -> None:
        self._seen[inspection_id] = signals
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)

    def observe(self, verdict: InspectionVerdict) -> Observed:
        with self.lock:
            if verdict.inspection_id in self._seen:
                signals = list(self._seen[verdict.inspection_id])
            else:
                signals = self.monitor.observe_verdict(verdict)
                self._remember(verdict.inspection_id, signals)
            chart = self.monitor.chart(verdict.frame.line_id, verdict.frame.product_type)
            return Observed(verdict, signals, chart.limits, chart.model_version)

    def delivered(self, inspection_id: str) -> None:
        with self.lock:
            if inspection_id in self._seen:
                self._seen[inspection_id] = []

    def rebuild(
        self,
        history: dict[tuple[str, str], list[tuple[Any, ...]]],
        rebases: dict[tuple[str, str], list[Rebase]] | None = None,
    ) -> None:
        """Charts from stored verdicts ((line, product) -> rows in order) and re-bases, before any live
        verdict: a restarted bridge carries on its charts instead of fixing new limits from whatever
        comes next."""
        rebases = rebases or {}
        with self.lock:
            for (line_id, product_type), rows in history.items():
                observations = [Observation(*row) for row in rows]
                self.monitor.rebuild(line_id, product_type, observations, rebases.get((line_id, product_type), ()))
                for observation in observations[-self.remember :]:
                    self._remember(str(observation.inspection_id), [])

    def rebase(self, line_id: str, product_type: str, rebase: Rebase) -> None:
        with self.lock:
            self.monitor.rebase(line_id, product_type, rebase)

    def state(self, line_id: str, product_type: str) -> list[bridge_pb2.SpcState]:
        with self.lock:
            return self.monitor.state(line_id, product_type)


class RebaseWatcher:
    """A ``run_service`` loop: hands re-bases stored by the gateway to the live charts, polling every
    half of ``DIFFQC_SPC_REBASE_DELAY_S`` so each arrives before the first point it judges."""

    def __init__(self, engine: Engine, feed: SpcFeed, interval_s: float, last_id: int = 0):
        self.engine, self.feed, self.interval_s, self.last_id = engine, feed, interval_s, last_id

    def poll(self) -> int:
        """Hand over what is new; returns how many."""
        with db.session(self.engine) as session:
            rows = list(spc_rebases.rebases_since(session, self.last_id))
        for row in rows:
            self.feed.rebase(row.line_id, row.product_type, spc_rebases.as_rebase(row))
            self.last_id = row.id
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.poll()
            except DependencyUnavailable as exc:  # the database is down: the next round retries
                log.warning("reading SPC re-bases failed (%s); retrying", exc)


class SignalPublisher:
    """Writes each fired signal to InfluxDB (``spc_signal``) and publishes it Avro on quality.spc (key =
    line); then the verdict's signals count as delivered."""

    def __init__(self, feed: SpcFeed, kafka: KafkaSettings, sink: ScoreSink, signals: AvroTopic):
        self.feed, self.sink, self.signals = feed, sink, signals
        self.publisher = Publisher(kafka)

    def publish(self, observed: Observed) -> None:
        frame = observed.verdict.frame
        plant = frame.plant_id
        if observed.limits is not None:
            self.sink.write(
                spc_limits_point(
                    frame.line_id,
                    frame.product_type,
                    observed.model_version,
                    observed.limits,
                    clock.to_datetime(frame.capture_time),
                    {"plant": plant},
                )
            )
        for signal in observed.signals:
            self.sink.write(spc_signal_point(signal, {"plant": plant}))
            self.publisher.publish(
                self.signals.topic,
                signal.line_id.encode(),
                self.signals.encode(signal_record(signal, plant)),
                [("signal_id", signal.signal_id.encode())],
            )
        self.feed.delivered(observed.verdict.inspection_id)


def spc_stage(feed: SpcFeed, publisher: SignalPublisher) -> StreamStage[InspectionVerdict, Observed]:
    """qc.inspections.v1 -> SPC monitor -> spc_signal points + quality.spc, committed after both."""
    return StreamStage(
        SPC_GROUP,
        INSPECTIONS,
        feed.observe,
        SPC_ERRORS,
        emit=publisher.publish,
    )


def pending_alert(row: Alert) -> bridge_pb2.PendingAlert:
    return bridge_pb2.PendingAlert(
        alert_id=row.id,
        kind=bridge_pb2.ALERT_KIND_DEFECT,
        line_id=row.line_id,
        inspection_id=row.inspection_id or "",
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
