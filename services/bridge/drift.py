"""The bridge's drift stage: every verdict of qc.inspections.v1 feeds the ``DriftMonitor``
(``diffqc.drift``); each drift event is written to InfluxDB (measurement ``drift_event``) and
published Avro on quality.drift (key = line) before the offset is committed.

It runs beside the SPC stage (``services.bridge.spc.spc_stage``) in its own consumer group, so
neither holds the other back; a verdict that the SPC stage dead-letters is dead-lettered here too
(the same checks: no verdict, no capture time).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import grpc

from diffqc.bus.producer import Publisher
from diffqc.contracts.avro import AvroTopic
from diffqc.contracts.topics import INSPECTIONS
from diffqc.drift import DriftEvent, DriftMonitor, DriftSample, DriftState, drift_event_point, drift_record
from diffqc.runtime.stage import ErrorTable, StreamStage
from diffqc.scoring.sink import ScoreSink
from diffqc.settings import KafkaSettings
from diffqc.v1.scoring_pb2 import InspectionVerdict

DRIFT_GROUP = "bridge-drift"
DRIFT_ERRORS: ErrorTable = {ValueError: grpc.StatusCode.INVALID_ARGUMENT}  # a verdict drift cannot place: poison


@dataclass(frozen=True)
class DriftObserved:
    verdict: InspectionVerdict
    events: list[DriftEvent]


class DriftFeed:
    """The monitor behind a lock. As ``SpcFeed`` does for signals, a verdict seen again (same inspection
    id) is not counted twice, but the events it raised are kept until ``delivered``, so a redelivery
    after a failed write or publish raises them again."""

    def __init__(self, monitor: DriftMonitor, remember: int = 100_000):
        self.monitor, self.remember = monitor, remember
        self.lock = threading.Lock()
        self._seen: OrderedDict[str, list[DriftEvent]] = OrderedDict()  # inspection id -> undelivered events

    def _remember(self, inspection_id: str, events: list[DriftEvent]) -> None:
        self._seen[inspection_id] = events
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)

    def observe(self, verdict: InspectionVerdict) -> DriftObserved:
        with self.lock:
            if verdict.inspection_id in self._seen:
                return DriftObserved(verdict, list(self._seen[verdict.inspection_id]))
            events = self.monitor.observe_verdict(verdict)
            self._remember(verdict.inspection_id, events)
            return DriftObserved(verdict, events)

    def delivered(self, inspection_id: str) -> None:
        with self.lock:
            if inspection_id in self._seen:
                self._seen[inspection_id] = []

    def rebuild(self, history: dict[tuple[str, str], list[tuple[Any, ...]]]) -> None:
        """Trackers from stored verdicts (``diffqc.store.inspections.drift_history``), before any live verdict:
        a restarted bridge keeps its references, and an ongoing drift raises no second event."""
        with self.lock:
            for (line_id, product_type), rows in history.items():
                samples = [DriftSample(*row) for row in rows]
                self.monitor.rebuild(line_id, product_type, samples)
                for sample in samples[-self.remember :]:
                    self._remember(str(sample.inspection_id), [])

    def state(self, line_id: str, product_type: str | None = None) -> list[DriftState]:
        with self.lock:
            return self.monitor.state(line_id, product_type)


class DriftPublisher:
    """Writes each event to InfluxDB (``drift_event``) and publishes it Avro on quality.drift (key = line,
    header ``event_id``); then the verdict's events count as delivered."""

    def __init__(self, feed: DriftFeed, kafka: KafkaSettings, sink: ScoreSink, events: AvroTopic):
        self.feed, self.sink, self.events = feed, sink, events
        self.publisher = Publisher(kafka)

    def publish(self, observed: DriftObserved) -> None:
        plant = observed.verdict.frame.plant_id
        for event in observed.events:
            self.sink.write(drift_event_point(event, {"plant": plant}))
            self.publisher.publish(
                self.events.topic,
                event.line_id.encode(),
                self.events.encode(drift_record(event, plant)),
                [("event_id", event.event_id.encode())],
            )
        self.feed.delivered(observed.verdict.inspection_id)


def drift_stage(feed: DriftFeed, publisher: DriftPublisher) -> StreamStage[InspectionVerdict, DriftObserved]:
    """qc.inspections.v1 -> drift monitor -> drift_event points + quality.drift, committed after both."""
    return StreamStage(DRIFT_GROUP, INSPECTIONS, feed.observe, DRIFT_ERRORS, emit=publisher.publish)
