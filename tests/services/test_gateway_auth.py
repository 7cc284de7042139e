"""Who may do what at the gateway, against the real uvicorn process, pipeline and Postgres: every route
but /health and the login page needs credentials (401), each declares its role (403 below it), keys
are stored as salted hashes and revoked without a restart, sessions and signed links admit only
while valid, and every write lands in a hash chain that shows tampering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from diffqc.cli import app as cli
from diffqc.data.mvtec import list_samples
from diffqc.infra.ports import free_port
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.services import gateway_process
from diffqc.security.links import sign_link
from diffqc.settings import Settings
from diffqc.store import db, training_jobs
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.models import ModelCanary, ModelVersion, ProductType
from services.gateway import sessions
from services.gateway.app import create_app
from services.gateway.ingest import IngestionClient
from tests.helpers.gateway_stack import (
    ADMIN_KEY,
    API_KEY,
    LINK_SECRET,
    SESSION_SECRET,
    VIEWER_KEY,
    form,
    gateway_stack,
    parts_by_verdict,
    upload,
    wait_until,
)
from tests.helpers.inspections import add_product
from tests.helpers.models import TINY_PRODUCT

pytestmark = pytest.mark.timeout(300)

KEY_CACHE_S = 2.0
ROLE_KEYS = {"viewer": VIEWER_KEY, "operator": API_KEY, "admin": ADMIN_KEY}
BELOW = {"viewer": [], "operator": ["viewer"], "admin": ["viewer", "operator"]}
UNKNOWN_KEY = "dqc_00000000_" + "A" * 43


@pytest.fixture(scope="module")
def stack(tiny_artifact, tmp_path_factory):
    with gateway_stack(
        tmp_path_factory.mktemp("gateway-auth"),
        tiny_artifact[0],
        gateway_env={
            "DIFFQC_GATEWAY_KEY_CACHE_S": str(KEY_CACHE_S),
            "DIFFQC_SPC_REBASE_MIN_PARTS": "2",
            "DIFFQC_TRITON_MODEL_CONTROL": "poll",  # the matrix's model versions exist in the registry only
        },
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def admin(stack):
    with stack.client(ADMIN_KEY) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(stack):
    with stack.client(None) as client:
        yield client


@pytest.fixture(scope="module")
def image(tiny_artifact):
    return next(s.path.read_bytes() for s in list_samples(tiny_artifact[1], "test") if s.label == 1)


@pytest.fixture(scope="module")
def rebase_line(stack, tiny_artifact) -> dict:
    """A line with two good parts, enough for a re-base of its chart (DIFFQC_SPC_REBASE_MIN_PARTS=2)."""
    line = f"RB-{uuid.uuid4().hex[:6]}"
    goods = [s.path.read_bytes() for s in list_samples(tiny_artifact[1], "train")][:20]
    with stack.client() as client:
        parts_by_verdict(client, goods, line)
    return {"rebase_line": line, "product": TINY_PRODUCT}


@pytest.fixture(scope="module")
def inspection(stack, image):
    """One inspected upload (a defective part, so it has a heatmap)."""
    with stack.client() as client:
        response = upload(client, image, f"L-{uuid.uuid4().hex[:6]}", wait=True)
    assert response.status_code == 200, (response.text, stack.log_tails())
    return response.json()["inspection"]


@pytest.fixture(scope="module")
def engine(stack):
    engine = make_engine(stack.pipeline.database_url)
    yield engine
    engine.dispose()


def _new_key(admin, role: str = "viewer") -> dict:
    response = admin.post("/api/keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", "role": role})
    assert response.status_code == 201, response.text
    return response.json()


@dataclass
class Route:
    method: str
    path: str
    role: str
    request: Callable[[dict, dict], dict]  # (inspection, admin client context) -> httpx request kwargs

    def call(self, client: httpx.Client, inspection: dict, context: dict) -> httpx.Response:
        kwargs = self.request(inspection, context)
        params = {**context, **kwargs.pop("path", {})}  # a request may make its own subject (a model version)
        path = self.path.format(id=inspection["inspection_id"], line=inspection["line_id"], **params)
        return client.request(self.method, path, **kwargs)


def _none(_inspection, _context) -> dict:
    return {}


def _upload(inspection, _context) -> dict:
    return {
        "files": {"image": ("frame.png", _context["image"], "image/png")},
        "data": form(inspection["line_id"]),
    }


def _label(inspection, _context) -> dict:
    return {"json": {"kind": "false_alarm" if inspection["verdict"] == "defect" else "confirmed_good"}}


def _rebase(_inspection, _context) -> dict:
    window = {"window_start": "2000-01-01T00:00:00+00:00", "window_end": "2100-01-01T00:00:00+00:00"}
    return {"json": {**window, "reason": "route check"}}


def _registry(context: dict, stages: list[str], canary: bool = False) -> dict:
    """A fresh product with model versions in ``stages`` (the last replaced the one before when both are
    production-era), so each call changes its own registry; its path parameters. No frames flow for it."""
    product = f"matrix-{uuid.uuid4().hex[:8]}"
    with Session(context["engine"]) as session, session.begin():
        session.add(ProductType(name=product))
        session.flush()
        for i, stage in enumerate(stages, 1):
            replaced = str(i - 1) if stage == "production" and i > 1 else None
            session.add(
                ModelVersion(
                    product_type=product,
                    version=str(i),
                    artifact_uri="file:///unused",
                    threshold=1.0,
                    stage=stage,
                    active=stage == "production",
                    replaced_version=replaced,
                )
            )
        if canary:
            session.add(
                ModelCanary(
                    product_type=product,
                    version="2",
                    line_id="L9",
                    share=0.1,
                    max_excess_alarm_rate=0.02,
                    min_frames=10,
                    started_by="matrix",
                )
            )
    return {"path": {"product": product, "version": str(len(stages)), "canary_line": "L9"}, "json": {}}


def _trainable(context: dict) -> str:
    """A fresh product with a production model: each call may start a training job of its own."""
    product = f"train-{uuid.uuid4().hex[:8]}"
    add_product(context["engine"], product)
    return product


def _training_job(context: dict) -> dict:
    """A fresh queued training job (a cancel of its own each call); its path parameter."""
    with db.session(context["engine"], write=True) as session:
        job = training_jobs.request_job(session, _trainable(context), None, "matrix")
    return {"path": {"job_id": job.id}}


def _ack(inspection, _context) -> dict:
    """A well-formed acknowledgement of a signal never acknowledged before (each call is a new sample)."""
    signal_id = f"{inspection['line_id']}/{inspection['product_type']}/we1/{uuid.uuid4().int % 10**12}"
    return {"json": {"signal_id": signal_id, "cause": "test", "corrective_action": "none needed"}}


ROUTES = [
    Route("GET", "/api/inspections", "viewer", _none),
    Route("GET", "/api/lines", "viewer", _none),
    Route("GET", "/api/lines/{line}/spc", "viewer", _none),
    Route("GET", "/api/lines/{line}/drift", "viewer", _none),
    Route("GET", "/api/inspection/result/{id}", "viewer", _none),
    Route("GET", "/api/inspection/{id}/image", "viewer", _none),
    Route("GET", "/api/inspection/{id}/heatmap.png", "viewer", _none),
    Route("GET", "/api/inspection/{id}/reconstruction.png", "viewer", _none),
    Route("GET", "/api/session", "viewer", _none),
    Route("DELETE", "/api/session", "viewer", _none),
    Route("GET", "/openapi.json", "viewer", _none),
    Route("GET", "/docs", "viewer", _none),
    Route("GET", "/api/spc/{line}/acknowledgements", "viewer", _none),
    Route("POST", "/api/inspection/upload", "operator", _upload),
    Route("POST", "/api/spc/{line}/signals/ack", "operator", _ack),
    Route("GET", "/api/keys", "admin", _none),
    Route("POST", "/api/keys", "admin", lambda _i, _c: {"json": {"name": "matrix", "role": "viewer"}}),
    Route("DELETE", "/api/keys/{key_id}", "admin", _none),
    Route("GET", "/api/audit", "admin", _none),
    Route("GET", "/api/audit/verify", "admin", _none),
    Route("GET", "/api/alerts/failed", "admin", _none),
    Route("POST", "/api/alerts/redrive", "admin", lambda _i, _c: {"json": {"all": True}}),
    Route("POST", "/api/spc/{rebase_line}/{product}/rebase", "admin", _rebase),
    Route("PUT", "/api/inspection/{id}/label", "operator", _label),
    Route("GET", "/api/inspection/{id}/label", "viewer", _none),
    Route("GET", "/api/labels", "viewer", _none),
    Route("GET", "/api/products/{product}/threshold-proposal", "viewer", _none),
    Route("GET", "/api/models", "viewer", _none),
    Route("GET", "/api/models/{product}/{version}/comparison", "viewer", lambda _i, c: _registry(c, ["production"])),
    Route(
        "POST",
        "/api/models/{product}/{version}/promote",
        "admin",
        lambda _i, c: _registry(c, ["production", "candidate"]),
    ),
    Route("POST", "/api/models/{product}/rollback", "admin", lambda _i, c: _registry(c, ["archived", "production"])),
    Route(
        "POST", "/api/models/{product}/{version}/archive", "admin", lambda _i, c: _registry(c, ["production", "shadow"])
    ),
    Route(
        "POST",
        "/api/models/{product}/{version}/canary",
        "admin",
        lambda _i, c: {**_registry(c, ["production", "shadow"]), "json": {"line": "L9"}},
    ),
    Route(
        "POST",
        "/api/models/{product}/canaries/{canary_line}/stop",
        "admin",
        lambda _i, c: _registry(c, ["production", "shadow"], canary=True),
    ),
    Route("POST", "/api/training-jobs", "admin", lambda _i, c: {"json": {"product": _trainable(c)}}),
    Route("GET", "/api/training-jobs", "viewer", _none),
    Route("GET", "/api/training-jobs/{job_id}", "viewer", lambda _i, c: _training_job(c)),
    Route("POST", "/api/training-jobs/{job_id}/cancel", "admin", lambda _i, c: _training_job(c)),
]
OPEN = {("GET", "/health"), ("GET", "/login"), ("POST", "/api/session")}


def _flat(routes):
    """The routes with those of included routers (FastAPI keeps an included router whole, unprefixed here)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _flat(inner.routes) if inner is not None else [route]


