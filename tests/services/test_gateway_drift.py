"""GET /api/lines/{line}/drift against the real gateway process and PostgreSQL: the drift state is rebuilt
from the stored inspections (score, component scores, model version) and agrees with the bridge's live
monitor on the same verdicts; viewers read it, nobody without credentials does. (The pipeline is not
needed: the route only reads the database.)"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from diffqc.drift import DriftMonitor
from diffqc.infra.errors import InfraError
from diffqc.infra.ports import free_port
from diffqc.infra.postgres import throwaway_database
from diffqc.infra.services import gateway_process
from diffqc.settings import DriftSettings
from diffqc.store.engine import make_engine
from diffqc.store.inspections import ensure_frame, record_inspection
from diffqc.store.models import Verdict
from diffqc.store.products import find_product_type, register_product
from diffqc.v1.scoring_pb2 import VERDICT_DEFECT
from tests.helpers.env import require
from tests.helpers.gateway_stack import KEY_ENTRIES, SESSION_SECRET, VIEWER_KEY
from tests.helpers.verdicts import DECIDED, verdict

pytestmark = pytest.mark.timeout(120)
SETTINGS = DriftSettings(reference_size=20, window=20, check_every=10)


@pytest.fixture(scope="module")
def gateway_and_database(tmp_path_factory):
    """The gateway process alone over a throwaway database (its ingestion address answers nobody)."""
    root = tmp_path_factory.mktemp("gateway-drift")
    try:
        with throwaway_database() as database_url:
            env = {
                "DIFFQC_DATABASE_URL": database_url,
                "DIFFQC_DATA_DIR": str(root),
                "DIFFQC_BLOB_ROOT": str(root / "blobs"),
                "DIFFQC_GATEWAY_INGESTION_URL": "127.0.0.1:1",
                "DIFFQC_GATEWAY_API_KEYS": json.dumps(KEY_ENTRIES),
                "DIFFQC_GATEWAY_SESSION_SECRET": SESSION_SECRET,
                "DIFFQC_DRIFT_REFERENCE_SIZE": str(SETTINGS.reference_size),
                "DIFFQC_DRIFT_WINDOW": str(SETTINGS.window),
                "DIFFQC_DRIFT_CHECK_EVERY": str(SETTINGS.check_every),
            }
            port = free_port()
            server = gateway_process(port, env, root / "gateway.log").start()
            try:
                yield f"http://127.0.0.1:{port}", database_url
            finally:
                server.stop()
    except InfraError as exc:
        if "cannot create a test database" in str(exc):
            require(False, str(exc))
        raise


def _parts(line: str, drift_from: int | None, n: int = 60) -> list:
    """Good parts (and a defect every 15th); from part ``drift_from`` on, the pixel component and score move up."""
    parts = []
    for i in range(n):
        moved = drift_from is not None and i >= drift_from
        v = verdict(
            score=0.5 + 0.01 * (i % 7) + (1.0 if moved else 0.0),
            line=line,
            defect=i % 15 == 14,
            captured=DECIDED + timedelta(seconds=i),
        )
        v.component_scores.update({"pixel": 0.1 * (i % 5) + (2.0 if moved else 0.0), "process": 0.0})
        parts.append(v)
    return parts


def _store(database_url: str, verdicts: list) -> None:
    """The frame and inspection rows as scoring writes them, component scores and model version included."""
    engine = make_engine(database_url)
    try:
        with Session(engine) as session, session.begin():
            if find_product_type(session, "pcb") is None:
                register_product(session, "pcb", {"height": 100, "width": 100, "channels": 3}, {})
            for v in verdicts:
                ensure_frame(session, v.frame)
                record_inspection(
                    session,
                    id=v.inspection_id,
                    frame_id=v.frame.frame_id,
                    model_version=v.model.version,
                    component_scores=dict(v.component_scores),
                    score=v.score,
                    threshold=v.threshold,
                    verdict=Verdict.DEFECT if v.verdict == VERDICT_DEFECT else Verdict.PASS,
                    latency_ms=1.0,
                )
    finally:
        engine.dispose()


def test_the_line_drift_state_comes_from_the_store_and_matches_the_live_monitor(gateway_and_database):
    url, database_url = gateway_and_database
    drifted, steady = _parts("DR1", drift_from=25, n=75), _parts("DR2", drift_from=None)
    _store(database_url, drifted + steady)
    live = DriftMonitor(SETTINGS)
    live_events = [e for v in drifted for e in live.observe_verdict(v)]

    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": VIEWER_KEY}) as viewer:
        answer = viewer.get("/api/lines/DR1/drift")
        assert answer.status_code == 200, answer.text
        [state] = answer.json()["products"]
        assert (state["product_type"], state["model_version"], state["status"]) == ("pcb", "1", "drifting")
        assert state["recommendation"] == "retrain" and state["good_parts"] == 70  # 5 defects left out
        assert (state["reference_count"], state["reference_size"], state["window"]) == (20, 20, 20)
        assert [e["event_id"] for e in state["events"]] == [e.event_id for e in live_events]
        [event] = state["events"]
        assert event["psi"] == pytest.approx(live_events[0].psi) and set(event["quantities"]) == {"score", "pixel"}
        assert state["drifting_since"] == event["time"]
        assert {t["quantity"] for t in state["last_check"]["tests"]} == {"score", "pixel", "process"}

        [calm] = viewer.get("/api/lines/DR2/drift", params={"product_type": "pcb"}).json()["products"]
        assert (calm["status"], calm["events"], calm["recommendation"]) == ("stable", [], None)

        missing = viewer.get("/api/lines/DR2/drift", params={"product_type": "bolts"})
        assert missing.status_code == 404
        assert missing.json()["detail"] == "line 'DR2' has no inspections of product type 'bolts'"
        assert viewer.get("/api/lines/nowhere/drift").json()["detail"] == "line 'nowhere' has no inspections"
    with httpx.Client(base_url=url, timeout=30) as anonymous:
        assert anonymous.get("/api/lines/DR1/drift").status_code == 401
