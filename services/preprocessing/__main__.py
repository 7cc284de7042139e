"""``python -m services.preprocessing``: run the preprocessing service until SIGTERM."""

from __future__ import annotations

import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.preprocess import Preprocessor
from diffqc.runtime.service import GrpcApi, run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.store.blobs import FileBlobStore
from diffqc.v1 import preprocessing_pb2_grpc
from services.preprocessing.service import PreprocessingServicer, stream_stage

NAME = "preprocessing"


def start(settings: Settings) -> int:
    wait_for_broker(settings.kafka, settings.service.startup_timeout_s)
    preprocessor = Preprocessor(migrated_database(settings), FileBlobStore(settings.blob_root))
    servicer = PreprocessingServicer(preprocessor)
    add = preprocessing_pb2_grpc.add_PreprocessingServiceServicer_to_server
    api = GrpcApi("diffqc.v1.PreprocessingService", add, servicer)
    return run_service(NAME, settings, api, loops=stream_stage(preprocessor).workers(settings))


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
