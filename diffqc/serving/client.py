"""Calling the detector in Triton over gRPC (tritonclient), the way every diffqc service does.

Transient trouble (Triton restarting, overloaded, a deadline passed) is retried with bounded
backoff and never drops the request; a request Triton rejects (unknown product, wrong shape or
dtype) raises ``InferenceRejected`` at once with Triton's own message.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from diffqc.core.backoff import backoff_delay
from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.security.tls import channel_credentials
from diffqc.settings import GrpcSettings, TritonSettings

log = logging.getLogger(__name__)
TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}


class InferenceRejected(ValueError):
    """Triton refused the request itself; retrying the same input cannot help."""


class InferenceUnavailable(DependencyUnavailable):
    """Triton stayed unreachable through every retry (the consume loop keeps retrying the frame)."""


@dataclass
class Detection:
    anomaly_map: np.ndarray  # (N, 1, H, W)
    component_scores: np.ndarray  # (N, K) in the model's documented component order
    score: np.ndarray  # (N,)
    model_version: str  # the version Triton ran: the one asked for, else its newest (which can change between requests)
    reconstruction: np.ndarray | None = None  # (N, C, H, W) in [0, 1], only when asked for


def triton_credentials(settings: TritonSettings, grpc_settings: GrpcSettings | None) -> grpc.ChannelCredentials | None:
    """TLS to Triton when ``DIFFQC_TRITON_TLS_CA_FILE`` is set: Triton verified with that CA, the gRPC group's
    certificate presented when one is set (for a Triton that requires client certificates); else None."""
    if settings.tls_ca_file is None:
        return None
    return channel_credentials(grpc_settings or GrpcSettings(), settings.tls_ca_file, "DIFFQC_TRITON_TLS_CA_FILE")


class TritonDetector:
    def __init__(
        self,
        settings: TritonSettings,
        max_attempts: int = 6,
        backoff_s: float = 0.5,
        backoff_max_s: float = 8.0,
        grpc_settings: GrpcSettings | None = None,
    ):
        self.settings = settings
        self.client = grpcclient.InferenceServerClient(
            settings.grpc_url, creds=triton_credentials(settings, grpc_settings)
        )
        self.max_attempts, self.backoff_s, self.backoff_max_s = max_attempts, backoff_s, backoff_max_s

    def wait_until_ready(self, timeout_s: float) -> None:
        """Bounded wait at start for the server and the model to be ready (DependencyUnavailable after)."""

        def check() -> None:
            if not self.client.is_model_ready(self.settings.model_name):
                raise RuntimeError(f"model {self.settings.model_name!r} is not ready")

        wait_for("Triton", self.settings.grpc_url, check, timeout_s)

    def detect(
        self, images: np.ndarray, product: str, version: str | None = None, reconstruction: bool = False
    ) -> Detection:
        """Run ``version`` of the model (the product's production version), or Triton's newest when None;
        ``reconstruction``: also return what the model reconstructs (costs a copy of the images back)."""
        images = np.ascontiguousarray(images)
        image_input = grpcclient.InferInput("IMAGE", list(images.shape), _triton_dtype(images))
        image_input.set_data_from_numpy(images)
        product_input = grpcclient.InferInput("PRODUCT", [len(images), 1], "BYTES")
        product_input.set_data_from_numpy(np.full((len(images), 1), product.encode(), dtype=object))
        names = ["ANOMALY_MAP", "SCORES", "SCORE", *(["RECONSTRUCTION"] if reconstruction else [])]
        outputs = [grpcclient.InferRequestedOutput(n) for n in names]
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = self.client.infer(
                    self.settings.model_name,
                    [image_input, product_input],
                    model_version=version or "",
                    outputs=outputs,
                    client_timeout=self.settings.timeout_s,
                )
                return Detection(
                    result.as_numpy("ANOMALY_MAP"),
                    result.as_numpy("SCORES"),
                    result.as_numpy("SCORE").reshape(-1),
                    result.get_response().model_version,
                    result.as_numpy("RECONSTRUCTION") if reconstruction else None,
                )
            except InferenceServerException as exc:
                if str(exc.status()) not in TRANSIENT:
                    raise InferenceRejected(f"Triton rejected the request: {exc.message()}") from None
                if attempt == self.max_attempts:
                    raise InferenceUnavailable(
                        f"Triton at {self.settings.grpc_url} unavailable after {attempt} attempts: {exc.message()}"
                    ) from None
                delay = backoff_delay(attempt, self.backoff_s, self.backoff_max_s)
                log.warning("Triton attempt %d failed (%s); retrying in %.1f s", attempt, exc.message(), delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


def _triton_dtype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)
