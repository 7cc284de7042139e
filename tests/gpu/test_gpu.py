"""The detector on CUDA, against the CPU it was calibrated on, and Triton's KIND_GPU instances.

Marked ``gpu``: where torch has no CUDA these tests are deselected, with one line saying so
(tests/conftest.py); ``make gpu-check`` runs them on a machine with an NVIDIA GPU. Each test
records what it measured (junit properties), which benchmarks/gpu_check.py prints.

Targets: float32 on CUDA within 1e-4 of the CPU (maps, components, scores); fp16 autocast gives
every image of the test split the verdict the CPU gives it; the exported ONNX denoiser runs in
onnxruntime's CUDA provider within 1e-4 of torch (what Triton's onnxruntime backend would run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.data.synth import generate_product
from diffqc.detector.detector import Detector
from diffqc.detector.outputs import Prediction
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.serving.client import TritonDetector
from diffqc.serving.model_config import render_config
from diffqc.serving.repository import stage_version
from diffqc.settings import TritonSettings

pytestmark = pytest.mark.gpu

DEFAULT_MODELS = Path(__file__).resolve().parents[2] / "diffqc" / "detector" / "default_models"
PRODUCTS = sorted(p.name for p in DEFAULT_MODELS.iterdir() if p.is_dir())
FP32_TOLERANCE = 1e-4
N_GOOD = N_DEFECT = 12


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> dict[str, np.ndarray]:
    """Per product: the synthetic test split (good and defective parts) at the model's image size."""
    root = tmp_path_factory.mktemp("split")
    batches = {}
    for product in PRODUCTS:
        size = Detector.load(DEFAULT_MODELS / product).products[product].image_size or (256, 256)
        data = generate_product(product, root, 1, N_GOOD, N_DEFECT, size=(size[0], size[1]))
        images = [read_image(sample.path) for sample in list_samples(data, "test")]
        batches[product] = np.stack([image.transpose(2, 0, 1) for image in images]).astype(np.float32)
    return batches


def _predict(detector: Detector, product: str, batch: np.ndarray) -> Prediction:
    parts = [detector.predict(batch[i : i + 8], product) for i in range(0, len(batch), 8)]
    return Prediction(
        np.concatenate([p.anomaly_map for p in parts]),
        np.concatenate([p.components for p in parts]),
        np.concatenate([p.score for p in parts]),
    )


@pytest.mark.parametrize("product", PRODUCTS)
def test_float32_on_cuda_matches_the_cpu(product, test_split, record_property):
    cpu = Detector.load(DEFAULT_MODELS / product)
    cuda = Detector.load(DEFAULT_MODELS / product).to("cuda")
    expected, got = _predict(cpu, product, test_split[product]), _predict(cuda, product, test_split[product])
    diffs = {
        "anomaly_map": float(np.abs(got.anomaly_map - expected.anomaly_map).max()),
        "components": float(np.abs(got.components - expected.components).max()),
        "score": float(np.abs(got.score - expected.score).max()),
    }
    for name, diff in diffs.items():
        record_property(f"max_abs_diff_{name}", f"{diff:.2e}")
    assert max(diffs.values()) <= FP32_TOLERANCE, diffs


@pytest.mark.parametrize("product", PRODUCTS)
def test_fp16_on_cuda_gives_every_image_the_cpus_verdict(product, test_split, record_property):
    cpu = Detector.load(DEFAULT_MODELS / product)
    fp16 = Detector.load(DEFAULT_MODELS / product).to("cuda", "fp16")
    expected, got = _predict(cpu, product, test_split[product]), _predict(fp16, product, test_split[product])
    record_property("max_abs_diff_score", f"{float(np.abs(got.score - expected.score).max()):.2e}")
    record_property("images", str(len(got)))
    assert cpu.verdicts(got.score, product) == cpu.verdicts(expected.score, product)


def test_triton_serves_from_kind_gpu_instances_on_cuda(test_split, tmp_path, record_property):
    product = "pcb"
    repo = tmp_path / "repo"
    stage_version(DEFAULT_MODELS / product, repo, render_config("gpu", instances=1))
    grpc_port = free_port()
    log = tmp_path / "triton.log"
    server = triton_server(repo, free_port(), grpc_port, free_port(), tmp_path, log).start()
    try:
        served = TritonDetector(TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=120))
        remote = served.detect(test_split[product][:8], product)
    finally:
        server.stop()
    assert "instance computes on cuda:0 (precision fp32)" in log.read_text()
    local = Detector.load(DEFAULT_MODELS / product).to("cuda").predict(test_split[product][:8], product)
    diff = float(np.abs(remote.score - local.score).max())
    record_property("max_abs_diff_score_vs_in_process_cuda", f"{diff:.2e}")
    assert diff <= FP32_TOLERANCE
    assert np.abs(remote.anomaly_map - local.anomaly_map).max() <= FP32_TOLERANCE


def test_the_onnx_denoiser_runs_in_onnxruntimes_cuda_provider_like_torch(tmp_path, record_property):
    import onnxruntime

    from diffqc.serving.onnx_export import export_denoiser

    detector = Detector.load(DEFAULT_MODELS / "brushed_metal")  # inputs x_t and t (no coordinates, no classes)
    exported = export_denoiser(detector, tmp_path)  # checked against torch in onnxruntime's CPU provider
    provider = ("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0})
    session = onnxruntime.InferenceSession(str(exported.path), providers=[provider, "CPUExecutionProvider"])
    assert session.get_providers()[0] == "CUDAExecutionProvider", (
        f"onnxruntime {onnxruntime.__version__} could not load its CUDA provider (a CUDA/cuDNN version that "
        "onnxruntime-gpu and torch's CUDA libraries do not share); its log above says which library"
    )
    generator = torch.Generator().manual_seed(2)
    x_t = torch.rand(4, 1, 256, 256, generator=generator) * 2 - 1
    t = torch.randint(1, 1000, (4,), generator=generator)
    onnx_eps = session.run(None, {"x_t": x_t.numpy(), "t": t.numpy()})[0]
    with torch.inference_mode():
        torch_eps = detector.to("cuda").model(x_t.cuda(), t.cuda()).cpu().numpy()
    diff = float(np.abs(onnx_eps - torch_eps).max())
    record_property("max_abs_diff_eps", f"{diff:.2e}")
    assert diff <= FP32_TOLERANCE
