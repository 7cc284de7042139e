"""The detector served by a real tritonserver, called through tritonclient."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.serving.client import InferenceRejected, TritonDetector
from diffqc.serving.repository import stage_version
from diffqc.settings import TritonSettings
from tests.helpers.models import TINY_PRODUCT as PRODUCT
from tests.helpers.models import train_tiny


def _batch(data, n=4) -> np.ndarray:
    images = [read_image(s.path) for s in list_samples(data, "test")[:n]]
    return np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32)


def test_triton_outputs_equal_the_in_process_detector(triton, tiny_artifact):
    settings, server = triton
    artifact, data = tiny_artifact
    batch = _batch(data)
    served = TritonDetector(settings)
    served.wait_until_ready(60)
    remote = served.detect(batch, PRODUCT)
    expected = Detector.load(artifact).predict(batch, PRODUCT)
    amap, components, score = expected.anomaly_map, expected.components, expected.score
    assert remote.anomaly_map.shape == (len(batch), 1, 64, 64)
    assert remote.component_scores.shape == (len(batch), 4)
    assert np.abs(remote.anomaly_map - amap).max() <= 1e-5
    assert np.abs(remote.component_scores - components).max() <= 1e-5
    assert np.abs(remote.score - score).max() <= 1e-5
    # "default" names the product when the repository serves exactly one.
    assert np.abs(served.detect(batch[:1], "default").score - score[:1]).max() <= 1e-5
    # The KIND_CPU instance said where it computes (diffqc.serving.device).
    assert "instance computes on cpu (precision fp32)" in server.log_path.read_text()


def test_the_reconstruction_is_returned_only_when_asked_for_and_equals_the_in_process_one(triton, tiny_artifact):
    settings, _ = triton
    artifact, data = tiny_artifact
    batch = _batch(data, 2)
    served = TritonDetector(settings)
    remote = served.detect(batch, PRODUCT, reconstruction=True)
    expected = Detector.load(artifact).predict(batch, PRODUCT, return_reconstruction=True)
    assert expected.reconstruction is not None and remote.reconstruction is not None
    assert remote.reconstruction.shape == batch.shape
    assert np.abs(remote.reconstruction - expected.reconstruction).max() <= 1e-5
    # Asking for it changes nothing else; not asking costs nothing.
    assert np.abs(remote.score - expected.score).max() <= 1e-5
    assert served.detect(batch, PRODUCT).reconstruction is None


@pytest.mark.parametrize(
    ("mangle", "product", "message"),
    [
        (lambda b: b, "bolts", "unknown product type 'bolts'; this model serves \\['pcb'\\]"),
        (lambda b: b[:, :1], PRODUCT, "has 1 channel\\(s\\); the model was trained on 3"),
        (lambda b: b.astype(np.float64), PRODUCT, "FP64"),
        (lambda b: b[:, :, :8, :8], PRODUCT, "smaller than the model's tile"),
    ],
)
def test_bad_requests_get_a_clear_error_and_triton_keeps_serving(triton, tiny_artifact, mangle, product, message):
    settings, server = triton
    served = TritonDetector(settings)
    batch = _batch(tiny_artifact[1], 2)
    with pytest.raises(InferenceRejected, match=message):
        served.detect(mangle(batch), product)
    assert served.detect(batch, PRODUCT).score.shape == (2,)


def test_concurrent_requests_are_batched_by_the_dynamic_batcher(triton, tiny_artifact):
    settings, _ = triton
    single = _batch(tiny_artifact[1], 1)
    client = grpcclient.InferenceServerClient(settings.grpc_url)

    def counts():
        stats = client.get_inference_statistics(settings.model_name).model_stats[0]
        return stats.inference_count, stats.execution_count

    before = counts()
    served = TritonDetector(settings)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: served.detect(single, PRODUCT), range(48)))
    inferences, executions = (a - b for a, b in zip(counts(), before, strict=True))
    assert inferences == 48
    assert executions < inferences, "no request was batched with another"


def test_export_stages_versions_and_an_onnx_denoiser_matching_torch(tiny_artifact, tmp_path):
    import subprocess
    import sys

    from diffqc.serving.model_config import render_config
    from diffqc.serving.repository import MODEL_NAME, versions

    artifact, _ = tiny_artifact
    command = [sys.executable, "-m", "diffqc.cli", "export", "--model", str(artifact), "--repo", str(tmp_path)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run([*command, "--format", "onnx"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "max abs difference to torch in onnxruntime" in second.stdout

    model_dir = tmp_path / MODEL_NAME
    assert versions(model_dir) == [1, 2]
    assert (model_dir / "config.pbtxt").read_text() == render_config("cpu")
    # The new version replaces the artifact serving the same product instead of adding a second one.
    assert [p.name for p in (model_dir / "2" / "artifacts").iterdir()] == [PRODUCT]
    assert (model_dir / "2" / "onnx" / "denoiser.onnx").stat().st_size > 0

    broken = subprocess.run(
        [*command[:-4], "--model", str(tmp_path / "nope"), "--repo", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert broken.returncode == 1 and "does not exist" in " ".join(broken.stdout.split())
    assert versions(model_dir) == [1, 2]


def test_a_version_staged_while_triton_runs_is_served_without_a_restart(tiny_artifact, tmp_path):
    """Onboarding stages a version that adds a product; the running Triton picks it up, and every
    result names the version that produced it (scoring thresholds with that version's row)."""
    repo = tmp_path / "repo"
    stage_version(tiny_artifact[0], repo)
    grpc_port = free_port()
    server = triton_server(
        repo, free_port(), grpc_port, free_port(), tmp_path, tmp_path / "triton.log", poll_s=1
    ).start()
    try:
        served = TritonDetector(TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=60))
        pcb = _batch(tiny_artifact[1], 1)
        assert served.detect(pcb, PRODUCT).model_version == "1"
        with pytest.raises(InferenceRejected, match="unknown product type 'brushed_metal'"):
            served.detect(pcb, "brushed_metal")

        metal_artifact, metal_data = train_tiny("brushed_metal", tmp_path / "metal")
        stage_version(metal_artifact, repo)
        deadline = time.monotonic() + 120
        while (version := served.detect(pcb, PRODUCT).model_version) != "2":  # requests keep being served
            assert version == "1" and time.monotonic() < deadline, "Triton did not load version 2 within 120 s"
            time.sleep(0.5)
        assert served.detect(_batch(metal_data, 1), "brushed_metal").model_version == "2"
    finally:
        server.stop()


def test_an_instance_that_cannot_run_as_configured_fails_its_load_with_the_fix(tiny_artifact, tmp_path):
    """diffqc.serving.device's refusal reaches the operator through Triton's log (on this machine: a
    CPU instance asked for fp16; a GPU instance without CUDA fails the same way, tests/serving/test_device.py)."""
    from diffqc.infra.errors import InfraError
    from diffqc.serving.model_config import render_config

    fp16_on_cpu = render_config("cpu") + 'parameters { key: "precision", value: { string_value: "fp16" } }\n'
    stage_version(tiny_artifact[0], tmp_path / "repo", fp16_on_cpu)
    log = tmp_path / "triton.log"
    server = triton_server(tmp_path / "repo", free_port(), free_port(), free_port(), tmp_path, log)
    with pytest.raises(InfraError, match="exited"):
        server.start()
    assert "precision fp16 is for KIND_GPU instances" in log.read_text()
