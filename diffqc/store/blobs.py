"""The blob store for images, tensors and anomaly maps (events carry references, never bytes).

Content-addressed: a blob's key is the SHA-256 of its bytes, so storing the same image twice
(a camera retrying a frame) writes nothing new and yields the same reference. ``BlobStore`` is
the interface an S3 store implements; ``FileBlobStore`` is the filesystem default.

References arrive in messages that other parties can write (a camera's ``frame.image``), so a
read never follows a path taken from them: a reference resolves to a digest (its ``sha256``, or
the digest its URI names when that URI is exactly one this store made) and the store reads its
own file for that digest, refusing symlinks on the way, anything but a regular file, a blob over
the caller's size limit (before reading it) and bytes whose SHA-256 is not the digest.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np

from diffqc.v1.common_pb2 import BlobRef

NPY = "application/x-npy"
DIGEST = re.compile(r"[0-9a-f]{64}")


class BlobNotFound(KeyError):
    """A reference points at a blob that the store does not hold."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""


class BlobRefused(BlobNotFound):
    """A reference the store will not follow: not one of its own, a symlink, a tampered blob."""


class BlobTooLarge(BlobRefused):
    """The blob is larger than the reader's limit; nothing of it was read."""


class BlobStore(Protocol):
    def put(self, data: bytes, media_type: str) -> BlobRef: ...

    def get(self, ref: BlobRef | str, max_bytes: int | None = None) -> bytes: ...

    def get_digest(self, sha256: str, max_bytes: int | None = None) -> bytes: ...


def checked_digest(sha256: str, where: str) -> str:
    """``sha256`` when it is 64 lowercase hex digits; BlobRefused naming ``where`` otherwise."""
    if not DIGEST.fullmatch(sha256):
        raise BlobRefused(f"{where}: sha256 {sha256[:80]!r} is not 64 lowercase hex digits")
    return sha256


class FileBlobStore:
    """Blobs as files under ``root/sha256/<2 hex>/<64 hex>``, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def _path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def put(self, data: bytes, media_type: str) -> BlobRef:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, path)  # readers never see a partly written blob
        return BlobRef(uri=path.as_uri(), sha256=digest, media_type=media_type, size_bytes=len(data))

    def digest_of(self, uri: str) -> str:
        """The digest a URI of this store names; BlobRefused unless ``uri`` is exactly such a URI."""
        parts = urlsplit(uri)
        if parts.scheme != "file":
            raise BlobRefused(f"{uri[:300]!r} is not a file:// URI of the blob store at {self.root}")
        if parts.netloc not in ("", "localhost"):
            raise BlobRefused(f"{uri[:300]!r} names host {parts.netloc!r}; the blob store at {self.root} is local")
        local = "file:///" + uri.removeprefix("file://localhost/") if uri.startswith("file://localhost/") else uri
        digest = uri[-64:]
        # Compared as text with the URI put() makes: no '..', percent-escape or other spelling gets through.
        if not DIGEST.fullmatch(digest) or local != self._path(digest).as_uri():
            raise BlobRefused(
                f"{uri[:300]!r} is not a blob URI of the store at {self.root} (root/sha256/<2 hex>/<64 hex>)"
            )
        return digest

    def get(self, ref: BlobRef | str, max_bytes: int | None = None) -> bytes:
        """The bytes of ``ref``: read by its ``sha256`` when it has one (its URI, if any, must name the
        same blob), else by the digest its URI names. Raises BlobNotFound, or BlobRefused naming the reason."""
        if isinstance(ref, BlobRef) and ref.sha256:
            digest = checked_digest(ref.sha256, ref.uri or "blob reference")
            if ref.uri and self.digest_of(ref.uri) != digest:
                raise BlobRefused(f"{ref.uri!r} does not name the blob of its sha256 {digest}")
            return self._read(digest, max_bytes, ref.uri or f"sha256:{digest}")
        uri = ref.uri if isinstance(ref, BlobRef) else ref
        return self._read(self.digest_of(uri), max_bytes, uri)

    def get_digest(self, sha256: str, max_bytes: int | None = None) -> bytes:
        """The bytes of the blob whose SHA-256 is ``sha256`` (64 lowercase hex digits)."""
        return self._read(checked_digest(sha256, "blob"), max_bytes, f"sha256:{sha256}")

    def _read(self, digest: str, max_bytes: int | None, name: str) -> bytes:
        try:
            fd = self._open(digest)
        except FileNotFoundError:
            raise BlobNotFound(f"blob {name} does not exist") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # O_NOFOLLOW met a symlink, or a file stands for a folder
                raise BlobRefused(
                    f"blob {name}: its path under {self.root} goes through a symlink or a non-folder"
                ) from None
            raise  # the store itself failed (I/O, permissions): the caller's dependency error
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise BlobRefused(f"blob {name} is not a regular file")
            if max_bytes is not None and info.st_size > max_bytes:
                raise BlobTooLarge(f"blob {name} is {info.st_size} bytes, over the limit of {max_bytes} bytes")
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:  # it grew after the stat
            raise BlobTooLarge(f"blob {name} is over the limit of {max_bytes} bytes")
        if (actual := hashlib.sha256(data).hexdigest()) != digest:
            raise BlobRefused(f"blob {name} is corrupt or tampered with: its bytes hash to {actual}")
        return data

    def _open(self, digest: str) -> int:
        """A read descriptor of the blob's file, opened folder by folder from the root without following
        any symlink (ELOOP), and non-blocking so that a FIFO planted there cannot hang the reader."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for folder in ("sha256", digest[:2]):
                inner = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = inner
            return os.open(digest, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)


def put_array(store: BlobStore, array: np.ndarray) -> BlobRef:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return store.put(buffer.getvalue(), NPY)


def get_array(store: BlobStore, ref: BlobRef | str) -> np.ndarray:
    return np.load(io.BytesIO(store.get(ref)), allow_pickle=False)
