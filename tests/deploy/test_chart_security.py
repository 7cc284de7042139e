"""charts/diffqc's defaults on a plant network, on the manifests Helm renders: every pod non-root and
read-only, NetworkPolicies that admit only each component's callers, no credential in any values
file, and transport security (Kafka SASL_SSL, gRPC mutual TLS, registry auth) wired from Secrets."""

from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath

import pytest
import yaml

from .manifests import CHART, CI_VALUES, ROOT, by_kind, chart_env, component, documents, load_values, render

PLANT = CHART / "ci" / "plant-gpu-values.yaml"
SINGLE = CHART / "ci" / "single-line-cpu-values.yaml"
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
KAFKA_USERS = {"ingestion", "preprocessing", "inference", "scoring", "bridge", "topics"}


def _pods_of(values: dict) -> list[tuple[str, dict]]:
    docs = documents(render(values))
    workloads = [*by_kind(docs, "Deployment").values(), *by_kind(docs, "Job").values()]
    pods = [(w["metadata"]["name"], w["spec"]["template"]["spec"]) for w in workloads]
    crons = by_kind(docs, "CronJob").values()  # the retention job
    return pods + [(c["metadata"]["name"], c["spec"]["jobTemplate"]["spec"]["template"]["spec"]) for c in crons]


def _with_model_init_container() -> dict:
    values = load_values(SINGLE)
    values["triton"]["modelRepository"] = {"source": "initContainer", "initContainer": {"image": "models:1"}}
    return values


@pytest.fixture(scope="module")
def plant_docs():
    return documents(render(load_values(PLANT)))


@pytest.fixture(scope="module")
def single_docs():
    return documents(render(load_values(SINGLE)))


# ---- security contexts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [*(load_values(p) for p in CI_VALUES), _with_model_init_container()],
    ids=[*(p.name for p in CI_VALUES), "model-init-container"],
)
def test_every_pod_and_container_runs_non_root_read_only_without_privileges(values):
    pods = _pods_of(values)
    assert len(pods) >= 8  # six services, Triton, the topics Job
    for name, pod in pods:
        context = pod["securityContext"]
        uid = context["runAsUser"]
        assert context["runAsNonRoot"] is True and uid > 0 and context["runAsGroup"] == uid, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        for container in [*pod["containers"], *pod.get("initContainers", [])]:
            where = f"{name}/{container['name']}"
            c = container["securityContext"]
            assert c["runAsNonRoot"] is True and c["runAsUser"] == uid, where
            assert c["readOnlyRootFilesystem"] is True and c["allowPrivilegeEscalation"] is False, where
            assert c["privileged"] is False and c["capabilities"] == {"drop": ["ALL"]}, where
            assert c["seccompProfile"] == {"type": "RuntimeDefault"}, where
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            # A read-only root: whatever the process writes lands on an emptyDir or a volume.
            if container["name"] != "model-repository":
                assert mounts["/tmp"]["name"] in writable, where
            for mount in mounts.values():
                assert mount["name"] in writable or mount.get("readOnly") is True, (where, mount)


def test_the_services_run_as_the_images_user():
    dockerfile = (ROOT / "deploy/docker/Dockerfile").read_text()
    (user,) = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    uid = load_values(CHART / "values.yaml")["serviceDefaults"]["runAsUser"]
    assert user == f"{uid}:{uid}"


# ---- NetworkPolicies ---------------------------------------------------------------------------


def _policies(docs: list[dict]) -> dict[str, dict]:
    return {
        ("default-deny" if name.endswith("-default-deny") else component(p)): p["spec"]
        for name, p in by_kind(docs, "NetworkPolicy").items()
    }


def _sources(spec: dict) -> dict[str, list[dict]]:
    """Port -> the peers admitted to it."""
    sources: dict[str, list[dict]] = {}
    for rule in spec["ingress"]:
        for port in rule["ports"]:
            sources.setdefault(str(port["port"]), []).extend(rule["from"])
    return sources