def test_the_route_table_covers_every_route_of_the_gateway():
    """A new route must be added to ROUTES (with its role) or OPEN, so it is tested below."""
    client = IngestionClient("127.0.0.1:1", 1)
    app = create_app(Settings(), make_engine("sqlite://"), FileBlobStore(Path("unused")), client)
    client.close()
    declared = {
        (method, route.path)
        for route in _flat(app.routes)
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD" and route.path not in ("/", "/review", "/models", "/static")
    }
    tested = {
        (
            r.method,
            r.path.replace("{id}", "{inspection_id}")
            .replace("{rebase_line}/{product}", "{line}/{product_type}")
            .replace("{canary_line}", "{line}"),
        )
        for r in ROUTES
    }
    assert declared == tested | OPEN


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_needs_credentials_and_its_role(
    route, stack, admin, anonymous, inspection, image, rebase_line, engine
):
    context = {"image": image, "key_id": _new_key(admin)["id"], "engine": engine, **rebase_line}
    refused = route.call(anonymous, inspection, context)
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"].startswith("missing credentials: send an API key in header X-API-Key")
    assert refused.headers["www-authenticate"] == "Bearer"
    for role in BELOW[route.role]:
        with stack.client(ROLE_KEYS[role]) as client:
            below = route.call(client, inspection, context)
        assert below.status_code == 403, below.text
        assert below.json()["detail"] == f"role {route.role} required: API key 'test-{role}' has role {role}"
    with stack.client(ROLE_KEYS[route.role]) as client:
        allowed = route.call(client, inspection, context)
    assert 200 <= allowed.status_code < 300, allowed.text
    # A bearer token is an API key too; a key nobody issued is refused naming the header.
    with stack.client(None, headers={"Authorization": f"Bearer {ROLE_KEYS[route.role]}"}) as client:
        assert 200 <= route.call(client, inspection, context).status_code < 300
    with stack.client(UNKNOWN_KEY) as client:
        unknown = route.call(client, inspection, context)
    assert unknown.status_code == 401
    assert unknown.json()["detail"].startswith("API key not accepted (header X-API-Key or Authorization: Bearer)")


