"""Idempotent writes need the dialect's own INSERT (ON CONFLICT ...); diffqc runs on PostgreSQL
in production and SQLite embedded, and both spell it the same way in SQLAlchemy."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from diffqc.store.models import Base


def dialect_insert(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``model``'s table that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"idempotent writes are implemented for PostgreSQL and SQLite, not {dialect}")
