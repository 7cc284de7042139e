"""Signed, expiring links to the gateway's image and heatmap routes (what the MES may follow).

A link is ``{base_url}{path}?expires=<unix s>&signature=<hex>`` where the signature is an
HMAC-SHA256 over ``path`` and ``expires`` (``diffqc.security.signing``) with a secret the gateway
and the signer share. The gateway serves a signed path without an API key until it expires; a
changed path, expiry or signature is refused. No path is ever taken from the link's text: the gateway routes by
inspection id and reads the blob through the digest stored in its own row.
"""

from __future__ import annotations

from urllib.parse import urlencode

from diffqc.security.signing import expired, expiry, matches, sign

PURPOSE = "diffqc-link"


class LinkRefused(ValueError):
    """A signed link is malformed, forged or expired; the message says which."""


def sign_link(base_url: str, path: str, secret: bytes, ttl_s: float, now: float | None = None) -> str:
    """The absolute URL of ``path`` (starting with ``/``) at ``base_url``, valid for ``ttl_s`` seconds."""
    if not path.startswith("/"):
        raise ValueError(f"link path {path!r} must start with /")
    expires = expiry(ttl_s, now)
    query = urlencode({"expires": expires, "signature": sign(secret, PURPOSE, path, expires)})
    return f"{base_url.rstrip('/')}{path}?{query}"


def verify_link(path: str, expires: str | int, signature: str, secret: bytes, now: float | None = None) -> None:
    """Raise ``LinkRefused`` unless ``signature`` signs ``path`` until ``expires`` and that is still ahead."""
    try:
        expiry_s = int(expires)
    except (TypeError, ValueError):
        raise LinkRefused("link expiry is not a whole number of seconds") from None
    if not matches(signature, secret, PURPOSE, path, expiry_s):
        raise LinkRefused("link signature does not match its path and expiry")
    if expired(expiry_s, now):
        raise LinkRefused("link has expired")
