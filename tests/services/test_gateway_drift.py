"""GET /api/lines/{line}/drift against the real gateway process and PostgreSQL: the drift state is rebuilt
from the stored inspections (score, component scores, model version) and agrees with the bridge's live
monitor on the same verdicts; viewers read it, nobody without credentials does. (The pipeline is not
needed: the route only reads the database.)"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from diffqc.drift import DriftMonitor
from diffqc.settings import DriftSettings
from diffqc.store.engine import make_engine
from tests.helpers.gateway_stack import VIEWER_KEY, gateway_alone
from tests.helpers.verdicts import DECIDED, store_inspections, verdict

pytestmark = pytest.mark.timeout(120)
SETTINGS = DriftSettings(reference_size=20, window=20, check_every=10)


@pytest.fixture(scope="module")
def gateway_and_database(tmp_path_factory):
    env = {
        "DIFFQC_DRIFT_REFERENCE_SIZE": str(SETTINGS.reference_size),
        "DIFFQC_DRIFT_WINDOW": str(SETTINGS.window),
        "DIFFQC_DRIFT_CHECK_EVERY": str(SETTINGS.check_every),
    }
    with gateway_alone(tmp_path_factory.mktemp("gateway-drift"), env) as running:
        yield running


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


def test_the_line_drift_state_comes_from_the_store_and_matches_the_live_monitor(gateway_and_database):
    url, database_url = gateway_and_database
    drifted, steady = _parts("DR1", drift_from=25, n=75), _parts("DR2", drift_from=None)
    engine = make_engine(database_url)
    try:
        store_inspections(engine, drifted + steady)
    finally:
        engine.dispose()
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
