"""Where a Triton instance of the detector computes (diffqc.serving.device), without Triton or a GPU:
what Triton tells the model (instance kind, device id, config parameters) and whether torch has CUDA."""

from __future__ import annotations

import pytest

from diffqc.serving.device import Placement, PlacementError, place_instance


def test_a_cpu_instance_computes_on_the_cpu_in_float32():
    assert place_instance("CPU", "0", {}, cuda_available=True) == Placement("cpu", "fp32")
    assert place_instance("KIND_CPU", "0", {"precision": "fp32"}, cuda_available=False) == Placement("cpu", "fp32")


def test_a_gpu_instance_computes_on_its_gpu_in_the_configured_precision():
    assert place_instance("GPU", "1", {}, cuda_available=True) == Placement("cuda:1", "fp32")
    assert place_instance("GPU", "0", {"precision": "bf16"}, cuda_available=True) == Placement("cuda:0", "bf16")


def test_a_gpu_instance_without_cuda_fails_its_load_naming_the_fix():
    with pytest.raises(PlacementError) as refused:
        place_instance("GPU", "0", {"precision": "fp16"}, cuda_available=False)
    message = str(refused.value)
    assert "KIND_GPU instance (GPU 0) has no CUDA" in message
    assert "install the CUDA build of torch" in message
    assert "diffqc export --device cpu" in message and 'allow_cpu_fallback "true"' in message


def test_allow_cpu_fallback_runs_a_gpu_instance_on_the_cpu_with_a_warning():
    placement = place_instance("GPU", "0", {"allow_cpu_fallback": "True", "precision": "fp16"}, cuda_available=False)
    assert (placement.device, placement.precision) == ("cpu", "fp32")
    assert placement.warning is not None
    assert "has no CUDA" in placement.warning and "computes on the CPU" in placement.warning
    assert "precision fp16 does not apply" in placement.warning
    # With CUDA there is nothing to fall back from.
    assert place_instance("GPU", "0", {"allow_cpu_fallback": "true"}, cuda_available=True).warning is None


@pytest.mark.parametrize(
    ("kind", "parameters", "message"),
    [
        ("CPU", {"precision": "fp16"}, "precision fp16 is for KIND_GPU instances"),
        ("GPU", {"precision": "int8"}, "parameter precision: precision must be one of fp32, fp16, bf16; got 'int8'"),
        ("GPU", {"allow_cpu_fallback": "yes"}, 'allow_cpu_fallback must be "true" or "false"'),
        ("MODEL", {}, "KIND_CPU or KIND_GPU instances; this instance is KIND_MODEL"),
    ],
)
def test_a_configuration_the_instance_cannot_run_is_refused_by_name(kind, parameters, message):
    with pytest.raises(PlacementError, match=message):
        place_instance(kind, "0", parameters, cuda_available=True)
