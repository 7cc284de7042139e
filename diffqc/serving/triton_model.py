"""The Triton python-backend model of the detector (``model-repository/diffqc_detector/<v>/model.py``
imports ``TritonPythonModel`` from here).

Contract (documented in model-repository/diffqc_detector/README.md):
  inputs   IMAGE    FP32  [N, C, H, W] in [0, 1]     PRODUCT  BYTES [N, 1]
  outputs  ANOMALY_MAP FP32 [N, 1, H, W]   SCORES FP32 [N, K] (COMPONENTS order)   SCORE FP32 [N, 1]

The dynamic batcher hands ``execute`` several requests at once; requests with the same product
and image size run as one batch through the detector. A request that fails (unknown product,
wrong channel count, too small ...) gets its own error response; the others are still answered.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from diffqc.core.errors import DetectorError
from diffqc.serving.catalog import ProductCatalog


def _decode_products(raw: np.ndarray) -> list[str]:
    values = raw.reshape(-1)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class TritonPythonModel:
    catalog: ProductCatalog | None  # set by initialize, dropped by finalize

    def initialize(self, args: dict) -> None:
        import torch

        # One Triton instance per CPU core would oversubscribe: let torch use the instance's share.
        threads = int(
            json.loads(args["model_config"]).get("parameters", {}).get("torch_threads", {}).get("string_value", "0")
            or 0
        )
        if threads > 0:
            torch.set_num_threads(threads)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.catalog = ProductCatalog.load(version_dir)
        if args.get("model_instance_kind") == "GPU":
            # Said loudly rather than discovered in the throughput: the detector computes in torch on the CPU.
            logging.getLogger(__name__).warning(
                "diffqc_detector instance on GPU %s: the detector does not run on CUDA yet, it computes on the CPU",
                args.get("model_instance_device_id"),
            )

    def _loaded_catalog(self) -> ProductCatalog:
        if self.catalog is None:
            raise RuntimeError("the diffqc_detector model was finalized: it has no product catalog")
        return self.catalog

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        catalog = self._loaded_catalog()
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, np.ndarray]]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
                products = set(_decode_products(pb_utils.get_input_tensor_by_name(request, "PRODUCT").as_numpy()))
                if len(products) != 1:
                    raise DetectorError(f"one request must carry one product type; got {sorted(products)}")
                detector, product = catalog.resolve(products.pop())
                groups[(id(detector), product, images.shape[1:])].append((index, images))
            except DetectorError as exc:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))

        for (_, product, _), members in groups.items():
            try:
                self._answer(pb_utils, responses, product, members)
            except DetectorError:
                # One bad image must not fail the requests it was batched with: answer one by one.
                for member in members:
                    try:
                        self._answer(pb_utils, responses, product, [member])
                    except DetectorError as exc:
                        responses[member[0]] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        return responses

    def _answer(self, pb_utils, responses: list, product: str, members: list[tuple[int, np.ndarray]]) -> None:
        detector = self._loaded_catalog().resolve(product).detector
        result = detector.predict(np.concatenate([m[1] for m in members]), product)
        start = 0
        for index, images in members:
            stop = start + len(images)
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("ANOMALY_MAP", result.anomaly_map[start:stop]),
                    pb_utils.Tensor("SCORES", result.components[start:stop]),
                    pb_utils.Tensor("SCORE", result.score[start:stop].reshape(-1, 1)),
                ]
            )
            start = stop

    def finalize(self) -> None:
        self.catalog = None
