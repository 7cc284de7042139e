"""Who may do what at the gateway: credentials become a principal, each route names the role it needs.

Credentials, the first one present wins: an API key in ``DIFFQC_GATEWAY_API_KEY_HEADER``, an
``Authorization: Bearer <key>`` header, the dashboard's session cookie. Without any: 401; with one
that is not accepted: 401 naming it; with a role below the route's: 403 naming both roles. The
image and heatmap routes also admit a signed link (``?expires=&signature=``), 403 naming why not.

Keys come from the database and from DIFFQC_GATEWAY_API_KEYS (salted hashes). A checked key or
session is trusted for ``DIFFQC_GATEWAY_KEY_CACHE_S`` seconds, so one scrypt check serves many
requests; a key revoked on this replica is forgotten at once, on the others within that time.
"""

# No "from __future__ import annotations": FastAPI must resolve the dependency signatures, which refer to locals.
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Query, Request, Security
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from diffqc.security.api_keys import BootstrapKey, Role, prefix_of, verify_key
from diffqc.security.links import LinkRefused, verify_link
from diffqc.settings import GatewaySettings
from diffqc.store import api_keys, db
from services.gateway import sessions
from services.gateway.errors import ApiError

BOOTSTRAP_ID = "env:"  # id prefix of a key from DIFFQC_GATEWAY_API_KEYS (it has no row)
CACHE_LIMIT = 4096
LOGIN_PATH = "/login"


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    role: Role


class KeyRing:
    """The keys the gateway accepts, looked up per request behind a short cache."""

    def __init__(self, engine: Engine, bootstrap: Sequence[BootstrapKey], cache_s: float):
        self.engine = engine
        self.bootstrap = {f"{BOOTSTRAP_ID}{key.prefix}": key for key in bootstrap}
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def by_key(self, key: str) -> Principal | None:
        """The principal of a valid, unrevoked key; None for any other string."""
        prefix = prefix_of(key)
        if prefix is None:
            return None
        return self._cached("key:" + hashlib.sha256(key.encode()).hexdigest(), lambda: self._check(prefix, key))

    def by_id(self, key_id: str) -> Principal | None:
        """The principal of the key with this id while it is not revoked (what a session names)."""
        return self._cached("id:" + key_id, lambda: self._lookup(key_id))

    def forget(self, key_id: str) -> None:
        with self._lock:
            for name in [n for n, (_, p) in self._cache.items() if p is not None and p.key_id == key_id]:
                del self._cache[name]

    def _cached(self, name: str, load: Callable[[], Principal | None]) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = load()  # outside the lock: scrypt and the database take milliseconds
        with self._lock:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[name] = (now + self.cache_s, principal)
        return principal

    def _check(self, prefix: str, key: str) -> Principal | None:
        configured = self.bootstrap.get(f"{BOOTSTRAP_ID}{prefix}")
        if configured is not None and verify_key(key, configured.hashed):
            return Principal(f"{BOOTSTRAP_ID}{prefix}", configured.name, configured.role)
        with db.session(self.engine) as session:
            row = api_keys.by_prefix(session, prefix)
        if row is None or row.revoked_at is not None or not verify_key(key, row.key_hash):
            return None
        return Principal(row.id, row.name, row.role)

    def _lookup(self, key_id: str) -> Principal | None:
        configured = self.bootstrap.get(key_id)
        if configured is not None:
            return Principal(key_id, configured.name, configured.role)
        if key_id.startswith(BOOTSTRAP_ID):
            return None  # removed from the Secret since the login
        with db.session(self.engine) as session:
            row = api_keys.by_id(session, key_id)
        return None if row is None or row.revoked_at is not None else Principal(row.id, row.name, row.role)


class Auth:
    """The FastAPI dependencies that authenticate a request and check its role."""

    def __init__(self, cfg: GatewaySettings, keys: KeyRing, session_secret: bytes):
        self.cfg = cfg
        self.keys = keys
        self.session_secret = session_secret
        self.link_secret = cfg.link_secret.get_secret_value().encode() if cfg.link_secret else None
        self.header = APIKeyHeader(name=cfg.api_key_header, auto_error=False, description="An API key")
        self.bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token")
        self.cookie = APIKeyCookie(name=sessions.COOKIE, auto_error=False, description=f"A session ({LOGIN_PATH})")

    def page(self, key: str | None, session: str | None, page: Path) -> FileResponse | RedirectResponse:
        """A dashboard page for a logged-in person; the login page for anyone else."""
        try:
            self.identify(key, session)
        except ApiError:
            return RedirectResponse(LOGIN_PATH, status_code=303)
        return FileResponse(page)

    def identify(self, key: str | None, session: str | None) -> Principal:
        """The principal of the key (else of the session cookie); ApiError 401 naming what is missing or wrong."""
        if key:
            principal = self.keys.by_key(key)
            if principal is None:
                raise self._unauthorized(
                    f"API key not accepted (header {self.cfg.api_key_header} or Authorization: Bearer): "
                    "unknown, revoked or malformed"
                )
            return principal
        if session:
            try:
                key_id = sessions.verify(self.session_secret, session)
            except sessions.SessionRefused as exc:
                raise self._unauthorized(f"{exc}: log in again at {LOGIN_PATH}") from None
            principal = self.keys.by_id(key_id)
            if principal is None:
                raise self._unauthorized(f"the session's API key was revoked: log in again at {LOGIN_PATH}")
            return principal
        raise self._unauthorized(
            f"missing credentials: send an API key in header {self.cfg.api_key_header} or as "
            f"Authorization: Bearer <key>, or log in at {LOGIN_PATH}"
        )

    def require(self, role: Role) -> Callable[..., Principal]:
        """A dependency: the request's principal, when its role allows ``role``."""

        def dependency(
            key: Annotated[str | None, Security(self.header)],
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(self.bearer)],
            session: Annotated[str | None, Security(self.cookie)],
        ) -> Principal:
            return self.authorize(self.identify(key or (bearer.credentials if bearer else None), session), role)

        return dependency

    def require_or_link(self, role: Role) -> Callable[..., Principal | None]:
        """Like ``require``, but a request with a signed link is admitted by the link alone (None)."""
        authenticated = self.require(role)

        def dependency(
            request: Request,
            key: Annotated[str | None, Security(self.header)],
            bearer: Annotated[HTTPAuthorizationCredentials | None, Security(self.bearer)],
            session: Annotated[str | None, Security(self.cookie)],
            expires: Annotated[int | None, Query(description="Expiry of a signed link (unix seconds)")] = None,
            signature: Annotated[str | None, Query(max_length=128, description="Signature of a signed link")] = None,
        ) -> Principal | None:
            if signature is None and expires is None:
                return authenticated(key, bearer, session)
            if self.link_secret is None:
                raise ApiError(403, "signed links are not accepted: the gateway has no DIFFQC_GATEWAY_LINK_SECRET")
            path = request.url.path.removeprefix(request.scope.get("root_path", ""))
            try:
                verify_link(path, "" if expires is None else expires, signature or "", self.link_secret)
            except LinkRefused as exc:
                raise ApiError(403, f"signed link refused: {exc}") from None
            return None

        return dependency

    @staticmethod
    def authorize(principal: Principal, role: Role) -> Principal:
        if not principal.role.allows(role):
            raise ApiError(
                403, f"role {role.value} required: API key {principal.name!r} has role {principal.role.value}"
            )
        return principal

    def _unauthorized(self, detail: str) -> ApiError:
        return ApiError(401, detail, headers={"WWW-Authenticate": "Bearer"})
