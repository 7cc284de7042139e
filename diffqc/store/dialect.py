"""Idempotent writes need the dialect's own INSERT (ON CONFLICT ...); diffqc runs on PostgreSQL
in production and SQLite embedded, and both spell it the same way in SQLAlchemy."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.orm import Session


def dialect_insert(session: Session, table: Table):
    """An INSERT of ``table`` that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NotImplementedError(f"idempotent writes are implemented for PostgreSQL and SQLite, not {dialect}")
    return insert(table)
