"""``python -m services.preprocessing``: run the preprocessing service until SIGTERM."""

from __future__ import annotations

import logging
import sys

from diffqc.bus.admin import wait_for_broker
from diffqc.preprocess import Preprocessor
from diffqc.runtime.dependencies import DependencyUnavailable, wait_for
from diffqc.runtime.logging import configure_logging
from diffqc.runtime.service import run_service
from diffqc.settings import SettingsError, load_settings
from diffqc.store.blobs import FileBlobStore
from diffqc.store.engine import make_engine
from diffqc.store.migrate import upgrade
from diffqc.v1 import preprocessing_pb2_grpc
from services.preprocessing.service import PreprocessingServicer, stream_worker

NAME = "preprocessing"
log = logging.getLogger(NAME)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, NAME)
    engine = make_engine(settings.database.url)
    timeout = settings.service.startup_timeout_s
    try:
        wait_for_broker(settings.kafka, timeout)
        # Migrating is a no-op when current; retried, so replicas starting together cannot fail on the race.
        wait_for("database", engine.url.render_as_string(hide_password=True), lambda: upgrade(engine), timeout)
    except DependencyUnavailable as exc:
        log.critical("cannot start: %s", exc)
        return 1
    preprocessor = Preprocessor(engine, FileBlobStore(settings.blob_root))
    servicer = PreprocessingServicer(preprocessor)
    return run_service(
        NAME, settings,
        lambda server: preprocessing_pb2_grpc.add_PreprocessingServiceServicer_to_server(servicer, server),
        ["diffqc.v1.PreprocessingService"],
        loops=[stream_worker(preprocessor, settings.kafka) for _ in range(settings.service.stream_workers)],
    )


if __name__ == "__main__":
    sys.exit(main())
