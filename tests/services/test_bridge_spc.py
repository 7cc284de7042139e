"""The bridge's charts kept in PostgreSQL: replicas that hand a line over mid-stream chart it as one
uninterrupted monitor would, a replica that lost the line overwrites nothing, a line no bridge charted yet is
rebuilt once from the stored verdicts, and points are charted in capture order. (The feed is driven
directly, verdict by verdict, as the consume loop drives it: no broker needed.)"""

from __future__ import annotations

import logging
from datetime import timedelta

import numpy as np
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.orm import Session

from diffqc.settings import SpcSettings
from diffqc.spc import SpcMonitor
from diffqc.spc.state import chart_state, restore_chart
from diffqc.store import db, spc_charts
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.store.products import register_product
from services.bridge.spc import SpcFeed
from tests.helpers.verdicts import DECIDED, store_inspections, verdict

SETTINGS = SpcSettings(
    baseline_size=20, p_baseline_lots=3, rules=["we1", "we2", "we3", "we4", "ewma", "cusum", "pchart"]
)


@pytest.fixture
def engine(postgres_url):
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def line_stream(line: str, n: int = 120, seed: int = 0, start: int = 0) -> list:
    """An in-control baseline, then a shift and defective lots: every kind of signal on the way."""
    rng = np.random.default_rng(seed)
    scores = 0.5 + 0.05 * rng.standard_normal(n)
    scores[n // 2 :] += 0.08
    scores[30:31] += 0.5  # an outlier among the first monitored points
    parts = []
    for i, score in enumerate(scores):
        lot = f"LOT-{(start + i) // 10}"
        defect = 60 <= i < 70 or rng.random() < 0.05
        parts.append(
            verdict(float(score), line=line, defect=defect, lot=lot, captured=DECIDED + timedelta(seconds=start + i))
        )
    return parts


def feed(engine, settings: SpcSettings = SETTINGS) -> SpcFeed:
    """A bridge replica's SPC feed (its own monitor, the shared database)."""
    return SpcFeed(SpcMonitor(settings), engine)


def stored_chart(engine, line: str, product: str = "pcb", settings: SpcSettings = SETTINGS):
    with db.session(engine) as session:
        stored = spc_charts.load(session, line, product)
    assert stored is not None
    return stored, restore_chart(stored.chart, settings)


def test_replicas_handing_a_line_over_mid_stream_chart_it_as_one_uninterrupted_monitor(engine, caplog):
    line = "L-handover"
    verdicts = line_stream(line)
    uninterrupted = SpcMonitor(SETTINGS)
    expected = [uninterrupted.observe_verdict(v) for v in verdicts]
    a, b = feed(engine), feed(engine)
    # A holds the line's partition, then B (a rebalance), then A again: A's chart in memory is 50 points behind.
    owners = [a] * 40 + [b] * 50 + [a] * 30
    caplog.set_level(logging.INFO, logger="services.bridge.spc")
    fired = []
    for owner, v in zip(owners, verdicts, strict=True):
        store_inspections(engine, [v])  # scoring stores a verdict before it publishes it
        fired.append(owner.observe(v).signals)
        owner.delivered(v)  # written to InfluxDB and published on quality.spc
    assert fired == expected
    assert all(sum(map(len, fired[i:j])) for i, j in ((0, 40), (40, 90), (90, 120)))  # every owner signalled
    assert "chart L-handover/pcb was moved on by another replica" in caplog.text  # A's stale save was refused
    stored, chart = stored_chart(engine, line)
    reference = uninterrupted.chart(line, "pcb")
    assert stored.points == 120 and stored.last_inspection_id == verdicts[-1].inspection_id
    assert chart_state(chart) == chart_state(reference) and chart.state() == reference.state()
    # Any replica answers GetSpcState from the stored chart, whichever moves it on.
    assert feed(engine).state(line, "") == uninterrupted.state(line)


def test_the_new_owner_fires_again_the_signals_its_predecessor_stored_but_did_not_publish(engine):
    verdicts = line_stream("L-crash")
    a, b = feed(engine), feed(engine)
    for v in verdicts[:-1]:
        store_inspections(engine, [v])
        a.observe(v)
        a.delivered(v)
    shift = verdicts[-1]
    shift.score = 5.0  # beyond 3 sigma
    store_inspections(engine, [shift])
    fired = a.observe(shift).signals
    assert "we1" in {s.rule for s in fired}
    # A died after the save, before InfluxDB and quality.spc: the verdict is redelivered to B.
    assert b.observe(shift).signals == fired
    assert b.observe(shift).signals == fired  # B's own write failed too: its retry fires them again
    b.delivered(shift)
    assert b.observe(shift).signals == []  # delivered: a redelivery adds nothing
    assert stored_chart(engine, "L-crash")[0].points == len(verdicts)


def test_a_line_no_bridge_charted_yet_is_rebuilt_once_from_the_stored_verdicts_with_its_other_charts(engine):
    line = "L-migrated"
    earlier = line_stream(line, n=60)
    other = line_stream(line, n=12, seed=1, start=60)
    for v in other:
        v.frame.product_type = "can"
    with Session(engine) as session, session.begin():
        register_product(session, "can", {"height": 100, "width": 100, "channels": 3}, {})
    store_inspections(engine, earlier + other)  # what the bridge of before the table had charted
    reference = SpcMonitor(SETTINGS)
    for v in earlier + other:
        reference.observe_verdict(v)

    later = line_stream(line, n=30, seed=2, start=72)
    bridge = feed(engine)
    store_inspections(engine, [later[0]])
    # The verdict in hand is stored already, so the rebuild charts it: it fires nothing (as after a restart of
    # the bridge of before); the chart goes on from there.
    assert reference.observe_verdict(later[0]) and bridge.observe(later[0]).signals == []
    for v in later[1:]:
        store_inspections(engine, [v])
        assert bridge.observe(v).signals == reference.observe_verdict(v)
    assert chart_state(stored_chart(engine, line)[1]) == chart_state(reference.chart(line, "pcb"))
    can, _ = stored_chart(engine, line, "can")  # stored by the same rebuild, for the gateway to read
    assert can.points == len(other) and can.chart == chart_state(reference.chart(line, "can"))


def test_a_chart_stored_under_other_settings_is_rebuilt_under_the_current_ones(engine):
    verdicts = line_stream("L-settings", n=40)
    before = feed(engine)
    for v in verdicts[:30]:
        store_inspections(engine, [v])
        before.observe(v)
    assert stored_chart(engine, "L-settings")[1].limits.baseline_size == 20
    wider = SpcSettings(baseline_size=25)  # the bridge restarted with DIFFQC_SPC_BASELINE_SIZE=25
    after, reference = feed(engine, wider), SpcMonitor(wider)
    for v in verdicts[:30]:
        reference.observe_verdict(v)
    for i, v in enumerate(verdicts[30:]):
        store_inspections(engine, [v])
        expected = reference.observe_verdict(v)
        assert after.observe(v).signals == (expected if i else [])  # the first one is charted by the rebuild
    stored, chart = stored_chart(engine, "L-settings", settings=wider)
    assert stored.points == 40 and chart.limits.baseline_size == 25


def test_a_verdict_captured_before_the_newest_point_is_left_off_the_chart_and_counted(engine):
    verdicts = line_stream("L-late", n=30)
    late = verdicts.pop(10)  # a frame that took a slower path: it arrives after the others
    bridge = feed(engine)
    for v in verdicts:
        store_inspections(engine, [v])
        bridge.observe(v)
    counted = REGISTRY.get_sample_value("diffqc_spc_past_verdicts_total") or 0.0
    store_inspections(engine, [late])
    observed = bridge.observe(late)
    assert (observed.signals, observed.limits) == ([], None)  # not charted: no point, no limits written
    assert REGISTRY.get_sample_value("diffqc_spc_past_verdicts_total") == counted + 1
    stored, chart = stored_chart(engine, "L-late")
    assert stored.points == 29 and late.score not in [p.score for p in chart.points]
    # A part captured at the same instant as the newest point is charted after it.
    twin = verdict(0.5, line="L-late", defect=False, captured=DECIDED + timedelta(seconds=29))
    store_inspections(engine, [twin])
    bridge.observe(twin)
    bridge.delivered(twin)
    assert stored_chart(engine, "L-late")[0].points == 30
    assert bridge.observe(twin).signals == [] and stored_chart(engine, "L-late")[0].points == 30  # once
