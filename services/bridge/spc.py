"""The bridge's SPC stage: every verdict of qc.inspections.v1 moves its chart (``diffqc.spc``) on by one
point; the chart is saved to ``spc_charts`` (``diffqc.store.spc_charts``), then each signal it fired is
written to InfluxDB (measurement ``spc_signal``) and published Avro on quality.spc (key = line), and
only then is the offset committed.

**Any number of replicas.** A chart is keyed by (line, product type) and the topic by line, so a
chart is moved on only by the replica that holds its line's partition. That replica loads the
chart's stored state the first time it meets the chart, and every save names the point count it
continues from: after a rebalance the new owner carries on from the state its predecessor stored,
and a predecessor that still held the chart in memory finds its save refused, forgets the chart and
continues from the stored one (``SpcFeed.observe``). With no stored state (a line no bridge has
charted since the table came; a chart stored under other chart settings), the chart is rebuilt once
from all its stored verdicts, as the bridge used to rebuild every chart at start, and stored; when
the line has no stored chart at all, so are its other product types' charts. Verdicts that were
stored before that rebuild are on the chart already and fire nothing when they arrive.

**Capture order.** Points are charted in capture-time order. A line's verdicts arrive in the order
of its partition, which is capture order as long as the line's frames reach ingestion in that
order; a verdict captured before the newest point of its chart (a frame that came late, from
another camera or a slower path) is not charted, since the chart never rewrites its past: it is
counted in ``diffqc_spc_past_verdicts_total`` and logged (as are, once, those a rebuild already
holds). A frame captured at the same instant as the newest point is charted after it.

**Redelivery.** A verdict already on its chart adds nothing; if it is the chart's newest point, the
signals it fired are fired again until they are known to be written and published (the count of
them is saved with the chart), so a retry after an InfluxDB or broker outage, or the new owner of a
partition whose predecessor died between the save and the publish, still delivers them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import Counter
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.bus.producer import Publisher
from diffqc.contracts.avro import AvroTopic
from diffqc.contracts.topics import INSPECTIONS
from diffqc.core import clock
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.stage import ErrorTable, StreamStage
from diffqc.scoring.sink import ScoreSink
from diffqc.settings import KafkaSettings
from diffqc.spc import (
    IndividualsChart,
    Observation,
    Rebase,
    SpcChart,
    SpcMonitor,
    SpcSignal,
    chart_from_history,
    signal_record,
    spc_limits_point,
    spc_signal_point,
)
from diffqc.spc.monitor import verdict_observation
from diffqc.spc.state import compatible, restore_chart
from diffqc.store import db, spc_charts, spc_rebases
from diffqc.store.inspections import score_history
from diffqc.v1 import bridge_pb2
from diffqc.v1.scoring_pb2 import VERDICT_NOT_INSPECTED, InspectionVerdict

log = logging.getLogger(__name__)
PAST_VERDICTS = Counter(
    "diffqc_spc_past_verdicts",
    "Verdicts captured before the newest point of their control chart, left off it: frames that came late "
    "(or a replay), and once, the backlog a chart rebuilt from the stored verdicts already holds",
)
SPC_GROUP = "bridge-spc"
# A verdict without a verdict or capture time cannot be placed on a chart (ValueError): poison.
SPC_ERRORS: ErrorTable = {ValueError: grpc.StatusCode.INVALID_ARGUMENT}
SAVE_ATTEMPTS = 3
ChartKey = tuple[str, str]


class ChartContended(DependencyUnavailable):
    """Another replica moved the chart on at every attempt: two consumers hold the line's partition
    (a rebalance under way). Retried like an outage, until the group has settled who owns it."""


@dataclass(frozen=True)
class Observed:
    """A verdict placed on its line's charts, the signals it fired and the limits it was judged against."""

    verdict: InspectionVerdict
    signals: list[SpcSignal]
    limits: IndividualsChart | None = None  # None while the chart's baseline is being collected, or not charted
    model_version: str | None = None


