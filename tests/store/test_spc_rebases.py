"""Re-basing a chart from a chosen window on PostgreSQL (and SQLite): limits from the window's good parts
of the current model version only, stored, audited, handed to the live charts; bad windows are named."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from diffqc.settings import SpcSettings
from diffqc.spc import SpcMonitor
from diffqc.store import audit, db, spc_rebases
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.models import AuditEntry, Inspection
from diffqc.store.spc_rebases import RebaseRefused
from services.bridge.spc import RebaseWatcher, SpcFeed
from tests.helpers.verdicts import DECIDED, store_inspections, verdict

SETTINGS = SpcSettings(rebase_min_parts=10, rebase_delay_s=5)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path}/qc.db"
    engine = make_engine(url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _line(engine, scores, defects=(), start=0):
    verdicts = [
        verdict(score=s, line="L1", defect=i in defects, captured=DECIDED + timedelta(seconds=start + i))
        for i, s in enumerate(scores)
    ]
    store_inspections(engine, verdicts)
    return verdicts


def _rebase(engine, start_s, end_s, reason="new nozzle fitted"):
    with db.session(engine, write=True) as session:
        window = (DECIDED + timedelta(seconds=start_s), DECIDED + timedelta(seconds=end_s))
        return spc_rebases.rebase_chart(session, "L1", "pcb", window, reason, "qe-anna", SETTINGS)


def test_limits_come_from_the_good_parts_of_the_window_and_are_audited(engine):
    scores = list(0.5 + 0.1 * np.random.default_rng(1).standard_normal(40))
    scores[25] = 9.0  # a defective part inside the window: never part of a baseline
    _line(engine, scores, defects={25})
    row = _rebase(engine, 10, 29)
    good = [s for i, s in enumerate(scores) if 10 <= i <= 29 and i != 25]
    assert row.baseline_size == len(good) == 19
    assert row.center_line == pytest.approx(np.mean(good))
    assert row.sigma == pytest.approx(np.abs(np.diff(good)).mean() / 1.128)
    assert row.model_version == "1" and row.effective_from - row.rebased_at == timedelta(seconds=5)
    with db.session(engine) as session:
        (entry,) = session.scalars(select(AuditEntry)).all()
        assert audit.verify_chain(session) == (1, None)
        stored = spc_rebases.rebases_of(session, "L1")[("L1", "pcb")]
    assert (entry.actor, entry.action, entry.subject) == ("qe-anna", "spc.rebase", "L1/pcb")
    assert entry.details["baseline_size"] == 19 and entry.details["reason"] == "new nozzle fitted"
    assert [r.limits.center_line for r in stored] == [pytest.approx(row.center_line)]


def test_a_window_of_another_model_version_or_too_few_parts_is_refused(engine):
    _line(engine, [0.5, 0.6] * 10)
    with db.session(engine, write=True) as session:  # the newest inspection is of model version 2
        session.execute(Inspection.__table__.update().values(model_version="2").where(Inspection.score == 0.6))
    with pytest.raises(RebaseRefused, match=r"holds 5 good parts of model version '2'; a re-base needs at least 10"):
        _rebase(engine, 0, 9)  # 5 of version 2 in the window
    with pytest.raises(RebaseRefused, match="starts .* after it ends"):
        _rebase(engine, 9, 0)
    with pytest.raises(RebaseRefused, match="reason"):
        _rebase(engine, 0, 19, reason="  ")
    with (
        pytest.raises(RebaseRefused, match="has no inspections of product type"),
        db.session(engine, write=True) as session,
    ):
        spc_rebases.rebase_chart(session, "L9", "pcb", (DECIDED, DECIDED + timedelta(1)), "x", "qe", SETTINGS)
    with db.session(engine) as session:
        assert session.scalars(select(AuditEntry)).all() == []


def test_the_bridge_hands_new_rebases_to_its_live_charts_and_a_chart_loaded_later_reads_them(engine):
    verdicts = _line(engine, list(0.5 + 0.1 * np.random.default_rng(2).standard_normal(30)))
    feed = SpcFeed(SpcMonitor(SETTINGS), engine)
    feed.observe(verdicts[-1])  # this replica holds the line: its chart is in memory
    watcher = RebaseWatcher(engine, feed, interval_s=0.1)
    assert watcher.poll() == 0
    row = _rebase(engine, 0, 29)
    assert watcher.poll() == 1 and watcher.poll() == 0 and watcher.last_id == row.id
    [pending] = feed.monitor.charts[("L1", "pcb")].rebases
    assert pending.effective_from == row.effective_from and pending.limits.sigma == pytest.approx(row.sigma)
    # A replica that takes the line over afterwards reads the re-base with the chart.
    successor = SpcFeed(SpcMonitor(SETTINGS), engine)
    successor.observe(verdicts[-1])
    assert successor.monitor.charts[("L1", "pcb")].rebases == [pending]
