"""The gateway's control charts from the charts the bridge stored, moved on by the rows stored since: the
same answer as the chart rebuilt from the line's whole history, from reading only the new rows. (Against
PostgreSQL; the route itself is tested in test_gateway.py.)"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy.orm import Session

from diffqc.settings import SpcSettings
from diffqc.spc import Observation, SpcMonitor, chart_from_history
from diffqc.store import db, spc_rebases
from diffqc.store.engine import make_engine
from diffqc.store.inspections import score_history
from diffqc.store.migrate import upgrade
from diffqc.store.models import SpcRebase
from diffqc.store.products import register_product
from services.bridge.spc import SpcFeed
from services.gateway import spc as gateway_spc
from services.gateway.spc import LineSpc, chart_out, line_spc
from tests.helpers.verdicts import DECIDED, store_inspections, verdict

SETTINGS = SpcSettings(baseline_size=20, p_baseline_lots=3, rules=["we1", "we2", "we3", "we4", "ewma", "pchart"])


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        register_product(session, "can", {"height": 100, "width": 100, "channels": 3}, {})
    yield engine
    engine.dispose()


def parts(line: str, n: int, product: str = "pcb", seed: int = 0, start: int = 0, every: int = 1) -> list:
    """``n`` parts of ``product``, captured ``every`` seconds from ``start``."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(n):
        score = 0.5 + 0.05 * rng.standard_normal() + (0.1 if i > n // 2 else 0.0)
        v = verdict(
            float(score),
            line=line,
            defect=rng.random() < 0.1,
            lot=f"LOT-{(start + i) // 8}",
            captured=DECIDED + timedelta(seconds=start + every * i),
        )
        v.frame.product_type = product
        made.append(v)
    return made


def charted_by_the_bridge(engine, verdicts: list) -> None:
    """Scoring stores each verdict, then the bridge charts it (and stores the chart)."""
    bridge = SpcFeed(SpcMonitor(SETTINGS), engine)
    for v in verdicts:
        store_inspections(engine, [v])
        bridge.observe(v)


def from_whole_history(engine, line: str) -> LineSpc:
    """The answer of the gateway of before: every chart rebuilt from the line's whole history."""
    with db.session(engine) as session:
        history = score_history(session, line)
        rebases = spc_rebases.rebases_of(session, line)
    charts = [
        chart_out(chart_from_history(line, product, [Observation(*r) for r in rows], SETTINGS, rebases.get(key, ())))
        for key, rows in sorted(history.items())
        for _, product in [key]
    ]
    return LineSpc(line_id=line, charts=charts)


def test_stored_charts_moved_on_by_the_new_rows_answer_as_the_whole_history_does(engine):
    line = "L-gw"
    both = parts(line, 150, every=2) + parts(line, 60, product="can", seed=1, start=1, every=2)  # interleaved
    both.sort(key=lambda v: v.frame.capture_time.ToDatetime())
    charted_by_the_bridge(engine, both[:160])
    # The bridge is behind: these are stored, not charted yet. A re-base comes into force among them.
    store_inspections(engine, both[160:])
    with Session(engine) as session, session.begin():
        when = DECIDED + timedelta(seconds=250)
        session.add(
            SpcRebase(
                line_id=line,
                product_type="pcb",
                model_version="1",
                center_line=0.55,
                sigma=0.05,
                moving_range_mean=0.05 * 1.128,
                baseline_size=25,
                window_start=DECIDED,
                window_end=when,
                effective_from=when,
                reason="new nozzle",
                rebased_by="qe",
            )
        )
    answer = line_spc(engine, SETTINGS, line)
    assert answer.model_dump() == from_whole_history(engine, line).model_dump()
    pcb_chart = answer.charts[1]
    assert pcb_chart.sample_count == 150 and pcb_chart.rebased_at == 125 and pcb_chart.signals
    assert line_spc(engine, SETTINGS, line, "can").model_dump()["charts"] == answer.model_dump()["charts"][:1]


def test_only_the_rows_captured_since_the_newest_stored_point_are_read(engine, monkeypatch):
    line = "L-read"
    verdicts = parts(line, 207)
    charted_by_the_bridge(engine, verdicts[:200])
    store_inspections(engine, verdicts[200:])
    reads = []

    def spy(session, line_id=None, product_type=None, since=None):
        found = score_history(session, line_id, product_type, since=since)
        reads.append((since, sum(map(len, found.values()))))
        return found

    monkeypatch.setattr(gateway_spc, "score_history", spy)
    answer = line_spc(engine, SETTINGS, line)
    assert reads == [(DECIDED + timedelta(seconds=199), 8)]  # the newest stored point and the 7 after it
    assert answer.model_dump() == from_whole_history(engine, line).model_dump()


def test_without_a_usable_stored_chart_the_gateway_rebuilds_from_the_whole_history(engine, monkeypatch):
    line = "L-fallback"
    verdicts = parts(line, 60)
    store_inspections(engine, verdicts)  # no bridge ran
    assert line_spc(engine, SETTINGS, line).model_dump() == from_whole_history(engine, line).model_dump()
    # Charts stored under other chart settings than the gateway's are rebuilt under the gateway's.
    charted_by_the_bridge(engine, parts(line, 5, start=60))
    other = SETTINGS.model_copy(update={"baseline_size": 30})
    assert line_spc(engine, other, line).charts[0].baseline_size == 30
