"""Every error answer is JSON ``{"detail": "<one message naming the problem>"}``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from diffqc.runtime.dependencies import DependencyUnavailable

# Form fields a client must send with an upload (the rest of the metadata is optional).
_MISSING_FIELD_TYPES = {"missing"}


class ApiError(HTTPException):
    """An error answer whose ``detail`` is already the message for the client."""


def _problem(error: Mapping[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
    name = ".".join(location) or "request"
    if error.get("type") in _MISSING_FIELD_TYPES:
        if name == "image":
            return "missing image: send the image file as the multipart field 'image'"
        return f"missing metadata field: {name}"
    return f"{name}: {error.get('msg', 'invalid')}"


def too_large(max_upload_bytes: int) -> str:
    return f"request body is over the upload limit of {max_upload_bytes} bytes (DIFFQC_GATEWAY_MAX_UPLOAD_BYTES)"


def install_error_handlers(app: FastAPI, max_upload_bytes: int) -> None:
    @app.middleware("http")
    async def refuse_oversized(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """A declared Content-Length over the limit is refused before any of the body is read. (The
        upload route's own limit counts the bytes of a body that declares none, as they stream in.)"""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_upload_bytes:
            return JSONResponse({"detail": too_large(max_upload_bytes)}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": "; ".join(_problem(e) for e in exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 413 and not isinstance(exc, ApiError):  # the body limit, before the body was read
            detail = too_large(max_upload_bytes)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DependencyUnavailable)
    async def dependency_down(_request: Request, exc: DependencyUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)
