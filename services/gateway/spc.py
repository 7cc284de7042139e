"""A line's control charts for the API: ``diffqc.spc.chart_from_history`` over its stored inspections.

Each (line, product type) chart is rebuilt from the line's whole history, from its first score, in
capture order: that is the chart the bridge's live monitor built from the same rows (the
baseline is the first good parts judged by the current model version), so the dashboard and the
bridge agree. Only the chart's
recent points and signals (``DIFFQC_SPC_HISTORY_SIZE``) are returned.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import Engine

from diffqc.core import clock
from diffqc.settings import SpcSettings
from diffqc.spc import Observation, Rebase, SpcChart, chart_from_history
from diffqc.store import db, spc_rebases
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


def observations(
    engine: Engine, line: str, product_type: str | None
) -> tuple[dict[str, list[Observation]], dict[str, list[Rebase]]]:
    """The line's inspections per product type, in capture order, and its charts' re-bases."""
    with db.session(engine) as session:
        history = score_history(session, line, product_type)
        rebases = spc_rebases.rebases_of(session, line)
    rows = {product: [Observation(*row) for row in rows] for (_, product), rows in history.items()}
    return rows, {product: found for (_, product), found in rebases.items()}


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
    history, rebases = observations(engine, line, product_type)
    charts = [
        chart_out(chart_from_history(line, product, rows, settings, rebases.get(product, ())))
        for product, rows in sorted(history.items())
    ]
    return LineSpc(line_id=line, charts=charts)
