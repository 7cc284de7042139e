"""confluent-kafka client configuration derived from the settings, in one place."""

from __future__ import annotations

from diffqc.settings import KafkaSettings


def producer_config(kafka: KafkaSettings, **overrides) -> dict:
    # Idempotent, acks=all: a retried send never duplicates or reorders within a partition.
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        **overrides,
    }


def consumer_config(kafka: KafkaSettings, group: str, **overrides) -> dict:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": f"{kafka.group_prefix}.{group}",
        # Offsets are committed by the consume loop after the side effects succeeded.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new group starts at the beginning: never skip frames produced before it joined.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(kafka.session_timeout_ms // 6, 500),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        **overrides,
    }


def admin_config(kafka: KafkaSettings) -> dict:
    return {"bootstrap.servers": kafka.bootstrap_servers}
