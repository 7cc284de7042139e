"""confluent-kafka client configuration derived from the settings, in one place."""

from __future__ import annotations

from diffqc.security.tls import require_file
from diffqc.settings import KafkaSettings, SettingsError

_SSL_FILES = {  # librdkafka property -> settings field
    "ssl.ca.location": "ssl_ca_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
}


def _variable(field: str) -> str:
    return f"DIFFQC_KAFKA_{field.upper()}"


def security_config(kafka: KafkaSettings) -> dict:
    """The security properties every Kafka client gets (nothing for PLAINTEXT, the default).

    Checked here, naming the variable: SASL_* needs a user and a password, a key needs its certificate,
    the files must exist, and TLS or SASL settings with a protocol that would ignore them are an error
    rather than a silently plaintext connection. librdkafka then parses the files when a client is made.
    """
    protocol = kafka.security_protocol
    sasl, tls = protocol.startswith("SASL_"), protocol.endswith("SSL")
    used = {"sasl_username": sasl, "sasl_password": sasl}
    used |= {field: tls for field in [*_SSL_FILES.values(), "ssl_key_password"]}
    unused = [field for field, wanted in used.items() if not wanted and getattr(kafka, field) is not None]
    if unused:
        raise SettingsError(
            f"{', '.join(map(_variable, unused))} set, but DIFFQC_KAFKA_SECURITY_PROTOCOL is {protocol}, "
            "which does not use it: choose SSL, SASL_PLAINTEXT or SASL_SSL accordingly"
        )
    if protocol == "PLAINTEXT":
        return {}
    config: dict = {"security.protocol": protocol}
    if sasl:
        user, password = kafka.sasl_username, kafka.sasl_password
        if user is None or password is None:
            missing = [_variable(f) for f, value in [("sasl_username", user), ("sasl_password", password)] if not value]
            raise SettingsError(f"DIFFQC_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}")
        config |= {
            "sasl.mechanism": kafka.sasl_mechanism,
            "sasl.username": user,
            "sasl.password": password.get_secret_value(),
        }
    if tls:
        key_fields = [f for f in ("ssl_key_location", "ssl_key_password") if getattr(kafka, f) is not None]
        if kafka.ssl_certificate_location is None and key_fields:
            raise SettingsError(
                f"{' and '.join(map(_variable, key_fields))} set without {_variable('ssl_certificate_location')}, "
                "the client certificate of that key"
            )
        if kafka.ssl_certificate_location is not None and kafka.ssl_key_location is None:
            raise SettingsError(
                f"{_variable('ssl_certificate_location')} needs {_variable('ssl_key_location')}, its private key"
            )
        for prop, field in _SSL_FILES.items():
            path = getattr(kafka, field)
            if path is not None:
                config[prop] = str(require_file(path, _variable(field)))
        if kafka.ssl_key_password is not None:
            config["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return config


def producer_config(kafka: KafkaSettings, **overrides) -> dict:
    # Idempotent, acks=all: a retried send never duplicates or reorders within a partition.
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        **security_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        **overrides,
    }


def consumer_config(kafka: KafkaSettings, group: str, **overrides) -> dict:
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        **security_config(kafka),
        "group.id": f"{kafka.group_prefix}.{group}",
        # Offsets are committed by the consume loop after the side effects succeeded.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # A new group starts at the beginning: never skip frames produced before it joined.
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": max(kafka.session_timeout_ms // 6, 500),
        # librdkafka requires max.poll.interval.ms >= session.timeout.ms.
        "max.poll.interval.ms": max(kafka.max_poll_interval_ms, kafka.session_timeout_ms),
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        **overrides,
    }


def admin_config(kafka: KafkaSettings, **overrides) -> dict:
    return {"bootstrap.servers": kafka.bootstrap_servers, **security_config(kafka), **overrides}
