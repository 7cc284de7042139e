"""A dependency that is down at start gives a clear error after bounded retries, not a hang."""

from __future__ import annotations

import pytest

from diffqc.bus.admin import wait_for_broker
from diffqc.infra.ports import free_port
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import KafkaSettings
from diffqc.store.engine import make_engine, wait_for_database


@pytest.mark.timeout(30)
def test_dead_broker():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(DependencyUnavailable, match=rf"Kafka broker at {address} is unavailable after \d+ attempts"):
        wait_for_broker(KafkaSettings(bootstrap_servers=address), timeout_s=3)


@pytest.mark.timeout(30)
def test_dead_database():
    port = free_port()
    engine = make_engine(f"postgresql://diffqc@127.0.0.1:{port}/diffqc")
    with pytest.raises(DependencyUnavailable, match=rf"database at .*:{port}/diffqc is unavailable after \d+ attempts"):
        wait_for_database(engine, timeout_s=3)


def test_live_database_passes(postgres_url):
    wait_for_database(make_engine(postgres_url), timeout_s=5)
