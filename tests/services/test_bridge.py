"""The MES bridge against a real broker, registry, PostgreSQL and a real HTTP MES receiver."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.alerts import alert_record
from diffqc.alerts.delivery import delivery_loops
from diffqc.bus.admin import ensure_topics
from diffqc.bus.config import producer_config
from diffqc.contracts.avro import ALERT_SCHEMA, AvroTopic, load_schema, registry_client
from diffqc.contracts.topics import INSPECTIONS, QUALITY_ALERT, QUALITY_DRIFT, QUALITY_SPC, dead_letter_topic
from diffqc.drift import DRIFT_SCHEMA, DriftMonitor
from diffqc.infra.ports import free_port
from diffqc.infra.timeseries import export_series
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.scoring.sink import InfluxScoreSink
from diffqc.settings import BridgeSettings, DriftSettings, InfluxSettings, RegistrySettings, SpcSettings
from diffqc.spc import SPC_SCHEMA, SpcMonitor
from diffqc.store import db
from diffqc.store.audit import verify_chain
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Alert, AuditEntry, DeliveryState, LineStop
from diffqc.v1 import bridge_pb2, bridge_pb2_grpc
from services.bridge.drift import DriftFeed, DriftPublisher, drift_stage
from services.bridge.service import BridgeServicer, alert_worker
from services.bridge.spc import SignalPublisher, SpcFeed, spc_stage
from tests.helpers.gateway_stack import wait_until
from tests.helpers.kafka import collect
from tests.helpers.verdicts import DECIDED, LINKS, store_inspections, verdict

TOKEN = "Bearer mes-secret"


class MesReceiver:
    """A real HTTP server playing the MES: records every request; ``mode`` 'ok' answers 200 (422 for lot
    REJECT), 'unavailable' answers 503. Not listening at all until ``start``: connection refused."""

    def __init__(self):
        self.port, self.mode, self.requests, self.lock = free_port(), "ok", [], threading.Lock()
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status = 503 if receiver.mode == "unavailable" else 422 if body.get("lot") == "REJECT" else 200
                with receiver.lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "key": self.headers["Idempotency-Key"],
                            "auth": self.headers["Authorization"],
                            "status": status,
                            "body": body,
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def accepted(self, path: str = "/mes/alerts") -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path and r["status"] == 200]


@pytest.fixture
def receiver():
    mes = MesReceiver()
    yield mes
    mes.stop()


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def kafka(kafka_settings):
    return kafka_settings.model_copy(update={"group_prefix": uuid.uuid4().hex})


@pytest.fixture
def alerts(kafka, schema_registry_url) -> AvroTopic:
    """The bridge's view of a fresh alert topic (same schema and subject naming as quality.alert)."""
    topic = AvroTopic(
        registry_client(RegistrySettings(url=schema_registry_url)),
        f"{QUALITY_ALERT}.test-{uuid.uuid4().hex[:8]}",
        load_schema(ALERT_SCHEMA),
    )
    ensure_topics(kafka, [topic.topic, dead_letter_topic(topic.topic, kafka)], 2)
    topic.register()
    return topic


def bridge_settings(receiver: MesReceiver, **overrides) -> BridgeSettings:
    fields = {
        "mes_webhook_url": f"{receiver.url}/mes/alerts",
        "mes_auth_value": TOKEN,
        "line_stop_url": f"{receiver.url}/line-stop",
        "request_timeout_s": 2,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.3,
        "poll_interval_s": 0.05,
    }
    return BridgeSettings(**{**fields, **overrides})


def produce(kafka, alerts: AvroTopic, records: list[dict], raw: list[bytes] = ()) -> None:
    producer = Producer(producer_config(kafka))
    for record in records:
        producer.produce(
            alerts.topic,
            key=record["line_id"].encode(),
            value=alerts.encode(record),
            headers=[("frame_id", record["frame_id"].encode())],
        )
    for value in raw:
        producer.produce(alerts.topic, key=b"L1", value=value, headers=[("frame_id", b"garbage")])
    assert producer.flush(10) == 0


def rows(engine) -> dict[str, Alert]:
    with Session(engine) as session:
        return {row.id: row for row in session.scalars(select(Alert))}