class SpcFeed:
    """The charts this replica moves on (its monitor holds those it met), each continued from and saved
    to ``spc_charts`` at every point; behind a lock (the SPC worker feeds it, the re-base watcher adds to
    it, gRPC threads read the store)."""

    def __init__(self, monitor: SpcMonitor, engine: Engine):
        self.monitor, self.engine, self.settings = monitor, engine, monitor.settings
        self.lock = threading.Lock()
        self._stored: dict[ChartKey, int | None] = {}  # points of the stored row each chart continues; None: no row
        self._undelivered: dict[ChartKey, int] = {}  # of each chart's last signals, those not yet delivered

    def observe(self, verdict: InspectionVerdict) -> Observed:
        if verdict.verdict == VERDICT_NOT_INSPECTED:  # no score: no point, no limits (the monitor skips it too)
            return Observed(verdict, [])
        row = verdict_observation(verdict)
        key = (verdict.frame.line_id, verdict.frame.product_type)
        with self.lock:
            for _ in range(SAVE_ATTEMPTS):
                chart = self.monitor.charts.get(key)
                if chart is None:
                    chart = self._load(key)
                if not chart.follows(row):
                    return self._charted_before(verdict, row, chart)
                try:
                    observed = self._move_on(verdict, row, chart)
                except BaseException:
                    self._forget(key)  # moved on in memory but maybe not stored: reload on the retry
                    raise
                if observed is not None:
                    return observed
                log.info("chart %s/%s was moved on by another replica: continuing from its stored state", *key)
                self._forget(key)
        raise ChartContended(
            f"chart {key[0]}/{key[1]} was moved on by another replica at each of {SAVE_ATTEMPTS} tries"
        )

    def _move_on(self, verdict: InspectionVerdict, row: Observation, chart: SpcChart) -> Observed | None:
        """Chart ``row`` and save; None (and the chart stale) when another writer stored the chart first."""
        key = (chart.line_id, chart.product_type)
        signals = chart.extend([row])
        with db.session(self.engine, write=True) as session:
            if not spc_charts.save(session, chart, self._stored[key], len(signals)):
                return None
        self._stored[key], self._undelivered[key] = chart.sample_count, len(signals)
        return Observed(verdict, signals, chart.limits, chart.model_version)

    def _charted_before(self, verdict: InspectionVerdict, row: Observation, chart: SpcChart) -> Observed:
        if chart.last_ids and chart.last_ids[-1] == row.inspection_id:  # the newest point again
            undelivered = self._undelivered[(chart.line_id, chart.product_type)]
            signals = list(chart.signals)[len(chart.signals) - undelivered :] if undelivered else []
            return Observed(verdict, signals, chart.limits, chart.model_version)
        if row.inspection_id not in chart.last_ids:
            assert chart.last_point is not None  # a chart that follows nothing is empty
            PAST_VERDICTS.inc()
            log.info(
                "inspection %s of %s/%s captured at %s, before the chart's newest point (%s): not charted",
                row.inspection_id,
                chart.line_id,
                chart.product_type,
                row.time.isoformat(),
                chart.last_point.time.isoformat(),
            )
        return Observed(verdict, [])

    def _forget(self, key: ChartKey) -> None:
        self.monitor.charts.pop(key, None)
        self._stored.pop(key, None)
        self._undelivered.pop(key, None)

    def _load(self, key: ChartKey) -> SpcChart:
        """The chart as stored; or, when there is none usable, rebuilt from the stored verdicts (and stored)."""
        line_id, product_type = key
        with db.session(self.engine, write=True) as session:
            stored = spc_charts.load_line(session, line_id)
            rebases = spc_rebases.rebases_of(session, line_id)
            mine = stored.get(product_type)
            if mine is not None and compatible(mine.chart, self.settings):
                chart = restore_chart(mine.chart, self.settings, rebases.get(key, ()))
                self._stored[key], self._undelivered[key] = mine.points, mine.undelivered
            else:
                charts = self._rebuild(session, line_id, product_type, stored, rebases)
                chart = charts.get(product_type) or SpcChart(line_id, product_type, self.settings)
                self._stored[key] = chart.sample_count if product_type in charts else None
                self._undelivered[key] = 0
        self.monitor.charts[key] = chart
        return chart

    def _rebuild(
        self,
        session: Session,
        line_id: str,
        product_type: str,
        stored: dict[str, spc_charts.StoredChart],
        rebases: dict[ChartKey, list[Rebase]],
    ) -> dict[str, SpcChart]:
        """The migration path: the chart of ``product_type`` from all its stored verdicts, and the line's other
        charts that need it too (all of them when the line has no stored chart yet, else those stored under
        other chart settings), each stored at once; product type -> chart, of those with stored verdicts."""
        if stored:
            stale = {product for product, found in stored.items() if not compatible(found.chart, self.settings)}
            history: dict[ChartKey, list[tuple[Any, ...]]] = {}
            for product in sorted(stale | {product_type}):
                history |= score_history(session, line_id, product)
        else:
            history = score_history(session, line_id)
        charts = {}
        for (_, product), rows in history.items():
            found = [Observation(*row) for row in rows]
            chart = chart_from_history(line_id, product, found, self.settings, rebases.get((line_id, product), ()))
            if not spc_charts.save(session, chart, stored[product].points if product in stored else None):
                raise ChartContended(f"chart {line_id}/{product} was stored by another replica while it was rebuilt")
            log.info("chart %s/%s rebuilt from its %d stored verdicts, and stored", line_id, product, len(found))
            charts[product] = chart
        return charts

    def delivered(self, verdict: InspectionVerdict) -> None:
        """The verdict's signals are written and published: a redelivery need not fire them again."""
        key = (verdict.frame.line_id, verdict.frame.product_type)
        with self.lock:
            chart = self.monitor.charts.get(key)
            if chart is not None and chart.last_ids and chart.last_ids[-1] == verdict.inspection_id:
                self._undelivered[key] = 0

    def rebase(self, line_id: str, product_type: str, rebase: Rebase) -> None:
        """Hand a new re-base to the chart if this replica holds it (else it comes with the chart when it is
        loaded). One that came into force before the chart's newest point is not applied, as a chart restored
        from the store would not apply it: it came too late (``DIFFQC_SPC_REBASE_DELAY_S`` too short)."""
        with self.lock:
            chart = self.monitor.charts.get((line_id, product_type))
            if chart is None or rebase in chart.rebases:
                return
            if chart.last_point is not None and rebase.effective_from <= chart.last_point.time:
                log.warning(
                    "re-base of %s/%s in force from %s came after the chart's newest point (%s): not applied",
                    line_id,
                    product_type,
                    rebase.effective_from.isoformat(),
                    chart.last_point.time.isoformat(),
                )
                return
            chart.rebase(rebase)

    def state(self, line_id: str, product_type: str) -> list[bridge_pb2.SpcState]:
        """SpcState of each stored chart of the line (or of the one product type), whichever replica holds it."""
        with db.session(self.engine) as session:
            stored = spc_charts.load_line(session, line_id, product_type or None)
        return [restore_chart(stored[product].chart, self.settings).state() for product in sorted(stored)]


