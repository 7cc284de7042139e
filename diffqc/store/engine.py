from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from diffqc.runtime.dependencies import wait_for


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(parsed)
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here, not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 3})


def wait_for_database(engine: Engine, timeout_s: float) -> None:
    def check() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    wait_for("database", engine.url.render_as_string(hide_password=True), check, timeout_s)
