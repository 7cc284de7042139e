"""The deployment as the tests see it: the chart rendered by Helm's own SDK, compose resolved by a
real compose implementation, and the DIFFQC_* environment each container would get."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "diffqc"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = "/usr/bin/docker-compose"
RELEASE, NAMESPACE = "diffqc", "qc"
COMPOSE_ENV_SCRIPT = ROOT / "deploy" / "compose_env.py"


def compose_env_module():
    spec = importlib.util.spec_from_file_location("compose_env", COMPOSE_ENV_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def generated_compose_env() -> dict[str, str]:
    """The secrets deploy/compose_env.py writes for a user, made in a throwaway file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ".env"
        compose_env_module().complete(path)
        return read_env_file(path)


# What a user's .env holds, plus the MES endpoint compose refuses to start the bridge without.
COMPOSE_ENV = {**generated_compose_env(), "DIFFQC_BRIDGE_MES_WEBHOOK_URL": "http://mes.test/alerts"}


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def render(values: dict) -> dict[str, str]:
    """Template path -> rendered text (helm template, offline)."""
    from helm_python import Chart

    return Chart.load(CHART).render(values, name=RELEASE, namespace=NAMESPACE)


def documents(rendered: dict[str, str]) -> list[dict]:
    return [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def compose_binary() -> str | None:
    return DOCKER_COMPOSE if Path(DOCKER_COMPOSE).exists() else shutil.which("docker-compose")


def compose_config(binary: str, env: dict[str, str], quiet: bool = False) -> subprocess.CompletedProcess:
    args = [binary, "-f", str(COMPOSE_FILE), "--project-directory", str(ROOT), "config"]
    return subprocess.run(args + (["-q"] if quiet else []), env=env, capture_output=True, text=True, timeout=60)


@dataclass
class ContainerEnv:
    """The DIFFQC_* variables one container gets, and which of them come from Secrets."""

    where: str
    values: dict[str, str] = field(default_factory=dict)
    from_secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # variable -> (secret, key)


def chart_env(docs: list[dict], container: dict, where: str) -> ContainerEnv:
    """Resolve envFrom ConfigMaps and env entries the way the kubelet would."""
    configmaps = by_kind(docs, "ConfigMap")
    env = ContainerEnv(where)
    for source in container.get("envFrom", []):
        env.values.update(configmaps[source["configMapRef"]["name"]]["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env.values[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env.from_secrets[entry["name"]] = (ref["name"], ref["key"])
    return env


def dockerfile_env(path: Path) -> dict[str, str]:
    """The ENV variables a Dockerfile bakes into its image (``ENV A=1 \\ B=2`` form)."""
    text = path.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                name, _, value = pair.partition("=")
                found[name] = value
    return found