def test_health_the_login_page_and_static_assets_are_open_and_the_dashboard_sends_to_login(anonymous):
    assert anonymous.get("/health").status_code == 200
    assert "API key" in anonymous.get("/login").text
    assert anonymous.get("/static/login.js").status_code == 200
    for page in ("/", "/review", "/models"):
        response = anonymous.get(page)
        assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_keys_are_stored_as_salted_hashes_and_listed_without_secrets(admin, engine):
    created = [_new_key(admin, "operator") for _ in range(2)]
    with engine.connect() as conn:
        rows = {row.id: row._mapping for row in conn.execute(text("SELECT * FROM api_keys"))}
    for key in created:
        row = rows[key["id"]]
        stored = json.dumps({name: str(value) for name, value in row.items()})
        secret = key["key"].split("_", 2)[2]
        assert key["key"] not in stored and secret not in stored
        assert row["prefix"] == key["prefix"] == key["key"][4:12]
        assert row["key_hash"].startswith("scrypt$16384$8$1$")
    salts = {rows[k["id"]]["key_hash"].split("$")[4] for k in created}
    assert len(salts) == 2  # a salt per key
    listed = admin.get("/api/keys").json()
    assert {k["id"] for k in created} <= {k["id"] for k in listed}
    assert all(set(k) == {"id", "name", "role", "prefix", "created_at", "revoked_at"} for k in listed)


