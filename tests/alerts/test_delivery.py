"""The bridge's delivery loops against a real PostgreSQL and a real HTTP MES / line controller: leases that keep
the HTTP call outside row locks, line stops on their own fast path, refused credentials retried, failed alerts
listed (CLI, gRPC), re-driven and delivered alerts pruned."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from diffqc.alerts.delivery import delivery_loops
from diffqc.cli import app as cli
from diffqc.core import clock
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.settings import BridgeSettings
from diffqc.spc import SpcMonitor
from diffqc.store import db
from diffqc.store.alerts import (
    failed_alerts,
    lease_next_due,
    leased_row,
    prune_delivered,
    record_alert,
    redrive,
)
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Alert, AuditEntry, DeliveryState, LineStop
from diffqc.v1 import bridge_pb2, bridge_pb2_grpc
from services.bridge.service import SERVICE_NAME, BridgeServicer
from services.bridge.spc import SpcFeed
from tests.helpers.gateway_stack import wait_until

GATE_TIMEOUT_S = 30  # far beyond the line-stop loop's first post, even on busy CI cores


class Receiver:
    """A real HTTP server playing the MES (/mes) and the line controller (/line-stop). ``answer(path, key)`` gives
    the status; each answered request is logged in order, with whether its alert's row was locked meanwhile."""

    def __init__(self, engine, answer=lambda path, key: 200, before_answer=lambda path, key: None):
        self.log: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                before_answer(self.path, key)
                row_locked = _locked(engine, key)
                status = answer(self.path, key)
                with receiver.lock:
                    receiver.log.append(
                        {"path": self.path, "key": key, "status": status, "locked": row_locked, "body": body}
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answered(self, path: str, status: int = 200) -> list[str]:
        with self.lock:
            return [r["key"] for r in self.log if r["path"] == path and r["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _locked(engine, alert_id: str) -> bool:
    """Whether some transaction holds the alert's row lock right now (the bridge must not, during its POST)."""
    with engine.connect() as connection:
        try:
            connection.execute(text("SELECT id FROM alerts WHERE id = :id FOR UPDATE NOWAIT"), {"id": alert_id})
            return False
        except OperationalError:
            return True
        finally:
            connection.rollback()


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def settings(receiver: Receiver, **overrides) -> BridgeSettings:
    fields = {
        "mes_webhook_url": f"{receiver.url}/mes",
        "mes_auth_value": "Bearer rotated-away",
        "line_stop_url": f"{receiver.url}/line-stop",
        "request_timeout_s": GATE_TIMEOUT_S + 5,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.2,
        "poll_interval_s": 0.05,
    }
    return BridgeSettings(**{**fields, **overrides})


def add_alerts(engine, count: int, severity: str = "MINOR", line_stop: bool = False) -> list[str]:
    ids = [f"{severity.lower()}-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with db.session(engine, write=True) as session:
        for alert_id in ids:
            body = {
                "alert_id": alert_id,
                "plant_id": "P1",
                "line_id": "L1",
                "station_id": "S1",
                "severity": severity,
                "inspection_id": None,
                "product_type": "pcb",
                "score": 3.0,
                "threshold": 1.0,
                "status": "DEFECT",
            }
            record_alert(session, body, line_stop=line_stop)
    return ids


def run(loops):
    stop = threading.Event()
    threads = [threading.Thread(target=loop.run, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    return stop, threads


def halt(stop, threads) -> None:
    stop.set()
    for thread in threads:
        thread.join(30)


def states(engine) -> dict[str, Alert]:
    with db.session(engine) as session:
        return {row.id: row for row in session.scalars(select(Alert))}


def test_a_line_stop_is_requested_before_the_routine_backlog_drains_and_no_post_holds_a_row_lock(engine):
    routine = add_alerts(engine, 50)
    [critical] = add_alerts(engine, 1, "CRITICAL", line_stop=True)  # the newest alert
    stopped = threading.Event()

    def hold_routine_until_the_stop(path: str, key: str) -> None:
        # The MES answers routine alerts only once the line stop arrived: a stop queued behind them never does.
        if path == "/line-stop":
            stopped.set()
        elif key != critical:
            stopped.wait(GATE_TIMEOUT_S)
            deadline = time.monotonic() + GATE_TIMEOUT_S  # and until the stop's answer is logged: no race for order
            while not receiver.answered("/line-stop") and time.monotonic() < deadline:
                time.sleep(0.01)

    receiver = Receiver(engine, before_answer=hold_routine_until_the_stop)
    stop, threads = run(delivery_loops(engine, settings(receiver)))
    try:
        wait_until(lambda: len(receiver.answered("/mes")) == 51, timeout_s=90, what="every alert delivered")
    finally:
        halt(stop, threads)
        receiver.close()

    order = [(r["path"], r["key"]) for r in receiver.log]
    assert order[0] == ("/line-stop", critical)  # answered before any of the 50 routine alerts
    assert sorted(receiver.answered("/mes")) == sorted([*routine, critical])  # each once
    assert receiver.answered("/line-stop") == [critical]
    assert order.index(("/mes", critical)) > 0  # the MES hears of it after its stop is settled
    assert not any(r["locked"] for r in receiver.log)  # no transaction open during a POST
    outbox = states(engine)
    assert outbox[critical].line_stop_state == LineStop.REQUESTED
    assert all(row.delivery_state == DeliveryState.DELIVERED and row.next_attempt_at is None for row in outbox.values())


def refused(dependency: str) -> float:
    return REGISTRY.get_sample_value("diffqc_credentials_refused_total", {"dependency": dependency}) or 0.0


def test_refused_credentials_are_retried_counted_and_logged_and_other_4xx_fail_for_good(engine, caplog):
    [critical] = add_alerts(engine, 1, "CRITICAL", line_stop=True)
    [routine, rejected] = add_alerts(engine, 2)
    refusals = {"/mes": 2, "/line-stop": 2}  # each refuses the old credentials twice, then the rotation is done

    def answer(path: str, key: str) -> int:
        if key == rejected:
            return 422
        if refusals[path]:
            refusals[path] -= 1
            return 401 if path == "/mes" else 403
        return 200

    before = {dependency: refused(dependency) for dependency in ("mes", "line_stop")}
    caplog.set_level(logging.WARNING, logger="diffqc.alerts.delivery")
    receiver = Receiver(engine, answer=answer)
    stop, threads = run(delivery_loops(engine, settings(receiver)))
    try:
        wait_until(
            lambda: sorted(receiver.answered("/mes")) == sorted([critical, routine]),
            timeout_s=20,
            what="delivered after the rotation",
        )
        wait_until(lambda: states(engine)[rejected].delivery_state == DeliveryState.FAILED, what="the 422 settled")
    finally:
        halt(stop, threads)
        receiver.close()

    outbox = states(engine)
    assert outbox[critical].delivery_state == DeliveryState.DELIVERED
    assert outbox[critical].line_stop_state == LineStop.REQUESTED and outbox[critical].attempts >= 3
    assert outbox[routine].delivery_state == DeliveryState.DELIVERED
    assert refused("mes") >= before["mes"] + 1 and refused("line_stop") >= before["line_stop"] + 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("DIFFQC_BRIDGE_MES_AUTH_VALUE" in m and "HTTP 401" in m for m in errors)
    assert any("DIFFQC_BRIDGE_MES_AUTH_VALUE" in m and "HTTP 403" in m for m in errors)
    assert outbox[rejected].attempts == 1 and "mes: HTTP 422 from" in outbox[rejected].last_error


def test_a_lease_keeps_other_senders_off_until_it_runs_out_and_a_stale_outcome_is_not_kept(engine):
    [alert] = add_alerts(engine, 1)
    now = clock.now()
    with db.session(engine, write=True) as session:
        first = lease_next_due(session, now, now + timedelta(seconds=30), line_stops=False)
    with db.session(engine, write=True) as session:
        assert lease_next_due(session, now, now + timedelta(seconds=30), line_stops=False) is None  # held
        assert lease_next_due(session, now, now + timedelta(seconds=30), line_stops=True) is None  # no stop asked
    later = now + timedelta(seconds=31)  # the first sender crashed mid-POST: its lease ran out
    with db.session(engine, write=True) as session:
        second = lease_next_due(session, later, later + timedelta(seconds=30), line_stops=False)
    assert first is not None and second is not None and (first.alert_id, second.alert_id) == (alert, alert)
    assert second.attempts == first.attempts + 1
    with db.session(engine, write=True) as session:
        assert leased_row(session, first) is None  # the crashed sender's late outcome is dropped
        assert leased_row(session, second) is not None


def list_failed_over_grpc(engine, request: bridge_pb2.ListFailedAlertsRequest) -> bridge_pb2.ListFailedAlertsResponse:
    servicer = BridgeServicer(engine, SpcFeed(SpcMonitor(), engine))
    server = GrpcServer(
        "bridge", lambda s: bridge_pb2_grpc.add_BridgeServiceServicer_to_server(servicer, s), [SERVICE_NAME]
    )
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            return bridge_pb2_grpc.BridgeServiceStub(channel).ListFailedAlerts(request)
    finally:
        server.stop(1)


def test_failed_alerts_are_listed_by_page_redriven_with_an_audit_row_and_delivered_ones_pruned(
    engine, postgres_url, monkeypatch
):
    failed = add_alerts(engine, 3)
    delivered = add_alerts(engine, 2)
    with db.session(engine, write=True) as session:
        for row in session.scalars(select(Alert)):
            if row.id in failed:
                row.delivery_state, row.attempts, row.last_error = DeliveryState.FAILED, 1, "mes: HTTP 422 from x"
            else:
                row.delivery_state, row.delivered_at = DeliveryState.DELIVERED, clock.now() - timedelta(days=400)
    with db.session(engine) as session:
        page, token = failed_alerts(session, page_size=2)
        rest, last = failed_alerts(session, page_size=2, page_token=token)
    assert [r.id for r in [*page, *rest]] == failed and token and not last
    over_grpc = list_failed_over_grpc(engine, bridge_pb2.ListFailedAlertsRequest(line_id="L1", page_size=10))
    assert [(a.alert_id, a.attempts, a.last_error) for a in over_grpc.alerts] == [
        (i, 1, "mes: HTTP 422 from x") for i in failed
    ]

    monkeypatch.setenv("DIFFQC_DATABASE_URL", postgres_url)
    listed = CliRunner().invoke(cli, ["alerts", "failed"])
    assert listed.exit_code == 0, listed.output
    assert all(alert_id in listed.stdout and "HTTP 422" in listed.stdout for alert_id in failed)
    both = CliRunner().invoke(cli, ["alerts", "redrive", "--all", "--id", failed[0]])
    assert both.exit_code == 2
    one = CliRunner().invoke(cli, ["alerts", "redrive", "--id", failed[0], "--id", delivered[0]])
    assert one.exit_code == 1 and delivered[0] in one.stderr  # not a failed alert
    with db.session(engine, write=True) as session:
        done, not_failed = redrive(session, None, "admin-key")
    assert done == failed[1:] and not_failed == []

    outbox = states(engine)
    assert all(
        outbox[i].delivery_state == DeliveryState.PENDING
        and outbox[i].attempts == 0
        and outbox[i].next_attempt_at is None
        for i in failed
    )
    with db.session(engine) as session:
        audited = [(e.action, e.subject, e.actor) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert [(a, s) for a, s, _ in audited] == [("alert.redrive", i) for i in failed]
    assert audited[0][2].startswith("cli") and {actor for *_, actor in audited[1:]} == {"admin-key"}

    with db.session(engine, write=True) as session:
        assert prune_delivered(session, clock.now() - timedelta(days=365)) == 2
    assert set(states(engine)) == set(failed)
