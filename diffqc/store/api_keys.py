"""Gateway API keys in the database: create (the key is returned once), look up, list, revoke.

Every change is audited in the same transaction (diffqc.store.audit); the key itself is never
stored, only its lookup prefix and salted hash (diffqc.security.api_keys).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from diffqc.core import clock
from diffqc.security.api_keys import NAME, Role, hash_key, new_key
from diffqc.store import audit
from diffqc.store.models import ApiKey


class KeyNotFound(LookupError):
    """No API key has this id."""


def create_key(session: Session, name: str, role: Role, actor: str) -> tuple[ApiKey, str]:
    """A new key row and the key itself (shown to its owner once, stored nowhere)."""
    if not NAME.fullmatch(name):
        raise ValueError(f"key name {name[:120]!r} must be 1-100 characters without ':' or control characters")
    while True:
        prefix, key = new_key()
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            break  # one in 4 billion: another key already has this prefix
    row = ApiKey(
        id=uuid.uuid4().hex, name=name, role=role, prefix=prefix, key_hash=hash_key(key), created_at=clock.now()
    )
    session.add(row)
    session.flush()
    audit.append(session, actor, "key.create", row.id, {"name": name, "role": role.value, "prefix": prefix})
    return row, key


def by_prefix(session: Session, prefix: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


def by_id(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, revoked ones too, oldest first."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def active_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))) or 0


def revoke_key(session: Session, key_id: str, actor: str) -> ApiKey:
    """Revoke the key (a no-op for one already revoked); KeyNotFound for an unknown id."""
    row = session.get(ApiKey, key_id, with_for_update=True)
    if row is None:
        raise KeyNotFound(f"no API key with id {key_id[:100]!r}")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        session.flush()
        audit.append(session, actor, "key.revoke", row.id, {"name": row.name, "role": row.role.value})
    return row
