"""charts/diffqc: helm lint --strict, a render of every CI values file, every manifest valid for
Kubernetes 1.30, and the properties a plant relies on (GPU pool, probes, scaling, PDBs, policies)."""

from __future__ import annotations

import copy

import helm_python as helm
import kubernetes_validate
import pytest

from diffqc.contracts.topics import FRAMES, INFERENCE_RESULTS, PREPARED_FRAMES, QUALITY_ALERT
from tests.helpers.prometheus import exported_metric_names, promql_metric_names

from .manifests import CHART, CI_VALUES, by_kind, component, documents, load_values, render

KUBE_VERSION = "1.30.0"
SERVICES = ["ingestion", "preprocessing", "inference", "scoring", "bridge", "gateway"]
CONSUMED = {
    "preprocessing": FRAMES,
    "inference": PREPARED_FRAMES,
    "scoring": INFERENCE_RESULTS,
    "bridge": QUALITY_ALERT,
}
SINGLE = CHART / "ci" / "single-line-cpu-values.yaml"
PLANT = CHART / "ci" / "plant-gpu-values.yaml"


@pytest.fixture(scope="module")
def plant_docs():
    return documents(render(load_values(PLANT)))


@pytest.fixture(scope="module")
def single_docs():
    return documents(render(load_values(SINGLE)))


def _render_error(values: dict) -> str:
    with pytest.raises(helm.HelmError) as failure:
        render(values)
    return str(failure.value)


