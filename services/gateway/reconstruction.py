"""The review page's "what a good part would look like here": the reconstruction of an inspected frame by the
model version that judged it, computed by Triton on request (``diffqc.serving.reconstruction``).

Each one runs every tile of a frame through the diffusion model, so the gateway bounds them: at most
``DIFFQC_GATEWAY_RECONSTRUCTIONS_AT_ONCE`` are computed at once (more get 429 with Retry-After), and the
last ``CACHED`` pictures are kept, so opening a card again costs nothing.
"""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
import functools
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Response, Security
from sqlalchemy import Engine

from diffqc.preprocess import FrameImageError, Preprocessor, SpecError
from diffqc.security.api_keys import Role
from diffqc.serving.client import InferenceRejected, TritonDetector
from diffqc.serving.reconstruction import reconstruction_png
from diffqc.settings import Settings
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.store.models import Verdict
from services.gateway.auth import Auth
from services.gateway.errors import ApiError
from services.gateway.queries import Store
from services.gateway.schemas import InspectionId, Problem

CACHED = 32  # pictures kept (a PNG of a frame is tens to hundreds of KiB)
RETRY_AFTER_S = 5
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (401, 403, 404, 409, 422, 429, 503)
}


class Reconstructions:
    """Triton, the preprocessing that tiles a frame as the pipeline did, the slots and the cache."""

    def __init__(self, settings: Settings, engine: Engine, blobs: BlobStore):
        self.at_once = settings.gateway.reconstructions_at_once
        # A person is waiting: two attempts, not the pipeline's patient six.
        self.detector = TritonDetector(settings.triton, max_attempts=2, grpc_settings=settings.grpc)
        self.preprocessor = Preprocessor(engine, blobs)
        self.blobs = blobs
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="reconstruction")
        self.slots = threading.BoundedSemaphore(max(1, self.at_once))
        # Keyed by what determines the picture: the image's digest, its product and the model version.
        self.png = functools.lru_cache(maxsize=CACHED)(self._compute)

    def _compute(self, image_sha256: str, image_uri: str, product: str, version: str) -> bytes:
        if not self.slots.acquire(blocking=False):
            raise ApiError(
                429,
                f"{self.at_once} reconstruction(s) are being computed (DIFFQC_GATEWAY_RECONSTRUCTIONS_AT_ONCE); "
                f"try again in {RETRY_AFTER_S} s",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        try:
            image = self.blobs.get_digest(image_sha256)
            return reconstruction_png(image, image_uri, product, version, self.preprocessor, self.detector, self.pool)
        finally:
            self.slots.release()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.detector.close()


def reconstruction_router(store: Store, reconstructions: Reconstructions, auth: Auth) -> APIRouter:
    router = APIRouter(tags=["inspection"])

    @router.get(
        "/api/inspection/{inspection_id}/reconstruction.png",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
        dependencies=[Security(auth.require(Role.VIEWER))],
    )
    def reconstruction(inspection_id: InspectionId) -> Response:
        """The model's reconstruction of the frame as a good part, by the version that judged it, in the
        heatmap's geometry. Computed on request (seconds on a CPU Triton); 429 while others are computed."""
        if reconstructions.at_once == 0:
            raise ApiError(404, "reconstructions are turned off (DIFFQC_GATEWAY_RECONSTRUCTIONS_AT_ONCE=0)")
        found = store.inspection(inspection_id)
        if found is None:
            raise ApiError(404, f"no inspection or frame with id {inspection_id!r}")
        row, frame = found
        if row.verdict == Verdict.NOT_INSPECTED:
            reason = row.not_inspected_reason
            raise ApiError(409, f"inspection {row.id!r} was not inspected ({reason}): no model judged it")
        try:
            png = reconstructions.png(frame.image_sha256, frame.image_uri, frame.product_type, row.model_version)
        except BlobNotFound as exc:
            raise ApiError(404, f"the frame image is gone from the blob store: {exc}") from None
        except FrameImageError as exc:
            raise ApiError(422, f"the stored frame image cannot be prepared: {exc}") from None
        except SpecError as exc:
            raise ApiError(409, f"product type {frame.product_type!r}: {exc}") from None
        except InferenceRejected as exc:
            raise ApiError(409, f"model version {row.model_version!r} cannot reconstruct the frame: {exc}") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    return router
