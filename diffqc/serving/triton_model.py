"""The Triton python-backend model of the detector (``model-repository/diffqc_detector/<v>/model.py``
imports ``TritonPythonModel`` from here).

Contract (documented in model-repository/diffqc_detector/README.md):
  inputs   IMAGE    FP32  [N, C, H, W] in [0, 1]     PRODUCT  BYTES [N, 1]
  outputs  ANOMALY_MAP FP32 [N, 1, H, W]   SCORES FP32 [N, K] (COMPONENTS order)   SCORE FP32 [N, 1]
           RECONSTRUCTION FP32 [N, C, H, W] in [0, 1], computed only for requests that ask for it

The dynamic batcher hands ``execute`` several requests at once; requests with the same product
and image size run as one batch through the detector. A request that fails (unknown product,
wrong channel count, too small ...) gets its own error response; the others are still answered.

The instance computes where Triton placed it (``diffqc.serving.device``: KIND_CPU on the CPU,
KIND_GPU on ``cuda:<device id>``, the config's ``precision``); images and maps cross the backend's
border by DLPack (``diffqc.serving.dlpack``), and a batch crosses to the GPU once.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from diffqc.core.errors import DetectorError
from diffqc.serving.catalog import ProductCatalog
from diffqc.serving.device import place_instance
from diffqc.serving.dlpack import input_tensor, output_tensor
from diffqc.serving.model_config import string_parameters

RECONSTRUCTION = "RECONSTRUCTION"


def _decode_products(raw: np.ndarray) -> list[str]:
    values = raw.reshape(-1)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class TritonPythonModel:
    catalog: ProductCatalog | None  # set by initialize, dropped by finalize

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        parameters = string_parameters(json.loads(args["model_config"]))
        # One Triton instance per CPU core would oversubscribe: let torch use the instance's share.
        threads = int(parameters.get("torch_threads", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        # Raises with what to fix (the load fails) for a GPU instance without CUDA, unless the config allows the CPU.
        placement = place_instance(
            args.get("model_instance_kind", "CPU"),
            args.get("model_instance_device_id", "0"),
            parameters,
            torch.cuda.is_available(),
        )
        if placement.warning:
            pb_utils.Logger.log_warn(placement.warning)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.catalog = ProductCatalog.load(version_dir, placement.device, placement.precision)
        pb_utils.Logger.log_info(
            f"diffqc_detector version {args['model_version']} instance computes on {placement.device} "
            f"(precision {placement.precision})"
        )

    def _loaded_catalog(self) -> ProductCatalog:
        if self.catalog is None:
            raise RuntimeError("the diffqc_detector model was finalized: it has no product catalog")
        return self.catalog

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb_utils

        catalog = self._loaded_catalog()
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                images = input_tensor(pb_utils.get_input_tensor_by_name(request, "IMAGE"))
                products = set(_decode_products(pb_utils.get_input_tensor_by_name(request, "PRODUCT").as_numpy()))
                if len(products) != 1:
                    raise DetectorError(f"one request must carry one product type; got {sorted(products)}")
                detector, product = catalog.resolve(products.pop())
                reconstruction = RECONSTRUCTION in request.requested_output_names()
                groups[(id(detector), product, tuple(images.shape[1:]), reconstruction)].append((index, images))
            except DetectorError as exc:
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))

        for (_, product, _, reconstruction), members in groups.items():
            try:
                self._answer(pb_utils, responses, product, members, reconstruction)
            except DetectorError:
                # One bad image must not fail the requests it was batched with: answer one by one.
                for member in members:
                    try:
                        self._answer(pb_utils, responses, product, [member], reconstruction)
                    except DetectorError as exc:
                        responses[member[0]] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc)))
        return responses

    def _answer(
        self,
        pb_utils,
        responses: list,
        product: str,
        members: list[tuple[int, torch.Tensor]],
        reconstruction: bool,
    ) -> None:
        detector = self._loaded_catalog().resolve(product).detector
        # One request's images go as they are (a view of Triton's buffer, valid during execute).
        batch = members[0][1] if len(members) == 1 else torch.cat([m[1] for m in members])
        result = detector.predict(batch, product, return_reconstruction=reconstruction)
        start = 0
        for index, images in members:
            stop = start + len(images)
            outputs = [
                output_tensor(pb_utils.Tensor, "ANOMALY_MAP", result.anomaly_map[start:stop]),
                output_tensor(pb_utils.Tensor, "SCORES", result.components[start:stop]),
                output_tensor(pb_utils.Tensor, "SCORE", result.score[start:stop].reshape(-1, 1)),
            ]
            if result.reconstruction is not None:
                outputs.append(output_tensor(pb_utils.Tensor, RECONSTRUCTION, result.reconstruction[start:stop]))
            responses[index] = pb_utils.InferenceResponse(output_tensors=outputs)
            start = stop

    def finalize(self) -> None:
        self.catalog = None
