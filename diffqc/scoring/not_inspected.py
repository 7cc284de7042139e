"""Fail closed: a frame that a stage dead-lettered still ends as one verdict, NOT_INSPECTED, with the reason.

Every frame ends as exactly one verdict: PASS, DEFECT or NOT_INSPECTED. A stage that cannot handle a
frame sends it to its topic's dead-letter topic (diffqc.bus.consumer). Scoring's dead-letter stage
reads the dead letters of qc.frames.v1, qc.frames.prepared.v1 and qc.inference.v1, recovers the frame
from the dead-lettered value (a Frame, PreparedFrame.frame or InferenceResult.frame), and:

- records a NOT_INSPECTED inspection row (id: uuid5 of ``<frame id>/not-inspected``; score and
  threshold 0, no regions, the reason ``dead-lettered at <stage>: <dlq.reason>``) and hands its
  verdict to ``publish`` (qc.inspections.v1, and the alert on quality.alert that tells the MES to
  check the part by hand);
- leaves a frame that already has a PASS or DEFECT verdict alone (dead-lettered after its row
  committed): it is logged and nothing new is published;
- cannot report a letter without a frame (undecodable, value dropped, no frame id), nor a frame
  without a frame row: ingestion records every frame before it publishes it, so such a frame never
  passed ingestion (a producer that bypassed it; a letter from another deployment's database) and
  is no part this plant has on record. Both are logged with the letter's frame_id header.

``diffqc_dead_letters_total{topic,outcome}`` counts each outcome, and ``diffqc_verdicts_total`` (with
scoring's PASS and DEFECT) each NOT_INSPECTED row recorded. Once the cause is fixed, replaying
the letter (``diffqc dlq replay``) lets the frame be inspected, and its real verdict replaces the
NOT_INSPECTED row (diffqc.scoring.scorer).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from confluent_kafka import Message
from google.protobuf.message import DecodeError
from prometheus_client import Counter
from sqlalchemy import Engine

from diffqc.bus.consumer import ConsumeLoop, message_headers
from diffqc.contracts.topics import FRAMES, INFERENCE_RESULTS, PREPARED_FRAMES, ProtoTopic, dead_letter_topic
from diffqc.core import clock
from diffqc.runtime.metrics import VERDICTS_RECORDED
from diffqc.scoring.scorer import inspection_id, verdict_message
from diffqc.settings import KafkaSettings
from diffqc.store import db
from diffqc.store.inspections import get_inspection, record_inspection
from diffqc.store.models import Frame as FrameRow
from diffqc.store.models import Verdict
from diffqc.v1.frame_pb2 import Frame
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import InspectionVerdict

log = logging.getLogger(__name__)

GROUP = "scoring.dead-letters"  # one consumer group per source: <GROUP>.<source topic>
SOURCES: tuple[ProtoTopic[Any], ...] = (FRAMES, PREPARED_FRAMES, INFERENCE_RESULTS)
NOT_INSPECTED_VERSION = "not-inspected"  # stands in for the model version in the inspection id
MAX_REASON = 500  # the length of inspections.not_inspected_reason
MAX_VERSION = 64  # the length of inspections.model_version

DEAD_LETTERS = Counter(
    "diffqc_dead_letters",
    "Dead letters of the frame flow read by scoring's fail-closed stage, by source dead-letter topic and outcome "
    "(not_inspected|already_inspected|undecodable|unknown_frame; the last two cannot be reported per part)",
    ["topic", "outcome"],
)


class Outcome(enum.StrEnum):
    NOT_INSPECTED = "not_inspected"  # recorded and published
    ALREADY_INSPECTED = "already_inspected"  # the frame has a PASS or DEFECT verdict: left alone
    UNDECODABLE = "undecodable"  # no frame in the letter
    UNKNOWN_FRAME = "unknown_frame"  # no frame row: it never passed ingestion


def header(msg: Message, name: str) -> str | None:
    for key, value in message_headers(msg):
        if key == name and value is not None:
            return value.decode(errors="replace")
    return None


def not_inspected_reason(msg: Message, kafka: KafkaSettings) -> str:
    """``dead-lettered at <stage>: <dlq.reason>``; the stage is the consumer group that gave up."""
    group = header(msg, "dlq.group") or header(msg, "dlq.topic") or str(msg.topic())
    stage = group.removeprefix(f"{kafka.group_prefix}.")
    return _clip(f"dead-lettered at {stage}: {header(msg, 'dlq.reason') or 'no reason given'}", MAX_REASON)


def recovered(source: ProtoTopic[Any], value: bytes) -> InferenceResult | None:
    """The frame of a dead letter of ``source`` (and the model that scored it, for an InferenceResult) as a
    result to report; None when the value holds no frame with an id."""
    try:
        message = source.decode(value)
    except DecodeError:
        return None
    result = message if isinstance(message, InferenceResult) else InferenceResult(frame=source.frame_of(message))
    return result if result.frame.frame_id else None


class FailClosed:
    """Turns dead letters into NOT_INSPECTED verdicts (module doc); ``publish`` sends a verdict and its alert."""

    def __init__(self, engine: Engine, kafka: KafkaSettings, publish: Callable[[InspectionVerdict], None]):
        self.engine, self.kafka, self.publish = engine, kafka, publish

    def record(self, result: InferenceResult, reason: str) -> tuple[Outcome, InspectionVerdict | None]:
        """Record the frame of ``result`` as not inspected, unless it has a verdict; the verdict to publish."""
        frame = result.frame
        created = False
        with db.session(self.engine, write=True) as session:
            row = get_inspection(session, frame.frame_id)
            if row is None:
                if session.get(FrameRow, frame.frame_id) is None:
                    return Outcome.UNKNOWN_FRAME, None
                now = clock.now()
                row, created = record_inspection(
                    session,
                    id=inspection_id(frame.frame_id, NOT_INSPECTED_VERSION),
                    frame_id=frame.frame_id,
                    model_version=result.model.version[:MAX_VERSION],
                    component_scores={},
                    score=0.0,
                    threshold=0.0,
                    verdict=Verdict.NOT_INSPECTED,
                    latency_ms=_latency_ms(frame, now),
                    inspected_at=now,
                    not_inspected_reason=reason,
                )
            if Verdict(row.verdict) is not Verdict.NOT_INSPECTED:
                return Outcome.ALREADY_INSPECTED, None
            verdict = verdict_message(row, result)
        if created:  # committed
            VERDICTS_RECORDED.labels(verdict=Verdict.NOT_INSPECTED.value).inc()
        return Outcome.NOT_INSPECTED, verdict

    def handle(self, source: ProtoTopic[Any], value: bytes, msg: Message) -> Outcome:
        """One dead letter of ``source``: record and publish its NOT_INSPECTED verdict, or say why not."""
        where = f"offset {msg.offset()} of {msg.topic()} [{msg.partition()}]"
        result = recovered(source, value)
        if result is None:
            outcome, verdict = Outcome.UNDECODABLE, None
            log.error(
                "dead letter at %s (frame_id header %s) holds no %s: the part cannot be reported",
                where,
                header(msg, "frame_id"),
                source.message.__name__,
            )
        else:
            frame = result.frame
            outcome, verdict = self.record(result, not_inspected_reason(msg, self.kafka))
            if outcome is Outcome.UNKNOWN_FRAME:
                log.error(
                    "dead letter at %s: frame %s (line %r, product type %r) has no frame row, so it never passed "
                    "ingestion: it cannot be recorded as not inspected",
                    where,
                    frame.frame_id,
                    frame.line_id,
                    frame.product_type,
                )
            elif outcome is Outcome.ALREADY_INSPECTED:
                log.info("dead letter at %s: frame %s already has its verdict; nothing new", where, frame.frame_id)
        if verdict is not None:
            self.publish(verdict)
            log.warning("frame %s not inspected: %s", verdict.frame.frame_id, verdict.not_inspected_reason)
        DEAD_LETTERS.labels(topic=str(msg.topic()), outcome=outcome.value).inc()
        return outcome

    def loops(self) -> list[ConsumeLoop[bytes]]:
        """One consume loop per source's dead-letter topic, each in a group of its own."""
        return [self._loop(source) for source in SOURCES]

    def _loop(self, source: ProtoTopic[Any]) -> ConsumeLoop[bytes]:
        def handle(value: bytes, msg: Message) -> None:
            self.handle(source, value, msg)

        # Values are decoded in the handler, and a letter without one (value dropped) reaches it as
        # empty: a letter that holds no frame is counted and logged, never dead-lettered again.
        return ConsumeLoop(
            self.kafka,
            dead_letter_topic(source, self.kafka),
            f"{GROUP}.{source}",
            lambda value: value,
            handle,
            tombstone=b"",
        )


def _latency_ms(frame: Frame, now: datetime) -> float:
    ingested = clock.from_timestamp(frame.ingest_time)
    return round(max(0.0, (now - ingested).total_seconds() * 1000), 3) if ingested is not None else 0.0


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
