"""SPC actions at the gateway, against the real uvicorn process and Postgres. Acknowledging signals: an
operator (or admin) records a signal's cause and corrective action once, audited; viewers read them and
may not write; a second acknowledgement, a malformed signal id, another line's signal or an over-long
cause is refused naming the problem. Re-basing a chart: admins only, from a window of good parts, and
the line's chart judges later points against the new limits. (The pipeline is not needed: these routes
touch only the database.)"""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import numpy as np
import pytest

from diffqc.core import clock
from diffqc.store.engine import make_engine
from tests.helpers.gateway_stack import ADMIN_KEY, API_KEY, VIEWER_KEY, gateway_alone
from tests.helpers.verdicts import store_inspections, verdict

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def gateway_and_database(tmp_path_factory):
    env = {"DIFFQC_SPC_REBASE_DELAY_S": "1", "DIFFQC_SPC_BASELINE_SIZE": "10"}
    with gateway_alone(tmp_path_factory.mktemp("gateway-spc-actions"), env) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(gateway_and_database):
    return gateway_and_database[0]


def _client(url: str, key: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key} if key else {})


@pytest.fixture(scope="module")
def operator(gateway):
    with _client(gateway, API_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def viewer(gateway):
    with _client(gateway, VIEWER_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def admin(gateway):
    with _client(gateway, ADMIN_KEY) as client:
        yield client


def _ack(client: httpx.Client, line: str, signal_id: str, cause: str = "worn nozzle", action: str = "replaced it"):
    body = {"signal_id": signal_id, "cause": cause, "corrective_action": action}
    return client.post(f"/api/spc/{line}/signals/ack", json=body)


def test_an_operator_acknowledges_a_signal_viewers_see_it_and_the_audit_log_has_it(operator, viewer, admin):
    done = _ack(operator, "L1", "L1/pcb/we4/14")
    assert done.status_code == 201, done.text
    ack = done.json()
    assert {k: ack[k] for k in ("signal_id", "line_id", "product_type", "rule", "sample_index")} == {
        "signal_id": "L1/pcb/we4/14",
        "line_id": "L1",
        "product_type": "pcb",
        "rule": "we4",
        "sample_index": 14,
    }
    assert (ack["cause"], ack["corrective_action"], ack["acknowledged_by"]) == (
        "worn nozzle",
        "replaced it",
        "test-operator",
    )
    assert _ack(admin, "L1", "L1/can/pchart/30").status_code == 201  # admin is above operator

    listed = viewer.get("/api/spc/L1/acknowledgements")
    assert listed.status_code == 200, listed.text
    assert [a["signal_id"] for a in listed.json()] == ["L1/can/pchart/30", "L1/pcb/we4/14"]  # newest first
    assert [a["signal_id"] for a in viewer.get("/api/spc/L1/acknowledgements?product_type=pcb").json()] == [
        "L1/pcb/we4/14"
    ]
    assert viewer.get("/api/spc/L2/acknowledgements").json() == []

    audited = [row for row in admin.get("/api/audit").json() if row["action"] == "spc.acknowledge"]
    assert [(r["actor"], r["subject"]) for r in audited] == [
        ("test-admin", "L1/can/pchart/30"),
        ("test-operator", "L1/pcb/we4/14"),
    ]
    assert audited[1]["details"]["cause"] == "worn nozzle"
    assert audited[1]["details"]["key_id"].startswith("env:")
    assert admin.get("/api/audit/verify").json()["intact"] is True


def test_a_viewer_may_read_but_not_acknowledge_and_nobody_without_credentials_may_do_either(gateway, viewer):
    refused = _ack(viewer, "L1", "L1/pcb/we1/3")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "role operator required: API key 'test-viewer' has role viewer"
    with _client(gateway, None) as anonymous:
        assert _ack(anonymous, "L1", "L1/pcb/we1/3").status_code == 401
        assert anonymous.get("/api/spc/L1/acknowledgements").status_code == 401
    assert "L1/pcb/we1/3" not in {a["signal_id"] for a in viewer.get("/api/spc/L1/acknowledgements").json()}


def test_a_second_acknowledgement_is_a_conflict_naming_the_signal_and_who_acknowledged_it(operator, admin):
    assert _ack(operator, "L1", "L1/pcb/nelson1/40").status_code == 201
    audit_rows = len(admin.get("/api/audit", params={"limit": 1000}).json())
    again = _ack(admin, "L1", "L1/pcb/nelson1/40", cause="someone else's view")
    assert again.status_code == 409
    assert again.json()["detail"].startswith(
        "signal 'L1/pcb/nelson1/40' was already acknowledged by 'test-operator' at "
    )
    assert len(admin.get("/api/audit", params={"limit": 1000}).json()) == audit_rows  # nothing audited


@pytest.mark.parametrize(
    "line, signal_id, cause, problem",
    [
        ("L1", "L1/pcb/nelson9/3", "c", "signal id 'L1/pcb/nelson9/3': rule 'nelson9' is not one of "),
        ("L1", "L1/pcb/we1/x", "c", "signal id 'L1/pcb/we1/x': sample index 'x' is not a non-negative integer"),
        ("L1", "just-text", "c", "signal id 'just-text' is not <line>/<product type>/<rule>/<sample index>"),
        ("L1", "L2/pcb/we1/3", "c", "signal 'L2/pcb/we1/3' is of line 'L2', not of line 'L1'"),
        ("L1", "L1/pcb/we1/3", "x" * 501, "cause: String should have at most 500 characters"),
        ("L1", "L1/pcb/we1/3", "   ", "cause is required"),
        ("L1", "L1/" + "p" * 300, "c", "signal_id: String should have at most 200 characters"),
    ],
)
def test_a_bad_acknowledgement_is_refused_naming_the_problem(operator, line, signal_id, cause, problem):
    refused = _ack(operator, line, signal_id, cause=cause)
    assert refused.status_code == 422, refused.text
    assert problem in refused.json()["detail"]


def test_an_admin_rebases_a_chart_and_later_points_are_judged_against_the_new_limits(
    gateway_and_database, admin, operator
):
    _, database_url = gateway_and_database
    engine = make_engine(database_url)
    start = clock.now() - timedelta(minutes=10)
    scores = list(0.5 + 0.1 * np.random.default_rng(3).standard_normal(40))
    try:
        store_inspections(
            engine,
            [
                verdict(score=s, line="RB1", defect=False, captured=start + timedelta(seconds=i))
                for i, s in enumerate(scores)
            ],
        )
        window = {
            "window_start": (start + timedelta(seconds=20)).isoformat(),
            "window_end": (start + timedelta(seconds=39)).isoformat(),
        }
        body = {**window, "reason": "new nozzle fitted"}
        assert operator.post("/api/spc/RB1/pcb/rebase", json=body).status_code == 403
        refused = admin.post("/api/spc/RB1/pcb/rebase", json={**body, "window_end": window["window_start"]})
        assert refused.status_code == 422 and "after it ends" in refused.text
        created = admin.post("/api/spc/RB1/pcb/rebase", json=body)
        assert created.status_code == 201, created.text
        rebase = created.json()
        assert rebase["baseline_size"] == 20 and rebase["rebased_by"] == "test-admin"
        assert rebase["center_line"] == pytest.approx(np.mean(scores[20:]))
        # A point captured after the limits came into force is judged against them.
        time.sleep(1.2)
        store_inspections(engine, [verdict(score=0.5, line="RB1", defect=False, captured=clock.now())])
        [chart] = admin.get("/api/lines/RB1/spc").json()["charts"]
        assert chart["rebased_at"] == 40 and chart["center_line"] == pytest.approx(rebase["center_line"])
    finally:
        engine.dispose()
