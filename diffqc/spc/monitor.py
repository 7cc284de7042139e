"""Control charts that follow the score streams: one per (line, product type).

    monitor = SpcMonitor(settings.spc)
    signals = monitor.observe_verdict(verdict)          # each InspectionVerdict of qc.inspections.v1
    states = monitor.state("line-1")                    # diffqc.v1 SpcState, one per product type

The first ``baseline_size`` scores of good parts fix a chart's individuals-chart limits (Phase I;
a part judged defective is drawn but never enters the baseline); every later score is standardized
against them, and the enabled run rules (Western Electric by default), the EWMA and the CUSUM
chart run on the monitored points (the baseline itself is never judged). A chart is a phase of one
model version: when the rows name a new model version (a promotion or a rollback), the chart
starts a new baseline, since a new model scores on its own scale. Defectives are counted per lot (the
frame's lot, else its work order); a lot is closed when a frame of another lot follows it, and
closed lots are judged on the p-chart once ``p_baseline_lots`` closed lots have fixed p-bar.

**Re-basing**: an engineer may fix a chart's limits from a chosen window of good parts
(``Rebase``); they replace the running limits for the points of that model version captured from
``effective_from`` on (a few seconds after the action, so every replica of the bridge has read
them before the first point they judge), and the rules start afresh.

A batch of observations goes through the same code as one observation at a time (its signals
come in the same order), so ``chart_from_history`` (a chart with no stored state) gives exactly the
chart the live monitor built from the same rows, in order, from the chart's first score. Charts take
rows in capture-time order: ``SpcChart.follows`` tells whether a row comes after every point of the
chart (the bridge leaves a late one off). A chart's state is JSON by ``diffqc.spc.state``; the
bridge keeps it in ``spc_charts``, and a restored chart goes on exactly as the saved one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

from diffqc.core import clock
from diffqc.settings import SpcSettings
from diffqc.spc.charts import ChartError, IndividualsChart, individuals_chart, p_chart, p_limits
from diffqc.spc.ewma_cusum import CUSUM_DESCRIPTION, CUSUM_RULE, EWMA_DESCRIPTION, EWMA_RULE, Cusum, Ewma
from diffqc.spc.rules import MAX_WINDOW, RULES, rules_by_id
from diffqc.v1.bridge_pb2 import LotDefectRate, SpcState, SpcViolation
from diffqc.v1.scoring_pb2 import InspectionVerdict, Verdict

P_CHART_RULE = "pchart"
P_CHART_DESCRIPTION = "defect rate of a lot beyond its p-chart limits"


class Observation(NamedTuple):
    """One inspection as the charts see it; a (time, score, verdict, lot) row of the store fits."""

    time: datetime
    score: float
    verdict: str | bool  # "defect" / "pass" (any case, the store's Verdict) or True for a defect
    lot: str | None = None
    inspection_id: str | None = None
    model_version: str | None = None  # a new version starts a new phase of the chart


@dataclass(frozen=True)
class Rebase:
    """Limits fixed from a chosen baseline window, in force for the points of ``model_version`` captured
    at or after ``effective_from``."""

    model_version: str | None
    limits: IndividualsChart
    effective_from: datetime


def describe(rule_id: str) -> str:
    return {EWMA_RULE: EWMA_DESCRIPTION, CUSUM_RULE: CUSUM_DESCRIPTION}.get(rule_id) or RULES[rule_id].description


@dataclass(frozen=True)
class SpcSignal:
    """A rule fired at one point of a chart."""

    line_id: str
    product_type: str
    rule: str  # we1 .. we4, nelson1 .. nelson8, ewma, cusum or pchart
    detail: str
    value: float  # the score, or for pchart the lot's defect rate
    center_line: float
    ucl: float
    lcl: float
    time: datetime
    sample_index: int  # 0 = the chart's first score; for pchart the lot's last sample
    lot: str | None = None
    inspection_id: str | None = None

    @property
    def signal_id(self) -> str:
        """Stable id: the same point firing the same rule always gets the same id (a key for deduplication)."""
        return f"{self.line_id}/{self.product_type}/{self.rule}/{self.sample_index}"


class ChartPoint(NamedTuple):
    sample_index: int
    time: datetime
    score: float
    monitored: bool  # False for the baseline points (and defective parts before the limits are fixed)
    ewma: float | None = None  # the EWMA and CUSUM statistics in sigmas; None while not monitored
    ewma_limit: float | None = None
    cusum_upper: float | None = None
    cusum_lower: float | None = None


@dataclass
class LotCount:
    lot: str
    last_time: datetime
    inspected: int = 0
    defective: int = 0
    last_index: int = -1
    closed: bool = False


def is_defect(verdict: str | bool) -> bool:
    if isinstance(verdict, bool):
        return verdict
    if isinstance(verdict, str) and verdict.strip().lower() in ("defect", "pass"):
        return verdict.strip().lower() == "defect"
    raise ValueError(f"verdict must be 'defect', 'pass' or a bool, got {verdict!r}")


def _checked(observation) -> Observation:
    """Validate one row before anything is changed, so a bad row never half-updates a chart."""
    if not isinstance(observation, Observation):
        observation = Observation(*observation)
    time, score = observation.time, observation.score
    if not isinstance(time, datetime):
        raise ValueError(f"observation time must be a datetime, got {time!r}")
    if time.tzinfo is None:
        raise ValueError(f"observation time {time.isoformat()} has no time zone")
    if isinstance(score, bool) or not isinstance(score, (int, float, np.floating)) or not np.isfinite(score):
        raise ValueError(f"observation score must be a finite number, got {score!r}")
    return observation._replace(
        score=float(score),
        verdict=is_defect(observation.verdict),
        lot=observation.lot or None,
        model_version=observation.model_version or None,
    )


@dataclass
class SpcChart:
    """The individuals chart and the p-chart of one line and product type."""

    line_id: str
    product_type: str
    settings: SpcSettings = field(default_factory=SpcSettings)
    limits: IndividualsChart | None = None
    sample_count: int = 0
    p_bar: float | None = None
    last_point: ChartPoint | None = None
    previous_score: float | None = None

    model_version: str | None = None  # of the current phase; None until a row names one
    phase_start: int = 0  # sample index of the current phase's first point
    rebased_at: int | None = None  # sample index from which re-based limits are in force
    rebases: list[Rebase] = field(default_factory=list)  # not yet in force, by effective_from

    def __post_init__(self) -> None:
        if not self.line_id or not self.product_type:
            raise ValueError(f"a chart needs a line id and a product type, got {self.line_id!r}/{self.product_type!r}")
        self.rules = rules_by_id([r for r in self.settings.rules if r.startswith(("we", "nelson"))])
        self.points: deque[ChartPoint] = deque(maxlen=self.settings.history_size)
        self.signals: deque[SpcSignal] = deque(maxlen=self.settings.history_size)
        self.lots: OrderedDict[str, LotCount] = OrderedDict()
        self._current_lot: str | None = None
        self.last_ids: list[str] = []  # inspection ids of the points captured at the newest point's time
        self._start_phase()

    def follows(self, row: Observation) -> bool:
        """Whether ``row`` comes after every point of the chart in capture order: captured later than the
        newest point, or at the same time and not one of the points already charted then."""
        if self.last_point is None or row.time > self.last_point.time:
            return True
        return row.time == self.last_point.time and (
            row.inspection_id is None or row.inspection_id not in self.last_ids
        )

    def rebase(self, rebase: Rebase) -> None:
        """Put ``rebase`` in force from the first later point of its model version it applies to."""
        self.rebases = sorted([*self.rebases, rebase], key=lambda r: r.effective_from)

    def _due_rebase(self, row: Observation) -> Rebase | None:
        due = [r for r in self.rebases if r.effective_from <= row.time and r.model_version == self.model_version]
        self.rebases = [r for r in self.rebases if r not in due and r.effective_from > row.time]  # stale ones go
        return due[-1] if due else None

    def _start_phase(self, limits: IndividualsChart | None = None) -> None:
        """Forget the limits and everything judged against them: a new baseline (or ``limits``) follows."""
        self.limits = limits
        self._baseline: list[float] = []
        self._tail_z: np.ndarray = np.empty(0)  # the last MAX_WINDOW - 1 monitored points, standardized
        self._active: dict[str, tuple[datetime, int]] = {}  # rule -> start of its current firing streak
        self._ewma = Ewma(self.settings.ewma_lambda, self.settings.ewma_width)
        self._cusum = Cusum(self.settings.cusum_k, self.settings.cusum_h)

    def extend(self, observations: Iterable) -> list[SpcSignal]:
        """Add observations in time order; return the signals they raise. All rows are checked first."""
        rows = [_checked(o) for o in observations]
        signals: list[SpcSignal] = []
        lot_signals: list[tuple[int, SpcSignal]] = []  # (the row that closed the lot, its signal)
        monitored: list[tuple[int, Observation, set[str]]] = []
        for row in rows:
            index = self.sample_count
            if row.model_version and row.model_version != self.model_version:
                if self.model_version is not None:  # a promotion or rollback: judge what came before, then restart
                    signals += self._judge(monitored)
                    monitored = []
                    self._start_phase()
                    self.phase_start, self.rebased_at = index, None
                self.model_version = row.model_version
            if self.rebases and (rebase := self._due_rebase(row)) is not None:
                signals += self._judge(monitored)
                monitored = []
                self._start_phase(rebase.limits)
                self.rebased_at = index
            self.sample_count += 1
            lot_signals += [(index, signal) for signal in self._count_lot(index, row)]
            if self.limits is not None:
                point, fired = self._memory_charts(index, row)
                monitored.append((index, row, fired))
            else:
                point = ChartPoint(index, row.time, row.score, False)
                if not row.verdict:
                    self._add_to_baseline(row.score)
            self.points.append(point)
            if self.last_point is None or row.time != self.last_point.time:
                self.last_ids = []
            if row.inspection_id is not None:
                self.last_ids.append(row.inspection_id)
            self.previous_score = self.last_point.score if self.last_point else None
            self.last_point = point
        signals += self._judge(monitored)
        # In the order rows one at a time raise them, so that a batch leaves the same chart: by the row that
        # raised each (a lot's signal comes with the first row of the next lot), then point and rule.
        raised = [(signal.sample_index, signal) for signal in signals] + lot_signals
        signals = [signal for _, signal in sorted(raised, key=lambda r: (r[0], r[1].sample_index, r[1].rule))]
        self.signals.extend(signals)
        return signals

    def _add_to_baseline(self, score: float) -> None:
        self._baseline.append(score)
        if len(self._baseline) >= self.settings.baseline_size:
            try:
                self.limits = individuals_chart(self._baseline)
            except ChartError:  # all equal so far: keep collecting until the scores vary
                return
            self._baseline = []

    def _memory_charts(self, index: int, row: Observation) -> tuple[ChartPoint, set[str]]:
        """The EWMA and CUSUM statistics of one monitored point, and which of the two (if enabled) fire."""
        assert self.limits is not None
        z = float(self.limits.standardize([row.score])[0])
        ewma, limit, ewma_out = self._ewma.update(z)
        upper, lower, cusum_out = self._cusum.update(z)
        fired = {rule for rule, out in ((EWMA_RULE, ewma_out), (CUSUM_RULE, cusum_out)) if out}
        point = ChartPoint(index, row.time, row.score, True, ewma, limit, upper, lower)
        return point, fired & set(self.settings.rules)

    def _judge(self, monitored: list[tuple[int, Observation, set[str]]]) -> list[SpcSignal]:
        limits = self.limits
        if not monitored or limits is None:  # only points judged against limits are monitored
            return []
        z = np.concatenate((self._tail_z, limits.standardize([row.score for _, row, _ in monitored])))
        offset = self._tail_z.size
        fired_at: dict[str, set[int]] = {}
        for rule in self.rules:
            fired = rule.detect(z)
            fired_at[rule.id] = set((fired[fired >= offset] - offset).tolist())
        for rule_id in (EWMA_RULE, CUSUM_RULE):
            if rule_id in self.settings.rules:
                fired_at[rule_id] = {position for position, (_, _, fired) in enumerate(monitored) if rule_id in fired}
        signals = []
        for rule_id, positions in fired_at.items():
            for position in sorted(positions):
                index, row, _ = monitored[position]
                signals.append(
                    SpcSignal(
                        self.line_id,
                        self.product_type,
                        rule_id,
                        describe(rule_id),
                        row.score,
                        limits.center_line,
                        limits.ucl,
                        limits.lcl,
                        row.time,
                        index,
                        row.lot,
                        row.inspection_id,
                    )
                )
        last = len(monitored) - 1
        for rule_id, positions in fired_at.items():  # a rule is active while it fires on every new point
            if last not in positions:
                self._active.pop(rule_id, None)
                continue
            start = last
            while start - 1 in positions:
                start -= 1
            if start > 0 or rule_id not in self._active:  # else the streak goes on from an earlier batch
                index, row, _ = monitored[start]
                self._active[rule_id] = (row.time, index)
        self._tail_z = z[-(MAX_WINDOW - 1) :]
        return signals

    def _count_lot(self, index: int, row: Observation) -> list[SpcSignal]:
        signals = []
        if row.lot is not None and row.lot != self._current_lot:
            previous = self.lots.get(self._current_lot) if self._current_lot else None
            if previous is not None and not previous.closed:
                previous.closed = True
                signals += self._judge_lot(previous)
            self._current_lot = row.lot
        if row.lot is None:
            return signals
        lot = self.lots.get(row.lot)
        if lot is None:
            lot = self.lots[row.lot] = LotCount(row.lot, row.time)
            while len(self.lots) > self.settings.history_size:
                self.lots.popitem(last=False)
        lot.inspected += 1
        lot.defective += is_defect(row.verdict)
        lot.last_time, lot.last_index = row.time, index
        return signals

    def _judge_lot(self, lot: LotCount) -> list[SpcSignal]:
        if self.p_bar is None:
            closed = [c for c in self.lots.values() if c.closed]
            if len(closed) >= self.settings.p_baseline_lots:
                self.p_bar = p_chart([c.defective for c in closed], [c.inspected for c in closed]).p_bar
            return []
        if P_CHART_RULE not in self.settings.rules:
            return []
        rate = lot.defective / lot.inspected
        [ucl], [lcl] = p_limits(self.p_bar, [lot.inspected])
        if lcl <= rate <= ucl:
            return []
        detail = f"{P_CHART_DESCRIPTION}: lot {lot.lot} {lot.defective}/{lot.inspected} defective"
        return [
            SpcSignal(
                self.line_id,
                self.product_type,
                P_CHART_RULE,
                detail,
                rate,
                self.p_bar,
                float(ucl),
                float(lcl),
                lot.last_time,
                lot.last_index,
                lot.lot,
            )
        ]

    def lot_rates(self) -> list[LotDefectRate]:
        rates = []
        for lot in self.lots.values():
            ucl = lcl = 0.0
            if self.p_bar is not None:
                [ucl], [lcl] = p_limits(self.p_bar, [lot.inspected])
            rates.append(
                LotDefectRate(
                    lot=lot.lot,
                    inspected=lot.inspected,
                    defective=lot.defective,
                    defect_rate=lot.defective / lot.inspected,
                    upper_control_limit=float(ucl),
                    lower_control_limit=float(lcl),
                    closed=lot.closed,
                )
            )
        return rates

    def state(self) -> SpcState:
        message = SpcState(
            line_id=self.line_id,
            product_type=self.product_type,
            sample_count=self.sample_count,
            limits_fixed=self.limits is not None,
            lots=self.lot_rates(),
            defect_rate_center_line=self.p_bar or 0.0,
        )
        if self.limits is not None:
            limits = self.limits
            message.center_line, message.upper_control_limit, message.lower_control_limit = (
                limits.center_line,
                limits.ucl,
                limits.lcl,
            )
            message.baseline_size, message.sigma = limits.baseline_size, limits.sigma
            message.moving_range_mean, message.moving_range_ucl = limits.moving_range_mean, limits.moving_range_ucl
        if self.last_point is not None:
            message.last_score = self.last_point.score
            message.updated_at.FromDatetime(self.last_point.time)
            if self.previous_score is not None:
                message.last_moving_range = abs(self.last_point.score - self.previous_score)
        for rule_id, (since, index) in sorted(self._active.items()):
            violation = SpcViolation(rule=rule_id, detail=describe(rule_id), sample_index=index)
            violation.detected_at.FromDatetime(since)
            message.violations.append(violation)
        return message


def verdict_observation(verdict: InspectionVerdict) -> Observation:
    """The chart row of a PASS or DEFECT verdict of qc.inspections.v1, at its frame's capture time; a verdict
    without a verdict or a capture time cannot be placed (ValueError)."""
    frame = verdict.frame
    if verdict.verdict not in (Verdict.VERDICT_PASS, Verdict.VERDICT_DEFECT):
        raise ValueError(f"inspection {verdict.inspection_id!r} has no verdict (VERDICT_UNSPECIFIED)")
    if not frame.HasField("capture_time"):
        raise ValueError(f"inspection {verdict.inspection_id!r}: its frame has no capture_time")
    return Observation(
        clock.to_datetime(frame.capture_time),
        verdict.score,
        verdict.verdict == Verdict.VERDICT_DEFECT,
        frame.lot or frame.work_order or None,
        verdict.inspection_id,
        verdict.model.version or None,
    )


def chart_from_history(
    line_id: str,
    product_type: str,
    history: Iterable,
    settings: SpcSettings | None = None,
    rebases: Iterable[Rebase] = (),
) -> SpcChart:
    """The chart of stored rows (time, score, verdict, lot[, inspection_id, model_version]) in time order,
    from the first one, with the re-based limits put in force where they apply."""
    chart = SpcChart(line_id, product_type, settings or SpcSettings())
    for rebase in rebases:
        chart.rebase(rebase)
    chart.extend(history)
    return chart


class SpcMonitor:
    """The charts of every (line, product type) a process has seen; not thread-safe (one consumer feeds it)."""

    def __init__(self, settings: SpcSettings | None = None):
        self.settings = settings or SpcSettings()
        self.charts: dict[tuple[str, str], SpcChart] = {}

    def chart(self, line_id: str, product_type: str) -> SpcChart:
        key = (line_id, product_type)
        if key not in self.charts:
            self.charts[key] = SpcChart(line_id, product_type, self.settings)
        return self.charts[key]

    def observe(self, line_id: str, product_type: str, observation) -> list[SpcSignal]:
        return self.chart(line_id, product_type).extend([observation])

    def observe_verdict(self, verdict: InspectionVerdict) -> list[SpcSignal]:
        """Chart one verdict of qc.inspections.v1 at its frame's capture time; a part that was not inspected
        has no score and is left off the chart."""
        frame = verdict.frame
        if verdict.verdict == Verdict.VERDICT_NOT_INSPECTED:  # no score: a 0 would read as a perfect part
            return []
        return self.observe(frame.line_id, frame.product_type, verdict_observation(verdict))

    def rebuild(self, line_id: str, product_type: str, history: Iterable, rebases: Iterable[Rebase] = ()) -> SpcChart:
        """Replace a chart by the one its stored history gives (after a restart); its signals are not returned."""
        chart = chart_from_history(line_id, product_type, history, self.settings, rebases)
        self.charts[(line_id, product_type)] = chart
        return chart

    def rebase(self, line_id: str, product_type: str, rebase: Rebase) -> None:
        self.chart(line_id, product_type).rebase(rebase)

    def state(self, line_id: str, product_type: str | None = None) -> list[SpcState]:
        """SpcState of each product type on the line (or of the one asked for), sorted by product type."""
        return [
            chart.state()
            for (line, product), chart in sorted(self.charts.items())
            if line == line_id and product_type in (None, "", product)
        ]
