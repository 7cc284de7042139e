"""The environment contract: every DIFFQC_* variable that docker-compose.yml, the chart or an image
sets is a setting diffqc/settings.py knows, each container's environment loads as valid settings,
and every setting without a safe default in a container is set for each service that needs it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from diffqc.security.api_keys import BootstrapKey, Role, hash_key, new_key
from diffqc.settings import ENV_PREFIX, Settings, _Group, _variable_name, load_settings
from tests.helpers.env import require

from .manifests import (
    CI_VALUES,
    COMPOSE_ENV,
    ROOT,
    ContainerEnv,
    by_kind,
    chart_env,
    component,
    compose_binary,
    compose_config,
    dockerfile_env,
    documents,
    load_values,
    render,
)

# The settings groups each service's process reads (its __main__, its adapter and the library
# code it runs). test_groups_cover_what_the_services_read keeps this in step with services/.
# Every service runs a gRPC server or client (grpc: its transport security); scoring and the bridge
# sign the links in alerts with the gateway's public URL and link secret (a group's fields by prefix);
# blob_root and blobs: the blob store (diffqc.store.blobs.make_blob_store).
SERVICE_GROUPS = {
    "ingestion": {"kafka", "database", "service", "grpc", "ingestion", "blob_root", "blobs"},
    "preprocessing": {"kafka", "database", "service", "grpc", "ingestion", "blob_root", "blobs"},  # its image limits
    # inference reads the registry's production version
    "inference": {"kafka", "triton", "database", "service", "grpc", "blob_root", "blobs"},
    "scoring": {
        "kafka",
        "database",
        "influx",
        "registry",
        "service",
        "grpc",
        "scoring",
        "gateway_public_url",
        "gateway_link",
        "blob_root",
        "blobs",
    },
    "bridge": {
        "kafka",
        "database",
        "registry",
        "bridge",
        "spc",
        "drift",
        "service",
        "grpc",
        "gateway_public_url",
        "gateway_link",
    },
    "gateway": {"database", "gateway", "spc", "drift", "service", "grpc", "blob_root", "blobs", "triton"},  # models
    "trainer": {"database", "service", "grpc", "ingestion", "blob_root", "blobs"},  # the frames' image limits
}
# Settings whose default cannot work in a container although it looks harmless.
UNSAFE_IN_CONTAINER = {"DIFFQC_INFLUX_TOKEN", "DIFFQC_BLOB_ROOT"}  # a dev token; a path off the shared volume
# Values for variables a Secret provides, so the environment can be loaded as the pod would.
_PREFIX, _KEY = new_key()
SECRET_STAND_INS = {
    "DIFFQC_DATABASE_URL": "postgresql+psycopg://diffqc:secret@db:5432/diffqc",
    "DIFFQC_GATEWAY_API_KEYS": json.dumps([BootstrapKey(Role.OPERATOR, "line-1", _PREFIX, hash_key(_KEY)).entry()]),
}


def known_variables() -> dict[str, object]:
    """Every DIFFQC_* variable of the settings model -> its field (the rule of _variable_name)."""
    known = {}
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, _Group):
            known.update({_variable_name((name, sub)): sub_field for sub, sub_field in group.model_fields.items()})
        else:
            known[_variable_name((name,))] = field
    return known


def required_variables(service: str) -> set[str]:
    """Settings of the service's groups whose default only works on a developer's machine."""
    needed = set()
    for variable, field in known_variables().items():
        group = variable[len(ENV_PREFIX) :].lower()
        if not any(group == g or group.startswith(f"{g}_") for g in SERVICE_GROUPS[service]):
            continue
        default = str(field.default)
        local = "127.0.0.1" in default or "localhost" in default or default.startswith("sqlite")
        # "(required with SASL_*)" is conditional: test_transport_security_settings_come_together checks those.
        mandatory = field.default is None and re.search(r"\(required(?! with)", field.description or "")
        if local or mandatory or variable in UNSAFE_IN_CONTAINER:
            needed.add(variable)
    return needed


def compose_envs() -> list[tuple[str, ContainerEnv]]:
    binary = compose_binary()
    require(binary is not None, "needs docker-compose: apt-get install docker-compose")
    result = compose_config(binary, {**os.environ, **COMPOSE_ENV})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    return [
        (name, ContainerEnv(f"compose {name}", {k: str(v) for k, v in svc.get("environment", {}).items()}))
        for name, svc in services.items()
        if name in SERVICE_GROUPS
    ]


def chart_envs(values_file: Path) -> list[tuple[str, ContainerEnv]]:
    docs = documents(render(load_values(values_file)))
    return [
        (component(deployment), chart_env(docs, container, f"{values_file.name} {deployment['metadata']['name']}"))
        for deployment in by_kind(docs, "Deployment").values()
        if component(deployment) in SERVICE_GROUPS
        for container in deployment["spec"]["template"]["spec"]["containers"]
    ]


def all_envs() -> list[tuple[str, ContainerEnv]]:
    return compose_envs() + [pair for values in CI_VALUES for pair in chart_envs(values)]


IMAGE_ENV = {
    k: v for k, v in dockerfile_env(ROOT / "deploy" / "docker" / "Dockerfile").items() if k.startswith(ENV_PREFIX)
}


def test_the_contract_covers_both_deployments():
    envs = all_envs()
    assert {where.where.split()[0] for _, where in envs} >= {"compose", *(p.name for p in CI_VALUES)}
    assert {name for name, _ in envs} == set(SERVICE_GROUPS)


def test_every_variable_set_is_a_setting():
    known = known_variables()
    sources = [("the services image", IMAGE_ENV)] + [
        (env.where, {**env.values, **env.from_secrets}) for _, env in all_envs()
    ]
    for where, variables in sources:
        unknown = sorted(v for v in variables if v.startswith(ENV_PREFIX) and v not in known)
        assert unknown == [], f"{where} sets variables diffqc/settings.py does not know: {unknown}"


def test_the_chart_topics_job_sets_only_settings():
    known = known_variables()
    for values_file in CI_VALUES:
        docs = documents(render(load_values(values_file)))
        for job in by_kind(docs, "Job").values():
            env = chart_env(docs, job["spec"]["template"]["spec"]["containers"][0], job["metadata"]["name"])
            assert set(env.values) - set(known) == set()
            assert "DIFFQC_KAFKA_BOOTSTRAP_SERVERS" in env.values


@pytest.mark.parametrize("source", ["compose", *(p.name for p in CI_VALUES)])
def test_every_service_gets_every_setting_it_needs_and_they_load(source, monkeypatch):
    envs = compose_envs() if source == "compose" else chart_envs(ROOT / "charts" / "diffqc" / "ci" / source)
    for service, env in envs:
        # What the container sees: the image's ENV, then the deployment's.
        variables = {
            **IMAGE_ENV,
            **env.values,
            **{name: SECRET_STAND_INS.get(name, "from-a-secret") for name in env.from_secrets},
        }
        missing = sorted(required_variables(service) - set(variables))
        assert missing == [], f"{env.where}: {service} needs {missing}"
        for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()  # raises SettingsError naming any malformed variable
        assert settings.service.host == "0.0.0.0", env.where  # reachable by probes and peers
        if service == "gateway":
            assert settings.gateway.http_host == "0.0.0.0", env.where


def test_required_settings_follow_the_settings_model():
    # The rule finds the endpoints a container must be given, without a list to keep up to date.
    assert {
        "DIFFQC_KAFKA_BOOTSTRAP_SERVERS",
        "DIFFQC_TRITON_GRPC_URL",
        "DIFFQC_SERVICE_HOST",
        "DIFFQC_BLOB_ROOT",
    } <= required_variables("inference")
    assert {"DIFFQC_DATABASE_URL", "DIFFQC_INFLUX_URL", "DIFFQC_INFLUX_TOKEN"} <= required_variables("scoring")
    assert {"DIFFQC_BRIDGE_MES_WEBHOOK_URL", "DIFFQC_REGISTRY_URL"} <= required_variables("bridge")
    assert {"DIFFQC_GATEWAY_HTTP_HOST", "DIFFQC_GATEWAY_INGESTION_URL"} <= required_variables("gateway")
    assert "DIFFQC_TRITON_GRPC_URL" not in required_variables("scoring")


def test_groups_cover_what_the_services_read():
    for service, groups in SERVICE_GROUPS.items():
        source = "\n".join(p.read_text() for p in (ROOT / "services" / service).rglob("*.py"))
        read = set(re.findall(r"settings\.([a-z_]+)", source)) & set(Settings.model_fields)
        missing = sorted(g for g in read if not any(e == g or e.startswith(f"{g}_") for e in groups))
        assert missing == [], f"services/{service} reads settings groups {missing} not in SERVICE_GROUPS"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_chart_addresses_and_ports_agree_with_the_settings(values_file, monkeypatch):
    docs = documents(render(load_values(values_file)))
    services = by_kind(docs, "Service")
    ports = {name: {p["name"]: p["port"] for p in svc["spec"]["ports"]} for name, svc in services.items()}
    for deployment in by_kind(docs, "Deployment").values():
        name = component(deployment)
        if name not in SERVICE_GROUPS:
            continue
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = chart_env(docs, container, name)
        container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if name == "gateway":
            assert int(env.values["DIFFQC_GATEWAY_HTTP_PORT"]) == container_ports["http"]
            host, port = env.values["DIFFQC_GATEWAY_INGESTION_URL"].split(":")
            assert ports[host]["grpc"] == int(port)  # a Service of this release, on its gRPC port
        else:
            assert int(env.values["DIFFQC_SERVICE_GRPC_PORT"]) == container_ports["grpc"]
            assert int(env.values["DIFFQC_SERVICE_METRICS_PORT"]) == container_ports["metrics"]
        host, port = env.values["DIFFQC_TRITON_GRPC_URL"].split(":")
        assert ports[host]["grpc"] == int(port)
        # A secret the chart made itself must hold the key the pods read.
        made = by_kind(docs, "Secret")
        for secret, key in env.from_secrets.values():
            if secret in made:
                assert key in made[secret]["stringData"], (secret, key)
