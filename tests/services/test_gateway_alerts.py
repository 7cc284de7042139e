"""The gateway's failed-alert routes over a real PostgreSQL: an admin lists the alerts the MES refused for good, page
by page, and re-drives them (audited under the key's name); bad requests are 422s naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from diffqc.settings import GatewaySettings, Settings
from diffqc.store import db
from diffqc.store.alerts import record_alert
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import Alert, AuditEntry, DeliveryState
from services.gateway.app import create_app
from services.gateway.ingest import IngestionClient
from tests.helpers.gateway_stack import ADMIN_KEY, KEY_ENTRIES, VIEWER_KEY

FAILED = ["a-1", "a-2", "a-3"]


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with db.session(engine, write=True) as session:
        for alert_id in [*FAILED, "pending-1"]:
            record_alert(session, {"alert_id": alert_id, "line_id": "L1", "severity": "MINOR"}, line_stop=False)
        for row in session.scalars(select(Alert).where(Alert.id.in_(FAILED))):
            row.delivery_state, row.attempts, row.last_error = DeliveryState.FAILED, 1, "mes: HTTP 422 from x"
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine, tmp_path: Path):
    ingestion = IngestionClient("127.0.0.1:1", 1)
    settings = Settings(gateway=GatewaySettings(api_keys=KEY_ENTRIES))
    with TestClient(create_app(settings, engine, FileBlobStore(tmp_path), ingestion)) as client:
        yield client
    ingestion.close()


def test_an_admin_lists_failed_alerts_by_page_and_redrives_them_with_an_audit_row(client, engine):
    admin = {"X-API-Key": ADMIN_KEY}
    first = client.get("/api/alerts/failed", params={"page_size": 2}, headers=admin).json()
    rest = client.get(
        "/api/alerts/failed", params={"page_size": 2, "page_token": first["next_page_token"]}, headers=admin
    ).json()
    assert [a["alert_id"] for a in [*first["alerts"], *rest["alerts"]]] == FAILED and not rest["next_page_token"]
    assert {a["last_error"] for a in first["alerts"]} == {"mes: HTTP 422 from x"}
    assert client.get("/api/alerts/failed", headers={"X-API-Key": VIEWER_KEY}).status_code == 403

    one = client.post("/api/alerts/redrive", json={"alert_ids": ["a-1", "pending-1"]}, headers=admin)
    assert one.status_code == 200 and one.json() == {"redriven": ["a-1"], "not_failed": ["pending-1"]}
    rest_of_them = client.post("/api/alerts/redrive", json={"all": True}, headers=admin).json()
    assert rest_of_them == {"redriven": ["a-2", "a-3"], "not_failed": []}
    assert client.get("/api/alerts/failed", headers=admin).json() == {"alerts": [], "next_page_token": ""}
    with db.session(engine) as session:
        assert all(
            r.delivery_state == DeliveryState.PENDING and r.attempts == 0 for r in session.scalars(select(Alert))
        )
        audited = [(e.action, e.subject, e.actor) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert audited == [("alert.redrive", i, "test-admin") for i in FAILED]


@pytest.mark.parametrize(
    ("method", "path", "request_args", "message"),
    [
        ("POST", "/api/alerts/redrive", {"json": {}}, "give alert_ids (one or more) or all, not both"),
        ("POST", "/api/alerts/redrive", {"json": {"alert_ids": ["a-1"], "all": True}}, "not both"),
        ("GET", "/api/alerts/failed", {"params": {"page_token": "bm90IGEgdG9rZW4="}}, "invalid page token"),
    ],
)
def test_a_bad_request_is_a_422_naming_the_problem_and_changes_nothing(
    client, engine, method, path, request_args, message
):
    response = client.request(method, path, headers={"X-API-Key": ADMIN_KEY}, **request_args)
    assert response.status_code == 422 and message in response.text
    with db.session(engine) as session:
        assert session.scalars(select(AuditEntry)).first() is None
