"""The detector served by a real tritonserver, called through tritonclient."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from diffqc.data.images import read_image
from diffqc.data.mvtec import list_samples
from diffqc.detector.detector import Detector
from diffqc.serving.client import InferenceRejected, TritonDetector

from .conftest import PRODUCT


def _batch(data, n=4) -> np.ndarray:
    images = [read_image(s.path) for s in list_samples(data, "test")[:n]]
    return np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32)


def test_triton_outputs_equal_the_in_process_detector(triton, tiny_artifact):
    settings, _ = triton
    artifact, data = tiny_artifact
    batch = _batch(data)
    served = TritonDetector(settings)
    served.wait_until_ready(60)
    remote = served.detect(batch, PRODUCT)
    amap, components, score = Detector.load(artifact).predict(batch, PRODUCT)
    assert remote.anomaly_map.shape == (len(batch), 1, 64, 64)
    assert remote.component_scores.shape == (len(batch), 4)
    assert np.abs(remote.anomaly_map - amap).max() <= 1e-5
    assert np.abs(remote.component_scores - components).max() <= 1e-5
    assert np.abs(remote.score - score).max() <= 1e-5
    # "default" names the product when the repository serves exactly one.
    assert np.abs(served.detect(batch[:1], "default").score - score[:1]).max() <= 1e-5


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
