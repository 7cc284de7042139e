"""``python -m services.preprocessing``: run the preprocessing service until SIGTERM.

Frames' images are bounded by ingestion's limits (``DIFFQC_INGESTION_MAX_PIXELS`` and
``..._MEMORY_BUDGET_BYTES``: what ingestion accepted fits here too), PIL's own bomb guard is set to
them, and the stream is fenced against poison messages in the database (``poison_attempts``).
"""

from __future__ import annotations

import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.data.images import ImageLimits, guard_decompression_bombs
from diffqc.preprocess import Preprocessor
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.store.blobs import make_blob_store
from diffqc.store.poison import PoisonFence
from diffqc.v1 import preprocessing_pb2_grpc
from services.preprocessing.service import PreprocessingServicer, stream_stage

NAME = "preprocessing"


def start(settings: Settings) -> int:
    wait_for_broker(settings.kafka, settings.service.startup_timeout_s)
    engine = migrated_database(settings)
    limits = ImageLimits.of(settings.ingestion)
    guard_decompression_bombs(limits)
    preprocessor = Preprocessor(engine, make_blob_store(settings), limits=limits)
    servicer = PreprocessingServicer(preprocessor)
    add = preprocessing_pb2_grpc.add_PreprocessingServiceServicer_to_server
    api = GrpcApi("diffqc.v1.PreprocessingService", add, servicer)
    return run_service(NAME, settings, api, loops=stream_stage(preprocessor).workers(settings, PoisonFence(engine)))


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
