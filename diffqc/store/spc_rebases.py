"""Re-basing a control chart: Phase I limits from a window of good parts an engineer chooses.

The window is read from the stored inspections of the line and product type, good parts judged by
the chart's current model version only (the newest inspection's version); the limits are stored
with who, when and why, audited in the same transaction, and come into force ``delay_s`` later
(``DIFFQC_SPC_REBASE_DELAY_S``), which lets every bridge replica read them before they judge a point.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.settings import SpcSettings
from diffqc.spc import ChartError, IndividualsChart, Rebase, individuals_chart
from diffqc.store import audit
from diffqc.store.models import Frame, Inspection, SpcRebase, Verdict

MAX_REASON_LENGTH = 500


class RebaseRefused(ValueError):
    """The window cannot give limits; the message says why."""


def _current_version(session: Session, line_id: str, product_type: str) -> str:
    version = session.scalar(
        select(Inspection.model_version)
        .join(Frame, Frame.id == Inspection.frame_id)
        .where(Frame.line_id == line_id, Frame.product_type == product_type)
        .order_by(Frame.captured_at.desc(), Frame.id.desc())
        .limit(1)
    )
    if version is None:
        raise RebaseRefused(f"line {line_id!r} has no inspections of product type {product_type!r}")
    return version


def rebase_chart(
    session: Session,
    line_id: str,
    product_type: str,
    window: tuple[datetime, datetime],
    reason: str,
    actor: str,
    settings: SpcSettings,
) -> SpcRebase:
    """Fix the chart's limits from the good parts captured in ``window`` (inclusive), store and audit them."""
    start, end = window
    if start.tzinfo is None or end.tzinfo is None:
        raise RebaseRefused("the window's start and end need a time zone")
    if not start < end:
        raise RebaseRefused(f"the window starts ({start.isoformat()}) after it ends ({end.isoformat()})")
    reason = reason.strip()
    if not 0 < len(reason) <= MAX_REASON_LENGTH:
        raise RebaseRefused(f"a re-base needs a reason of 1-{MAX_REASON_LENGTH} characters")
    version = _current_version(session, line_id, product_type)
    good = (
        select(Inspection.score)
        .join(Frame, Frame.id == Inspection.frame_id)
        .where(
            Frame.line_id == line_id,
            Frame.product_type == product_type,
            Frame.captured_at.between(start, end),
            Inspection.verdict == Verdict.PASS,
            Inspection.model_version == version,
        )
    )
    count = session.scalar(select(func.count()).select_from(good.subquery())) or 0
    if count < settings.rebase_min_parts:
        raise RebaseRefused(
            f"the window holds {count} good parts of model version {version!r}; "
            f"a re-base needs at least {settings.rebase_min_parts}"
        )
    if count > settings.rebase_max_parts:
        raise RebaseRefused(
            f"the window holds {count} good parts, over {settings.rebase_max_parts}: choose a shorter one"
        )
    scores = list(session.scalars(good.order_by(Frame.captured_at, Frame.id)))
    try:
        limits = individuals_chart(scores)
    except ChartError as exc:
        raise RebaseRefused(f"the window's scores give no limits: {exc}") from None
    now = clock.now()
    row = SpcRebase(
        line_id=line_id,
        product_type=product_type,
        model_version=version,
        center_line=limits.center_line,
        sigma=limits.sigma,
        moving_range_mean=limits.moving_range_mean,
        baseline_size=limits.baseline_size,
        window_start=start,
        window_end=end,
        effective_from=now + timedelta(seconds=settings.rebase_delay_s),
        reason=reason,
        rebased_by=actor,
        rebased_at=now,
    )
    session.add(row)
    session.flush()
    details = {
        "model_version": version,
        "window": [start.isoformat(), end.isoformat()],
        "center_line": limits.center_line,
        "sigma": limits.sigma,
        "baseline_size": limits.baseline_size,
        "effective_from": row.effective_from.isoformat(),
        "reason": reason,
    }
    audit.append(session, actor, "spc.rebase", f"{line_id}/{product_type}", details)
    return row


def as_rebase(row: SpcRebase) -> Rebase:
    limits = IndividualsChart(row.center_line, row.sigma, row.moving_range_mean, row.baseline_size)
    return Rebase(row.model_version, limits, row.effective_from)


def rebases_of(session: Session, line_id: str | None = None) -> dict[tuple[str, str], list[Rebase]]:
    """(line, product type) -> its re-bases in the order they came into force."""
    query = select(SpcRebase).order_by(SpcRebase.effective_from, SpcRebase.id)
    if line_id:
        query = query.where(SpcRebase.line_id == line_id)
    found: dict[tuple[str, str], list[Rebase]] = {}
    for row in session.scalars(query):
        found.setdefault((row.line_id, row.product_type), []).append(as_rebase(row))
    return found


def rebases_since(session: Session, last_id: int) -> Iterable[SpcRebase]:
    """Re-bases stored after the one with id ``last_id``, oldest first (what a bridge has not seen yet)."""
    return session.scalars(select(SpcRebase).where(SpcRebase.id > last_id).order_by(SpcRebase.id))
