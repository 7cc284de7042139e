"""Throwaway PostgreSQL databases on an existing server (the tests' own, dropped afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from diffqc.infra.errors import InfraError

LOCAL_SERVER_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = "apt-get install postgresql, or point DIFFQC_DATABASE_URL at a PostgreSQL server"


def server_url() -> str:
    """The server to create test databases on: DIFFQC_DATABASE_URL when it is PostgreSQL, else local."""
    configured = os.environ.get("DIFFQC_DATABASE_URL", "")
    return configured if configured.startswith("postgresql") else LOCAL_SERVER_URL


@contextmanager
def throwaway_database(admin_url: str | None = None) -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (closing its connections) at the end."""
    admin = make_url(admin_url or server_url()).set(drivername="postgresql+psycopg")
    name = f"diffqc_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        engine.dispose()
        raise InfraError(
            f"cannot create a test database on {admin.render_as_string(hide_password=True)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0]} ({INSTALL_HINT})"
        ) from exc
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
