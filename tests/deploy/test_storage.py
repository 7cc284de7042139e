"""The blob store and retention as deployed: the chart's blobStore values (the volume, or an S3 bucket
with its credentials from a Secret and its endpoint in the NetworkPolicies), the retention CronJob,
and docker-compose's s3 profile (MinIO), each container's environment loading as valid settings."""

from __future__ import annotations

import copy
import os

import pytest
import yaml

from diffqc.settings import ENV_PREFIX, load_settings
from tests.helpers.env import require

from .manifests import (
    CHART,
    COMPOSE_ENV,
    ContainerEnv,
    by_kind,
    chart_env,
    component,
    compose_binary,
    compose_config,
    documents,
    load_values,
    render,
)
from .test_env_contract import SECRET_STAND_INS, known_variables

PLANT = CHART / "ci" / "plant-gpu-values.yaml"
BLOB_USERS = {"ingestion", "preprocessing", "inference", "scoring", "gateway", "trainer", "retention"}
S3 = {
    "backend": "s3",
    "s3": {
        "endpoint": "http://minio.storage:9000",
        "bucket": "plant-blobs",
        "region": "eu-central-1",
        "existingSecret": "diffqc-blobs-s3",
        "accessKeyIdKey": "access-key-id",
        "secretAccessKeyKey": "secret-access-key",
    },
}


def plant(**overrides) -> dict:
    values = copy.deepcopy(load_values(PLANT))
    values["trainer"]["enabled"] = True
    values["triton"]["modelRepository"] = {"source": "pvc", "pvc": {"claimName": "models"}}
    values.update(overrides)
    return values