def _pods(name: str) -> dict:
    labels = {"app.kubernetes.io/name": "diffqc", "app.kubernetes.io/instance": "diffqc"}
    return {"podSelector": {"matchLabels": {**labels, "app.kubernetes.io/component": name}}}


def test_the_namespace_is_denied_by_default(plant_docs):
    assert _policies(plant_docs)["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    values = load_values(PLANT)
    values["networkPolicy"]["denyWholeNamespace"] = False  # a namespace shared with other workloads
    spec = _policies(documents(render(values)))["default-deny"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": "diffqc"}}
    assert "ingress" not in spec and "egress" not in spec


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_no_policy_admits_everything(values_file):
    policies = _policies(documents(render(load_values(values_file))))
    trainer = ["trainer"] if load_values(values_file).get("trainer", {}).get("enabled") else []
    services = load_values(CHART / "values.yaml")["services"]
    assert set(policies) == {"default-deny", "topics", "triton", "retention", *services, *trainer}
    for name, spec in policies.items():
        assert spec["policyTypes"] == ["Ingress", "Egress"], name
        for rule in spec.get("ingress", []):
            assert rule.get("ports") and rule.get("from"), (name, rule)  # no rule open to every source or port
            for peer in rule["from"]:
                assert peer and all(peer.values()), (name, peer)  # {} or an empty selector admits all
                assert peer.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0"), (name, peer)
        for rule in spec.get("egress", []):
            assert rule.get("ports"), (name, rule)  # never every port to every address


def test_each_component_admits_only_its_callers(plant_docs):
    plant = load_values(PLANT)["networkPolicy"]
    controller = plant["ingressController"]
    expected = {
        "ingestion": {"grpc": [_pods("gateway"), *plant["ingestionFrom"]], "metrics": [MONITORING]},
        "gateway": {"http": [controller]},  # one peer: those pods in that namespace
        # These gRPC APIs have no caller in the pipeline (it runs over Kafka): metrics only.
        "preprocessing": {"metrics": [MONITORING]},
        "inference": {"metrics": [MONITORING]},
        "scoring": {"metrics": [MONITORING]},
        "bridge": {"metrics": [MONITORING]},
        "triton": {"grpc": [_pods("inference"), _pods("gateway")], "metrics": [MONITORING]},  # HTTP: on loopback
        "topics": {},
    }
    policies = _policies(plant_docs)
    assert {name: _sources(policies[name]) for name in expected} == expected


def test_without_line_pc_networks_only_the_gateway_reaches_ingestion(single_docs):
    assert _sources(_policies(single_docs)["ingestion"])["grpc"] == [_pods("gateway")]


def _egress_ports(spec: dict) -> set[int]:
    return {port["port"] for rule in spec["egress"] for port in rule["ports"]}


def test_each_component_reaches_only_what_it_uses(plant_docs):
    # plant: Kafka :9093, Postgres :5432, InfluxDB https :8086, registry https :8081, MES https :443.
    expected = {
        "ingestion": {53, 9093, 5432},
        "preprocessing": {53, 9093, 5432},
        "inference": {53, 9093, 8001, 5432},  # the model registry: which version is in production
        "scoring": {53, 9093, 5432, 8086, 8081},
        "bridge": {53, 9093, 5432, 8081, 443},
        "gateway": {53, 5432, 50051, 8001},  # Triton: model lifecycle, reconstructions for the review page
        "topics": {53, 9093},
        "triton": set(),
    }
    policies = _policies(plant_docs)
    assert {name: _egress_ports(policies[name]) for name in expected} == expected
    plant = load_values(PLANT)["networkPolicy"]["egress"]
    for name, spec in policies.items():
        for rule in spec.get("egress", []):
            ports = {p["port"] for p in rule["ports"]}
            if ports == {9093}:
                assert rule["to"] == plant["kafka"]["to"], name  # the brokers' network from the values
            if ports == {8001}:
                assert name in ("inference", "gateway") and rule["to"] == [_pods("triton")], name
            if ports == {50051}:
                assert (name, rule["to"]) == ("gateway", [_pods("ingestion")])


def test_an_empty_peer_is_refused_because_it_would_admit_everything():
    values = load_values(PLANT)
    values["networkPolicy"]["ingestionFrom"] = [{}]
    with pytest.raises(Exception, match="/networkPolicy/ingestionFrom/0"):
        render(values)


# ---- no credentials in values ------------------------------------------------------------------


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, str(index)))
    else:
        yield path, node


