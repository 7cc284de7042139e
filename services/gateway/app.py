"""The FastAPI application: REST API under /api, OpenAPI docs at /docs, the dashboard at /.

Every route but /health, the login page and the static assets needs credentials (services/gateway/auth.py)
and declares the role it needs: viewer reads, operator uploads and acknowledges SPC signals, admin manages keys
and reads the audit log.
"""

# No "from __future__ import annotations": FastAPI must resolve the route signatures, which refer to locals.
import io
import json
import pathlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Response, Security, UploadFile
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from sqlalchemy import Engine, text

from diffqc import __version__
from diffqc.core import clock
from diffqc.security.api_keys import Role, parse_entry
from diffqc.settings import Settings
from diffqc.store import audit, db
from diffqc.store.blobs import BlobNotFound, BlobStore
from diffqc.store.models import Frame as FrameRow
from diffqc.store.models import Inspection
from diffqc.v1.frame_pb2 import Frame
from services.gateway.admin import admin_router
from services.gateway.alerts import alerts_router
from services.gateway.auth import LOGIN_PATH, Auth, KeyRing, Principal
from services.gateway.drift import drift_router
from services.gateway.errors import ApiError, install_error_handlers
from services.gateway.ingest import STATUS_NAMES, IngestionClient
from services.gateway.login import login_router
from services.gateway.models import models_router
from services.gateway.queries import Store, inspection_url, result_of
from services.gateway.reconstruction import Reconstructions, reconstruction_router
from services.gateway.review import review_router
from services.gateway.schemas import (
    Health,
    InspectionId,
    InspectionResult,
    LineId,
    LineSummary,
    Problem,
    UploadResult,
)
from services.gateway.spc import LineSpc, line_spc
from services.gateway.spc_acks import spc_acks_router
from services.gateway.spc_rebase import spc_rebase_router
from services.gateway.training import training_router

STATIC = pathlib.Path(__file__).parent / "static"
MAX_RECENT = 500
WAIT_POLL_S = 0.1

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (400, 401, 403, 404, 422, 503)}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem} for status in (401, 403, 413, 422, 502, 503, 504)
}