def run_loops(*loops):
    stop = threading.Event()
    threads = [threading.Thread(target=loop.run, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    return stop, threads


def call_bridge(engine, method: str, request, spc: SpcFeed | None = None):
    servicer = BridgeServicer(engine, spc or SpcFeed(SpcMonitor(), engine))
    server = GrpcServer(
        "bridge",
        lambda s: bridge_pb2_grpc.add_BridgeServiceServicer_to_server(servicer, s),
        ["diffqc.v1.BridgeService"],
    )
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            return getattr(bridge_pb2_grpc.BridgeServiceStub(channel), method)(request)
    finally:
        server.stop(1)


def pending_over_grpc(engine, **request) -> bridge_pb2.ListPendingAlertsResponse:
    return call_bridge(engine, "ListPendingAlerts", bridge_pb2.ListPendingAlertsRequest(**request))


def test_an_mes_outage_loses_nothing_and_every_alert_arrives_exactly_once(engine, kafka, alerts, receiver):
    verdicts = [verdict(score=1.1 + 0.05 * i, line=f"L{i % 2}") for i in range(5)] + [verdict(score=3.0)]
    store_inspections(engine, verdicts)
    records = [alert_record(v, LINKS) for v in verdicts]
    critical = records[-1]
    assert critical["severity"] == "CRITICAL" and {r["severity"] for r in records[:-1]} <= {"MINOR", "MAJOR"}
    # The first alert twice (a redelivery upstream), and a message that is not Avro at all.
    produce(kafka, alerts, [records[0], *records, records[0]], raw=[b"\x00\x00\x00not an alert"])

    settings = bridge_settings(receiver)
    stop, threads = run_loops(alert_worker(engine, kafka, settings, alerts, LINKS), *delivery_loops(engine, settings))
    try:
        ids = {r["alert_id"] for r in records}
        # Phase 1, the MES is down (connection refused): every alert is in the outbox, retried, not lost.
        wait_until(
            lambda: set(rows(engine)) == ids and all(r.attempts >= 2 for r in rows(engine).values()),
            what="every alert in the outbox with failed attempts",
        )
        listed = pending_over_grpc(engine, page_size=4)
        assert len(listed.alerts) == 4 and listed.next_page_token
        rest = pending_over_grpc(engine, page_size=4, page_token=listed.next_page_token)
        assert {a.alert_id for a in [*listed.alerts, *rest.alerts]} == ids and not rest.next_page_token
        assert all("unreachable" in a.last_error and a.attempts >= 2 for a in listed.alerts)
        assert {a.alert_id for a in pending_over_grpc(engine, line_id="L1").alerts} == {
            r["alert_id"] for r in records if r["line_id"] == "L1"
        }
        # Phase 2, the MES answers 503: still retried.
        receiver.mode = "unavailable"
        receiver.start()
        wait_until(lambda: len(receiver.requests) >= len(ids), what="503 answers")
        # Phase 3, the MES is back.
        receiver.mode = "ok"
        wait_until(
            lambda: all(r.delivery_state == DeliveryState.DELIVERED for r in rows(engine).values()),
            what="every alert delivered",
        )
        time.sleep(1.0)  # a duplicate delivery would show up now
        letters = collect(kafka, dead_letter_topic(alerts.topic, kafka), {"garbage"}, timeout_s=20, settle_s=0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    delivered = receiver.accepted()
    assert Counter(r["key"] for r in delivered) == {alert_id: 1 for alert_id in ids}  # exactly once each
    assert len(delivered) == len(ids)
    assert any(r["status"] == 503 for r in receiver.requests)
    for request in delivered:
        assert request["key"] == request["body"]["alert_id"] and request["auth"] == TOKEN
    by_id = {r["alert_id"]: r for r in records}
    assert {r["key"]: r["body"]["detected_at"] for r in delivered} == {
        i: r["detected_at"].isoformat(timespec="milliseconds") for i, r in by_id.items()
    }
    # The critical alert requested its line stop exactly once; no other alert did.
    stops = receiver.accepted("/line-stop")
    assert [(s["key"], s["body"]["line_id"], s["body"]["severity"]) for s in stops] == [
        (critical["alert_id"], critical["line_id"], "CRITICAL")
    ]
    outbox = rows(engine)
    assert outbox[critical["alert_id"]].line_stop_state == LineStop.REQUESTED
    assert {r.line_stop_state for i, r in outbox.items() if i != critical["alert_id"]} == {None}
    with db.session(engine) as session:  # the stop is in the tamper-evident audit log, once
        audited = [e for e in session.scalars(select(AuditEntry)) if e.action == "line.stop"]
        assert [(e.subject, e.details["alert_id"], e.details["outcome"]) for e in audited] == [
            (critical["line_id"], critical["alert_id"], "requested")
        ]
        assert verify_chain(session)[1] is None
    assert pending_over_grpc(engine).alerts == []
    [letter] = letters["garbage"]
    assert "undecodable alert" in dict(letter.headers())["dlq.reason"].decode()


def test_a_4xx_fails_the_alert_for_good_with_the_reason_and_others_go_on(engine, kafka, alerts, receiver):
    good, bad = verdict(), verdict(lot="REJECT")
    store_inspections(engine, [good, bad])
    produce(kafka, alerts, [alert_record(bad, LINKS), alert_record(good, LINKS)])
    receiver.start()
    settings = bridge_settings(receiver, line_stop_url=None)
    stop, threads = run_loops(alert_worker(engine, kafka, settings, alerts, LINKS), *delivery_loops(engine, settings))
    try:
        wait_until(
            lambda: (
                len(rows(engine)) == 2 and all(r.delivery_state != DeliveryState.PENDING for r in rows(engine).values())
            ),
            what="both settled",
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    outbox = rows(engine)
    failed, delivered = outbox[alert_record(bad, LINKS)["alert_id"]], outbox[alert_record(good, LINKS)["alert_id"]]
    assert failed.delivery_state == DeliveryState.FAILED and failed.attempts == 1  # never retried
    assert "mes: HTTP 422 from" in failed.last_error
    assert delivered.delivery_state == DeliveryState.DELIVERED and delivered.delivered_at is not None
    assert [r["status"] for r in receiver.requests if r["key"] == failed.id] == [422]


def test_forged_alerts_stop_no_line_reach_no_mes_and_are_reported(engine, kafka, alerts, receiver, caplog):
    good, minor, critical = verdict(score=0.4, defect=False), verdict(score=1.1), verdict(score=3.0)
    store_inspections(engine, [good, minor, critical])
    on_good = verdict(score=3.0)  # a CRITICAL alert about the stored good part
    on_good.inspection_id, on_good.frame.frame_id = good.inspection_id, good.frame.frame_id
    forged = {
        "not_defect": alert_record(on_good, LINKS),
        "unknown_inspection": alert_record(verdict(score=3.0), LINKS),  # never inspected
        "mismatch": {**alert_record(minor, LINKS), "severity": "CRITICAL"},  # a genuine MINOR, escalated
    }
    genuine = [alert_record(critical, LINKS), alert_record(minor, LINKS)]

    def refused(reason: str) -> float:
        return REGISTRY.get_sample_value("diffqc_alerts_refused_total", {"reason": reason}) or 0.0

    before = {reason: refused(reason) for reason in forged}
    produce(kafka, alerts, [*forged.values(), *genuine])  # one line, one partition: the forgeries come first
    receiver.start()
    settings = bridge_settings(receiver)
    caplog.set_level(logging.WARNING, logger="services.bridge.service")
    stop, threads = run_loops(alert_worker(engine, kafka, settings, alerts, LINKS), *delivery_loops(engine, settings))
    try:
        wait_until(lambda: len(receiver.accepted()) == 2 and receiver.accepted("/line-stop"), what="genuine alerts")
        time.sleep(1.0)  # a forged delivery or line stop would show up now
        forged_frames = {r["frame_id"] for r in forged.values()}
        letters = collect(kafka, dead_letter_topic(alerts.topic, kafka), forged_frames, timeout_s=20, settle_s=0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    critical_id, minor_id = (r["alert_id"] for r in genuine)
    assert [s["key"] for s in receiver.accepted("/line-stop")] == [critical_id]  # only the stored CRITICAL
    assert {r["key"]: r["body"]["severity"] for r in receiver.accepted()} == {
        critical_id: "CRITICAL",
        minor_id: "MINOR",
    }
    assert set(rows(engine)) == {critical_id, minor_id}
    assert rows(engine)[minor_id].line_stop_state is None
    reasons = {
        "not_defect": f"the stored inspection '{good.inspection_id}' is a pass verdict",
        "unknown_inspection": "is not in the metadata database",
        "mismatch": f"its severity disagree with the stored inspection '{minor.inspection_id}'",
    }
    for reason, record in forged.items():
        [letter] = letters[record["frame_id"]]
        dlq = dict(letter.headers())["dlq.reason"].decode()
        assert f"alert {record['alert_id']} refused: " in dlq and reasons[reason] in dlq, dlq
        assert refused(reason) == before[reason] + 1
        assert any(
            r.levelname == "WARNING" and record["alert_id"] in r.getMessage() and reasons[reason] in r.getMessage()
            for r in caplog.records
        ), reason


def test_the_service_process_delivers_and_refuses_bad_settings(
    postgres_url, engine, kafka, receiver, schema_registry_url, tmp_path
):
    base = {
        **os.environ,
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "DIFFQC_KAFKA_GROUP_PREFIX": kafka.group_prefix,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_REGISTRY_URL": schema_registry_url,
        "DIFFQC_SERVICE_GRPC_PORT": str(free_port()),
        "DIFFQC_SERVICE_METRICS_PORT": "0",
        "DIFFQC_BRIDGE_POLL_INTERVAL_S": "0.1",
        "DIFFQC_GATEWAY_PUBLIC_URL": LINKS.public_url,  # the bridge accepts links to this gateway only
        "DIFFQC_SCORING_LINE_PROTOCOL_FILE": str(tmp_path / "spc.lp"),
    }
    bridge = [sys.executable, "-m", "services.bridge"]
    for value, message in [
        (None, "DIFFQC_BRIDGE_MES_WEBHOOK_URL is not set"),
        ("mes.example/alerts", "DIFFQC_BRIDGE_MES_WEBHOOK_URL: 'mes.example/alerts' is not an http(s) URL"),
    ]:
        env = {**base, **({"DIFFQC_BRIDGE_MES_WEBHOOK_URL": value} if value else {})}
        done = subprocess.run(bridge, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr + done.stdout, done.stderr[-2000:]

    ensure_topics(kafka, [QUALITY_ALERT, dead_letter_topic(QUALITY_ALERT, kafka), INSPECTIONS, QUALITY_SPC], 2)
    producer_side = AvroTopic(
        registry_client(RegistrySettings(url=schema_registry_url)), QUALITY_ALERT, load_schema(ALERT_SCHEMA)
    )
    producer_side.register()
    v = verdict()
    store_inspections(engine, [v])
    receiver.start()
    proc = subprocess.Popen(
        bridge,
        env={**base, "DIFFQC_BRIDGE_MES_WEBHOOK_URL": f"{receiver.url}/mes/alerts"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        produce(kafka, producer_side, [alert_record(v, LINKS)])
        wait_until(
            lambda: any(r["key"] == alert_record(v, LINKS)["alert_id"] for r in receiver.accepted()),
            what="the alert at the MES",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]


def test_spc_signals_go_to_influx_and_quality_spc_and_answer_get_spc_state(
    engine, kafka, schema_registry_url, timeseries_url
):
    line = f"spc-{uuid.uuid4().hex[:8]}"  # its own chart, whatever else is on qc.inspections.v1
    scores = [1.0 + 0.02 * ((i * 7) % 5 - 2) for i in range(20)] + [1.9]  # an in-control baseline, then a jump
    verdicts = [
        verdict(score=s, line=line, defect=False, captured=DECIDED + timedelta(seconds=i)) for i, s in enumerate(scores)
    ]
    ensure_topics(kafka, [INSPECTIONS], 2)
    signals = AvroTopic(
        registry_client(RegistrySettings(url=schema_registry_url)),
        f"{QUALITY_SPC}.test-{uuid.uuid4().hex[:8]}",
        load_schema(SPC_SCHEMA),
    )
    ensure_topics(kafka, [signals.topic], 1)
    signals.register()
    producer = Producer(producer_config(kafka))
    for v in [*verdicts, verdicts[-1]]:  # the last one redelivered: it must not count twice
        producer.produce(
            INSPECTIONS,
            key=line.encode(),
            value=v.SerializeToString(),
            headers=[("frame_id", v.frame.frame_id.encode())],
        )
    assert producer.flush(10) == 0

    feed = SpcFeed(SpcMonitor(SpcSettings(baseline_size=20)), engine)
    sink = InfluxScoreSink(InfluxSettings(url=timeseries_url, token="test"))
    stop, threads = run_loops(spc_stage(feed, SignalPublisher(feed, kafka, sink, signals)).worker(kafka))
    try:
        wait_until(lambda: sum(s.sample_count for s in feed.state(line, "")) == len(scores), what="every score charted")
        time.sleep(1.0)  # the redelivered verdict has been seen by now
        published = collect(kafka, signals.topic, {""}, timeout_s=10)  # signals carry no frame_id header
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        sink.close()
    [state] = call_bridge(engine, "GetSpcState", bridge_pb2.GetSpcStateRequest(line_id=line), feed).states
    assert state.sample_count == len(scores) and state.limits_fixed and state.last_score == 1.9
    assert "we1" in {v.rule for v in state.violations}
    [message] = [m for m in published.get("", []) if m.key() == line.encode()]
    record = signals.decode(message.value())
    assert (record["rule"], record["line_id"], record["value"], record["sample_index"]) == ("we1", line, 1.9, 20)
    assert record["plant_id"] == "P1" and record["value"] > record["ucl"]

    def stored(measurement: str, field: str) -> list[dict]:
        return [s for s in export_series(timeseries_url, measurement, field) if s["metric"].get("line") == line]

    points = wait_until(lambda: stored("spc_signal", "value"), what="the signal point searchable", timeout_s=15)
    assert [(p["metric"]["rule"], p["values"]) for p in points] == [("we1", [1.9])]
    # The limits the monitored point was judged against, for the dashboards to draw as lines.
    [ucl] = wait_until(lambda: stored("spc_limits", "ucl"), what="the limits point searchable", timeout_s=15)
    assert ucl["values"] and ucl["metric"]["plant"] == "P1"  # (the redelivered verdict writes the same point again)
    np.testing.assert_allclose(ucl["values"], state.upper_control_limit)


def _shifted_line(line: str) -> list:
    """An in-control baseline of 20 scores, then a jump that rule 1 flags."""
    scores = [1.0 + 0.02 * ((i * 7) % 5 - 2) for i in range(20)] + [1.9]
    return [
        verdict(score=s, line=line, defect=False, captured=DECIDED + timedelta(seconds=i)) for i, s in enumerate(scores)
    ]


def test_signals_whose_side_effects_failed_fire_again_on_redelivery_and_only_then(engine):
    feed = SpcFeed(SpcMonitor(SpcSettings(baseline_size=20)), engine)
    verdicts = _shifted_line("L-retry")
    assert [feed.observe(v).signals for v in verdicts[:-1]] == [[]] * 20
    fired = feed.observe(verdicts[-1]).signals
    assert [s.rule for s in fired] == ["we1"]
    assert feed.observe(verdicts[-1]).signals == fired  # Influx or the broker failed: the retry gets the signal again
    feed.delivered(verdicts[-1])
    assert feed.observe(verdicts[-1]).signals == []  # delivered: a redelivery adds nothing
    assert feed.state("L-retry", "")[0].sample_count == 21


def test_a_restarted_bridge_continues_its_charts_from_the_stored_state(engine, caplog):
    line = f"L-restart-{uuid.uuid4().hex[:6]}"
    verdicts = _shifted_line(line)
    live = SpcFeed(SpcMonitor(SpcSettings(baseline_size=20)), engine)
    reference = SpcMonitor(SpcSettings(baseline_size=20))
    for v in verdicts[:-1]:
        store_inspections(engine, [v])
        live.observe(v)
        live.delivered(v)
        reference.observe_verdict(v)

    restarted = SpcFeed(SpcMonitor(SpcSettings(baseline_size=20)), engine)
    caplog.set_level(logging.INFO, logger="services.bridge.spc")
    assert restarted.state(line, "") == reference.state(line)
    assert restarted.observe(verdicts[19]).signals == []  # redelivered after the restart: already on the chart
    # The next verdict is judged against the limits the stored baseline fixed, as in the uninterrupted chart.
    store_inspections(engine, [verdicts[-1]])
    assert (
        [(s.rule, s.sample_index) for s in restarted.observe(verdicts[-1]).signals]
        == [(s.rule, s.sample_index) for s in reference.observe_verdict(verdicts[-1])]
        == [("we1", 20)]
    )
    assert "rebuilt" not in caplog.text  # continued from the stored state, not replayed from the verdicts


def _good_parts(line: str, drift_from: int | None, n: int = 60) -> list:
    """Good parts of one line; from part ``drift_from`` on, brighter-looking (pixel component and score up)."""
    parts = []
    for i in range(n):
        moved = drift_from is not None and i >= drift_from
        v = verdict(
            score=0.5 + 0.01 * (i % 7) + (1.0 if moved else 0.0),
            line=line,
            defect=False,
            captured=DECIDED + timedelta(seconds=i),
        )
        v.component_scores.update({"pixel": 0.1 * (i % 5) + (2.0 if moved else 0.0), "process": 0.0})
        parts.append(v)
    return parts


def test_an_injected_drift_raises_one_event_on_quality_drift_and_in_influx_and_a_steady_line_none(
    kafka, schema_registry_url, timeseries_url
):
    drifted, steady = (f"drift-{uuid.uuid4().hex[:8]}" for _ in range(2))
    # Reference: the first 20 good parts; checks every 10 of a 20-part window; two checks in a row raise it.
    settings = DriftSettings(reference_size=20, window=20, check_every=10)
    verdicts = _good_parts(drifted, drift_from=20) + _good_parts(steady, drift_from=None)
    ensure_topics(kafka, [INSPECTIONS], 2)
    events = AvroTopic(
        registry_client(RegistrySettings(url=schema_registry_url)),
        f"{QUALITY_DRIFT}.test-{uuid.uuid4().hex[:8]}",
        load_schema(DRIFT_SCHEMA),
    )
    ensure_topics(kafka, [events.topic], 1)
    events.register()
    producer = Producer(producer_config(kafka))
    for v in [*verdicts, verdicts[59]]:  # the drifted line's last verdict redelivered: it must not count twice
        producer.produce(
            INSPECTIONS,
            key=v.frame.line_id.encode(),
            value=v.SerializeToString(),
            headers=[("frame_id", v.frame.frame_id.encode())],
        )
    assert producer.flush(10) == 0

    feed = DriftFeed(DriftMonitor(settings))
    sink = InfluxScoreSink(InfluxSettings(url=timeseries_url, token="test"))
    stop, threads = run_loops(drift_stage(feed, DriftPublisher(feed, kafka, sink, events)).worker(kafka))
    try:
        wait_until(
            lambda: [s.good_parts for s in feed.state(drifted) + feed.state(steady)] == [60, 60],
            what="every verdict seen",
        )
        time.sleep(1.0)  # the redelivered verdict has been seen by now
        published = collect(kafka, events.topic, {""}, timeout_s=10)  # events carry no frame_id header
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        sink.close()
    [state] = feed.state(drifted)
    assert state.status == "drifting" and len(state.events) == 1
    assert feed.state(steady)[0].status == "stable" and feed.state(steady)[0].events == ()
    ours = [m for m in published.get("", []) if m.key() in (drifted.encode(), steady.encode())]
    assert [m.key() for m in ours] == [drifted.encode()]  # one event for the episode, none for the steady line
    record = events.decode(ours[0].value())
    assert dict(ours[0].headers())["event_id"].decode() == record["event_id"] == f"{drifted}/pcb/drift/49"
    assert (record["line_id"], record["product_type"], record["model_version"], record["plant_id"]) == (
        drifted,
        "pcb",
        "1",
        "P1",
    )
    assert set(record["quantities"]) == {"score", "pixel"} and record["recommendation"] == "retrain"
    assert record["detected_at"] == DECIDED + timedelta(seconds=49) and record["psi"] > settings.psi_threshold
    assert (record["reference_size"], record["window_size"]) == (20, 20)

    def stored() -> list[dict]:
        series = export_series(timeseries_url, "drift_event", "psi")
        return [s for s in series if s["metric"].get("line") in (drifted, steady)]

    [point] = wait_until(stored, what="the drift event point searchable", timeout_s=15)
    assert point["metric"]["line"] == drifted and point["metric"]["recommendation"] == "retrain"
    np.testing.assert_allclose(point["values"], [record["psi"]])