def test_there_are_ci_values_files():
    assert {p.name for p in CI_VALUES} >= {SINGLE.name, PLANT.name}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_passes(values_file):
    report = helm.lint(CHART, load_values(values_file), strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # warnings fail under --strict


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_rendered_manifest_is_valid_for_kubernetes_1_30(values_file):
    docs = documents(render(load_values(values_file)))
    builtin = [doc for doc in docs if doc["apiVersion"] not in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1")]
    assert len(builtin) > 20
    for doc in builtin:  # raises with the field path on any invalid or unknown property
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_keda_scaled_objects_match_the_keda_schema(plant_docs):
    # kubernetes-validate knows only built-in kinds: KEDA's own CRD models check ScaledObjects,
    # and a round trip that loses nothing proves no key is unknown to the schema.
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    scaled = by_kind(plant_docs, "ScaledObject")
    assert {component(doc) for doc in scaled.values()} == set(CONSUMED)
    for doc in scaled.values():
        model = ScaledObject.model_validate(doc)
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc


def test_the_alerts_name_metrics_the_services_export(plant_docs):
    """Every PrometheusRule expression names metrics a diffqc process exports (a renamed metric would leave
    an alert that never fires)."""
    exported = exported_metric_names()
    [rule] = by_kind(plant_docs, "PrometheusRule").values()
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert {"DiffqcConsumerLagging", "DiffqcNotInspectedRateHigh", "DiffqcBlobVolumeFilling"} <= {
        a["alert"] for a in alerts
    }
    for alert in alerts:
        named = promql_metric_names(alert["expr"])
        assert named and named <= exported, f"{alert['alert']}: {sorted(named - exported)} are not exported"


def test_the_service_monitor_scrapes_every_service_that_serves_metrics(plant_docs, single_docs):
    """prometheus-operator scrapes the port named `metrics` of the Services the ServiceMonitor selects: every
    service with metrics (Triton and the trainer included) must match, and a release without it has none."""
    [monitor] = by_kind(plant_docs, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = by_kind(plant_docs, "Service").values()
    with_metrics = [s for s in services if "metrics" in {p["name"] for p in s["spec"]["ports"]}]
    assert {component(s) for s in with_metrics} >= {*CONSUMED, "ingestion", "triton"}
    for service in with_metrics:
        labels = service["metadata"]["labels"]
        assert wanted.items() <= labels.items(), f"{service['metadata']['name']} is not scraped"
    assert not by_kind(single_docs, "ServiceMonitor")


def test_gpu_example_puts_triton_on_the_gpu_pool(plant_docs):
    values = load_values(PLANT)
    triton = by_kind(plant_docs, "Deployment")["diffqc-triton"]
    pod = triton["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == values["triton"]["nodeSelector"] and pod["nodeSelector"]
    assert triton["spec"]["replicas"] == 2  # 2 GPU nodes, one replica each (anti-affinity)
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert {"name": "TRITON_MODEL_CONFIG", "value": "gpu"} in container["env"]
    # The model repository comes from the PVC named in the values, read-only.
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]
    assert claim["claimName"] == values["triton"]["modelRepository"]["pvc"]["claimName"]


def test_cpu_example_keeps_triton_off_gpus(single_docs):
    pod = by_kind(single_docs, "Deployment")["diffqc-triton"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"])
    assert "tolerations" not in pod and "nodeSelector" not in pod


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_service_has_liveness_and_readiness_probes(values_file):
    deployments = by_kind(documents(render(load_values(values_file))), "Deployment")
    trainer = ["trainer"] if load_values(values_file).get("trainer", {}).get("enabled") else []
    assert {component(d) for d in deployments.values()} == {*SERVICES, "triton", *trainer}
    for deployment in deployments.values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                spec = container[probe]
                if "grpc" in spec:  # Kubernetes' native gRPC probe on the service's gRPC port
                    assert spec["grpc"]["port"] == ports["grpc"]
                elif "exec" in spec:  # a check from inside the container (TLS gRPC; Triton's loopback HTTP)
                    assert spec["exec"]["command"][0] in ("python", "curl"), (deployment["metadata"]["name"], probe)
                else:
                    assert spec["httpGet"]["port"] in ports, (deployment["metadata"]["name"], probe)
            if component(deployment) == "triton":
                assert container["livenessProbe"]["exec"]["command"][-1] == "http://127.0.0.1:8000/v2/health/live"
                assert container["readinessProbe"]["exec"]["command"][-1] == "http://127.0.0.1:8000/v2/health/ready"
            elif component(deployment) != "gateway":
                probe = container["readinessProbe"]
                tls = load_values(values_file).get("grpcTls", {}).get("enabled", False)
                assert ("exec" if tls else "grpc") in probe and ("exec" if tls else "grpc") in container[
                    "livenessProbe"
                ]
                if tls:  # the healthcheck speaks TLS as the service's own Service name
                    assert probe["exec"]["command"][-2:] == ["--server-name", deployment["metadata"]["name"]]


def test_gateway_readiness_asks_health_and_liveness_does_not(plant_docs):
    container = by_kind(plant_docs, "Deployment")["diffqc-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] != "/health"  # a DB outage must not restart it


def test_keda_scales_consumers_on_their_lag_and_hpa_the_rest(plant_docs):
    values = load_values(PLANT)
    for doc in by_kind(plant_docs, "ScaledObject").values():
        name = component(doc)
        trigger = doc["spec"]["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["topic"] == CONSUMED[name]
        assert trigger["metadata"]["consumerGroup"] == f"diffqc.{name}"  # diffqc.bus.config group ids
        assert doc["spec"]["maxReplicaCount"] == values["services"][name]["autoscaling"]["maxReplicas"]
    hpas = {component(doc) for doc in by_kind(plant_docs, "HorizontalPodAutoscaler").values()}
    assert hpas == {"ingestion"}  # autoscaled, not a consumer
    # An autoscaled Deployment leaves replicas to its autoscaler.
    assert "replicas" not in by_kind(plant_docs, "Deployment")["diffqc-inference"]["spec"]


def test_without_keda_autoscaled_consumers_get_hpas():
    values = load_values(PLANT)
    values["keda"]["enabled"] = False
    docs = documents(render(values))
    assert by_kind(docs, "ScaledObject") == {}
    assert {component(d) for d in by_kind(docs, "HorizontalPodAutoscaler").values()} == {
        "ingestion",
        "preprocessing",
        "inference",
        "scoring",
        "bridge",
    }


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_partitions_cover_every_consumer_group(values_file):
    values = load_values(values_file)
    for name in CONSUMED:
        svc = values.get("services", {}).get(name, {})
        scaled = svc.get("autoscaling", {}).get("enabled") or values.get("keda", {}).get("enabled")
        replicas = svc["autoscaling"]["maxReplicas"] if scaled else svc.get("replicas", 1)
        workers = svc.get("streamWorkers", 1 if name == "bridge" else 2)
        assert replicas * workers <= values["kafka"]["partitions"], name


def test_too_few_partitions_is_refused_at_render_time():
    values = load_values(PLANT)
    values["kafka"]["partitions"] = 20  # inference may run 12 pods x 2 consumers
    message = _render_error(values)
    assert "kafka.partitions (20) is less than the 24 consumers services.inference" in message


def test_replicas_beyond_partitions_are_refused_without_autoscaling():
    values = load_values(SINGLE)
    values["services"]["scoring"]["replicas"] = 2  # 2 pods x 2 consumers > 2 partitions
    assert "consumers services.scoring" in _render_error(values)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_workload_has_a_pdb_and_a_network_policy(values_file):
    docs = documents(render(load_values(values_file)))
    deployments = by_kind(docs, "Deployment").values()
    selectors = [d["spec"]["selector"]["matchLabels"] for d in deployments]
    assert [p["spec"]["selector"]["matchLabels"] for p in by_kind(docs, "PodDisruptionBudget").values()] == selectors
    jobs = [j["spec"]["template"]["metadata"]["labels"] for j in by_kind(docs, "Job").values()]
    crons = by_kind(docs, "CronJob").values()  # the retention job
    jobs += [c["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] for c in crons]
    policies = by_kind(docs, "NetworkPolicy")
    selected = [p["spec"]["podSelector"].get("matchLabels") for n, p in policies.items() if n != "diffqc-default-deny"]
    assert sorted(map(str, selected)) == sorted(map(str, selectors + jobs))


def test_gpu_example_takes_credentials_from_existing_secrets(plant_docs):
    values = load_values(PLANT)
    assert by_kind(plant_docs, "Secret") == {}  # nothing secret lives in the values
    env = by_kind(plant_docs, "Deployment")["diffqc-scoring"]["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["DIFFQC_DATABASE_URL"] == {"name": "diffqc-postgres", "key": "database-url"}
    assert refs["DIFFQC_INFLUX_TOKEN"] == {"name": values["influx"]["existingSecret"], "key": "token"}


def test_required_endpoints_are_refused_when_missing():
    for path, message in [
        (("kafka", "bootstrapServers"), "kafka.bootstrapServers is required"),
        (("schemaRegistry", "url"), "schemaRegistry.url is required"),
        (("services", "bridge", "mesWebhookUrl"), "services.bridge.mesWebhookUrl is required"),
    ]:
        values = copy.deepcopy(load_values(PLANT))
        target = values
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = ""
        assert message in _render_error(values)
    for path, message in [
        (("postgres", "existingSecret"), "postgres.existingSecret is required"),
        (("influx", "existingSecret"), "influx.existingSecret is required"),
        (("services", "gateway", "publicUrl"), "services.gateway.publicUrl is required"),
        (
            ("kafka", "sasl", "existingSecret"),
            "kafka.sasl.existingSecret is required with kafka.securityProtocol SASL_SSL",
        ),
        (("grpcTls", "existingSecret"), "grpcTls.existingSecret is required when grpcTls.enabled"),
        (("services", "gateway", "sessionSecret", "existingSecret"), "services.gateway.sessionSecret.existingSecret"),
    ]:
        values = copy.deepcopy(load_values(PLANT))
        target = values
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = ""
        assert message in _render_error(values), path


def test_values_schema_rejects_misspelt_and_mistyped_keys():
    values = load_values(SINGLE)
    values["services"]["inference"]["replica"] = 3
    assert "additional properties 'replica' not allowed" in _render_error(values)
    values = load_values(SINGLE)
    values["triton"]["modelRepository"] = {"source": "s3"}
    assert "/triton/modelRepository/source" in _render_error(values)


def test_a_pdb_needs_exactly_one_bound():
    values = load_values(SINGLE)
    values["services"]["scoring"]["pdb"] = {"maxUnavailable": 1}  # merged over the default minAvailable
    assert "services.scoring.pdb needs exactly one of minAvailable or maxUnavailable" in _render_error(values)


def test_notes_name_the_release_and_partitions():
    notes = render(load_values(PLANT))["diffqc/templates/NOTES.txt"]
    assert "Kafka topics have 48 partitions" in notes
    assert "triton: diffqc-triton (2 replicas, 1 nvidia.com/gpu each, model config gpu)" in notes
