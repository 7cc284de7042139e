"""Schema migrations (Alembic), run programmatically so no alembic.ini is needed at run time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from diffqc.store.models import Base

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


# pg_advisory_xact_lock key of the migrations (any fixed 64-bit number, "diffqc" in ASCII).
MIGRATION_LOCK = 0x646966667163


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run at every start (a no-op when current).

    On PostgreSQL the migration holds a transaction-scoped advisory lock: replicas that start together
    run it one after the other (the later ones find the schema current) instead of racing to create
    the same tables."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def pending_model_changes(engine: Engine) -> list:
    """Differences between the models and the migrated schema (empty when a migration is not missing)."""
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)
