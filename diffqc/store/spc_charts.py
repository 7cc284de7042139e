"""Control-chart state per line and product type (``spc_charts``): the bridge saves a chart after each of
its points, the gateway and a bridge replica that takes the line over continue from it.

    stored = load(session, "line-1", "pcb")                    # StoredChart or None
    saved = save(session, chart, expected_points=stored.points) # False: another writer moved it on

A save only moves the chart on from the row its writer read: the UPDATE's WHERE names the point count
the writer's chart had when it was loaded or last saved. A replica that lost the line's partition
(its chart in memory fell behind the one its successor stored) therefore changes nothing, and learns
so from the False it gets; it reloads. The first save of a chart inserts its row (``expected_points``
None), and a second writer racing it gets False the same way.

The ``state`` column holds ``{"chart": diffqc.spc.state.chart_state(...), "undelivered": n}``: n is
how many of the chart's last signals its newest point raised and were not yet known to be written and
published, so that whoever gets that verdict again raises them again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.spc import SpcChart
from diffqc.spc.state import chart_state
from diffqc.store.dialect import dialect_insert
from diffqc.store.models import SpcChart as ChartRow


@dataclass(frozen=True)
class StoredChart:
    line_id: str
    product_type: str
    chart: dict[str, Any]  # diffqc.spc.state.chart_state
    undelivered: int
    points: int
    last_captured_at: datetime | None
    last_inspection_id: str | None


def _stored(row: ChartRow) -> StoredChart:
    return StoredChart(
        row.line_id,
        row.product_type,
        row.state["chart"],
        row.state.get("undelivered", 0),
        row.points,
        row.last_captured_at,
        row.last_inspection_id,
    )


def load(session: Session, line_id: str, product_type: str) -> StoredChart | None:
    row = session.get(ChartRow, (line_id, product_type))
    return _stored(row) if row is not None else None


def load_line(session: Session, line_id: str, product_type: str | None = None) -> dict[str, StoredChart]:
    """Product type -> the stored chart, of every chart of the line (or of the one product type)."""
    query = select(ChartRow).where(ChartRow.line_id == line_id)
    if product_type:
        query = query.where(ChartRow.product_type == product_type)
    return {row.product_type: _stored(row) for row in session.scalars(query)}


def save(session: Session, chart: SpcChart, expected_points: int | None, undelivered: int = 0) -> bool:
    """Store ``chart``'s state over the row that had ``expected_points`` points (None: over no row at all);
    False, and nothing written, when the row is not (or no longer) that one. The caller commits."""
    if undelivered < 0 or undelivered > len(chart.signals):
        raise ValueError(f"undelivered must lie in [0, {len(chart.signals)}] (the chart's signals), got {undelivered}")
    values = {
        "state": {"chart": chart_state(chart), "undelivered": undelivered},
        "points": chart.sample_count,
        "last_captured_at": chart.last_point.time if chart.last_point is not None else None,
        "last_inspection_id": chart.last_ids[-1] if chart.last_ids else None,
        "updated_at": clock.now(),
    }
    if expected_points is None:
        inserted = session.execute(
            dialect_insert(session, ChartRow)
            .values(line_id=chart.line_id, product_type=chart.product_type, **values)
            .on_conflict_do_nothing()
            .returning(ChartRow.__table__.c.line_id)
        ).first()
        return inserted is not None
    moved_on = session.execute(  # an UPDATE's result: a CursorResult, which counts the rows it matched
        update(ChartRow)
        .where(
            ChartRow.line_id == chart.line_id,
            ChartRow.product_type == chart.product_type,
            ChartRow.points == expected_points,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], moved_on).rowcount == 1
