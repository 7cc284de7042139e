"""Admin routes: API keys (create, list, revoke; no restart needed) and the audit log."""

# No "from __future__ import annotations": FastAPI must resolve the dependency signatures, which refer to locals.
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Security
from sqlalchemy import Engine, select

from diffqc.security.api_keys import Role
from diffqc.store import api_keys, audit, db
from diffqc.store.models import ApiKey, AuditEntry
from services.gateway.auth import Auth, Principal
from services.gateway.errors import ApiError
from services.gateway.schemas import AuditRow, ChainStatus, CreatedKey, KeyInfo, NewKey, Problem

MAX_AUDIT_ROWS = 1000
MAX_ID = 2**63 - 1  # the id column's BIGINT
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (401, 403, 422, 503)}


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo.model_validate(row, from_attributes=True)


def admin_router(engine: Engine, auth: Auth) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    admin = Security(auth.require(Role.ADMIN))

    @router.post("/api/keys", response_model=CreatedKey, status_code=201, tags=["admin"])
    def create_key(new: NewKey, principal: Annotated[Principal, admin]) -> CreatedKey:
        """Create an API key. The answer holds the key itself, this once."""
        with db.session(engine, write=True) as session:
            row, key = api_keys.create_key(session, new.name, new.role, principal.name)
        return CreatedKey(**_info(row).model_dump(), key=key)

    @router.get("/api/keys", response_model=list[KeyInfo], tags=["admin"], dependencies=[admin])
    def list_keys() -> list[KeyInfo]:
        """The keys in the database, revoked ones too (never a key or its hash). Keys provisioned from
        DIFFQC_GATEWAY_API_KEYS are not listed: they live in that Secret."""
        with db.session(engine) as session:
            return [_info(row) for row in api_keys.list_keys(session)]

    @router.delete("/api/keys/{key_id}", response_model=KeyInfo, tags=["admin"], responses={404: {"model": Problem}})
    def revoke_key(
        key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The key's id")],
        principal: Annotated[Principal, admin],
    ) -> KeyInfo:
        """Revoke a key: it stops working at once on this replica, within DIFFQC_GATEWAY_KEY_CACHE_S elsewhere."""
        try:
            with db.session(engine, write=True) as session:
                row = api_keys.revoke_key(session, key_id, principal.name)
        except api_keys.KeyNotFound as exc:
            raise ApiError(404, str(exc)) from None
        auth.keys.forget(row.id)
        return _info(row)

    @router.get("/api/audit", response_model=list[AuditRow], tags=["admin"], dependencies=[admin])
    def audit_log(
        limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_ROWS)] = 100,
        before_id: Annotated[
            int | None, Query(ge=1, le=MAX_ID, description="Only rows older than this one (paging)")
        ] = None,
    ) -> list[AuditRow]:
        """The audit log, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        with db.session(engine) as session:
            return [AuditRow.model_validate(row, from_attributes=True) for row in session.scalars(query)]

    @router.get("/api/audit/verify", response_model=ChainStatus, tags=["admin"], dependencies=[admin])
    def verify_audit() -> ChainStatus:
        """Check the audit log's hash chain from its first row (`diffqc audit verify` does the same)."""
        with db.session(engine) as session:
            checked, broken = audit.verify_chain(session)
        if broken is None:
            return ChainStatus(intact=True, rows_checked=checked)
        return ChainStatus(intact=False, rows_checked=checked, first_broken_id=broken.id, reason=broken.reason)

    return router
