"""``python -m services.inference``: run the inference service until SIGTERM."""

from __future__ import annotations

import logging
import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.runtime.logging import configure_logging
from diffqc.runtime.service import run_service
from diffqc.serving.client import TritonDetector
from diffqc.settings import SettingsError, load_settings
from diffqc.store.blobs import FileBlobStore
from diffqc.v1 import inference_pb2_grpc
from services.inference.service import Inference, InferenceServicer, stream_worker

NAME = "inference"
log = logging.getLogger(NAME)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, NAME)
    detector = TritonDetector(settings.triton)
    try:
        wait_for_broker(settings.kafka, settings.service.startup_timeout_s)
        detector.wait_until_ready(settings.service.startup_timeout_s)  # the model, not only the server
    except DependencyUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    inference = Inference(settings, detector, FileBlobStore(settings.blob_root))
    servicer = InferenceServicer(inference)
    return run_service(
        NAME, settings,
        lambda server: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server),
        ["diffqc.v1.InferenceService"],
        loops=[stream_worker(inference) for _ in range(settings.service.stream_workers)],
    )


if __name__ == "__main__":
    sys.exit(main())
