"""The Triton model configuration has one source: the CPU and GPU variants are rendered, parse as
Triton's ModelConfig, differ only where the device does, and the checked-in files are the rendering."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

from diffqc.cli import app
from diffqc.serving.model_config import CHECKED_IN, render_config
from diffqc.serving.repository import MODEL_NAME

GPU_ONLY_PARAMETERS = ("precision", "allow_cpu_fallback")
KIND = model_config_pb2.ModelInstanceGroup
MODEL = Path(__file__).resolve().parents[2] / "diffqc" / "detector" / "default_models" / "brushed_metal"


def _parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _contract(config: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
    """What clients rely on: the config without its instance group and GPU-only parameters."""
    config = model_config_pb2.ModelConfig.FromString(config.SerializeToString())
    del config.instance_group[:]
    for key in GPU_ONLY_PARAMETERS:
        config.parameters.pop(key, None)
    return config


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_the_checked_in_configs_are_what_the_generator_renders(device):
    assert CHECKED_IN[device].read_text() == render_config(device), (
        f"{CHECKED_IN[device]} was edited by hand: change diffqc/serving/model_config.py and run "
        "python -m diffqc.serving.model_config"
    )


def test_cpu_and_gpu_configs_differ_only_in_instance_group_and_precision():
    cpu, gpu = _parse(render_config("cpu")), _parse(render_config("gpu", instances=3, precision="fp16"))
    assert [(g.kind, g.count) for g in cpu.instance_group] == [(KIND.KIND_CPU, 1)]
    assert [(g.kind, g.count) for g in gpu.instance_group] == [(KIND.KIND_GPU, 3)]
    assert gpu.parameters["precision"].string_value == "fp16"
    assert "precision" not in cpu.parameters
    assert cpu.max_batch_size == 8 and cpu.input and cpu.output
    assert _contract(gpu) == _contract(cpu)
    fallback = _parse(render_config("gpu", allow_cpu_fallback=True))
    assert fallback.parameters["allow_cpu_fallback"].string_value == "true"
    assert _contract(fallback) == _contract(cpu)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device must be one of cpu, gpu"),
        ({"device": "cpu", "precision": "fp16"}, "apply to the GPU config"),
        ({"device": "gpu", "precision": "fp8"}, "precision must be one of fp32, fp16, bf16; got 'fp8'"),
        ({"device": "gpu", "instances": 0}, "instances must be at least 1"),
    ],
)
def test_a_config_that_cannot_run_is_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_config(**kwargs)


def test_export_writes_the_config_of_the_device_asked_for(tmp_path):
    repo = tmp_path / "repo"
    config = repo / MODEL_NAME / "config.pbtxt"

    def export(*options: str):
        return CliRunner().invoke(app, ["export", "--model", str(MODEL), "--repo", str(repo), *options])

    first = export("--device", "gpu", "--precision", "bf16", "--instances", "1")
    assert first.exit_code == 0, first.output
    assert config.read_text() == render_config("gpu", instances=1, precision="bf16")
    kept = export()  # no --device: the repository keeps its config
    assert kept.exit_code == 0, kept.output
    assert config.read_text() == render_config("gpu", instances=1, precision="bf16")
    back = export("--device", "cpu")
    assert back.exit_code == 0, back.output
    assert config.read_text() == render_config("cpu")

    refused = export("--precision", "fp16")
    assert refused.exit_code == 2 and "add --device gpu" in refused.output
    assert sorted(p.name for p in (repo / MODEL_NAME).iterdir()) == ["1", "2", "3", "config.pbtxt"]
