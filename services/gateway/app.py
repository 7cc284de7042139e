"""The FastAPI application: REST API under /api, OpenAPI docs at /docs, the dashboard at /."""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
import hmac
import io
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Response, Security, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from sqlalchemy import Engine, text

from diffqc import __version__
from diffqc.core import clock
from diffqc.runtime.dependencies import DependencyUnavailable
from diffqc.settings import Settings
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.store.models import Frame as FrameRow
from diffqc.store.models import Inspection
from diffqc.v1.frame_pb2 import Frame
from services.gateway.errors import ApiError, install_error_handlers
from services.gateway.ingest import STATUS_NAMES, IngestionClient
from services.gateway.queries import Store, inspection_url, result_of
from services.gateway.schemas import Health, InspectionResult, LineSummary, Problem, UploadResult
from services.gateway.spc import LineSpc, line_spc

STATIC = Path(__file__).parent / "static"
MAX_RECENT = 500
WAIT_POLL_S = 0.1

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (400, 404, 422, 503)}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (401, 403, 413, 422, 502, 503, 504)
}


def create_app(settings: Settings, engine: Engine, blobs: BlobStore, ingestion: IngestionClient) -> FastAPI:
    """The gateway over one database, blob store and ingestion client (closed when the app shuts down)."""
    cfg = settings.gateway
    store = Store(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ingestion.close()

    app = FastAPI(
        title="diffqc gateway",
        version=__version__,
        lifespan=lifespan,
        description="Upload frames for inspection, read verdicts, heatmaps and SPC charts. "
        f"Write endpoints need an API key in header `{cfg.api_key_header}`.",
    )
    install_error_handlers(app, cfg.max_upload_bytes)
    api_key = APIKeyHeader(
        name=cfg.api_key_header, auto_error=False, description="One of the keys in DIFFQC_GATEWAY_API_KEYS"
    )
    keys = [key.get_secret_value().encode() for key in cfg.api_keys]

    def authorized(key: Annotated[str | None, Security(api_key)]) -> None:
        if not keys:
            raise ApiError(
                403, "uploads are disabled: the gateway has no API keys configured (DIFFQC_GATEWAY_API_KEYS)"
            )
        if not key:
            raise ApiError(401, f"missing API key: send it in header {cfg.api_key_header}")
        if not any(hmac.compare_digest(key.encode(), k) for k in keys):  # constant time: no timing oracle
            raise ApiError(403, f"API key not accepted (header {cfg.api_key_header})")

    def found(id_or_frame_id: str) -> tuple[Inspection, FrameRow]:
        inspection = store.inspection(id_or_frame_id)
        if inspection is None:
            if store.frame_exists(id_or_frame_id):
                raise ApiError(404, f"frame {id_or_frame_id!r} is not inspected yet")
            raise ApiError(404, f"no inspection or frame with id {id_or_frame_id!r}")
        return inspection

    @app.post(
        "/api/inspection/upload",
        response_model=UploadResult,
        status_code=202,
        tags=["inspection"],
        max_body_size=cfg.max_upload_bytes,
        dependencies=[Security(authorized)],
        responses={200: {"model": UploadResult, "description": "wait=true and the verdict is in"}, **_WRITE_ERRORS},
    )
    def upload(
        response: Response,
        image: Annotated[UploadFile, File(description="The encoded image: PNG, JPEG, BMP or TIFF")],
        plant_id: Annotated[str, Form(min_length=1)],
        line_id: Annotated[str, Form(min_length=1)],
        station_id: Annotated[str, Form(min_length=1)],
        camera_id: Annotated[str, Form(min_length=1)],
        product_type: Annotated[str, Form(min_length=1, description="A registered product type")],
        frame_id: Annotated[
            str, Form(description="Client-side id that makes a re-sent upload a duplicate; assigned when empty")
        ] = "",
        lot: Annotated[str, Form()] = "",
        work_order: Annotated[str, Form()] = "",
        capture_time: Annotated[datetime | None, Form(description="ISO 8601; default: now (UTC if no zone)")] = None,
        process_parameters: Annotated[
            str, Form(description='JSON object of numbers, e.g. {"oven_temp_c": 241.5}')
        ] = "{}",
        wait: Annotated[
            bool, Query(description="Wait (at most DIFFQC_GATEWAY_WAIT_TIMEOUT_S) for the verdict")
        ] = False,
    ) -> UploadResult:
        """Forward one frame to ingestion. 202 once it is durable; with wait=true, 200 with the verdict."""
        frame = Frame(
            frame_id=frame_id,
            plant_id=plant_id,
            line_id=line_id,
            station_id=station_id,
            camera_id=camera_id,
            product_type=product_type,
            lot=lot,
            work_order=work_order,
            capture_time=clock.to_timestamp(capture_time or clock.now()),
            process_parameters=_parameters(process_parameters),
        )
        ack = ingestion.ingest(frame, image.file.read())
        result = UploadResult(
            frame_id=ack.frame_id, status=STATUS_NAMES[ack.status], result_url=inspection_url(ack.frame_id)
        )
        if wait:
            result.inspection = _wait_for_result(store, ack.frame_id, cfg.wait_timeout_s)
            if result.inspection is not None:
                response.status_code = 200
        return result

    @app.get(
        "/api/inspection/result/{inspection_id}",
        response_model=InspectionResult,
        tags=["inspection"],
        responses=_ERRORS,
    )
    def result(inspection_id: str) -> InspectionResult:
        """An inspection by its inspection id or by its frame id."""
        return result_of(*found(inspection_id))

    @app.get(
        "/api/inspection/{inspection_id}/heatmap.png",
        response_class=Response,
        tags=["inspection"],
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
    )
    def heatmap(inspection_id: str) -> Response:
        """The heatmap overlay: the anomaly map over the frame, defect regions boxed."""
        row, _frame = found(inspection_id)
        if not row.heatmap_uri:
            raise ApiError(404, f"inspection {row.id!r} has no heatmap")
        return Response(_blob(blobs, row.heatmap_uri, "heatmap"), media_type="image/png")

    @app.get(
        "/api/inspection/{inspection_id}/image",
        response_class=Response,
        tags=["inspection"],
        responses={200: {"content": {"image/*": {}}}, **_ERRORS},
    )
    def frame_image(inspection_id: str) -> Response:
        """The original frame image, as uploaded."""
        _row, frame = found(inspection_id)
        data = _blob(blobs, frame.image_uri, "frame image")
        return Response(data, media_type=_media_type(data))

    @app.get("/api/inspections", response_model=list[InspectionResult], tags=["inspection"], responses=_ERRORS)
    def recent(
        line: Annotated[str | None, Query(max_length=64, description="Only this line")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RECENT)] = 50,
    ) -> list[InspectionResult]:
        """The most recent inspections, newest first."""
        return store.recent(line, limit)

    @app.get("/api/lines", response_model=list[LineSummary], tags=["lines"], responses=_ERRORS)
    def lines() -> list[LineSummary]:
        """Every line with inspections."""
        return store.lines()

    @app.get("/api/lines/{line}/spc", response_model=LineSpc, tags=["lines"], responses=_ERRORS)
    def spc(line: str, product_type: Annotated[str | None, Query(max_length=64)] = None) -> LineSpc:
        """The line's control charts (individuals chart, Nelson rules, p-chart per lot), one per product type."""
        charts = line_spc(engine, settings.spc, line, product_type)
        if not charts.charts:
            raise ApiError(
                404,
                f"line {line!r} has no inspections" + (f" of product type {product_type!r}" if product_type else ""),
            )
        return charts

    @app.get("/health", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def health() -> Response:
        """Ready when the database answers and ingestion reports SERVING."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            database = "ok"
        except Exception as exc:  # any driver error means: not ready
            database = f"unavailable: {exc.__class__.__name__}"
        ingestion_state = "ok" if ingestion.serving() else f"unavailable at {ingestion.address}"
        ok = database == "ok" and ingestion_state == "ok"
        body = Health(status="ok" if ok else "degraded", database=database, ingestion=ingestion_state)
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _parameters(raw: str) -> dict[str, float]:
    """The process_parameters field: a JSON object of numbers (ingestion checks names and finiteness)."""
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"process_parameters is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ApiError(422, 'process_parameters must be a JSON object of numbers, e.g. {"oven_temp_c": 241.5}')
    return {str(name): float(v) for name, v in value.items()}


def _wait_for_result(store: Store, frame_id: str, timeout_s: float) -> InspectionResult | None:
    deadline = time.monotonic() + timeout_s
    while True:
        result = store.result(frame_id)
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(WAIT_POLL_S)


def _blob(blobs: BlobStore, uri: str, what: str) -> bytes:
    try:
        return blobs.get(uri)
    except BlobNotFound as exc:
        raise ApiError(404, f"the {what} is gone from the blob store: {exc}") from None
    except OSError as exc:
        raise DependencyUnavailable(f"blob store unavailable: {exc}") from None


def _media_type(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError):
        return "application/octet-stream"
