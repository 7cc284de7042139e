"""The soak's outage proxy in front of the real PostgreSQL: while it is down, open connections are reset (on
the server's side too, so no backend outlives an outage) and new ones refused, as when the server dies; once
it is up again, on the same port, the same engine works."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from benchmarks.outage_proxy import OutageProxy
from tests.helpers.gateway_stack import wait_until


def _other_backends(url) -> int:
    """Connections to the database besides the one asking, counted by the server itself."""
    direct = create_engine(url)
    try:
        with direct.connect() as conn:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(conn.execute(text(query)).scalar_one())
    finally:
        direct.dispose()


def test_postgres_behind_the_proxy_goes_down_and_comes_back(postgres_url):
    url = make_url(postgres_url)
    with OutageProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        engine = create_engine(url.set(port=proxy.port), pool_pre_ping=True, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
                assert _other_backends(url) == 1
                proxy.down()
                with pytest.raises(OperationalError):  # the open connection is reset
                    conn.execute(text("SELECT 1"))
            wait_until(lambda: _other_backends(url) == 0, 10, "the reset connection's backend to end")
            with pytest.raises(OperationalError, match="refused"):  # and a new one refused
                engine.connect()
            port = proxy.port
            proxy.up()
            assert proxy.port == port
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 2")).scalar() == 2
        finally:
            engine.dispose()
