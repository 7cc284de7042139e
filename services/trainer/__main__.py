"""``python -m services.trainer``: run retraining jobs until SIGTERM.

Start-up, bounded by ``DIFFQC_SERVICE_STARTUP_TIMEOUT_S``: check that the model repository (the folder
Triton serves, ``$MODEL_REPOSITORY``, default ``/models``) is a folder this process can write, wait for
the database (migrations applied). Then one worker loop runs the queued jobs one at a time; the gRPC
port serves the standard health service only, /metrics the job counters. It needs the detector extra
(torch): it runs in the Triton image, which has it and sets ``MODEL_REPOSITORY``. Bad settings exit 2;
a missing detector extra, a database that stays down or a repository it cannot write exits 1.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from diffqc.data.images import ImageLimits
from diffqc.extras import missing_module
from diffqc.runtime.service import run_service
from diffqc.runtime.startup import migrated_database, service_main
from diffqc.settings import Settings
from diffqc.store.blobs import make_blob_store

NAME = "trainer"
# Triton's image sets this variable for tritonserver; a DIFFQC_* setting of its own is requested from the lead.
REPOSITORY_VARIABLE, DEFAULT_REPOSITORY = "MODEL_REPOSITORY", "/models"


def start(settings: Settings) -> int:
    log = logging.getLogger(NAME)
    missing = missing_module("detector")
    if missing is not None:
        log.critical(
            "cannot start: the trainer needs the detector extra (%s does not import): pip install 'diffqc[detector]', "
            "or run it in the Triton image",
            missing,
        )
        return 1
    repository = Path(os.environ.get(REPOSITORY_VARIABLE) or DEFAULT_REPOSITORY)
    if not repository.is_dir() or not os.access(repository, os.W_OK | os.X_OK):
        log.critical(
            "cannot start: the model repository %s (%s) is not a folder this process can write",
            repository,
            REPOSITORY_VARIABLE,
        )
        return 1
    from services.trainer.service import TrainingWorker  # torch: only once the extra is known to be there

    engine = migrated_database(settings)
    worker = TrainingWorker(
        engine,
        make_blob_store(settings),
        repository,
        f"{socket.gethostname()}:{os.getpid()}",
        limits=ImageLimits.of(settings.ingestion),
    )
    try:
        return run_service(NAME, settings, None, loops=[worker])
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(service_main(NAME, start))
