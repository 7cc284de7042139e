"""``python -m services.inference``: run the inference service until SIGTERM."""

from __future__ import annotations

import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.runtime.startup import service_main
from diffqc.serving.client import TritonDetector
from diffqc.serving.production import model_routes
from diffqc.settings import Settings
from diffqc.store.blobs import make_blob_store
from diffqc.v1 import inference_pb2_grpc
from services.inference.service import Inference, InferenceServicer, stream_stage

NAME = "inference"


def start(settings: Settings) -> int:
    wait_for_broker(settings.kafka, settings.service.startup_timeout_s)
    # Two attempts in a handler call, then the consume loop's pause-and-poll waits the outage out: six
    # (~15 s of backoff) outlasted a short max.poll.interval, and the group evicted both consumers.
    detector = TritonDetector(settings.triton, max_attempts=2, grpc_settings=settings.grpc)
    detector.wait_until_ready(settings.service.startup_timeout_s)  # the model, not only the server
    routes = model_routes(settings)  # which model versions judge and score each frame
    inference = Inference(settings, detector, make_blob_store(settings), routes)
    servicer = InferenceServicer(inference)
    api = GrpcApi("diffqc.v1.InferenceService", inference_pb2_grpc.add_InferenceServiceServicer_to_server, servicer)
    return run_service(NAME, settings, api, loops=stream_stage(inference).workers(settings))


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
