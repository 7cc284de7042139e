"""A line's control charts for the API: the charts the bridge stored, moved on by the rows stored since.

Each (line, product type) chart is read from ``spc_charts`` (the state the bridge saved after its
newest point, ``diffqc.spc.state``) and, in memory, continued with the line's inspections captured
from the line's newest stored point on, in capture order; nothing older is read. That is the chart
the bridge will hold once it has charted those rows, so the dashboard and the bridge agree. A chart
with no usable stored state (no bridge has charted the line yet, or it was stored under other chart
settings) is rebuilt from its whole history, from its first score, as the bridge would rebuild it.
A row of a product captured before the line's newest stored point that the bridge has not charted
yet (one in flight while another product's verdict overtook it) shows once the bridge charted it.
Only the chart's recent points and signals (``DIFFQC_SPC_HISTORY_SIZE``) are returned.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.settings import SpcSettings
from diffqc.spc import Observation, SpcChart, chart_from_history
from diffqc.spc.state import compatible, restore_chart
from diffqc.store import db, spc_charts, spc_rebases
from diffqc.store.inspections import score_history


class ChartPointOut(BaseModel):
    sample_index: int = Field(description="0 = the chart's first score")
    time: datetime = Field(description="Capture time of the frame")
    score: float
    monitored: bool = Field(description="False for the baseline points that fixed the limits")
    ewma: float | None = Field(None, description="EWMA of the standardized scores (sigmas); null when not monitored")
    ewma_limit: float | None = Field(None, description="The EWMA's control limit at this point (+-, sigmas)")
    cusum_upper: float | None = Field(None, description="Upper CUSUM C+ (sigmas); a signal beyond cusum_h")
    cusum_lower: float | None = Field(None, description="Lower CUSUM C- (sigmas); a signal beyond cusum_h")


class SignalOut(BaseModel):
    signal_id: str = Field(description="line/product/rule/sample_index: the id to acknowledge the signal by")
    rule: str = Field(description="we1 .. we4, nelson1 .. nelson8, ewma, cusum, or pchart")
    detail: str
    value: float = Field(description="The score, or for pchart the lot's defect rate")
    time: datetime
    sample_index: int
    lot: str | None = None
    inspection_id: str | None = None


class ViolationOut(BaseModel):
    rule: str
    detail: str
    since: datetime = Field(description="When the rule's current unbroken streak began")
    sample_index: int


class LotOut(BaseModel):
    lot: str
    inspected: int
    defective: int
    defect_rate: float
    upper_control_limit: float
    lower_control_limit: float
    closed: bool


class SpcChartOut(BaseModel):
    line_id: str
    product_type: str
    sample_count: int
    limits_fixed: bool = Field(description="False while the baseline is still being collected (limits are 0)")
    center_line: float
    upper_control_limit: float
    lower_control_limit: float
    sigma: float
    baseline_size: int
    model_version: str | None = Field(description="The model version of the current phase of the chart")
    phase_start: int = Field(description="Sample index where the current model version's phase (and baseline) began")
    rebased_at: int | None = Field(description="Sample index from which re-based limits are in force; null if none")
    cusum_h: float = Field(description="The CUSUM's decision interval (sigmas)")
    points: list[ChartPointOut] = Field(description="The most recent points, oldest first")
    signals: list[SignalOut] = Field(description="The most recent signals, oldest first")
    violations: list[ViolationOut] = Field(description="Rules the latest points break; empty when in control")
    lots: list[LotOut]
    defect_rate_center_line: float


class LineSpc(BaseModel):
    line_id: str
    charts: list[SpcChartOut] = Field(description="One chart per product type seen on the line")


def line_charts(session: Session, settings: SpcSettings, line: str, product_type: str | None) -> list[SpcChart]:
    """The line's charts (or the one product type's), sorted by product type: the stored ones continued with
    the rows captured since the line's newest stored point, the others from their whole history."""
    stored = spc_charts.load_line(session, line, product_type)
    rebases = spc_rebases.rebases_of(session, line)

    def rebuilt(product: str, rows: list[tuple[Any, ...]]) -> SpcChart:
        history = [Observation(*row) for row in rows]
        return chart_from_history(line, product, history, settings, rebases.get((line, product), ()))

    usable = {product: found for product, found in stored.items() if compatible(found.chart, settings)}
    since = max((found.last_captured_at for found in usable.values() if found.last_captured_at), default=None)
    if since is None:  # nothing the bridge stored can be continued: every chart from its whole history
        history = score_history(session, line, product_type)
        return [rebuilt(product, rows) for (_, product), rows in sorted(history.items())]
    charts = {
        product: restore_chart(found.chart, settings, rebases.get((line, product), ()))
        for product, found in usable.items()
    }
    whole = set(stored) - set(usable)  # stored under other chart settings
    for (_, product), rows in score_history(session, line, product_type, since=since).items():
        chart = charts.get(product)
        if chart is None:  # not stored yet (the bridge is behind) or stored under other settings
            whole.add(product)
            continue
        observations = [Observation(*row) for row in rows]
        chart.extend([row for row in observations if chart.follows(row)])
    for product in whole:
        rows = score_history(session, line, product).get((line, product), [])
        if rows:
            charts[product] = rebuilt(product, rows)
    return [charts[product] for product in sorted(charts)]


def chart_out(chart: SpcChart) -> SpcChartOut:
    state = chart.state()
    return SpcChartOut(
        line_id=chart.line_id,
        product_type=chart.product_type,
        sample_count=state.sample_count,
        limits_fixed=state.limits_fixed,
        center_line=state.center_line,
        upper_control_limit=state.upper_control_limit,
        lower_control_limit=state.lower_control_limit,
        sigma=state.sigma,
        baseline_size=state.baseline_size,
        model_version=chart.model_version,
        phase_start=chart.phase_start,
        rebased_at=chart.rebased_at,
        cusum_h=chart.settings.cusum_h,
        points=[ChartPointOut.model_validate(p, from_attributes=True) for p in chart.points],
        signals=[SignalOut.model_validate(s, from_attributes=True) for s in chart.signals],
        violations=[
            ViolationOut(
                rule=v.rule, detail=v.detail, since=clock.to_datetime(v.detected_at), sample_index=v.sample_index
            )
            for v in state.violations
        ],
        lots=[LotOut.model_validate(r, from_attributes=True) for r in state.lots],
        defect_rate_center_line=state.defect_rate_center_line,
    )


def line_spc(engine: Engine, settings: SpcSettings, line: str, product_type: str | None = None) -> LineSpc:
    with db.session(engine) as session:
        charts = line_charts(session, settings, line, product_type)
    return LineSpc(line_id=line, charts=[chart_out(chart) for chart in charts])
