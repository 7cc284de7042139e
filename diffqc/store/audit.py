"""The audit log: who changed what, append-only and hash-chained.

Row ``n`` stores ``hash = sha256(prev_hash + canonical JSON of (id, at, actor, action, subject,
details))`` with ``prev_hash`` the hash of row ``n - 1`` (64 zeros for row 1), so changing, removing
or reordering any row breaks the chain from there on; ``verify_chain`` finds the first break. The
database refuses UPDATE, DELETE and TRUNCATE on the table (triggers of migration 0004), and there is
no API for them.

Writers call ``append`` inside their own write transaction (``db.session(engine, write=True)``), so
the audited change and its row commit together. On PostgreSQL the table is locked for the rest of
that transaction, so concurrent writers (gateway replicas, the bridge) chain one after the other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.store.models import AuditEntry

GENESIS = "0" * 64
VERIFY_BATCH = 1000


def canonical(entry: AuditEntry) -> str:
    """The row's content as the hash covers it: sorted keys, no whitespace, times in ISO 8601 UTC."""
    content = {
        "id": entry.id,
        "at": entry.at.astimezone(UTC).isoformat(),  # aware both ways: the column is UTCDateTime
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "details": entry.details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256((entry.prev_hash + canonical(entry)).encode()).hexdigest()


def append(
    session: Session, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Add one row after the newest (in the caller's transaction). ValueError if ``details`` is not plain JSON."""
    if session.get_bind().dialect.name == "postgresql":
        # EXCLUSIVE lets readers through and makes other appends wait for this transaction's end.
        session.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
    last = session.execute(select(AuditEntry.id, AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)).first()
    entry = AuditEntry(
        id=last.id + 1 if last else 1,
        at=clock.now(),
        actor=actor,
        action=action,
        subject=subject,
        details=dict(details or {}),
        prev_hash=last.hash if last else GENESIS,
    )
    try:
        entry.hash = entry_hash(entry)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit details of {action} {subject!r} are not plain JSON: {exc}") from None
    session.add(entry)
    session.flush()
    return entry


def record_line_stop(session: Session, line_id: str, reason: str, actor: str = "bridge", **details: Any) -> AuditEntry:
    """Audit a line stop the platform requested (the bridge, in the transaction that records the request)."""
    return append(session, actor, "line.stop", line_id, {"reason": reason, **details})


@dataclass(frozen=True)
class ChainBreak:
    """The first row where the chain does not hold, and why."""

    id: int
    reason: str


def verify_chain(session: Session) -> tuple[int, ChainBreak | None]:
    """``(rows checked, None)`` when every row is intact and linked; else the first break found."""
    expected_id, prev_hash, checked = 1, GENESIS, 0
    rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id).execution_options(yield_per=VERIFY_BATCH))
    for entry in rows:
        if entry.id != expected_id:
            return checked, ChainBreak(entry.id, f"rows {expected_id}..{entry.id - 1} are missing (deleted)")
        if entry.prev_hash != prev_hash:
            return checked, ChainBreak(entry.id, f"its prev_hash does not match the hash of row {entry.id - 1}")
        try:
            intact = entry_hash(entry) == entry.hash
        except (TypeError, ValueError):
            intact = False
        if not intact:
            return checked, ChainBreak(entry.id, "its content does not match its hash (changed after it was written)")
        expected_id, prev_hash, checked = entry.id + 1, entry.hash, checked + 1
    return checked, None