class RebaseWatcher:
    """A ``run_service`` loop: hands re-bases stored by the gateway to the live charts, polling every
    half of ``DIFFQC_SPC_REBASE_DELAY_S`` so each arrives before the first point it judges."""

    def __init__(self, engine: Engine, feed: SpcFeed, interval_s: float, last_id: int = 0):
        self.engine, self.feed, self.interval_s, self.last_id = engine, feed, interval_s, last_id

    def poll(self) -> int:
        """Hand over what is new; returns how many."""
        with db.session(self.engine) as session:
            rows = list(spc_rebases.rebases_since(session, self.last_id))
        for row in rows:
            self.feed.rebase(row.line_id, row.product_type, spc_rebases.as_rebase(row))
            self.last_id = row.id
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            try:
                self.poll()
            except DependencyUnavailable as exc:  # the database is down: the next round retries
                log.warning("reading SPC re-bases failed (%s); retrying", exc)


class SignalPublisher:
    """Writes each fired signal to InfluxDB (``spc_signal``) and publishes it Avro on quality.spc (key =
    line); then the verdict's signals count as delivered."""

    def __init__(self, feed: SpcFeed, kafka: KafkaSettings, sink: ScoreSink, signals: AvroTopic):
        self.feed, self.sink, self.signals = feed, sink, signals
        self.publisher = Publisher(kafka)

    def publish(self, observed: Observed) -> None:
        frame = observed.verdict.frame
        plant = frame.plant_id
        if observed.limits is not None:
            self.sink.write(
                spc_limits_point(
                    frame.line_id,
                    frame.product_type,
                    observed.model_version,
                    observed.limits,
                    clock.to_datetime(frame.capture_time),
                    {"plant": plant},
                )
            )
        for signal in observed.signals:
            self.sink.write(spc_signal_point(signal, {"plant": plant}))
            self.publisher.publish(
                self.signals.topic,
                signal.line_id.encode(),
                self.signals.encode(signal_record(signal, plant)),
                [("signal_id", signal.signal_id.encode())],
            )
        self.feed.delivered(observed.verdict)


def spc_stage(feed: SpcFeed, publisher: SignalPublisher) -> StreamStage[InspectionVerdict, Observed]:
    """qc.inspections.v1 -> the line's chart, saved -> spc_signal points + quality.spc, committed after all."""
    return StreamStage(
        SPC_GROUP,
        INSPECTIONS,
        feed.observe,
        SPC_ERRORS,
        emit=publisher.publish,
    )
