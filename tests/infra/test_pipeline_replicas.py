"""LocalPipeline's replicas of the consumer stages: their names, and a port and a log each."""

from __future__ import annotations

import os
import signal

import pytest

from diffqc.bus.admin import ensure_topics
from diffqc.contracts.topics import ALL_TOPICS
from diffqc.infra.pipeline import LocalPipeline, replica_name, stage_of
from diffqc.infra.services import grpc_is_serving


def test_replicas_are_named_after_their_stage_and_the_first_keeps_the_plain_name(tmp_path):
    pipeline = LocalPipeline(tmp_path, tmp_path / "repo", replicas=2, mes_webhook_url="http://127.0.0.1:9/mes")
    assert pipeline.service_names == [
        "ingestion",
        "preprocessing",
        "preprocessing-2",
        "inference",
        "inference-2",
        "scoring",
        "scoring-2",
        "bridge",
        "bridge-2",
    ]
    assert [replica_name("inference", n) for n in (1, 2, 3)] == ["inference", "inference-2", "inference-3"]
    assert {stage_of(name) for name in pipeline.service_names} == {
        "ingestion",
        "preprocessing",
        "inference",
        "scoring",
        "bridge",
    }
    assert LocalPipeline(tmp_path, tmp_path / "repo").service_names == [
        "ingestion",
        "preprocessing",
        "inference",
        "scoring",
    ]


@pytest.mark.timeout(120)
def test_a_replica_runs_on_its_own_port_and_log_and_restarts_on_the_same_port(kafka_settings, postgres_url, tmp_path):
    ensure_topics(kafka_settings, list(ALL_TOPICS), 2)
    pipeline = LocalPipeline(tmp_path, tmp_path / "repo", database_url=postgres_url, replicas=2)
    pipeline.env = {  # the servers of the tests' stack, as start_servers would name them
        "DIFFQC_DATA_DIR": str(tmp_path),
        "DIFFQC_BLOB_ROOT": str(tmp_path / "blobs"),
        "DIFFQC_DATABASE_URL": postgres_url,
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DIFFQC_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    try:
        for name in ("preprocessing", "preprocessing-2"):
            pipeline.start_service(name)
        first, second = pipeline.processes["preprocessing"], pipeline.processes["preprocessing-2"]
        assert pipeline.ports["preprocessing"] != pipeline.ports["preprocessing-2"]
        assert second.name == "service preprocessing-2"
        assert second.argv[-1] == "services.preprocessing"
        assert first.log_path != second.log_path and second.log_path == tmp_path / "logs" / "preprocessing-2.log"
        assert all(grpc_is_serving(pipeline.address(name)) for name in ("preprocessing", "preprocessing-2"))

        port, victim = pipeline.ports["preprocessing-2"], pipeline.processes.pop("preprocessing-2")
        assert victim.pid is not None
        os.killpg(victim.pid, signal.SIGKILL)
        pipeline.start_service("preprocessing-2")  # as the chaos soak restarts a victim
        assert pipeline.ports["preprocessing-2"] == port and grpc_is_serving(pipeline.address("preprocessing-2"))
    finally:
        for name in list(pipeline.processes):
            pipeline.stop_service(name)