SECRET_WORDS = re.compile(r"password|token|secret|apikey|credential|username", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]*@")


@pytest.mark.parametrize("values_file", [CHART / "values.yaml", *CI_VALUES], ids=lambda p: p.name)
def test_values_hold_secret_names_never_secret_values(values_file):
    values = load_values(values_file)
    for path, value in _leaves(values):
        if SECRET_WORDS.search("/".join(path)):  # only the name of a Secret, or of a key in it
            assert path[-1] == "existingSecret" or path[-1].endswith("Key"), "/".join(path)
        assert not URL_WITH_PASSWORD.search(str(value)), "/".join(path)
    if values_file.name == "values.yaml":  # no default Secret name: each one is the plant's to give
        names = [value for path, value in _leaves(values) if path[-1] == "existingSecret"]
        assert names and set(names) == {""}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_the_chart_makes_no_secret(values_file):
    assert by_kind(documents(render(load_values(values_file))), "Secret") == {}
    assert not [p for p in (CHART / "templates").iterdir() if "kind: Secret" in p.read_text()]


# ---- transport security ------------------------------------------------------------------------


def _file_source(pod: dict, container: dict, path: str) -> tuple[str, str]:
    """(Secret name, key) a file path in the container comes from."""
    file = PurePosixPath(path)
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == file.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume["secret"]["secretName"], file.name


def _containers(docs: list[dict]) -> list[tuple[str, dict, dict]]:
    workloads = [*by_kind(docs, "Deployment").values(), *by_kind(docs, "Job").values()]
    return [
        (component(w) if w["kind"] == "Deployment" else "topics", w["spec"]["template"]["spec"], c)
        for w in workloads
        for c in w["spec"]["template"]["spec"]["containers"]
    ]


