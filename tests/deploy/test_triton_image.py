"""The Triton deployment (deploy/triton): the GPU config override equals the repository's config
but for its instance group, and serve.sh selects it only when asked."""

from __future__ import annotations

import os
import subprocess

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from .manifests import ROOT

TRITON = ROOT / "deploy" / "triton"
MODEL = ROOT / "model-repository" / "diffqc_detector"


def _config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_gpu_config_differs_from_the_repository_config_only_in_its_instance_group():
    base, gpu = _config(MODEL / "config.pbtxt"), _config(TRITON / "gpu.pbtxt")
    kinds = [group.kind for group in gpu.instance_group]
    assert kinds and set(kinds) == {model_config_pb2.ModelInstanceGroup.KIND_GPU}
    assert [group.kind for group in base.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    # Inputs, outputs, batching and versions are the clients' contract: identical on GPU.
    del base.instance_group[:]
    del gpu.instance_group[:]
    assert gpu == base


def test_image_installs_the_override_where_model_config_name_finds_it():
    text = (TRITON / "Dockerfile").read_text()
    assert "COPY model-repository /models" in text
    assert "COPY deploy/triton/gpu.pbtxt /models/diffqc_detector/configs/gpu.pbtxt" in text
    # Triton 2.51 (24.10) is the release whose python stub nvidia-pytriton 0.7.0 ships for Python 3.11.
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
    assert not [a for a in _serve(tmp_path, "", TRITON_REPOSITORY_POLL_SECS="0") if "poll" in a]
