"""A tiny detector artifact (trained in seconds) and a real tritonserver serving it."""

from __future__ import annotations

import pytest
import torch

from diffqc.data.synth import generate_product
from diffqc.detector.config import DetectorConfig
from diffqc.detector.fit import train_detector
from diffqc.infra.ports import free_port
from diffqc.infra.triton import triton_server
from diffqc.serving.repository import stage_version
from diffqc.settings import TritonSettings

PRODUCT = "pcb"


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    data = generate_product(PRODUCT, root / "data", n_train=14, n_test_good=2, n_test_defect=2, size=(64, 64), seed=1)
    cfg = DetectorConfig()
    cfg.model.block_out_channels = (16, 32)
    cfg.train.crop_size, cfg.train.batch_size = 32, 8
    torch.manual_seed(0)
    detector = train_detector({PRODUCT: data}, cfg, steps=3, progress=False, log=lambda _m: None)
    return detector.save(root / "model"), data


@pytest.fixture(scope="session")
def triton(tiny_artifact, tmp_path_factory):
    work = tmp_path_factory.mktemp("triton")
    stage_version(tiny_artifact[0], work / "repo")
    grpc_port = free_port()
    server = triton_server(work / "repo", free_port(), grpc_port, free_port(), work, work / "triton.log").start()
    yield TritonSettings(grpc_url=f"127.0.0.1:{grpc_port}", timeout_s=60), server
    server.stop()
