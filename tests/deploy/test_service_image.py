"""The services image (deploy/docker): its entrypoint, healthcheck and topic provisioning, run for
real against a gRPC health server, an HTTP server and a Kafka-protocol broker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from diffqc.bus.admin import require_topics
from diffqc.contracts.topics import ALL_TOPICS
from diffqc.infra.ports import free_port
from diffqc.runtime.grpc_server import GrpcServer
from diffqc.settings import GrpcSettings, KafkaSettings
from tests.helpers.certs import make_pki

from .manifests import ROOT

DOCKER = ROOT / "deploy" / "docker"
IN_TRITON_IMAGE = {"trainer"}  # it needs torch: the Triton image runs it (deploy/triton/Dockerfile)
SERVICES = sorted({p.parent.name for p in (ROOT / "services").glob("*/__main__.py")} - IN_TRITON_IMAGE)


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIFFQC_")}
    return subprocess.run(args, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (DOCKER / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "COPY --from=build /opt/diffqc /opt/diffqc" in text
    user = [line for line in text.splitlines() if line.startswith("USER ")][-1]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert 'CMD ["python", "/opt/diffqc/deploy/healthcheck.py"]' in text
    assert "RUN pip install -c /src/constraints.txt '/src[s3]'\n" in text  # base + s3: no torch (test_dependencies)


def test_entrypoint_knows_every_service_and_refuses_others(tmp_path):
    # A stand-in python on PATH records what the entrypoint would exec.
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "python $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    for service in SERVICES:
        result = _run([str(DOCKER / "entrypoint.sh"), service, "--flag"], env)
        assert result.returncode == 0 and result.stdout.strip() == f"python -m services.{service} --flag"
    result = _run([str(DOCKER / "entrypoint.sh"), "provision-topics", "--partitions", "4"], env)
    assert result.stdout.strip() == "python /opt/diffqc/deploy/provision_topics.py --partitions 4"
    result = _run([str(DOCKER / "entrypoint.sh"), "scorer"], env)
    assert result.returncode == 64 and "unknown service: 'scorer'" in result.stderr


def _healthcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(DOCKER / "healthcheck.py"), *args], env)


def test_healthcheck_passes_on_a_serving_grpc_service_and_fails_otherwise():
    server = GrpcServer("probe-test", lambda _server: None, ["diffqc.v1.ProbeTest"], port=0)
    server.start()
    try:
        assert _healthcheck(env={"DIFFQC_SERVICE_GRPC_PORT": str(server.port)}).returncode == 0
        server.health.enter_graceful_shutdown()  # NOT_SERVING while draining
        draining = _healthcheck(env={"DIFFQC_SERVICE_GRPC_PORT": str(server.port)})
        assert draining.returncode == 1 and "did not answer healthy" in draining.stderr
    finally:
        server.stop(grace=0)
    assert _healthcheck(env={"DIFFQC_SERVICE_GRPC_PORT": str(free_port())}).returncode == 1
    bad = _healthcheck(env={"DIFFQC_SERVICE_GRPC_PORT": "not-a-port"})
    assert bad.returncode == 1 and "DIFFQC_SERVICE_GRPC_PORT" in bad.stderr


def test_healthcheck_speaks_mutual_tls_with_the_pods_certificate_as_the_services_name(tmp_path):
    # The chart's TLS probe: the pod's own certificate (server and client auth) against its own port.
    pki = make_pki(tmp_path)
    tls = GrpcSettings(
        tls_cert_file=pki.server_cert, tls_key_file=pki.server_key, tls_ca_file=pki.ca_cert, tls_client_auth=True
    )
    server = GrpcServer("probe-test", lambda _server: None, ["diffqc.v1.ProbeTest"], port=0, grpc_settings=tls)
    server.start()
    pod_env = {
        "DIFFQC_SERVICE_GRPC_PORT": str(server.port),
        "DIFFQC_GRPC_TLS_CERT_FILE": str(pki.server_cert),
        "DIFFQC_GRPC_TLS_KEY_FILE": str(pki.server_key),
        "DIFFQC_GRPC_TLS_CA_FILE": str(pki.ca_cert),
        "DIFFQC_GRPC_TLS_CLIENT_AUTH": "true",
    }
    try:
        assert _healthcheck("--server-name", "localhost", env=pod_env).returncode == 0
        # A name the certificate does not carry, plaintext, or a certificate of another CA: unhealthy.
        assert _healthcheck("--server-name", "diffqc-ingestion", env=pod_env).returncode == 1
        assert _healthcheck(env={"DIFFQC_SERVICE_GRPC_PORT": str(server.port)}).returncode == 1
        stranger = {
            **pod_env,
            "DIFFQC_GRPC_TLS_CERT_FILE": str(pki.other_client_cert),
            "DIFFQC_GRPC_TLS_KEY_FILE": str(pki.other_client_key),
        }
        assert _healthcheck("--server-name", "localhost", env=stranger).returncode == 1
    finally:
        server.stop(grace=0)
    missing = _healthcheck(env={**pod_env, "DIFFQC_GRPC_TLS_KEY_FILE": str(tmp_path / "absent.key")})
    assert missing.returncode == 1 and "DIFFQC_GRPC_TLS_KEY_FILE" in missing.stderr


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def http_health():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_healthcheck_http_mode_follows_the_status(http_health):
    url = f"http://127.0.0.1:{http_health.server_address[1]}/health"
    _Health.status = 200
    assert _healthcheck("--http", url).returncode == 0
    _Health.status = 503  # the gateway answers 503 while the database or ingestion is down
    assert _healthcheck("--http", url).returncode == 1


def test_provision_topics_creates_every_topic_and_refuses_too_few_partitions(own_broker):
    env = {"DIFFQC_KAFKA_BOOTSTRAP_SERVERS": own_broker}
    script = str(DOCKER / "provision_topics.py")
    first = _run([sys.executable, script, "--partitions", "3"], env)
    assert first.returncode == 0, first.stderr
    topics = AdminClient({"bootstrap.servers": own_broker}).list_topics(timeout=10).topics
    for topic in ALL_TOPICS:
        assert len(topics[topic].partitions) == 3
        assert len(topics[f"{topic}.dlq"].partitions) == 3
    # Re-running is harmless; asking for more partitions than the topics have is an error by name.
    assert _run([sys.executable, script, "--partitions", "2"], env).returncode == 0
    more = _run([sys.executable, script, "--partitions", "5"], env)
    assert more.returncode == 1
    assert "topic qc.frames.v1 has 3 partitions, fewer than the 5 required" in more.stderr


def test_a_service_that_must_not_create_topics_names_the_missing_one_until_provisioning_ran(own_broker):
    """Ingestion in a plant (DIFFQC_INGESTION_CREATE_TOPIC=false) waits for the provisioned topic instead
    of racing the topics Job with a replication factor of 1."""
    kafka = KafkaSettings(bootstrap_servers=own_broker)
    with pytest.raises(RuntimeError, match=r"topic\(s\) \['qc.frames.v1'\] do not exist; the provisioning step"):
        require_topics(kafka, ["qc.frames.v1"])
    script = str(DOCKER / "provision_topics.py")
    assert (
        _run([sys.executable, script, "--partitions", "1"], {"DIFFQC_KAFKA_BOOTSTRAP_SERVERS": own_broker}).returncode
        == 0
    )
    require_topics(kafka, ["qc.frames.v1"])


def test_provision_topics_refuses_more_in_sync_replicas_than_replicas():
    args = ["--partitions", "1", "--replication-factor", "1", "--min-insync-replicas", "2"]
    result = _run([sys.executable, str(DOCKER / "provision_topics.py"), *args], {})
    assert result.returncode == 2 and "--min-insync-replicas cannot exceed --replication-factor" in result.stderr


def test_provision_topics_names_an_unreachable_broker():
    env = {"DIFFQC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    result = _run([sys.executable, str(DOCKER / "provision_topics.py"), "--partitions", "1", "--timeout", "1"], env)
    assert result.returncode == 1 and "Kafka broker at 127.0.0.1:" in result.stderr


def test_services_image_paths_exist():
    # Every path the Dockerfile copies is in the repository (a renamed file breaks the build).
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert Path(DOCKER / "entrypoint.sh").stat().st_mode & 0o111