def create_app(settings: Settings, engine: Engine, blobs: BlobStore, ingestion: IngestionClient) -> FastAPI:
    """The gateway over one database, blob store and ingestion client (closed when the app shuts down)."""
    cfg = settings.gateway
    store = Store(engine)
    keys = KeyRing(engine, [parse_entry(entry.get_secret_value()) for entry in cfg.api_keys], cfg.key_cache_s)
    # Without a configured secret, sessions are this process's own (the start-up log says so).
    session_secret = cfg.session_secret.get_secret_value().encode() if cfg.session_secret else secrets.token_bytes(32)
    auth = Auth(cfg, keys, session_secret)
    viewer = Security(auth.require(Role.VIEWER))
    operator = Security(auth.require(Role.OPERATOR))
    viewer_or_link = Security(auth.require_or_link(Role.VIEWER))
    reconstructions = Reconstructions(settings, engine, blobs)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        ingestion.close()
        reconstructions.close()

    app = FastAPI(
        title="diffqc gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, to viewers only
        description="Upload frames for inspection, read verdicts, heatmaps and SPC charts. Every route but "
        f"/health needs an API key (header `{cfg.api_key_header}` or `Authorization: Bearer`) or a session "
        f"({LOGIN_PATH}); roles: viewer reads, operator uploads, labels verdicts and acknowledges SPC signals, "
        "admin manages keys "
        "and reads the audit log. The image and heatmap routes also admit a signed link (`?expires=&signature=`).",
    )
    install_error_handlers(app, cfg.max_upload_bytes)
    app.include_router(login_router(auth, STATIC))
    app.include_router(admin_router(engine, auth))
    app.include_router(alerts_router(engine, auth))
    app.include_router(spc_acks_router(engine, auth))
    app.include_router(drift_router(engine, settings.drift, auth))
    app.include_router(review_router(engine, auth, STATIC))
    app.include_router(spc_rebase_router(engine, settings.spc, auth))
    app.include_router(training_router(engine, auth))
    app.include_router(models_router(engine, settings, auth, STATIC))
    app.include_router(reconstruction_router(store, reconstructions, auth))

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
        responses={200: {"model": UploadResult, "description": "wait=true and the verdict is in"}, **_WRITE_ERRORS},
    )
    def upload(
        response: Response,
        principal: Annotated[Principal, operator],
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
        with db.session(engine, write=True) as session:
            details = {"key_id": principal.key_id, "line_id": line_id, "status": STATUS_NAMES[ack.status]}
            audit.append(session, principal.name, "inspection.upload", ack.frame_id, details)
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
        dependencies=[viewer],
    )
    def result(inspection_id: InspectionId) -> InspectionResult:
        """An inspection by its inspection id or by its frame id."""
        return result_of(*found(inspection_id))

    @app.get(
        "/api/inspection/{inspection_id}/heatmap.png",
        response_class=Response,
        tags=["inspection"],
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
        dependencies=[viewer_or_link],
    )
    def heatmap(inspection_id: InspectionId) -> Response:
        """The heatmap overlay: the anomaly map over the frame, defect regions boxed."""
        row, _frame = found(inspection_id)
        if not row.heatmap_uri:
            raise ApiError(404, f"inspection {row.id!r} has no heatmap")
        return Response(_blob(lambda: blobs.get(row.heatmap_uri or ""), "heatmap"), media_type="image/png")

    @app.get(
        "/api/inspection/{inspection_id}/image",
        response_class=Response,
        tags=["inspection"],
        responses={200: {"content": {"image/*": {}}}, **_ERRORS},
        dependencies=[viewer_or_link],
    )
    def frame_image(inspection_id: InspectionId) -> Response:
        """The original frame image, as uploaded."""
        _row, frame = found(inspection_id)
        # By the digest in the frame's row: the store checks the bytes against it.
        data = _blob(lambda: blobs.get_digest(frame.image_sha256), f"frame image sha256:{frame.image_sha256}")
        return Response(data, media_type=_media_type(data))

    @app.get(
        "/api/inspections",
        response_model=list[InspectionResult],
        tags=["inspection"],
        responses=_ERRORS,
        dependencies=[viewer],
    )
    def recent(
        line: Annotated[str | None, Query(max_length=64, description="Only this line")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RECENT)] = 50,
    ) -> list[InspectionResult]:
        """The most recent inspections, newest first."""
        return store.recent(line, limit)

    @app.get("/api/lines", response_model=list[LineSummary], tags=["lines"], responses=_ERRORS, dependencies=[viewer])
    def lines() -> list[LineSummary]:
        """Every line with inspections."""
        return store.lines()

    @app.get("/api/lines/{line}/spc", response_model=LineSpc, tags=["lines"], responses=_ERRORS, dependencies=[viewer])
    def spc(line: LineId, product_type: Annotated[str | None, Query(max_length=64)] = None) -> LineSpc:
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

    @app.get("/openapi.json", include_in_schema=False, dependencies=[viewer])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[viewer])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")

    @app.get("/", include_in_schema=False, response_model=None)
    def dashboard(
        key: Annotated[str | None, Security(auth.header)], session: Annotated[str | None, Security(auth.cookie)]
    ) -> FileResponse | RedirectResponse:
        """The dashboard for a logged-in person; the login page for anyone else."""
        return auth.page(key, session, STATIC / "index.html")

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


def _blob(read: Callable[[], bytes], what: str) -> bytes:
    try:
        return read()
    except BlobNotFound as exc:
        raise ApiError(404, f"the {what} is gone from the blob store: {exc}") from None


def _media_type(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError):
        return "application/octet-stream"
