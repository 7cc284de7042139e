"""The dashboard's login: a page where a person pastes an API key, and the session routes behind it.

A login sets an HttpOnly, SameSite=Strict cookie (Secure when DIFFQC_GATEWAY_PUBLIC_URL is https)
that carries a signed, expiring session of the key; scripts never see it, other sites never send it.
"""

# No "from __future__ import annotations": FastAPI must resolve the dependency signatures, which refer to locals.
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Response, Security
from fastapi.responses import FileResponse

from diffqc.security.api_keys import Role
from services.gateway import sessions
from services.gateway.auth import LOGIN_PATH, Auth, Principal
from services.gateway.schemas import Login, Problem, SessionInfo

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 422, 503)}


def login_router(auth: Auth, static: Path) -> APIRouter:
    router = APIRouter()
    cfg = auth.cfg
    viewer = Security(auth.require(Role.VIEWER))

    @router.get(LOGIN_PATH, include_in_schema=False)
    def login_page() -> FileResponse:
        return FileResponse(static / "login.html")

    @router.post("/api/session", response_model=SessionInfo, tags=["session"], responses=_ERRORS)
    def login(body: Login, response: Response) -> SessionInfo:
        """Log in with an API key: the answer sets the session cookie."""
        principal = auth.identify(body.api_key, None)
        token, expires = sessions.issue(auth.session_secret, principal.key_id, cfg.session_ttl_s)
        response.set_cookie(
            sessions.COOKIE,
            token,
            max_age=int(cfg.session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=cfg.public_url.startswith("https:"),
        )
        return SessionInfo(name=principal.name, role=principal.role, expires_at=datetime.fromtimestamp(expires, UTC))

    @router.get("/api/session", response_model=SessionInfo, tags=["session"], responses=_ERRORS)
    def whoami(principal: Annotated[Principal, viewer]) -> SessionInfo:
        """Who the request is authenticated as (the dashboard shows it)."""
        return SessionInfo(name=principal.name, role=principal.role)

    @router.delete("/api/session", status_code=204, tags=["session"], responses=_ERRORS, dependencies=[viewer])
    def logout(response: Response) -> None:
        """Log out: the answer clears the session cookie."""
        response.delete_cookie(sessions.COOKIE, httponly=True, samesite="strict")

    return router
