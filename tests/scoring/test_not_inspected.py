"""Fail closed in the store and its readers: a dead-lettered frame is one NOT_INSPECTED row with its reason, a
replayed frame's real verdict replaces it, and nothing that charts, plots or labels scores takes it for one
(real PostgreSQL and SQLite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.alerts import Severity, alert_json, alert_record
from diffqc.alerts.delivery import line_stop_body
from diffqc.alerts.verify import AlertRefused, AlertSuperseded, verified_severity
from diffqc.drift import DriftMonitor
from diffqc.scoring import Scorer
from diffqc.scoring.not_inspected import NOT_INSPECTED_VERSION, FailClosed, Outcome
from diffqc.scoring.points import write_point
from diffqc.scoring.scorer import inspection_id
from diffqc.settings import KafkaSettings, ScoringSettings, SpcSettings
from diffqc.spc import SpcMonitor
from diffqc.store.alerts import record_alert
from diffqc.store.blobs import FileBlobStore, put_array
from diffqc.store.engine import make_engine
from diffqc.store.inspections import drift_history, ensure_frame, register_model_version, score_history
from diffqc.store.labels import InvalidLabel, check_label
from diffqc.store.migrate import upgrade
from diffqc.store.models import Alert, Frame, Inspection, LabelKind, Verdict
from diffqc.store.products import register_product
from diffqc.v1.bridge_pb2 import ALERT_KIND_NOT_INSPECTED
from diffqc.v1.common_pb2 import ModelRef, Shape
from diffqc.v1.frame_pb2 import Frame as FrameMessage
from diffqc.v1.inference_pb2 import InferenceResult
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT, VERDICT_NOT_INSPECTED, VERDICT_PASS, InspectionVerdict
from services.bridge.service import pending_alert
from services.gateway.queries import result_of
from tests.helpers.verdicts import LINKS

REASON = "dead-lettered at inference: rejected: no model for product type 'pcb'"


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, "pcb", {"height": 64, "width": 64, "channels": 3}, {})
        session.flush()
        register_model_version(session, "pcb", "1", "file:///models/pcb/1", 1.0, {"region_level": 3.0})
    yield engine
    engine.dispose()


@pytest.fixture
def fail_closed(engine) -> FailClosed:
    return FailClosed(engine, KafkaSettings(), lambda verdict: None)


def _frame(product: str = "pcb", captured: datetime | None = None) -> FrameMessage:
    capture = Timestamp()
    capture.FromDatetime(captured or datetime(2026, 4, 1, tzinfo=UTC))
    return FrameMessage(
        frame_id=f"f-{uuid.uuid4().hex[:8]}",
        plant_id="P1",
        line_id="L1",
        station_id="S1",
        camera_id="C1",
        product_type=product,
        capture_time=capture,
        shape=Shape(height=64, width=64, channels=3),
    )


def _ingested(engine, frame: FrameMessage) -> FrameMessage:
    """``frame`` with its frame row, as ingestion records it before publishing it."""
    with Session(engine) as session, session.begin():
        ensure_frame(session, frame)
    return frame


def _rows(engine, frame_id: str) -> list[Inspection]:
    with Session(engine) as session:
        return list(session.scalars(select(Inspection).where(Inspection.frame_id == frame_id)))


def _verdicts(verdict: Verdict) -> float:
    """diffqc_verdicts_total of ``verdict``, in this process."""
    return REGISTRY.get_sample_value("diffqc_verdicts_total", {"verdict": verdict.value}) or 0.0


def test_a_dead_lettered_frame_is_one_not_inspected_row_with_its_reason(engine, fail_closed):
    frame = _ingested(engine, _frame())
    counted = _verdicts(Verdict.NOT_INSPECTED)
    outcome, verdict = fail_closed.record(InferenceResult(frame=frame), REASON)
    assert outcome is Outcome.NOT_INSPECTED and verdict is not None
    assert verdict.verdict == VERDICT_NOT_INSPECTED and verdict.not_inspected_reason == REASON
    assert verdict.inspection_id == inspection_id(frame.frame_id, NOT_INSPECTED_VERSION)
    assert (verdict.score, verdict.threshold, list(verdict.regions), verdict.frame) == (0.0, 0.0, [], frame)
    # A second dead letter of the frame (another stage, a replay that failed again) reports the same row.
    again = fail_closed.record(InferenceResult(frame=frame), "dead-lettered at scoring: something else")
    assert again == (Outcome.NOT_INSPECTED, verdict)
    assert _verdicts(Verdict.NOT_INSPECTED) == counted + 1  # one row, one verdict
    [row] = _rows(engine, frame.frame_id)
    assert (row.verdict, row.not_inspected_reason, row.heatmap_uri) == (Verdict.NOT_INSPECTED, REASON, None)

    stranger = _frame()  # it never passed ingestion: no part of this plant's record
    assert fail_closed.record(InferenceResult(frame=stranger), REASON) == (Outcome.UNKNOWN_FRAME, None)
    assert _rows(engine, stranger.frame_id) == []


def _result(blobs, frame: FrameMessage, score: float) -> InferenceResult:
    amap = np.zeros((64, 64), dtype=np.float32)
    amap[10:20, 30:40] = 4.0
    return InferenceResult(
        frame=frame,
        score=score,
        anomaly_map=put_array(blobs, amap),
        component_scores={"pixel": score},
        model=ModelRef(name="diffqc_detector", version="1"),
    )


def test_a_replayed_frame_that_is_scored_replaces_its_not_inspected_row(engine, fail_closed, tmp_path):
    frame = _ingested(engine, _frame())
    _, not_inspected = fail_closed.record(InferenceResult(frame=frame), REASON)
    record = alert_record(not_inspected, LINKS)
    with Session(engine) as session, session.begin():  # the bridge has the alert in its outbox
        assert verified_severity(session, record, LINKS) is Severity.MAJOR
        record_alert(session, alert_json(record), line_stop=False)

    scorer = Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))
    defects = _verdicts(Verdict.DEFECT)
    verdict = scorer.score(_result(scorer.blobs, frame, 1.5))

    assert verdict.verdict == VERDICT_DEFECT and verdict.not_inspected_reason == ""
    assert _verdicts(Verdict.DEFECT) == defects + 1  # the replay's real verdict counts too
    [row] = _rows(engine, frame.frame_id)
    assert (row.id, row.verdict) == (inspection_id(frame.frame_id, "1"), Verdict.DEFECT)
    with Session(engine) as session:
        outbox = session.get(Alert, record["alert_id"])
        # The MES was told; the alert stays, detached from the row that is gone.
        assert outbox.inspection_id is None and outbox.payload["inspection_id"] == not_inspected.inspection_id
        # A bridge that reads the old alert only now delivers nothing.
        with pytest.raises(AlertSuperseded, match="has been since: defect"):
            verified_severity(session, record, LINKS)
        pending = pending_alert(outbox)
    assert (pending.kind, pending.inspection_id) == (ALERT_KIND_NOT_INSPECTED, not_inspected.inspection_id)
    assert line_stop_body(alert_json(record))["reason"] == f"MAJOR: a pcb part was not inspected ({REASON})"
    # A dead letter of the frame after its verdict committed leaves the verdict alone.
    assert fail_closed.record(InferenceResult(frame=frame), REASON) == (Outcome.ALREADY_INSPECTED, None)
    assert [r.id for r in _rows(engine, frame.frame_id)] == [row.id]


def test_the_bridge_trusts_a_not_inspected_alert_only_as_stored(engine, fail_closed):
    _, verdict = fail_closed.record(InferenceResult(frame=_ingested(engine, _frame())), REASON)
    record = alert_record(verdict, LINKS)
    assert (record["status"], record["severity"], record["not_inspected_reason"]) == ("NOT_INSPECTED", "MAJOR", REASON)
    assert (record["score"], record["regions"], record["heatmap_uri"]) == (0.0, [], None)
    with Session(engine) as session:
        with pytest.raises(AlertRefused, match="not_inspected_reason disagree") as refused:
            verified_severity(session, {**record, "not_inspected_reason": "made up"}, LINKS)
        assert refused.value.reason == "mismatch"
        with pytest.raises(AlertRefused, match="is a not_inspected verdict") as refused:
            verified_severity(session, {**record, "status": "DEFECT"}, LINKS)
        assert refused.value.reason == "not_defect"


def test_control_charts_and_drift_are_rebuilt_without_parts_that_were_not_inspected(engine, fail_closed, tmp_path):
    scorer = Scorer(ScoringSettings(), engine, FileBlobStore(tmp_path / "blobs"))
    start = datetime(2026, 4, 1, tzinfo=UTC)
    scored = scorer.score(_result(scorer.blobs, _frame(captured=start), 0.4))
    later = _ingested(engine, _frame(captured=start + timedelta(seconds=1)))
    fail_closed.record(InferenceResult(frame=later), REASON)
    with Session(engine) as session:
        charted = [row[4] for row in score_history(session)[("L1", "pcb")]]
        drifting = [row[4] for row in drift_history(session)[("L1", "pcb")]]
    assert charted == drifting == [scored.inspection_id]


def test_a_part_that_was_not_inspected_cannot_be_labelled(engine, fail_closed):
    frame = _ingested(engine, _frame())
    fail_closed.record(InferenceResult(frame=frame), REASON)
    [row] = _rows(engine, frame.frame_id)
    for kind in LabelKind:
        with pytest.raises(InvalidLabel, match="was not inspected .*no verdict to label.*diffqc dlq replay"):
            check_label(row, kind, "scratch", "")


def test_the_gateway_lists_it_as_not_inspected_with_the_reason(engine, fail_closed):
    frame = _ingested(engine, _frame())
    fail_closed.record(InferenceResult(frame=frame), REASON)
    with Session(engine) as session:
        [row] = _rows(engine, frame.frame_id)
        result = result_of(row, session.get(Frame, frame.frame_id))
    assert (result.verdict, result.not_inspected_reason, result.heatmap_url) == ("not_inspected", REASON, None)


# -- the score's consumers skip it (no servers) -----------------------------------------------------


def _not_inspected_verdict() -> InspectionVerdict:
    frame = _frame()
    return InspectionVerdict(
        inspection_id="i-ni", frame=frame, verdict=VERDICT_NOT_INSPECTED, not_inspected_reason=REASON
    )


def test_spc_drift_and_score_points_skip_a_part_that_was_not_inspected():
    spc, drift = SpcMonitor(SpcSettings(baseline_size=2)), DriftMonitor()
    verdict = _not_inspected_verdict()
    assert spc.observe_verdict(verdict) == [] and spc.charts == {}
    assert drift.observe_verdict(verdict) == [] and drift.trackers == {}

    written = []

    class Sink:
        def write(self, point) -> None:
            written.append(point)

    write_point(Sink(), verdict)
    assert written == []
    good = InspectionVerdict(inspection_id="i-ok", frame=verdict.frame, verdict=VERDICT_PASS, score=0.2)
    write_point(Sink(), good)
    assert len(written) == 1
