"""The Triton deployment (deploy/triton): the GPU config override equals the repository's config
but for its instance group and precision, serve.sh selects it only when asked, and the server it starts (the real
tritonserver 2.51 of nvidia-pytriton) answers inference but refuses every management API."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton_grpc
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from diffqc.infra.ports import free_port
from diffqc.infra.process import ServerProcess
from tests.helpers.env import require

from .manifests import ROOT

TRITON = ROOT / "deploy" / "triton"
MODEL = ROOT / "model-repository" / "diffqc_detector"


def _config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_gpu_config_differs_from_the_repository_config_only_in_its_instance_group_and_precision():
    base, gpu = _config(MODEL / "config.pbtxt"), _config(TRITON / "gpu.pbtxt")
    kinds = [group.kind for group in gpu.instance_group]
    assert kinds and set(kinds) == {model_config_pb2.ModelInstanceGroup.KIND_GPU}
    assert [group.kind for group in base.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert gpu.parameters.pop("precision").string_value == "fp32"
    # Inputs, outputs, batching and versions are the clients' contract: identical on GPU.
    del base.instance_group[:]
    del gpu.instance_group[:]
    assert gpu == base


def test_image_installs_the_override_where_model_config_name_finds_it():
    text = (TRITON / "Dockerfile").read_text()
    assert "COPY model-repository /models" in text
    assert "COPY deploy/triton/gpu.pbtxt /models/diffqc_detector/configs/gpu.pbtxt" in text
    # Triton 2.51 (24.10) is the release whose python stub nvidia-pytriton 0.7.0 ships for Python 3.11:
    # stub and backend library must come from one python_backend release (docs/deployment.md).
    assert "tritonserver:24.10-py3" in text and "backend_directory(" in text
    assert "nvidia-pytriton==0.7.0" in (ROOT / "pyproject.toml").read_text()


def _serve(tmp_path, model_config: str, **env_extra: str) -> list[str]:
    fake = tmp_path / "tritonserver"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "MODEL_REPOSITORY": "/models",
        "TRITON_MODEL_CONFIG": model_config,
        **env_extra,
    }
    result = subprocess.run(
        [str(TRITON / "serve.sh"), "--log-verbose=1"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_serve_selects_the_gpu_config_only_when_asked(tmp_path):
    gpu = _serve(tmp_path, "gpu")
    assert "--model-config-name=gpu" in gpu and "--model-repository=/models" in gpu
    assert gpu[-1] == "--log-verbose=1"  # extra arguments pass through
    cpu = _serve(tmp_path, "")
    assert not [arg for arg in cpu if arg.startswith("--model-config-name")]
    assert "--backend-directory=/opt/diffqc-triton/backends" in cpu


def test_serve_polls_the_repository_so_staged_versions_are_served_without_a_restart(tmp_path):
    default = _serve(tmp_path, "")
    assert "--model-control-mode=poll" in default and "--repository-poll-secs=30" in default
    assert "--repository-poll-secs=5" in _serve(tmp_path, "", TRITON_REPOSITORY_POLL_SECS="5")
    never = _serve(tmp_path, "", TRITON_REPOSITORY_POLL_SECS="0")
    assert "--model-control-mode=none" in never and not [a for a in never if "poll" in a]


def _restricted(args: list[str], flag: str) -> tuple[set[str], str, str]:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"{flag}=")]
    apis, header = value.split(":", 1)
    key, secret = header.split("=", 1)
    return set(apis.split(",")), key, secret


ADMIN_APIS = {"model-repository", "model-config", "shared-memory", "statistics", "trace", "logging"}


def test_serve_closes_the_management_apis_and_keeps_http_on_loopback(tmp_path):
    first, second = _serve(tmp_path, ""), _serve(tmp_path, "")
    assert "--http-address=127.0.0.1" in first
    grpc_apis, _, secret = _restricted(first, "--grpc-restricted-protocol")
    assert grpc_apis == ADMIN_APIS  # health, metadata and inference stay open to the inference service
    http_apis, _, http_secret = _restricted(first, "--http-restricted-api")
    assert http_apis == ADMIN_APIS | {"metadata", "inference"}  # HTTP serves the health checks alone
    # The header value is random per start: nobody holds it, so the APIs are closed, not guarded.
    assert re.fullmatch(r"[0-9a-f]{64}", secret) and http_secret == secret
    assert _restricted(second, "--grpc-restricted-protocol")[2] != secret


def test_the_queue_is_bounded_above_the_most_consumers_of_a_plant():
    plant = yaml.safe_load((ROOT / "charts/diffqc/ci/plant-gpu-values.yaml").read_text())
    inference = plant["services"]["inference"]
    consumers = inference["autoscaling"]["maxReplicas"] * inference.get("streamWorkers", 2)
    for path in (MODEL / "config.pbtxt", TRITON / "gpu.pbtxt"):
        policy = _config(path).dynamic_batching.default_queue_policy
        assert consumers < policy.max_queue_size <= 256, path


@pytest.fixture
def served(tmp_path):
    """serve.sh starting the real tritonserver (nvidia-pytriton's) on an empty repository, on
    loopback ports: the flags it adds are those the image runs with."""
    spec = importlib.util.find_spec("pytriton")
    require(spec is not None, "needs the triton extra: pip install 'diffqc[triton]'")
    from diffqc.infra.triton import backend_directory

    root = Path(spec.origin).parent
    http, grpc, metrics = free_port(), free_port(), free_port()
    wrapper = tmp_path / "bin" / "tritonserver"
    wrapper.parent.mkdir()
    # The image's paths do not exist here: later flags override serve.sh's backend directory.
    wrapper.write_text(
        f'#!/bin/sh\nexec {root}/tritonserver/bin/tritonserver "$@" '
        f"--backend-directory={backend_directory(tmp_path)} --http-port={http} --grpc-port={grpc} "
        f"--grpc-address=127.0.0.1 --metrics-port={metrics} --metrics-address=127.0.0.1 "
        "--pinned-memory-pool-byte-size=0 --allow-gpu-metrics=false\n"
    )
    wrapper.chmod(0o755)
    (tmp_path / "repo").mkdir()
    libdirs = [str(root.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
    env = {
        **os.environ,
        "PATH": f"{wrapper.parent}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "LD_LIBRARY_PATH": ":".join(libdirs),
        "MODEL_REPOSITORY": str(tmp_path / "repo"),
        "TRITON_MODEL_CONFIG": "",
    }
    log = tmp_path / "triton.log"
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc}")

    def ready() -> bool:
        try:
            return client.is_server_ready()
        except InferenceServerException:  # not listening yet
            return False

    server = ServerProcess("triton", [str(TRITON / "serve.sh")], log, ready, env, 120).start()
    yield client, http, log
    client.close()
    server.stop()


def test_served_triton_answers_health_and_metadata_and_refuses_management(served):
    client, http, log = served
    assert client.is_server_live() and client.get_server_metadata().version == "2.51.0"
    refused = {
        "load": lambda: client.load_model("diffqc_detector"),
        "unload": lambda: client.unload_model("diffqc_detector"),
        "index": lambda: client.get_model_repository_index(),
        "shared memory": lambda: client.register_system_shared_memory("leak", "/triton_python_backend_shm", 64),
        "statistics": lambda: client.get_inference_statistics(),
        "logging": lambda: client.update_log_settings({"log_verbose_level": 1}),
    }
    for name, call in refused.items():
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
            pytest.fail(f"{name} was answered")
    assert re.search(r"Started HTTPService at 127\.0\.0\.1:", log.read_text())
    base = f"http://127.0.0.1:{http}"
    assert httpx.get(f"{base}/v2/health/ready", timeout=5).status_code == 200  # the health checks
    for path in ("/v2/repository/index", "/v2/systemsharedmemory/status", "/v2"):
        answer = httpx.post(f"{base}{path}", timeout=5) if "index" in path else httpx.get(f"{base}{path}", timeout=5)
        assert answer.status_code >= 400 and "restricted" in answer.text, path