def test_plant_values_turn_transport_security_on(plant_docs):
    seen = set()
    for name, pod, container in _containers(plant_docs):
        if name == "triton":  # plaintext gRPC, reachable only from inference (policy above)
            assert not [e for e in container.get("env", []) if "TLS" in e["name"]]
            continue
        seen.add(name)
        env = chart_env(plant_docs, container, name)
        if name in KAFKA_USERS:
            assert env.values["DIFFQC_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
            assert env.values["DIFFQC_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
            assert env.from_secrets["DIFFQC_KAFKA_SASL_USERNAME"] == ("diffqc-kafka-user", "username"), name
            assert env.from_secrets["DIFFQC_KAFKA_SASL_PASSWORD"] == ("diffqc-kafka-user", "password"), name
            ca = env.values["DIFFQC_KAFKA_SSL_CA_LOCATION"]
            assert _file_source(pod, container, ca) == ("diffqc-kafka-ca", "ca.crt"), name
        else:
            assert not [v for v in {**env.values, **env.from_secrets} if v.startswith("DIFFQC_KAFKA_S")], name
        if name == "topics":
            continue
        # gRPC: mutual TLS from a cert-manager style kubernetes.io/tls Secret.
        tls = {
            variable: _file_source(pod, container, env.values[variable])
            for variable in ("DIFFQC_GRPC_TLS_CERT_FILE", "DIFFQC_GRPC_TLS_KEY_FILE", "DIFFQC_GRPC_TLS_CA_FILE")
        }
        assert tls == {
            "DIFFQC_GRPC_TLS_CERT_FILE": ("diffqc-grpc-tls", "tls.crt"),
            "DIFFQC_GRPC_TLS_KEY_FILE": ("diffqc-grpc-tls", "tls.key"),
            "DIFFQC_GRPC_TLS_CA_FILE": ("diffqc-grpc-tls", "ca.crt"),
        }, name
        assert env.values["DIFFQC_GRPC_TLS_CLIENT_AUTH"] == "true", name
        if name in ("scoring", "bridge"):  # the Avro alerts' registry: https with basic auth
            assert env.from_secrets["DIFFQC_REGISTRY_USERNAME"] == ("diffqc-registry-user", "username")
            assert env.from_secrets["DIFFQC_REGISTRY_PASSWORD"] == ("diffqc-registry-user", "password")
            ca = env.values["DIFFQC_REGISTRY_CA_FILE"]
            assert _file_source(pod, container, ca) == ("diffqc-kafka-ca", "ca.crt")
        if name in ("scoring", "bridge", "gateway"):  # signed links in alerts
            assert env.from_secrets["DIFFQC_GATEWAY_LINK_SECRET"] == ("diffqc-gateway", "link-secret"), name
            assert env.values["DIFFQC_GATEWAY_PUBLIC_URL"] == "https://diffqc.plant.example", name
    assert seen == {*KAFKA_USERS, "gateway", "trainer"}


def test_each_container_gets_only_the_credentials_it_uses(plant_docs):
    secrets = {name: set(chart_env(plant_docs, c, name).from_secrets) for name, _, c in _containers(plant_docs)}
    assert "DIFFQC_DATABASE_URL" in secrets["inference"] and "DIFFQC_INFLUX_TOKEN" not in secrets["bridge"]
    assert {name for name, found in secrets.items() if "DIFFQC_INFLUX_TOKEN" in found} == {"scoring"}
    assert {name for name, found in secrets.items() if "DIFFQC_GATEWAY_API_KEYS" in found} == {"gateway"}
    assert {name for name, found in secrets.items() if "DIFFQC_GATEWAY_SESSION_SECRET" in found} == {"gateway"}


def test_single_line_values_keep_plaintext_inside_the_cluster(single_docs):
    for name, pod, container in _containers(single_docs):
        env = chart_env(single_docs, container, name)
        variables = {**env.values, **env.from_secrets}
        if name in KAFKA_USERS:
            assert env.values["DIFFQC_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT", name
        assert not [v for v in variables if v.startswith(("DIFFQC_GRPC_TLS", "DIFFQC_KAFKA_SASL"))], name
        assert not [v for v in pod["volumes"] if "secret" in v], name
    assert by_kind(single_docs, "TriggerAuthentication") == {}


def test_keda_checks_lag_with_the_services_credentials(plant_docs):
    from cloudcoil.models.keda.v1alpha1 import TriggerAuthentication

    (auth,) = by_kind(plant_docs, "TriggerAuthentication").values()
    model = TriggerAuthentication.model_validate(auth)
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == auth
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("diffqc-kafka-user", "username"),
        "password": ("diffqc-kafka-user", "password"),
        "ca": ("diffqc-kafka-ca", "ca.crt"),
    }
    for scaled in by_kind(plant_docs, "ScaledObject").values():
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")


def test_sasl_plain_maps_to_kedas_name():
    values = copy.deepcopy(load_values(PLANT))
    values["kafka"]["saslMechanism"] = "PLAIN"
    scaled = by_kind(documents(render(values)), "ScaledObject")
    assert {s["spec"]["triggers"][0]["metadata"]["sasl"] for s in scaled.values()} == {"plaintext"}


def test_plant_values_file_documents_its_secrets():
    # The Secrets a plant creates before installing are the ones docs/deployment.md lists.
    docs = (ROOT / "docs" / "deployment.md").read_text()
    names = {v for p, v in _leaves(yaml.safe_load(PLANT.read_text())) if p[-1] == "existingSecret"}
    assert names and [n for n in sorted(names) if f"`{n}`" not in docs] == []
