"""Gateway API keys: their format, roles, salted hashes and the bootstrap entries of DIFFQC_GATEWAY_API_KEYS.

A key is ``dqc_<prefix>_<secret>``: an 8-hex-digit prefix, stored in clear to find the key's row,
and 32 random bytes (URL-safe base64). Only a salted scrypt hash of the whole key is stored,
``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``; checking a presented key compares in constant time.

A bootstrap entry (a key provisioned from a Secret, no database row) is
``<role>:<name>:<prefix>:<hash>``, as ``diffqc keys hash`` prints it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

# scrypt at n=2**14, r=8, p=1 costs 16 MiB and ~40 ms here: the gateway caches what it verified.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MAX_SCRYPT_N = 2**20  # a configured hash cannot make one check cost more than ~1 GiB
KEY = re.compile(r"dqc_(?P<prefix>[0-9a-f]{8})_[A-Za-z0-9_-]{43}")
HASH = re.compile(r"scrypt\$(?P<n>\d+)\$(?P<r>\d+)\$(?P<p>\d+)\$(?P<salt>[0-9a-f]{32})\$(?P<hash>[0-9a-f]{64})")
NAME = re.compile(r"[^:\x00-\x1f\x7f]{1,100}")
ENTRY_FORMAT = "<role>:<name>:<prefix>:scrypt$<n>$<r>$<p>$<salt>$<hash> (as `diffqc keys hash` prints it)"


class Role(enum.StrEnum):
    """What a key may do; each role may also do what the ones before it may."""

    VIEWER = "viewer"  # read inspections, images, heatmaps, SPC
    OPERATOR = "operator"  # upload frames
    ADMIN = "admin"  # manage keys, read the audit log

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


def new_key() -> tuple[str, str]:
    """A fresh key and its lookup prefix: ``(prefix, key)``."""
    prefix = secrets.token_hex(4)
    return prefix, f"dqc_{prefix}_{secrets.token_urlsafe(32)}"


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key; None for anything else."""
    match = KEY.fullmatch(key)
    return match["prefix"] if match else None


def _scrypt(key: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=32)


def hash_key(key: str) -> str:
    """The salted hash to store for ``key``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(key, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_hash(hashed: str) -> None:
    """ValueError naming the problem unless ``hashed`` is a hash ``hash_key`` could have made."""
    match = HASH.fullmatch(hashed)
    if not match:
        raise ValueError("the hash is not scrypt$<n>$<r>$<p>$<32 hex salt>$<64 hex hash>")
    n, r, p = int(match["n"]), int(match["r"]), int(match["p"])
    if n < 2 or n & (n - 1) or n > MAX_SCRYPT_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError(f"scrypt parameters n={n} r={r} p={p} are out of range (n a power of 2 up to 2**20)")


def verify_key(key: str, hashed: str) -> bool:
    """Whether ``key`` is the key ``hashed`` was made from (constant-time comparison)."""
    check_hash(hashed)
    _, n, r, p, salt, digest = hashed.split("$")
    return hmac.compare_digest(_scrypt(key, bytes.fromhex(salt), int(n), int(r), int(p)), bytes.fromhex(digest))


@dataclass(frozen=True)
class BootstrapKey:
    """A key provisioned from DIFFQC_GATEWAY_API_KEYS."""

    role: Role
    name: str
    prefix: str
    hashed: str

    def entry(self) -> str:
        return f"{self.role.value}:{self.name}:{self.prefix}:{self.hashed}"


def parse_entry(entry: str) -> BootstrapKey:
    """The key an entry of DIFFQC_GATEWAY_API_KEYS describes; ValueError naming the problem (never the entry)."""
    parts = entry.strip().split(":")
    if len(parts) != 4:
        plain = "a plain key is not accepted; " if len(parts) == 1 else ""
        raise ValueError(f"{plain}expected {ENTRY_FORMAT}")
    role, name, prefix, hashed = parts
    if role not in {r.value for r in Role}:
        raise ValueError(f"role {role!r} is not one of {', '.join(Role)}")
    if not NAME.fullmatch(name):
        raise ValueError("the name must be 1-100 characters without ':' or control characters")
    if not re.fullmatch(r"[0-9a-f]{8}", prefix):
        raise ValueError("the prefix must be the key's 8 hex digits after 'dqc_'")
    check_hash(hashed)
    return BootstrapKey(Role(role), name, prefix, hashed)
