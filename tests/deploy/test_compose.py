"""docker-compose.yml checked by a real compose implementation (Debian's docker-compose), and the
properties of the full stack: healthchecks, start order, topics, Triton's GPU and CPU profiles."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.helpers.env import require

from .manifests import COMPOSE_ENV, ROOT, compose_binary, compose_config

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


def test_a_missing_mes_endpoint_is_named(binary):
    env = {k: v for k, v in os.environ.items() if k != "DIFFQC_BRIDGE_MES_WEBHOOK_URL"}
    result = compose_config(binary, env, quiet=True)
    assert result.returncode != 0
    assert "set DIFFQC_BRIDGE_MES_WEBHOOK_URL to the MES endpoint" in result.stderr


def test_the_full_stack_is_there(config):
    assert set(config["services"]) == {*PIPELINE, *BACKING, "kafka-init", "triton-gpu", "triton-cpu"}
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
