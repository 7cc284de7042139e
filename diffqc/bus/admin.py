"""Topic provisioning and the broker check used at start-up."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from diffqc.bus.config import admin_config
from diffqc.runtime.dependencies import wait_for
from diffqc.settings import KafkaSettings, SettingsError


def wait_for_broker(kafka: KafkaSettings, timeout_s: float) -> None:
    """Bounded wait for the broker at start; first, librdkafka's own check of the client settings
    (TLS files it cannot parse, a key that does not match its certificate) as a SettingsError."""
    try:
        admin = AdminClient(admin_config(kafka))
    except KafkaException as exc:
        raise SettingsError(
            f"Kafka client settings (DIFFQC_KAFKA_*) refused by librdkafka: {exc.args[0].str()}"
        ) from None

    def check() -> None:
        admin.list_topics(timeout=min(2.0, timeout_s))

    wait_for("Kafka broker", kafka.bootstrap_servers, check, timeout_s)


def require_topics(kafka: KafkaSettings, topics: list[str]) -> None:
    """Raise naming the topics that do not exist (yet): for a service that must not create them."""
    admin = AdminClient(admin_config(kafka))
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [t for t in topics if t not in existing]
    if missing:
        raise RuntimeError(f"topic(s) {missing} do not exist; the provisioning step (provision-topics) creates them")


def ensure_topics(kafka: KafkaSettings, topics: list[str], partitions: int = 1) -> None:
    """Create the topics that do not exist yet; an existing topic is left as it is."""
    admin = AdminClient(admin_config(kafka))
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
    if not missing:
        return
    for future in admin.create_topics(missing, operation_timeout=10).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
