"""HMAC-SHA256 signatures that expire, separated by purpose (signed links, dashboard sessions), so a
signature made for one purpose never passes as another."""

from __future__ import annotations

import hashlib
import hmac
import time


def sign(secret: bytes, purpose: str, *fields: str | int) -> str:
    message = "\n".join([purpose, *(str(f) for f in fields)])
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def matches(signature: str, secret: bytes, purpose: str, *fields: str | int) -> bool:
    """Whether ``signature`` signs ``fields`` for ``purpose`` (compared in constant time)."""
    return hmac.compare_digest(signature.encode(), sign(secret, purpose, *fields).encode())


def expiry(ttl_s: float, now: float | None = None) -> int:
    return int((time.time() if now is None else now) + ttl_s)


def expired(expires: int, now: float | None = None) -> bool:
    return expires < (time.time() if now is None else now)
