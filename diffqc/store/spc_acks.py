"""Acknowledgements of SPC signals: who looked at a signal, what caused it, what was done about it.

A signal is named by its stable id (diffqc.spc.SpcSignal.signal_id), "{line}/{product}/{rule}/{sample_index}".
The id comes from a client, so it is parsed, never trusted: the rule must be a rule diffqc knows, the
index a canonical non-negative integer, and the line the one the caller acts on (line and product ids
may themselves hold "/", so the caller's line tells where the product begins). Each signal is
acknowledged once; a second acknowledgement is refused naming who made the first. Every
acknowledgement is audited in the caller's transaction (diffqc.store.audit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.settings import SpcRuleId
from diffqc.store import audit
from diffqc.store.dialect import dialect_insert
from diffqc.store.models import SpcAcknowledgement

MAX_SIGNAL_ID_LENGTH = 200  # line (64) + product (64) + rule + a BIGINT index fit; the column is VARCHAR(200)
MAX_ID_LENGTH = 64  # line and product ids, as ingestion accepts them
MAX_CAUSE_LENGTH = 500
MAX_CORRECTIVE_ACTION_LENGTH = 1000
MAX_ACTOR_LENGTH = 100  # an API key's name
MAX_LIST = 1000
# Every rule id a chart can be configured with (DIFFQC_SPC_RULES), so every rule a signal can name.
KNOWN_RULES = frozenset(get_args(SpcRuleId))
# Canonical decimal (no sign, no leading zero, so one signal has one id) within the BIGINT column.
SAMPLE_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # free text may have lines and tabs


class InvalidSignalId(ValueError):
    """The signal id is not "{line}/{product}/{rule}/{sample_index}" with a known rule and an integer index."""


class SignalNotOfLine(ValueError):
    """The signal id names another line than the one acted on."""


class InvalidAcknowledgement(ValueError):
    """The cause or corrective action is missing, too long or holds control characters."""


class AlreadyAcknowledged(Exception):
    """The signal was acknowledged before: by ``acknowledged_by`` at ``acknowledged_at``.

    Plain values, not the row: the caller's transaction rolls back on this error and expires its rows.
    """

    def __init__(self, existing: SpcAcknowledgement):
        self.signal_id = existing.signal_id
        self.acknowledged_by = existing.acknowledged_by
        self.acknowledged_at = existing.acknowledged_at
        at = self.acknowledged_at.isoformat(timespec="seconds")
        super().__init__(f"signal {self.signal_id!r} was already acknowledged by {self.acknowledged_by!r} at {at}")


@dataclass(frozen=True)
class SignalRef:
    line_id: str
    product_type: str
    rule: str
    sample_index: int

    @property
    def signal_id(self) -> str:
        return f"{self.line_id}/{self.product_type}/{self.rule}/{self.sample_index}"


def _id_part(what: str, value: str, signal_id: str) -> str:
    if not value.strip():
        raise InvalidSignalId(f"signal id {signal_id!r}: the {what} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidSignalId(f"signal id {signal_id!r}: the {what} is over {MAX_ID_LENGTH} characters")
    if CONTROL.search(value):
        raise InvalidSignalId(f"signal id {signal_id!r}: the {what} contains control characters")
    return value


def parse_signal_id(signal_id: str, line_id: str) -> SignalRef:
    """The parts of a signal id of line ``line_id``; InvalidSignalId or SignalNotOfLine naming the problem."""
    if len(signal_id) > MAX_SIGNAL_ID_LENGTH:
        raise InvalidSignalId(
            f"signal id {signal_id[:MAX_SIGNAL_ID_LENGTH]!r}... is {len(signal_id)} characters long, "
            f"over the limit of {MAX_SIGNAL_ID_LENGTH}"
        )
    parts = signal_id.rsplit("/", 2)
    if len(parts) != 3 or "/" not in parts[0]:
        raise InvalidSignalId(f"signal id {signal_id!r} is not <line>/<product type>/<rule>/<sample index>")
    head, rule, index = parts
    if rule not in KNOWN_RULES:
        raise InvalidSignalId(f"signal id {signal_id!r}: rule {rule!r} is not one of {', '.join(sorted(KNOWN_RULES))}")
    if not SAMPLE_INDEX.fullmatch(index):
        raise InvalidSignalId(f"signal id {signal_id!r}: sample index {index!r} is not a non-negative integer")
    _id_part("line", line_id, signal_id)
    if not head.startswith(line_id + "/"):
        raise SignalNotOfLine(f"signal {signal_id!r} is of line {head.split('/', 1)[0]!r}, not of line {line_id!r}")
    product = _id_part("product type", head[len(line_id) + 1 :], signal_id)
    return SignalRef(line_id, product, rule, int(index))


def _text(what: str, value: str, limit: int) -> str:
    value = value.strip()
    if not value:
        raise InvalidAcknowledgement(f"{what} is required")
    if len(value) > limit:
        raise InvalidAcknowledgement(f"{what} is {len(value)} characters long, over the limit of {limit}")
    if CONTROL_BUT_LINE_BREAKS.search(value):
        raise InvalidAcknowledgement(f"{what} contains control characters")
    return value


def acknowledge(
    session: Session,
    line_id: str,
    signal_id: str,
    cause: str,
    corrective_action: str,
    actor: str,
    audit_details: dict[str, Any] | None = None,
) -> SpcAcknowledgement:
    """Record ``actor``'s acknowledgement of a signal of ``line_id`` and audit it (in the caller's transaction).

    InvalidSignalId, SignalNotOfLine or InvalidAcknowledgement for bad input; AlreadyAcknowledged when the
    signal has an acknowledgement (also when another one commits first: the unique key decides).
    """
    ref = parse_signal_id(signal_id, line_id)
    cause = _text("cause", cause, MAX_CAUSE_LENGTH)
    corrective_action = _text("corrective_action", corrective_action, MAX_CORRECTIVE_ACTION_LENGTH)
    if not 0 < len(actor) <= MAX_ACTOR_LENGTH:
        raise ValueError(f"actor {actor[:MAX_ACTOR_LENGTH]!r} must be 1-{MAX_ACTOR_LENGTH} characters")
    insert = (
        dialect_insert(session, SpcAcknowledgement)
        .values(
            signal_id=ref.signal_id,
            line_id=ref.line_id,
            product_type=ref.product_type,
            rule=ref.rule,
            sample_index=ref.sample_index,
            cause=cause,
            corrective_action=corrective_action,
            acknowledged_by=actor,
            acknowledged_at=clock.now(),
        )
        .on_conflict_do_nothing(index_elements=["signal_id"])
        .returning(SpcAcknowledgement.id)
    )
    new_id = session.scalar(insert)
    if new_id is None:
        existing = by_signal(session, ref.signal_id)
        if existing is None:  # cannot happen: the conflict was on this signal's committed row
            raise RuntimeError(f"signal {ref.signal_id!r} conflicted with an acknowledgement that is not there")
        raise AlreadyAcknowledged(existing)
    details = {
        **(audit_details or {}),
        "line_id": ref.line_id,
        "product_type": ref.product_type,
        "rule": ref.rule,
        "sample_index": ref.sample_index,
        "cause": cause,
        "corrective_action": corrective_action,
    }
    audit.append(session, actor, "spc.acknowledge", ref.signal_id, details)
    row = session.get(SpcAcknowledgement, new_id)
    if row is None:
        raise RuntimeError(f"acknowledgement {new_id} is missing right after it was written")
    return row


def by_signal(session: Session, signal_id: str) -> SpcAcknowledgement | None:
    return session.scalar(select(SpcAcknowledgement).where(SpcAcknowledgement.signal_id == signal_id))


def list_by_line(
    session: Session, line_id: str, product_type: str | None = None, limit: int = MAX_LIST
) -> list[SpcAcknowledgement]:
    """The line's acknowledgements (of one product type, or all), newest first, at most ``limit``."""
    query = select(SpcAcknowledgement).where(SpcAcknowledgement.line_id == line_id)
    if product_type is not None:
        query = query.where(SpcAcknowledgement.product_type == product_type)
    query = query.order_by(SpcAcknowledgement.acknowledged_at.desc(), SpcAcknowledgement.id.desc())
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIST)))))