def test_a_key_created_or_revoked_at_runtime_works_or_stops_without_a_restart(stack, admin, engine):
    key = _new_key(admin, "viewer")
    with stack.client(key["key"]) as client:
        assert client.get("/api/lines").status_code == 200
        revoked = admin.delete(f"/api/keys/{key['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        refused = client.get("/api/lines")  # this replica revoked it: at once
        assert refused.status_code == 401 and "unknown, revoked or malformed" in refused.json()["detail"]
    assert admin.delete(f"/api/keys/{'0' * 32}").json()["detail"] == f"no API key with id '{'0' * 32}'"
    assert admin.delete("/api/keys/no-such-key").status_code == 422  # not an id at all

    # Revoked elsewhere (the CLI, another replica): refused within DIFFQC_GATEWAY_KEY_CACHE_S.
    other = _new_key(admin, "viewer")
    with stack.client(other["key"]) as client:
        assert client.get("/api/lines").status_code == 200  # now cached as valid
        result = CliRunner().invoke(
            cli, ["keys", "revoke", other["id"]], env={"DIFFQC_DATABASE_URL": stack.pipeline.database_url}
        )
        assert result.exit_code == 0, result.output
        revoked_at = time.monotonic()
        wait_until(lambda: client.get("/api/lines").status_code == 401, timeout_s=KEY_CACHE_S + 3, what="refusal")
        assert time.monotonic() - revoked_at <= KEY_CACHE_S + 1


def _cookie(response: httpx.Response) -> str:
    return response.headers["set-cookie"]


def test_a_session_is_an_httponly_strict_signed_cookie_that_ends_with_its_key(stack, admin, anonymous):
    assert anonymous.post("/api/session", json={"api_key": UNKNOWN_KEY}).status_code == 401
    key = _new_key(admin, "operator")
    with stack.client(None) as browser:
        login = browser.post("/api/session", json={"api_key": key["key"]})
        assert login.status_code == 200 and login.json()["role"] == "operator"
        attributes = {part.strip().split("=")[0].lower() for part in _cookie(login).split(";")}
        assert {"httponly", "max-age", "path"} <= attributes and "samesite=strict" in _cookie(login).lower()
        assert browser.get("/api/session").json()["name"] == key["name"]
        assert browser.get("/").status_code == 200  # the dashboard itself
        token = browser.cookies[sessions.COOKIE]

        # The cookie is signed: a changed one is refused, and so is an expired one.
        key_id, expires, signature = token.split(".")
        for forged, reason in [
            (f"{key_id}.{int(expires) + 3600}.{signature}", "signature does not match"),
            (sessions.issue(SESSION_SECRET.encode(), key_id, -10)[0], "the session has expired"),
            (sessions.issue(SESSION_SECRET.encode(), "env:00000000", 60)[0], "revoked"),
        ]:
            response = anonymous.get("/api/lines", headers={"Cookie": f"{sessions.COOKIE}={forged}"})
            assert response.status_code == 401 and reason in response.json()["detail"], response.text

        # Revoking the key ends its sessions; logging out clears the cookie.
        assert admin.delete(f"/api/keys/{key['id']}").status_code == 200
        assert browser.get("/api/lines").status_code == 401
    with stack.client(None) as browser:
        browser.post("/api/session", json={"api_key": VIEWER_KEY})
        logout = browser.delete("/api/session")
        assert logout.status_code == 204 and "max-age=0" in _cookie(logout).lower()
        assert browser.get("/api/lines").status_code == 401


def test_a_signed_link_admits_without_a_key_and_an_altered_or_expired_one_is_refused(anonymous, inspection, stack):
    for path, original in [
        (f"/api/inspection/{inspection['inspection_id']}/image", True),
        (f"/api/inspection/{inspection['inspection_id']}/heatmap.png", False),
    ]:
        link = sign_link(stack.url, path, LINK_SECRET.encode(), 60)
        admitted = anonymous.get(link)
        assert admitted.status_code == 200, admitted.text
        if original:
            with stack.client() as client:
                assert admitted.content == client.get(inspection["image_url"]).content
        query = httpx.URL(link).params
        refused = {
            "signature does not match": {**query, "signature": "0" * 64},
            "signature does not match its path": {**query, "expires": int(query["expires"]) + 60},
            "expired": httpx.URL(sign_link(stack.url, path, LINK_SECRET.encode(), 60, now=time.time() - 120)).params,
        }
        for reason, params in refused.items():
            response = anonymous.get(path, params=params)
            assert response.status_code == 403 and reason in response.json()["detail"], response.text
    # A link is for its own path only: the image's signature does not open the heatmap ...
    path = f"/api/inspection/{inspection['inspection_id']}"
    image = httpx.URL(sign_link(stack.url, f"{path}/image", LINK_SECRET.encode(), 60))
    assert anonymous.get(f"{path}/heatmap.png", params=image.params).status_code == 403
    # ... and only the gateway's secret signs one.
    forged = httpx.URL(sign_link(stack.url, f"{path}/image", b"guessed", 60))
    assert anonymous.get(f"{path}/image", params=forged.params).status_code == 403


def test_every_write_is_audited_in_a_chain_that_shows_tampering(stack, admin, engine, inspection):
    key = _new_key(admin, "viewer")
    admin.delete(f"/api/keys/{key['id']}")
    rows = admin.get("/api/audit", params={"limit": 1000}).json()
    actions = {(row["action"], row["subject"], row["actor"]) for row in rows}
    assert ("inspection.upload", inspection["frame_id"], "test-operator") in actions
    assert {("key.create", key["id"], "test-admin"), ("key.revoke", key["id"], "test-admin")} <= actions
    assert [row["id"] for row in rows] == list(range(len(rows), 0, -1))  # newest first, no gap
    assert all(newer["prev_hash"] == older["hash"] for newer, older in zip(rows, rows[1:], strict=False))
    assert admin.get("/api/audit/verify").json() == {
        "intact": True,
        "rows_checked": len(rows),
        "first_broken_id": None,
        "reason": None,
    }
    database = {"DIFFQC_DATABASE_URL": stack.pipeline.database_url}
    assert CliRunner().invoke(cli, ["audit", "verify"], env=database).exit_code == 0

    # The database refuses to change a row; a superuser who disables that is caught by the chain.
    target = rows[-2]["id"]
    with pytest.raises(DBAPIError, match="audit_log is append-only: UPDATE refused"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :id"), {"id": target})
    _set_actor_bypassing_the_trigger(engine, target, "someone-else")
    verdict = admin.get("/api/audit/verify").json()
    assert (verdict["intact"], verdict["first_broken_id"], verdict["rows_checked"]) == (False, target, target - 1)
    assert "does not match its hash" in verdict["reason"]
    broken = CliRunner().invoke(cli, ["audit", "verify"], env=database)
    assert broken.exit_code == 1 and f"audit log broken at row {target}" in broken.output
    # Put back, the row fits its hash again: it was the change that broke the chain.
    _set_actor_bypassing_the_trigger(engine, target, rows[-2]["actor"])
    assert admin.get("/api/audit/verify").json()["intact"] is True


def _set_actor_bypassing_the_trigger(engine, entry_id: int, actor: str) -> None:
    """What a superuser could do: switch the append-only trigger off for one UPDATE."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        conn.execute(text("UPDATE audit_log SET actor = :actor WHERE id = :id"), {"actor": actor, "id": entry_id})
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def test_a_gateway_with_no_keys_refuses_everything_until_one_is_created_without_a_restart(stack, tmp_path):
    with throwaway_database() as database_url:
        port = free_port()
        env = {**stack.gateway.env, "DIFFQC_DATABASE_URL": database_url, "DIFFQC_GATEWAY_API_KEYS": "[]"}
        env.pop("DIFFQC_GATEWAY_LINK_SECRET")
        keyless = gateway_process(port, env, tmp_path / "keyless.log").start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                assert client.get("/api/lines").status_code == 401
                assert client.get("/api/lines", headers={"X-API-Key": ADMIN_KEY}).status_code == 401
                link = client.get("/api/inspection/x/image", params={"expires": 1, "signature": "00"})
                assert link.status_code == 403 and "no DIFFQC_GATEWAY_LINK_SECRET" in link.json()["detail"]
                created = CliRunner().invoke(
                    cli,
                    ["keys", "create", "--name", "first-admin", "--role", "admin"],
                    env={"DIFFQC_DATABASE_URL": database_url},
                )
                assert created.exit_code == 0, created.output
                key = created.output.strip().splitlines()[-1]
                assert client.get("/api/keys", headers={"Authorization": f"Bearer {key}"}).json()[0]["name"] == (
                    "first-admin"
                )
            assert "create one with `diffqc keys create --name NAME --role admin`" in keyless.log_tail()
        finally:
            keyless.stop()


def test_a_plain_key_in_the_settings_stops_the_gateway_naming_the_variable(stack):
    env = {**os.environ, **stack.gateway.env, "DIFFQC_GATEWAY_API_KEYS": '["my-plain-key"]'}
    done = subprocess.run(
        [sys.executable, "-m", "services.gateway"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "DIFFQC_GATEWAY_API_KEYS: entry 1: a plain key is not accepted" in done.stderr
    assert "my-plain-key" not in done.stderr
