"""The links an alert gives the MES: the gateway's image and heatmap routes of its inspection.

``{gateway.public_url}/api/inspection/{inspection_id}/image`` and ``.../heatmap.png``, signed and
expiring (``diffqc.security.links``) when ``gateway.link_secret`` is set, so that the MES follows
them without an API key; plain otherwise (the MES then sends its API key). Never a blob-store
path: the gateway reads the blob through its own inspection row.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from diffqc.security.links import sign_link
from diffqc.settings import GatewaySettings

SIGNATURE_PARAMETERS = frozenset({"expires", "signature"})


def image_path(inspection_id: str) -> str:
    return f"/api/inspection/{quote(inspection_id, safe='')}/image"


def heatmap_path(inspection_id: str) -> str:
    return f"/api/inspection/{quote(inspection_id, safe='')}/heatmap.png"


@dataclass(frozen=True)
class AlertLinks:
    """Builds (and recognises) the gateway links of an inspection."""

    public_url: str
    secret: bytes | None = None
    ttl_s: float = 7 * 24 * 3600.0

    @classmethod
    def from_settings(cls, gateway: GatewaySettings) -> AlertLinks:
        secret = gateway.link_secret.get_secret_value().encode() if gateway.link_secret is not None else None
        return cls(str(gateway.public_url), secret, gateway.link_ttl_s)

    def link(self, path: str, now: float | None = None) -> str:
        if self.secret is None:
            return f"{self.public_url.rstrip('/')}{path}"
        return sign_link(self.public_url, path, self.secret, self.ttl_s, now)

    def image(self, inspection_id: str, now: float | None = None) -> str:
        return self.link(image_path(inspection_id), now)

    def heatmap(self, inspection_id: str, now: float | None = None) -> str:
        return self.link(heatmap_path(inspection_id), now)

    def is_link(self, url: str, path: str) -> bool:
        """Whether ``url`` is this gateway's link to ``path``, plain or with a signature (which only the
        gateway checks: a wrong one makes the link useless, never points it elsewhere)."""
        given, expected = urlsplit(url), urlsplit(f"{self.public_url.rstrip('/')}{path}")
        same_place = (given.scheme, given.netloc, given.path) == (expected.scheme, expected.netloc, expected.path)
        return (
            same_place
            and not given.fragment
            and set(parse_qs(given.query, keep_blank_values=True)) <= SIGNATURE_PARAMETERS
        )
