"""The dashboard's session cookie: ``<key id>.<expires, unix s>.<HMAC-SHA256 hex>``.

It names the API key the person logged in with rather than carrying a role, so the key is looked
up on every request as for a key in a header: revoking the key ends its sessions too.
"""

from __future__ import annotations

from diffqc.security.signing import expired, expiry, matches, sign

COOKIE = "diffqc_session"
PURPOSE = "diffqc-session"


class SessionRefused(ValueError):
    """A session token is malformed, forged or expired; the message says which."""


def issue(secret: bytes, key_id: str, ttl_s: float, now: float | None = None) -> tuple[str, int]:
    """A token for ``key_id`` and its expiry (unix seconds)."""
    expires = expiry(ttl_s, now)
    return f"{key_id}.{expires}.{sign(secret, PURPOSE, key_id, expires)}", expires


def verify(secret: bytes, token: str, now: float | None = None) -> str:
    """The key id a valid, unexpired token names; SessionRefused otherwise."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        raise SessionRefused("the session cookie is malformed")
    key_id, expires, signature = parts[0], int(parts[1]), parts[2]
    if not matches(signature, secret, PURPOSE, key_id, expires):
        raise SessionRefused("the session cookie's signature does not match (forged, or signed with another secret)")
    if expired(expires, now):
        raise SessionRefused("the session has expired")
    return key_id
