"""docker-compose.yml checked by a real compose implementation (Debian's docker-compose), and the
properties of the full stack: healthchecks, start order, topics, Triton's GPU and CPU profiles, and
its defaults: no secret without the .env deploy/compose_env.py writes, ports on loopback."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import pytest
import yaml

from tests.helpers.env import require

from .manifests import (
    COMPOSE_ENV,
    COMPOSE_ENV_SCRIPT,
    COMPOSE_FILE,
    ROOT,
    compose_binary,
    compose_config,
    compose_env_module,
    read_env_file,
)

PIPELINE = ["ingestion", "preprocessing", "inference", "scoring", "bridge", "gateway"]
BACKING = ["kafka", "schema-registry", "postgres", "influxdb", "grafana"]


@pytest.fixture(scope="module")
def binary() -> str:
    found = compose_binary()
    require(found is not None, "needs docker-compose: apt-get install docker-compose")
    return found


@pytest.fixture(scope="module")
def config(binary) -> dict:
    result = compose_config(binary, {**os.environ, **COMPOSE_ENV})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_check_passes(binary):
    result = compose_config(binary, {**os.environ, **COMPOSE_ENV}, quiet=True)
    assert result.returncode == 0, result.stderr


def _env_without(name: str) -> dict[str, str]:
    return {k: v for k, v in {**os.environ, **COMPOSE_ENV}.items() if k != name}


def test_a_missing_mes_endpoint_is_named(binary):
    result = compose_config(binary, _env_without("DIFFQC_BRIDGE_MES_WEBHOOK_URL"), quiet=True)
    assert result.returncode != 0
    assert "set DIFFQC_BRIDGE_MES_WEBHOOK_URL to the MES endpoint" in result.stderr


SECRETS = [*compose_env_module().GENERATED, "DIFFQC_GATEWAY_API_KEYS"]


@pytest.mark.parametrize("name", SECRETS)
def test_compose_refuses_to_start_without_each_secret_and_says_how_to_make_it(binary, name):
    result = compose_config(binary, _env_without(name), quiet=True)
    assert result.returncode != 0
    assert f"{name} is not set, run python3 deploy/compose_env.py" in result.stderr


def test_no_secret_has_a_default_or_a_literal_value_in_the_compose_file():
    text = COMPOSE_FILE.read_text()
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET|API_KEY")
    # Every variable a secret comes from is mandatory (${NAME:?...}), never ${NAME:-default} or ${NAME}.
    for name, operator in re.findall(r"\$\{([A-Z0-9_]+)(:\?|:-|-|\?|)", text):
        if secretish.search(name):
            assert operator == ":?", f"${{{name}}} must be ${{{name}:?...}} (no default)"
    # No environment entry whose name says secret holds a literal.
    for service, svc in yaml.safe_load(text)["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if secretish.search(key) or key == "DIFFQC_DATABASE_URL":
                assert "${" in str(value), (service, key)


def test_resolved_secrets_are_the_generated_ones(config):
    services = config["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == COMPOSE_ENV["POSTGRES_PASSWORD"]
    url = services["scoring"]["environment"]["DIFFQC_DATABASE_URL"]
    assert f"diffqc:{COMPOSE_ENV['POSTGRES_PASSWORD']}@postgres" in url
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == COMPOSE_ENV["GRAFANA_ADMIN_PASSWORD"]
    assert services["gateway"]["environment"]["DIFFQC_GATEWAY_API_KEYS"] == "[]"  # no key until one is set
    for name in ("gateway", "scoring", "bridge"):
        env = services[name]["environment"]
        assert env["DIFFQC_GATEWAY_LINK_SECRET"] == COMPOSE_ENV["DIFFQC_GATEWAY_LINK_SECRET"], name


def _published(config: dict) -> dict[str, list[str]]:
    return {name: svc["ports"] for name, svc in config["services"].items() if svc.get("ports")}


def test_published_ports_listen_on_loopback_unless_configured(binary, config):
    published = _published(config)
    assert set(published) == {"ingestion", "gateway", "grafana"}
    for name, ports in published.items():
        for port in ports:  # compose 1.29 prints host_ip:published:target/protocol
            assert str(port).startswith("127.0.0.1:"), (name, port)
    opened = compose_config(binary, {**os.environ, **COMPOSE_ENV, "DIFFQC_BIND": "10.20.0.5"})
    assert opened.returncode == 0, opened.stderr
    assert _published(yaml.safe_load(opened.stdout))["ingestion"] == ["10.20.0.5:50051:50051/tcp"]


def test_diffqc_containers_run_read_only_without_capabilities(config):
    for name, svc in config["services"].items():
        if svc.get("image", "").split(":")[0] in ("diffqc", "diffqc-triton"):
            assert svc["read_only"] is True and svc["tmpfs"] == ["/tmp"], name
            assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"], name


def test_compose_env_script_writes_private_random_secrets_and_keeps_existing_ones(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DIFFQC_BRIDGE_MES_WEBHOOK_URL=https://mes.example/alerts\nPOSTGRES_PASSWORD=kept")
    run = [sys.executable, str(COMPOSE_ENV_SCRIPT), "--file", str(env_file)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    assert "POSTGRES_PASSWORD" not in first.stdout  # names what it added, never a value
    values = read_env_file(env_file)
    assert values["POSTGRES_PASSWORD"] == "kept" and values["DIFFQC_BRIDGE_MES_WEBHOOK_URL"].startswith("https://")
    generated = [values[name] for name in SECRETS if name not in ("POSTGRES_PASSWORD", "DIFFQC_GATEWAY_API_KEYS")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in generated) and len(set(generated)) == len(generated)
    again = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and "nothing missing" in again.stdout
    assert read_env_file(env_file) == values  # a rerun never changes a password a volume was set up with
    fresh = tmp_path / "fresh.env"
    subprocess.run([*run[:-1], str(fresh)], check=True, capture_output=True, timeout=30)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    assert read_env_file(fresh)["POSTGRES_PASSWORD"] != COMPOSE_ENV["POSTGRES_PASSWORD"]


def test_compose_env_script_names_a_file_it_cannot_write(tmp_path):
    result = subprocess.run(
        [sys.executable, str(COMPOSE_ENV_SCRIPT), "--file", str(tmp_path / "missing-dir" / ".env")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and "cannot write" in result.stderr and "missing-dir" in result.stderr


def test_the_full_stack_is_there(config):
    profiles = {"triton-gpu", "triton-cpu", "minio"}  # Triton's gpu or cpu; MinIO for DIFFQC_BLOBS_BACKEND=s3
    assert set(config["services"]) == {*PIPELINE, *BACKING, "kafka-init", "trainer", *profiles}
    images = {name: svc.get("image", "") for name, svc in config["services"].items()}
    assert images["kafka"].startswith("apache/kafka:")  # KRaft, no ZooKeeper
    assert "controller" in config["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert images["postgres"] == "postgres:16" and images["influxdb"] == "influxdb:2.7"
    influx = config["services"]["influxdb"]["environment"]
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert {"DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"} <= set(
        influx
    )
    # The services use the token InfluxDB was initialised with, and its org and bucket.
    scoring = config["services"]["scoring"]["environment"]
    assert scoring["DIFFQC_INFLUX_TOKEN"] == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert (scoring["DIFFQC_INFLUX_ORG"], scoring["DIFFQC_INFLUX_BUCKET"]) == (
        influx["DOCKER_INFLUXDB_INIT_ORG"],
        influx["DOCKER_INFLUXDB_INIT_BUCKET"],
    )


def test_every_long_running_service_has_a_healthcheck_and_waits_for_healthy_dependencies(config):
    services = config["services"]
    for name, svc in services.items():
        if name == "kafka-init":
            continue
        assert svc["healthcheck"]["test"], name
        for dependency, condition in svc.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency == "kafka-init" else "service_healthy"
            assert condition["condition"] == expected, (name, dependency)
            assert dependency in services
    for name in PIPELINE:
        assert {"kafka-init", "postgres"} <= set(services[name]["depends_on"]), name
    assert services["gateway"]["healthcheck"]["test"][-1].endswith("/health")


def test_topics_are_provisioned_before_the_services_start(config):
    init = config["services"]["kafka-init"]
    assert init["command"][:2] == ["provision-topics", "--partitions"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Auto-creation is off, so no topic appears with the broker's default single partition.
    assert config["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert config["services"]["ingestion"]["environment"]["DIFFQC_INGESTION_TOPIC_PARTITIONS"] == init["command"][2]


def test_triton_has_a_gpu_profile_with_a_reservation_and_a_cpu_profile(config):
    gpu, cpu = config["services"]["triton-gpu"], config["services"]["triton-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert gpu["environment"]["TRITON_MODEL_CONFIG"] == "gpu"
    assert "deploy" not in cpu and cpu["environment"]["TRITON_MODEL_CONFIG"] == ""
    # Either one answers as "triton", the address the services are given.
    for triton in (gpu, cpu):
        assert "triton" in triton["networks"]["default"]["aliases"]
    assert config["services"]["inference"]["environment"]["DIFFQC_TRITON_GRPC_URL"] == "triton:8001"


def test_state_lives_in_named_volumes(config):
    assert {"kafka-data", "postgres-data", "influxdb-data", "grafana-data", "blobs"} <= set(config["volumes"])
    for name in ["ingestion", "preprocessing", "inference", "scoring", "gateway"]:
        assert ("blobs", "/var/lib/diffqc/blobs") in _mounts(config["services"][name]), name
    # The trainer reads the frames and stages new model versions where Triton serves them from.
    assert ("blobs", "/var/lib/diffqc/blobs") in _mounts(config["services"]["trainer"])
    for name in ["trainer", "triton-gpu", "triton-cpu"]:
        assert ("models", "/models") in _mounts(config["services"][name]), name


def test_grafana_is_provisioned_from_the_repository(config):
    sources = {target: source for source, target in _mounts(config["services"]["grafana"])}
    assert sources["/etc/grafana/provisioning"] == str(ROOT / "deploy" / "grafana" / "provisioning")
    assert sources["/var/lib/grafana/dashboards"] == str(ROOT / "deploy" / "grafana" / "dashboards")


def _mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume; compose 1.29 prints them as source:target:mode."""
    return [
        tuple(m.split(":")[:2]) if isinstance(m, str) else (m["source"], m["target"])
        for m in service.get("volumes", [])
    ]


def test_grafana_dashboard_provider_reads_the_mounted_dashboards(config):
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/diffqc.yaml").read_text())
    mounted = {target for _, target in _mounts(config["services"]["grafana"])}
    assert [p["options"]["path"] for p in provider["providers"]] == ["/var/lib/grafana/dashboards"]
    assert "/var/lib/grafana/dashboards" in mounted
    # The datasource can read the token InfluxDB was initialised with.
    grafana, influx = config["services"]["grafana"]["environment"], config["services"]["influxdb"]["environment"]
    assert grafana["INFLUX_TOKEN"] == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
