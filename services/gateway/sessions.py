"""The dashboard's session cookie: ``<key id>.<expires, unix s>.<HMAC-SHA256 hex>``.

It names the API key the person logged in with rather than carrying a role, so the key is looked
up on every request as for a key in a header: revoking the key ends its sessions too.
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "diffqc_session"


class SessionRefused(ValueError):
    """A session token is malformed, forged or expired; the message says which."""


def _signature(secret: bytes, key_id: str, expires: int) -> str:
    # Domain-separated from every other HMAC the gateway makes (signed links).
    return hmac.new(secret, f"diffqc-session\n{key_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def issue(secret: bytes, key_id: str, ttl_s: float, now: float | None = None) -> tuple[str, int]:
    """A token for ``key_id`` and its expiry (unix seconds)."""
    expires = int((time.time() if now is None else now) + ttl_s)
    return f"{key_id}.{expires}.{_signature(secret, key_id, expires)}", expires


def verify(secret: bytes, token: str, now: float | None = None) -> str:
    """The key id a valid, unexpired token names; SessionRefused otherwise."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise SessionRefused("the session cookie is malformed")
    key_id, expires, signature = parts[0], int(parts[1]), parts[2]
    if not hmac.compare_digest(signature.encode(), _signature(secret, key_id, expires).encode()):
        raise SessionRefused("the session cookie's signature does not match (forged, or signed with another secret)")
    if expires < (time.time() if now is None else now):
        raise SessionRefused("the session has expired")
    return key_id
