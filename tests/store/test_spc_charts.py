"""Stored chart state on PostgreSQL (and SQLite): a save only moves a chart on from the row its writer read,
so a replica that lost the line (a stale writer) overwrites nothing; what is loaded restores the chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from diffqc.settings import SpcSettings
from diffqc.spc import Observation, chart_from_history
from diffqc.spc.state import restore_chart
from diffqc.store import db, spc_charts
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade

SETTINGS = SpcSettings(baseline_size=10)
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def rows(n: int, start: int = 0) -> list[Observation]:
    scores = 0.5 + 0.1 * np.random.default_rng(start).standard_normal(n)
    return [
        Observation(T0 + timedelta(seconds=start + i), float(s), "pass", "lot-1", f"i-{start + i}")
        for i, s in enumerate(scores)
    ]


def save(engine, chart, expected, undelivered=0) -> bool:
    with db.session(engine, write=True) as session:
        return spc_charts.save(session, chart, expected, undelivered)


def load(engine, product="pcb"):
    with db.session(engine) as session:
        return spc_charts.load(session, "L1", product)


def test_a_saved_chart_loads_as_it_was_with_its_newest_point(engine):
    chart = chart_from_history("L1", "pcb", rows(30), SETTINGS)
    assert load(engine) is None
    assert save(engine, chart, None, undelivered=0)
    stored = load(engine)
    assert (stored.points, stored.last_captured_at, stored.last_inspection_id) == (
        30,
        T0 + timedelta(seconds=29),
        "i-29",
    )
    assert stored.undelivered == 0
    restored = restore_chart(stored.chart, SETTINGS)
    assert restored.state() == chart.state() and list(restored.points) == list(chart.points)
    with db.session(engine) as session:
        assert set(spc_charts.load_line(session, "L1")) == {"pcb"}
        assert spc_charts.load_line(session, "L1", "can") == {} and spc_charts.load_line(session, "L2") == {}


def test_a_stale_writer_is_refused_and_the_newer_state_stays(engine):
    chart = chart_from_history("L1", "pcb", rows(30), SETTINGS)
    assert save(engine, chart, None)
    # Replica A held the chart at 30 points; the line moved to replica B, which charted 10 more.
    successor = restore_chart(load(engine).chart, SETTINGS)
    successor.extend(rows(10, start=30))
    assert save(engine, successor, 30)
    # A, which did not notice, charts its own next point over the 30 it started from: refused, nothing written.
    chart.extend(rows(1, start=100))
    assert not save(engine, chart, 30)
    stored = load(engine)
    assert (stored.points, stored.last_inspection_id) == (40, "i-39")
    assert restore_chart(stored.chart, SETTINGS).state() == successor.state()
    # A first insert where a row exists is refused the same way.
    assert not save(engine, chart_from_history("L1", "pcb", rows(5), SETTINGS), None)
    assert load(engine).points == 40


def test_the_undelivered_signals_are_among_the_charts_signals(engine):
    history = rows(30)
    history[-1] = history[-1]._replace(score=5.0)  # beyond 3 sigma: rule 1 at the newest point
    chart = chart_from_history("L1", "pcb", history, SETTINGS)
    assert chart.signals[-1].rule == "we1"
    assert save(engine, chart, None, undelivered=1) and load(engine).undelivered == 1
    with pytest.raises(ValueError, match=rf"undelivered must lie in \[0, {len(chart.signals)}\]"):
        save(engine, chart, 30, undelivered=len(chart.signals) + 1)