def pods(docs: list[dict]) -> dict[str, dict]:
    """Component -> pod spec of every Deployment and of the retention CronJob."""
    found = {component(d): d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment").values()}
    for cron in by_kind(docs, "CronJob").values():
        found[component(cron)] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return found


def loaded(env: ContainerEnv, monkeypatch):
    """The settings the container would load (Secrets' values stood in)."""
    for name in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    variables = {**env.values, **{name: SECRET_STAND_INS.get(name, "from-a-secret") for name in env.from_secrets}}
    assert sorted(v for v in variables if v.startswith(ENV_PREFIX) and v not in known_variables()) == []
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def egress_ports(docs: list[dict], name: str) -> set[int]:
    policy = by_kind(docs, "NetworkPolicy")[f"diffqc-{name}"]
    return {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}


def test_the_file_backend_mounts_the_volume_in_every_pod_that_reads_blobs(monkeypatch):
    docs = documents(render(plant()))
    assert "diffqc-blobs" in by_kind(docs, "PersistentVolumeClaim")
    for name, pod in pods(docs).items():
        if name == "triton":
            continue
        mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert (mounts.get("blobs") == "/var/lib/diffqc/blobs") == (name in BLOB_USERS), name
        settings = loaded(chart_env(docs, pod["containers"][0], name), monkeypatch)
        assert settings.blobs.backend == "file" and str(settings.blob_root) == "/var/lib/diffqc/blobs"
        assert 9000 not in egress_ports(docs, name)


def test_the_s3_backend_gives_the_blob_readers_the_bucket_and_a_secrets_keys_and_mounts_no_volume(monkeypatch):
    docs = documents(render(plant(blobStore=S3)))
    assert "diffqc-blobs" not in by_kind(docs, "PersistentVolumeClaim")
    bucket_peer = [{"ipBlock": {"cidr": "10.10.3.0/24"}}]
    values = plant(blobStore=S3)
    values["networkPolicy"]["egress"]["blobStore"] = {"to": bucket_peer}
    docs_with_peer = documents(render(values))
    for name, pod in pods(docs).items():
        if name == "triton":
            continue
        container = pod["containers"][0]
        env = chart_env(docs, container, name)
        assert "blobs" not in {v["name"] for v in pod["volumes"]}, name
        settings = loaded(env, monkeypatch)
        assert settings.blobs.backend == "s3"
        assert (settings.blobs.s3_endpoint_url, settings.blobs.s3_bucket, settings.blobs.s3_region) == (
            "http://minio.storage:9000",
            "plant-blobs",
            "eu-central-1",
        )
        keys = {
            v: env.from_secrets.get(v) for v in ("DIFFQC_BLOBS_S3_ACCESS_KEY_ID", "DIFFQC_BLOBS_S3_SECRET_ACCESS_KEY")
        }
        if name in BLOB_USERS:
            assert keys == {
                "DIFFQC_BLOBS_S3_ACCESS_KEY_ID": ("diffqc-blobs-s3", "access-key-id"),
                "DIFFQC_BLOBS_S3_SECRET_ACCESS_KEY": ("diffqc-blobs-s3", "secret-access-key"),
            }, name
            assert 9000 in egress_ports(docs, name), name
            rules = by_kind(docs_with_peer, "NetworkPolicy")[f"diffqc-{name}"]["spec"]["egress"]
            assert [r["to"] for r in rules if r["ports"] == [{"port": 9000}]] == [bucket_peer], name
        else:  # the bridge reads no blob: no key, no way to the bucket
            assert keys == dict.fromkeys(keys) and 9000 not in egress_ports(docs, name), name


def test_aws_s3_without_an_endpoint_or_keys_uses_https_and_the_sdks_credentials():
    values = plant(blobStore={"backend": "s3", "s3": {"endpoint": "", "bucket": "plant-blobs", "region": "eu-west-1"}})
    docs = documents(render(values))
    env = chart_env(docs, pods(docs)["scoring"]["containers"][0], "scoring")
    assert "DIFFQC_BLOBS_S3_ENDPOINT_URL" not in env.values
    assert not [v for v in env.from_secrets if v.startswith("DIFFQC_BLOBS_")]  # an IAM role, say
    assert 443 in egress_ports(docs, "scoring")


def test_the_schema_refuses_an_unknown_backend_and_a_bucket_s3_would_refuse():
    for blob_store, where in [
        ({"backend": "nfs"}, "/blobStore/backend"),
        ({"backend": "s3", "s3": {**S3["s3"], "bucket": "Plant_Blobs"}}, "/blobStore/s3/bucket"),
        ({"backend": "s3", "s3": {**S3["s3"], "endpoint": "minio:9000"}}, "/blobStore/s3/endpoint"),
    ]:
        with pytest.raises(Exception, match=where):
            render(plant(blobStore=blob_store))


def test_retention_runs_daily_as_a_cronjob_with_the_values_settings(monkeypatch):
    values = plant(blobStore=S3)
    values["retention"] = {"schedule": "5 2 * * *", "rowDays": 180, "blobDays": 14}  # over the chart defaults
    docs = documents(render(values))
    (cron,) = by_kind(docs, "CronJob").values()
    assert cron["spec"]["schedule"] == "5 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert (container["command"], container["args"]) == (["diffqc"], ["retention"])
    env = chart_env(docs, container, "retention")
    assert env.from_secrets["DIFFQC_DATABASE_URL"] == ("diffqc-postgres", "database-url")
    settings = loaded(env, monkeypatch)
    assert (settings.retention.row_days, settings.retention.blob_days) == (180, 14)
    assert (settings.retention.disk_high_water, settings.retention.disk_low_water) == (0.85, 0.75)
    assert egress_ports(docs, "retention") == {53, 5432, 9000}  # DNS, the database, the bucket; no caller

    values["retention"]["enabled"] = False
    docs = documents(render(values))
    assert by_kind(docs, "CronJob") == {} and "diffqc-retention" not in by_kind(docs, "NetworkPolicy")


def test_compose_switches_to_the_s3_profiles_minio_with_one_variable(monkeypatch):
    binary = compose_binary()
    require(binary is not None, "needs docker-compose: apt-get install docker-compose")
    result = compose_config(binary, {**os.environ, **COMPOSE_ENV, "DIFFQC_BLOBS_BACKEND": "s3"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    minio = services["minio"]
    assert minio["profiles"] == ["s3"] and minio["healthcheck"]["test"]
    for name in ("ingestion", "gateway", "scoring", "trainer"):
        env = {k: str(v) for k, v in services[name]["environment"].items()}
        settings = loaded(ContainerEnv(name, env), monkeypatch)
        assert settings.blobs.backend == "s3" and settings.blobs.s3_endpoint_url == "http://minio:9000", name
        assert settings.blobs.s3_access_key_id.get_secret_value() == minio["environment"]["MINIO_ROOT_USER"]
        secret = settings.blobs.s3_secret_access_key.get_secret_value()
        assert secret == minio["environment"]["MINIO_ROOT_PASSWORD"] == COMPOSE_ENV["MINIO_ROOT_PASSWORD"]
